/**
 * The SQLite store's view of its journal in memory, and the plan of its merge into `ops` in slices.
 *
 * The journal table holds the operations not yet merged into `ops` (sqlite-store.ts, module header).
 * This view knows each of its rows by channel, in sequence order — its row id `n`, sequence number,
 * message, dedup key and appended bytes — so that dedup, size checks and channel counters see the
 * journal without reading it, and so that a merge can take any set of rows by their ids.
 *
 * Merging in slices: once the journal holds JOURNAL_HIGH_ROWS rows (or JOURNAL_HIGH_BYTES of
 * appended text), every group commit also merges one slice of it, until it is back under the low
 * marks. A slice is taken channel after channel in channel order (a sweep that resumes where the
 * last slice stopped and starts over once it reached the last channel), each channel's rows from its
 * oldest. The rows of one channel are next to each other in `ops`' three indexes, all led by the
 * channel; a channel's turn comes back once per sweep, so each turn moves all the rows it gathered
 * meanwhile, writing a few pages of each index for many rows. A slice is bounded (SLICE_ROWS /
 * SLICE_BYTES, or 1.5 × what the commit added when that is more, so the merge keeps up), so no commit
 * holds its group of acknowledgements for a whole merge.
 *
 *   journal (by n):  a1 b1 c1 a2 b2 a3 c2 b3 …        sweep: a a a | b b b | c c …
 *   slice 1 ─────────────────────────────────────►   [a1 a2 a3 b1 b2 b3]   one INSERT … ORDER BY chan, seq
 *   slice 2 (next commit) ──────────────────────►   [c1 c2 …]
 *
 * A slice is merged and deleted from the journal in the transaction of the group commit that carries
 * it: a crash leaves the journal as the last COMMIT left it, each row in `ops` or in the journal,
 * never both and never neither. The view is rebuilt from the table on open and after a rollback.
 */

/** Journal rows from which every commit merges a slice, until JOURNAL_LOW_ROWS are left. */
export const JOURNAL_HIGH_ROWS = 32_768;
export const JOURNAL_LOW_ROWS = 16_384;
/**
 * Appended text (bytes) from which slices are merged too, down to JOURNAL_LOW_BYTES: 32,768 appends
 * of 64 KiB would otherwise wait in the journal (and be merged by a read of their channel at once).
 */
export const JOURNAL_HIGH_BYTES = 4 * 1024 * 1024;
export const JOURNAL_LOW_BYTES = 2 * 1024 * 1024;
/** The least a slice merges (rows, bytes) when the commit added less. */
export const SLICE_ROWS = 1024;
export const SLICE_BYTES = 256 * 1024;

/** One journal row, as the view keeps it. */
export interface JournalRow {
  /** Row id in the journal table. */
  n: number;
  seq: number;
  msgSeq: number;
  /** `dedupKey(publisher, id)`. */
  key: string;
  /** Appended text (bytes), 0 for other actions. */
  bytes: number;
  append: boolean;
}

/** Rows to merge: their ids, and how many rows of each channel (from its oldest) they are. */
export interface Slice {
  ns: number[];
  taken: [chan: number, rows: number][];
}

export class JournalView {
  readonly #byChannel = new Map<number, JournalRow[]>();
  /** `chan:key` → seq. */
  readonly #ids = new Map<string, number>();
  /** `chan:msgSeq` → journal appends to that message and their bytes. */
  readonly #appended = new Map<string, { rows: number; bytes: number }>();
  /** Channels of the current sweep, in order, and the next one's index. */
  #sweep: number[] = [];
  #sweepAt = 0;
  #draining = false;
  #addedRows = 0;
  #addedBytes = 0;
  rows = 0;
  bytes = 0;

  add(chan: number, row: JournalRow): void {
    let rows = this.#byChannel.get(chan);
    if (rows === undefined) {
      rows = [];
      this.#byChannel.set(chan, rows);
    }
    rows.push(row);
    this.#ids.set(`${chan}:${row.key}`, row.seq);
    if (row.append) {
      const key = `${chan}:${row.msgSeq}`;
      const held = this.#appended.get(key);
      if (held === undefined) this.#appended.set(key, { rows: 1, bytes: row.bytes });
      else {
        held.rows++;
        held.bytes += row.bytes;
      }
    }
    this.rows++;
    this.bytes += row.bytes;
    this.#addedRows++;
    this.#addedBytes += row.bytes;
  }

  /** The sequence number of a channel's op held in the journal under this dedup key. */
  idSeq(chan: number, key: string): number | undefined {
    return this.#ids.get(`${chan}:${key}`);
  }

