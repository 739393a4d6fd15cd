/**
 * How the inspector prints things: one line per message or operation (serial, version, action,
 * name, id, clientId, headers, data), lease deadlines relative to the server's clock, durations.
 * Output only — nothing here ever sees a credential.
 */
import type { Message } from '@mooring/protocol';

const MAX_DATA = 160;

/** `serial  action  name  id=…  client=…  headers={…}  "data…"` (version shown when it differs). */
export function formatMessage(m: Message): string {
  const parts = [m.serial];
  if (m.version !== m.serial) parts.push(`v=${m.version}`);
  parts.push(m.action.padEnd(6));
  if (m.name !== undefined) parts.push(m.name);
  parts.push(`id=${m.id}`);
  if (m.clientId !== undefined) parts.push(`client=${m.clientId}`);
  if (m.headers !== undefined && Object.keys(m.headers).length > 0)
    parts.push(`headers=${JSON.stringify(m.headers)}`);
  if (m.data !== undefined) parts.push(preview(m.data));
  return parts.join('  ');
}

export function preview(data: unknown, max = MAX_DATA): string {
  const text = typeof data === 'string' ? JSON.stringify(data) : (JSON.stringify(data) ?? '');
  return text.length > max ? `${text.slice(0, max)}…(${text.length} chars)` : text;
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
