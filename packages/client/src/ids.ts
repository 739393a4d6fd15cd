/**
 * Operation ids. The SDK gives every operation an id (PROTOCOL.md §7: a client that retries must), so
 * that a publish resent after a reconnect is acknowledged as a duplicate instead of stored twice.
 * Ids are `<base>:<n>`: a random base per client instance, then a counter.
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

  next(): string {
    this.#counter += 1;
    return `${this.base}:${this.#counter}`;
  }
}
