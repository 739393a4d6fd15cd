/**
 * Reads the head of the first HTTP request on a connection and says whether it asks for a WebSocket
 * upgrade. `FaultProxy.refuseUpgrade()` uses it to answer such requests itself while letting every
 * other request through untouched. Anything that is not a complete, recognisable request head within
 * `MAX_HEAD` bytes counts as "not an upgrade", so non-HTTP traffic is forwarded rather than stalled.
 */

/** Largest request head read before deciding the connection is not a WebSocket upgrade. */
export const MAX_HEAD = 64 * 1024;

export type SniffResult = 'incomplete' | 'upgrade' | 'other';

export function sniffUpgrade(bytes: Buffer): SniffResult {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return bytes.length > MAX_HEAD ? 'other' : 'incomplete';
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  if (!/^[A-Z]+ \S+ HTTP\/\d\.\d$/.test(lines[0] ?? '')) return 'other';
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon === -1) continue;
    if (line.slice(0, colon).trim().toLowerCase() !== 'upgrade') continue;
    if (/\bwebsocket\b/i.test(line.slice(colon + 1))) return 'upgrade';
  }
  return 'other';
}
