/**
 * A Map that forgets its least recently used entries beyond `max`.
 *
 * An entry is moved to the recent end only when it is not among the `max / 2` entries moved or added
 * last. Its place in the Map's order is then a little out of date, never by enough for it to be
 * forgotten: at least `max / 2` entries stand in front of it. A plain LRU Map moves an entry (delete,
 * set again) on every read, and the store reads its hot entries once per operation: that churn was
 * garbage on every token.
 */
export class Lru<K, V> {
  readonly #map = new Map<K, Entry<V>>();
  readonly #max: number;
  readonly #recent: number;
  /** Counts moves and additions: an entry's `moved` is this clock's value when it last moved. */
  #clock = 0;

  constructor(max: number) {
    this.#max = Math.max(1, max);
    this.#recent = Math.floor(this.#max / 2);
  }

  get(key: K): V | undefined {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    this.#touch(key, entry);
    return entry.value;
  }

  set(key: K, value: V): void {
    const entry = this.#map.get(key);
    if (entry !== undefined) {
      entry.value = value;
      this.#touch(key, entry);
      return;
    }
    this.#map.set(key, { value, moved: ++this.#clock });
    if (this.#map.size > this.#max) this.#map.delete(this.#map.keys().next().value as K);
  }

  delete(key: K): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }

  /** How many entries are held (at most `max`). */
  get size(): number {
    return this.#map.size;
  }

  #touch(key: K, entry: Entry<V>): void {
    if (this.#clock - entry.moved < this.#recent) return;
    this.#map.delete(key);
    this.#map.set(key, entry);
    entry.moved = ++this.#clock;
  }
}

interface Entry<V> {
  value: V;
  moved: number;
}
