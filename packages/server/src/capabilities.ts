/**
 * Capabilities (ARCHITECTURE.md §7, PROTOCOL.md §14): which operations an identity may perform on which
 * channels. A capability maps channel globs to operation lists:
 *
 *   { "session:*": ["subscribe", "publish", "append-own"], "lobby": ["subscribe", "presence"] }
 *
 * In a glob `*` matches any run of characters (':' included); everything else matches itself, so
 * `session:a*` never matches `session:b`. The operation `*` grants every operation.
 *
 * Inspection (delivery health, leases, the session inspector: `GET /v1/channels/:channel/health`,
 * `GET /v1/health`) needs `history` AND `presence` on the channel — no operation of its own: whoever
 * may read a session's log and its presence may see how it is delivered (health-report.ts).
 *
 * Matching is linear-time (`globMatches`: an iterative two-pointer match, O(glob × name) at worst
 * and no recursion), never a backtracking regular expression: a hostile glob in a token cannot stall
 * the server whatever channel name it is tried against.
 */
import { ServerError } from './server-error.ts';

export const OPERATIONS = [
  'subscribe',
  'publish',
  'history',
  'presence',
  'append-own',
  'update-own',
  'update-any',
  'delete-own',
  'delete-any',
  // Durable Streams (PROTOCOL.md §16), checked on `stream:<path>`
  'stream-read',
  'stream-append',
  'stream-create',
  'stream-delete',
] as const;
export type Operation = (typeof OPERATIONS)[number];

export type CapabilitySpec = Record<string, readonly string[]>;

interface Rule {
  glob: string;
  operations: ReadonlySet<Operation>;
}

export class Capability implements Access {
  readonly #rules: Rule[];
  readonly spec: CapabilitySpec;

  private constructor(rules: Rule[], spec: CapabilitySpec) {
    this.#rules = rules;
    this.spec = spec;
  }

  /** Every operation on every channel. */
  static all(): Capability {
    return Capability.parse({ '*': ['*'] });
  }

  /** Validates a spec (from config, a token or a request) and compiles it. Throws on bad input. */
  static parse(spec: unknown, what = 'capability'): Capability {
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec))
      throw new ServerError('bad_request', `${what} must be an object of channel glob → operations`);
    const entries = Object.entries(spec as Record<string, unknown>);
    if (entries.length > 100) throw new ServerError('bad_request', `${what} has more than 100 channel globs`);
    const rules: Rule[] = [];
    const clean: Record<string, string[]> = {};
    for (const [glob, ops] of entries) {
      if (glob.length === 0 || glob.length > 256 || /\s/.test(glob))
        throw new ServerError(
          'bad_request',
          `${what}: invalid channel glob ${JSON.stringify(glob.slice(0, 80))}`,
        );
      if (!Array.isArray(ops) || ops.length > 20)
        throw new ServerError('bad_request', `${what}: the operations of ${glob} must be a list`);
      const operations = new Set<Operation>();
      for (const op of ops) {
        if (op === '*') for (const o of OPERATIONS) operations.add(o);
        else if ((OPERATIONS as readonly unknown[]).includes(op)) operations.add(op as Operation);
        else
          throw new ServerError(
            'bad_request',
            `${what}: unknown operation ${JSON.stringify(op)}; use ${OPERATIONS.join(', ')} or *`,
          );
      }
      rules.push({ glob, operations });
      clean[glob] = [...operations];
    }
    return new Capability(rules, clean);
  }

  allows(channel: string, operation: Operation): boolean {
    for (const rule of this.#rules)
      if (rule.operations.has(operation) && globMatches(rule.glob, channel)) return true;
    return false;
  }
}

/** What an identity may do: a capability, or several that must all agree. */
export interface Access {
  allows(channel: string, operation: Operation): boolean;
}

/**
 * A token's capability restricted by the key that signed it: allowed only where both allow it.
 * (Checked operation by operation, since globs do not intersect into globs in general.)
 */
export function bothOf(inner: Access, outer: Access): Access {
  return {
    allows: (channel, operation) => inner.allows(channel, operation) && outer.allows(channel, operation),
  };
}

/** Throws `forbidden` unless `access` allows the operation on the channel. */
export function requireAccess(access: Access, channel: string, operation: Operation): void {
  if (!access.allows(channel, operation))
    throw new ServerError('forbidden', `your credentials do not allow ${operation} on ${channel}`);
}

/**
 * Whether `text` matches `glob` (`*` = any run of characters, anything else itself). The classic
 * iterative wildcard match: on a mismatch, only the most recent `*` is retried, one character
 * further on. Earlier stars never need revisiting (the latest one can absorb anything they could),
 * so the work is bounded by glob length × text length, with no backtracking blow-up.
 */
export function globMatches(glob: string, text: string): boolean {
  let g = 0;
  let t = 0;
  let star = -1; // index in glob of the latest '*'
  let resume = 0; // index in text that star currently absorbs up to
  while (t < text.length) {
    if (g < glob.length && glob[g] !== '*' && glob[g] === text[t]) {
      g++;
      t++;
    } else if (g < glob.length && glob[g] === '*') {
      star = g++;
      resume = t;
    } else if (star >= 0) {
      g = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (g < glob.length && glob[g] === '*') g++;
  return g === glob.length;
}
