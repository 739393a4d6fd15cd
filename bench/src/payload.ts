/**
 * The fan-out payload: exactly PAYLOAD_SIZE ASCII characters carrying a sequence number and the
 * publisher's send time, found again by scanning the received text for a marker. Scanning instead
 * of parsing keeps the load generator's cost the same whatever envelope a server wraps around the
 * payload (raw frame, Socket.IO packet, Mooring `messages` frame), and finds several payloads when
 * a server batches them into one frame. The characters need no JSON escaping.
 *
 *   ~B<seq>:<send time, ms, performance.now()>~xxxxxxxx…   (100 chars)
 */

export const PAYLOAD_SIZE = 100;
const MARKER = '~B';
const PADDING = 'x'.repeat(PAYLOAD_SIZE);

export function makePayload(seq: number, sentAt: number): string {
  const head = `${MARKER}${seq}:${sentAt.toFixed(3)}~`;
  return head + PADDING.slice(head.length);
}

/** Calls `visit` for every payload found in `text`; returns how many were found. */
export function scanPayloads(text: string, visit: (seq: number, sentAt: number) => void): number {
  let found = 0;
  let at = text.indexOf(MARKER);
  while (at >= 0) {
    const colon = text.indexOf(':', at);
    const end = text.indexOf('~', colon);
    if (colon < 0 || end < 0) break;
    visit(Number(text.slice(at + MARKER.length, colon)), Number(text.slice(colon + 1, end)));
    found++;
    at = text.indexOf(MARKER, end + 1);
  }
  return found;
}