  /** Bytes appended to a message by journal rows; undefined when it has no append in the journal. */
  appendedBytes(chan: number, msgSeq: number): number | undefined {
    return this.#appended.get(`${chan}:${msgSeq}`)?.bytes;
  }

  /** The channel's last sequence number in the journal. */
  lastSeq(chan: number): number | undefined {
    return this.#byChannel.get(chan)?.at(-1)?.seq;
  }

  /** Dedup keys of the channel's journal rows. */
  *keys(chan: number): Iterable<string> {
    for (const row of this.#byChannel.get(chan) ?? []) yield row.key;
  }

  /** Every journal row of a channel (to merge before reading it from `ops`). */
  channel(chan: number): Slice | undefined {
    const rows = this.#byChannel.get(chan);
    if (rows === undefined) return undefined;
    return { ns: rows.map((r) => r.n), taken: [[chan, rows.length]] };
  }

  /** Every channel with journal rows and its last sequence number. */
  *lastSeqs(): Iterable<[chan: number, seq: number]> {
    for (const [chan, rows] of this.#byChannel) yield [chan, rows.at(-1)!.seq];
  }

  /**
   * Called once per group commit, after its batches were written: the slice that commit must merge,
   * if the journal is past its high marks (or still draining to its low ones).
   */
  commitSlice(): Slice | undefined {
    const addedRows = this.#addedRows;
    const addedBytes = this.#addedBytes;
    this.#addedRows = 0;
    this.#addedBytes = 0;
    if (this.rows >= JOURNAL_HIGH_ROWS || this.bytes >= JOURNAL_HIGH_BYTES) this.#draining = true;
    if (!this.#draining) return undefined;
    const slice = this.#next(
      Math.max(SLICE_ROWS, Math.ceil(1.5 * addedRows)),
      Math.max(SLICE_BYTES, Math.ceil(1.5 * addedBytes)),
    );
    return slice;
  }

  /** Up to `maxRows` rows and about `maxBytes` bytes (at least one row), in sweep order. */
  #next(maxRows: number, maxBytes: number): Slice {
    const slice: Slice = { ns: [], taken: [] };
    let bytes = 0;
    while (slice.ns.length < maxRows && bytes < maxBytes && slice.ns.length < this.rows) {
      if (this.#sweepAt >= this.#sweep.length) {
        this.#sweep = [...this.#byChannel.keys()].sort((a, b) => a - b);
        this.#sweepAt = 0;
      }
      const chan = this.#sweep[this.#sweepAt]!;
      const rows = this.#byChannel.get(chan) ?? [];
      let k = 0;
      while (k < rows.length && slice.ns.length < maxRows && bytes < maxBytes) {
        slice.ns.push(rows[k]!.n);
        bytes += rows[k]!.bytes;
        k++;
      }
      if (k > 0) slice.taken.push([chan, k]);
      if (k === rows.length) this.#sweepAt++;
    }
    return slice;
  }

  /**
   * Forgets the rows of a slice once merged (in the transaction that merged them), and returns each
   * channel's last merged sequence number: its counter in `channels`.
   */
  merged(slice: Slice): [chan: number, seq: number][] {
    const last: [number, number][] = [];
    for (const [chan, count] of slice.taken) {
      const rows = this.#byChannel.get(chan)!;
      for (let i = 0; i < count; i++) this.#forget(chan, rows[i]!);
      last.push([chan, rows[count - 1]!.seq]);
      if (count === rows.length) this.#byChannel.delete(chan);
      else this.#byChannel.set(chan, rows.slice(count));
    }
    if (this.rows <= JOURNAL_LOW_ROWS && this.bytes <= JOURNAL_LOW_BYTES) this.#draining = false;
    return last;
  }

  #forget(chan: number, row: JournalRow): void {
    this.#ids.delete(`${chan}:${row.key}`);
    if (row.append) {
      const key = `${chan}:${row.msgSeq}`;
      const held = this.#appended.get(key)!;
      if (--held.rows === 0) this.#appended.delete(key);
      else held.bytes -= row.bytes;
    }
    this.rows--;
    this.bytes -= row.bytes;
  }

  clear(): void {
    this.#byChannel.clear();
    this.#ids.clear();
    this.#appended.clear();
    this.#sweep = [];
    this.#sweepAt = 0;
    this.#draining = false;
    this.#addedRows = 0;
    this.#addedBytes = 0;
    this.rows = 0;
    this.bytes = 0;
  }
}
