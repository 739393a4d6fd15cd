/**
 * The server's limits (PROTOCOL.md §10): the defaults with what the operator set, checked before
 * anything opens. A limit's name spelt wrong, a string where a number belongs, or a value that would
 * break the server (a frame size of 0, a JSON depth the validator's stack cannot hold) stops the
 * start with a message that names it, instead of being ignored or found out by the first client.
 */
import { DEFAULT_LIMITS, type Limits } from '@mooring/protocol';
import { nearestName } from './nearest-name.ts';

/**
 * The deepest `maxJsonDepth` allowed: the frame validator and JSON.stringify recurse once per level,
 * and a few thousand levels exhaust the stack of the handler that runs them.
 */
export const MAX_JSON_DEPTH = 512;

type LimitName = keyof Limits;

/** Limits where 0 would refuse everything or break the server (the others read 0 as none or no limit). */
const AT_LEAST_ONE: ReadonlySet<LimitName> = new Set<LimitName>([
  'maxOperationSize',
  'maxMessageSize',
  'maxMessageOps',
  'maxFrameSize',
  'maxHttpBody',
  'maxOpsPerPublish',
  'maxConcurrentReads',
  'maxChannelNameLength',
  'maxIdLength',
  'maxFrameRate',
  'maxFrameBurst',
  'maxPresenceRate',
  'maxJsonDepth',
  'maxSendBuffer',
]);

/**
 * Limits the wire format itself bounds: the frame schema every node and client shares checks them
 * at their defaults. They are listed so that a config naming them is understood, but cannot change.
 */
const FIXED: ReadonlySet<LimitName> = new Set<LimitName>([
  'maxHeaders',
  'maxIdLength',
  'maxChannelNameLength',
]);

/** Limits that may be lowered but not raised past the bound the frame schema checks. */
const AT_MOST: Partial<Record<LimitName, number>> = {
  maxJsonDepth: MAX_JSON_DEPTH,
  maxOpsPerPublish: DEFAULT_LIMITS.maxOpsPerPublish,
};

export function resolveLimits(given: unknown): Limits {
  const limits: Limits = { ...DEFAULT_LIMITS };
  if (given === undefined) return limits;
  if (typeof given !== 'object' || given === null || Array.isArray(given))
    throw new Error(`limits must be an object of limits by name, e.g. { "maxFrameRate": 100 }`);
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined) continue;
    if (!Object.hasOwn(DEFAULT_LIMITS, name)) {
      const near = nearestName(name, Object.keys(DEFAULT_LIMITS));
      throw new Error(
        `limits.${name} is not a limit${near ? `; did you mean ${near}?` : ''} (PROTOCOL.md §10)`,
      );
    }
    const key = name as LimitName;
    // rates are per second and may be fractional; counts and sizes are whole
    const whole = !key.endsWith('Rate');
    const least = AT_LEAST_ONE.has(key) ? 1 : 0;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < least ||
      (whole && !Number.isInteger(value))
    )
      throw new Error(
        `limits.${key} must be a ${whole ? 'whole number' : 'number'} of at least ${least}, got ${JSON.stringify(value)}`,
      );
    if (FIXED.has(key) && value !== DEFAULT_LIMITS[key])
      throw new Error(
        `limits.${key} is fixed at ${DEFAULT_LIMITS[key]} by the wire format and cannot be changed, got ${value}`,
      );
    const most = AT_MOST[key];
    if (most !== undefined && value > most)
      throw new Error(
        key === 'maxJsonDepth'
          ? `limits.maxJsonDepth may be at most ${MAX_JSON_DEPTH} levels, got ${value}`
          : `limits.${key} may be lowered but not raised past ${most} (the frame format's bound), got ${value}`,
      );
    limits[key] = value;
  }
  return limits;
}
