/**
 * The fast path of inbound validation for the most frequent frame: a `publish` whose operations are
 * creates or appends carrying only `id`, `name`, `serial` and string `data` (what the client sends
 * for every token it streams and every plain message), with or without a precondition (`after`). Checked by hand here, it costs a fraction of
 * the full schema walk; anything else (another key, action, header, lease, encoding, non-string data,
 * a value out of range) is not decided here: `simplePublishFrame` returns undefined and the caller
 * runs `clientFrameSchema`, which also words every error.
 *
 * It must accept only frames the schema accepts, with the same result (the schema's output for a
 * valid frame equals its input: `.strict()` objects, nothing stripped or defaulted), so every
 * frame gets the same answer as without it (test/simple-publish-frame.test.ts compares both).
 */
import { DEFAULT_LIMITS, isChannelName, isSerial, type PublishFrame } from '@mooring/protocol';
import { isPlainObject } from '@mooring/protocol/schemas';

const FRAME_KEYS = new Set(['type', 'ref', 'channel', 'ops', 'after']);
const OP_KEYS = new Set(['action', 'id', 'serial', 'name', 'data']);

/** `raw` as a `PublishFrame` when it is one of the simple shapes above; otherwise undefined. */
export function simplePublishFrame(raw: unknown): PublishFrame | undefined {
  if (!isPlainObject(raw) || raw.type !== 'publish') return undefined;
  for (const key in raw) if (!FRAME_KEYS.has(key)) return undefined;
  const { ref, channel, ops, after } = raw;
  if (!(ref === undefined || isRef(ref)) || !isChannelName(channel)) return undefined;
  if (after !== undefined && !isId(after)) return undefined;
  if (!Array.isArray(ops) || ops.length < 1 || ops.length > DEFAULT_LIMITS.maxOpsPerPublish) return undefined;
  for (const op of ops) if (!isSimpleOperation(op)) return undefined;
  return raw as unknown as PublishFrame;
}

function isSimpleOperation(op: unknown): boolean {
  if (!isPlainObject(op)) return false;
  for (const key in op) if (!OP_KEYS.has(key)) return false;
  const { action, id, serial, name, data } = op;
  if (action === undefined || action === 'create') {
    if (serial !== undefined) return false;
  } else if (action === 'append') {
    if (typeof serial !== 'string' || !isSerial(serial)) return false;
  } else return false;
  if (id !== undefined && !isId(id)) return false;
  if (name !== undefined && !(typeof name === 'string' && name.length <= DEFAULT_LIMITS.maxIdLength))
    return false;
  return data === undefined || typeof data === 'string';
}

function isId(id: unknown): boolean {
  return typeof id === 'string' && id.length >= 1 && id.length <= DEFAULT_LIMITS.maxIdLength;
}

function isRef(ref: unknown): boolean {
  return typeof ref === 'string' ? ref.length <= 64 : Number.isSafeInteger(ref);
}
