/**
 * Operation ids. The SDK gives every operation an id (PROTOCOL.md §7: a client that retries must), so
 * that a publish resent after a reconnect is acknowledged as a duplicate instead of stored twice.
 * Ids are `<base>:<n>`: a random base per client instance, then a counter.
 *
 * Op ids are unique per publisher (PROTOCOL.md §7), and every holder of a token without a clientId
 * is one publisher: the anonymous token scope of its key. Ids are seen by everyone on the channel
 * (messages carry them), so such a holder could read another's `<base>:<n>`, publish `<base>:<n+1>`
 * first, and the other's next operation would be acknowledged as a duplicate of it, never stored.
 * Without a clientId every id therefore ends in a secret part, `<base>:<n>:<16 random characters>`
 * (from `crypto.getRandomValues`), that no earlier id tells.
 */

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

export function randomBase(random: () => number, length = 12): string {
  let out = '';
  for (let i = 0; i < length; i++) out += ALPHABET[Math.floor(random() * ALPHABET.length) % ALPHABET.length];
  return out;
}

export class IdGenerator {
  readonly base: string;
  #counter = 0;

  constructor(random: () => number) {
    this.base = randomBase(random);
  }

  /** `unguessable`: the publisher may share its dedup scope with others (no clientId). */
  next(unguessable = false): string {
    this.#counter += 1;
    return unguessable ? `${this.base}:${this.#counter}:${secret()}` : `${this.base}:${this.#counter}`;
  }
}

/** 16 characters of 32 (80 bits) from the platform's cryptographic random source. */
function secret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let out = '';
  for (const byte of bytes) out += ALPHABET[byte & 31];
  return out;
}
