/**
 * Attaches asked for with the connection request itself (PROTOCOL.md §5.1, `attach`): a JSON array
 * of attach requests without their `type`, in the query string of the WebSocket upgrade, the HTTP
 * transports' opening request or an in-process connection's address. The connection handles them
 * as the first frames it received, in order, right after `connected`: a reloaded page gets its
 * catch-up one round trip sooner, since it need not wait for `connected` to ask.
 *
 * The request is checked as a whole before the connection exists: anything malformed refuses the
 * connection with `bad_request` (HTTP 400), so a client bug is seen at once rather than as missing
 * channels. What only the attach itself can tell (access, an unknown namespace, more channels than
 * the connection may attach) is answered per request with its `ref`, exactly as for an `attach`
 * frame: a client that asks for more channels than the server allows still connects.
 */
import type { AttachFrame } from '@mooring/protocol';
import { CONNECT_ATTACH_PARAM } from '@mooring/protocol';
import { attachFrameSchema } from '@mooring/protocol/schemas';
import type { Seat } from './connection-manager.ts';
import type { Identity, OpenedConnection } from './connection-registry.ts';
import { exceedsDepth } from './json-depth.ts';
import { issueText, ServerError } from './server-error.ts';

/** What a connection request passed before its connection exists. */
export interface Admission {
  identity: Identity;
  opened: OpenedConnection;
  /** The request's `attach`, when it had one. */
  attaches: AttachFrame[] | undefined;
  /** Its place in the connection budgets, counted since its admission (connection-manager.ts). */
  seat: Seat;
  /** The request asked for compact `messages` frames (`frames=compact`, PROTOCOL.md §6.5). */
  compact: boolean;
}

/**
 * The attach requests of a connection request, or undefined when it has no `attach` parameter.
 * Throws `bad_request` for one that is not a JSON array of valid attach requests, one per channel.
 * How many there may be is left to the limits frames have: the size of the request line (16 KiB of
 * headers), then, per request, `maxChannelsPerConnection` and the frame budget.
 */
export function connectAttaches(url: URL, maxDepth: number): AttachFrame[] | undefined {
  const values = url.searchParams.getAll(CONNECT_ATTACH_PARAM);
  if (values.length === 0) return undefined;
  if (values.length > 1)
    throw refused(`give ${CONNECT_ATTACH_PARAM} once (a JSON array), not ${values.length} times`);
  let raw: unknown;
  try {
    raw = JSON.parse(values[0] ?? '');
  } catch {
    throw refused(`${CONNECT_ATTACH_PARAM} is not valid JSON: give an array of attach requests`);
  }
  if (!Array.isArray(raw)) throw refused(`${CONNECT_ATTACH_PARAM} must be a JSON array of attach requests`);
  if (exceedsDepth(raw, maxDepth)) throw refused(`${CONNECT_ATTACH_PARAM} is nested too deeply`);
  const channels = new Set<string>();
  return raw.map((entry: unknown, i) => {
    const where = `${CONNECT_ATTACH_PARAM}[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw refused(`${where} must be an object: { channel, from | rewind | start, echo, ref }`);
    if ('type' in entry) throw refused(`${where}: leave out type (every entry is an attach)`);
    const parsed = attachFrameSchema.safeParse({ ...entry, type: 'attach' });
    if (!parsed.success) throw refused(issueText(parsed.error.issues, 'invalid attach request', where));
    if (channels.has(parsed.data.channel))
      throw refused(`${where}: channel ${parsed.data.channel} is asked for twice`);
    channels.add(parsed.data.channel);
    return parsed.data;
  });
}

function refused(message: string): ServerError {
  return new ServerError('bad_request', message);
}
