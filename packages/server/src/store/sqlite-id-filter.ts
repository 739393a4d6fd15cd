/**
 * A per-channel Bloom filter of the op ids (dedup keys) the SQLite store holds for a channel, so that
 * checking a new op id for a duplicate — every publish and append does it — costs a few hashes
 * instead of an index probe in `ops` (a profile of 200 concurrent token streams put that probe at a
 * fifth of the store's commit time).
 *
 * It must never answer "absent" for an id the channel holds: the store builds it from the channel's
 * rows (`ops` and `journal`) and adds every id it writes afterwards. "Maybe present" (a false
 * positive, ~0.4 % at the designed fill, or an id whose write was rolled back or trimmed) only
 * sends the store to its index probe. Past its designed capacity it reports itself full and the
 * store rebuilds it bigger from the tables.
 */

/** Bits per id at the designed capacity and hash functions: ≈ 0.4 % false positives. */
const BITS_PER_ID = 12;
const HASHES = 6;

export class IdFilter {
  readonly capacity: number;
  readonly #bits: Uint32Array;
  readonly #mask: number;
  #count = 0;

  /** Room for `capacity` ids at the designed false-positive rate. */
  constructor(capacity: number) {
    this.capacity = Math.max(1024, capacity);
    let bits = 1 << 13;
    while (bits < this.capacity * BITS_PER_ID) bits *= 2;
    this.#bits = new Uint32Array(bits / 32);
    this.#mask = bits - 1;
  }

  /** More ids than designed for: false positives grow, rebuild it bigger. */
  get full(): boolean {
    return this.#count > this.capacity;
  }

  add(key: string): void {
    hash(key);
    const h1 = hashA;
    const h2 = hashB;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + i * h2) & this.#mask;
      this.#bits[bit >>> 5]! |= 1 << (bit & 31);
    }
    this.#count++;
  }

  /** False: the id was certainly never added. True: it may have been. */
  mayHave(key: string): boolean {
    hash(key);
    const h1 = hashA;
    const h2 = hashB;
    for (let i = 0; i < HASHES; i++) {
      const bit = (h1 + i * h2) & this.#mask;
      if ((this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/** The two hashes `hash` computed last (module state, not an array per call: it runs per operation). */
let hashA = 0;
let hashB = 0;

/** Two independent 32-bit hashes of a string (FNV-1a with two offsets), for double hashing. */
function hash(key: string): void {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  hashA = a >>> 0;
  hashB = (b | 1) >>> 0; // odd, so that the probe sequence visits different bits
}
