/**
 * The SQLite store's view of its journal in memory, and the plan of its merge into `ops` in slices.
 *
 * The journal table holds the operations not yet merged into `ops` (sqlite-store.ts, module header).
 * This view knows each of its rows by channel, in sequence order — its row id `n`, sequence number,
 * message, dedup key and appended bytes — so that dedup, size checks and channel counters see the
 * journal without reading it, and so that a merge can take any set of rows by their ids.
 *
 * Merging in slices: once the journal holds JOURNAL_HIGH_ROWS rows (or JOURNAL_HIGH_BYTES of
 * appended text), its rows so far become a generation, merged by the next group commits one slice
 * each. A slice is taken channel after channel in channel order, each channel's rows of the
 * generation together: they are next to each other in `ops`' three indexes (all led by the channel),
 * so each channel's turn writes a few pages of each index for all the rows it gathered. A slice is
 * bounded (SLICE_ROWS / SLICE_BYTES, or 1.5 × what the commit added when that is more, so the merge
 * keeps up), so no commit holds its group of acknowledgements for a whole merge.
 *
 *   journal (by n):  a1 b1 c1 a2 b2 a3 c2 b3 | a4 …    generation: n ≤ G (rows up to the mark)
 *   slice 1 ──────────────────────────────►   [a1 a2 a3 b1 b2 b3]   one INSERT … ORDER BY chan, seq
 *   slice 2 (next commit) ────────────────►   [c1 c2], then DELETE FROM journal WHERE n <= G
 *
 * A merged row of the generation stays in the journal table until the whole generation is merged,
 * and is then deleted with the rest of it (a range of the table: deleting each slice's rows, spread
 * over the whole table, would rewrite most of its pages at every slice). Such a row is known to be
 * merged by being in `ops` (`ops` gets rows only from the journal): that is how the view is rebuilt
 * on open and after a rollback. A read, update, delete or trim of a channel merges and deletes its
 * rows at once; a trim also merges the rest of the generation first (it deletes ops, and a merged row
 * left in the journal without its op would look unmerged). Each slice is merged in the transaction of
 * the group commit that carries it: a crash leaves every operation in `ops` or in the journal (not yet
 * merged), never neither, never merged twice.
 */

/** Journal rows that make a generation, merged in slices by the next commits. */
export const JOURNAL_HIGH_ROWS = 32_768;
/**
 * Appended text (bytes) that makes a generation too: 32,768 appends of 64 KiB would otherwise wait in
 * the journal (and be merged by a read of their channel at once).
 */
export const JOURNAL_HIGH_BYTES = 4 * 1024 * 1024;
/**
 * The least a slice merges (rows, bytes) when the commit added less. Small: at a low rate of appends
 * (a few per commit, e.g. a hundred token streams) a generation is then merged by many short slices,
 * where 1,024 rows made a burst of back-to-back commits of 5–9 ms each (bench/README.md, *The SQLite
 * store's token tail*); at a high rate 1.5 × what the commit added is the bound anyway.
 */
export const SLICE_ROWS = 64;
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
  /** Delete them from the journal table now (not with their generation). */
  remove: boolean;
}

/** What merging a slice changed: each channel's last merged seq; the generation's end if it is done. */
export interface Merged {
  last: [chan: number, seq: number][];
  /** Every row of the generation is merged: delete the journal's rows through this `n`. */
  dropThrough?: number;
}

/** A channel's rows in the journal, and what dedup and size checks look up in them. */
interface ChannelRows {
  /** In sequence order. */
  rows: JournalRow[];
  /** Dedup key → seq. */
  ids: Map<string, number>;
  /** Message seq → the journal's appends to it and their bytes. */
  appended: Map<number, { rows: number; bytes: number }>;
}

export class JournalView {
  /**
   * By channel: a channel's lookups are forgotten with it when all its rows are merged, not key by
   * key (a shrinking Map is copied, and composite string keys were built and hashed per operation).
   */
  readonly #byChannel = new Map<number, ChannelRows>();
  /** The generation being merged: its last `n`, its rows not merged yet, its channels in order. */
  #gen: number | undefined;
  #genLeft = 0;
  #sweep: number[] = [];
  #sweepAt = 0;
  #lastN = 0;
  #addedRows = 0;
  #addedBytes = 0;
  rows = 0;
  bytes = 0;

  add(chan: number, row: JournalRow): void {
    let ch = this.#byChannel.get(chan);
    if (ch === undefined) {
      ch = { rows: [], ids: new Map(), appended: new Map() };
      this.#byChannel.set(chan, ch);
    }
    ch.rows.push(row);
    this.#lastN = Math.max(this.#lastN, row.n);
    ch.ids.set(row.key, row.seq);
    if (row.append) {
      const held = ch.appended.get(row.msgSeq);
      if (held === undefined) ch.appended.set(row.msgSeq, { rows: 1, bytes: row.bytes });
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
    return this.#byChannel.get(chan)?.ids.get(key);
  }

  /** Bytes appended to a message by journal rows; undefined when it has no append in the journal. */
  appendedBytes(chan: number, msgSeq: number): number | undefined {
    return this.#byChannel.get(chan)?.appended.get(msgSeq)?.bytes;
  }

  /** The sequence number of the last journal row applied to a message (a scan: not a hot path). */
  lastOf(chan: number, msgSeq: number): number | undefined {
    const rows = this.#byChannel.get(chan)?.rows;
    if (rows === undefined) return undefined;
    for (let i = rows.length - 1; i >= 0; i--) if (rows[i]!.msgSeq === msgSeq) return rows[i]!.seq;
    return undefined;
  }

  /** How many journal rows apply to a message (a scan: not a hot path). */
  rowsOf(chan: number, msgSeq: number): number {
    const rows = this.#byChannel.get(chan)?.rows;
    let count = 0;
    if (rows !== undefined) for (const row of rows) if (row.msgSeq === msgSeq) count++;
    return count;
  }

  /** The channel's last sequence number in the journal. */
  lastSeq(chan: number): number | undefined {
    return this.#byChannel.get(chan)?.rows.at(-1)?.seq;
  }

  /** Dedup keys of the channel's journal rows. */
  *keys(chan: number): Iterable<string> {
    for (const row of this.#byChannel.get(chan)?.rows ?? []) yield row.key;
  }

  /** Every journal row of a channel (to merge before reading it from `ops`). */
  channel(chan: number): Slice | undefined {
    const rows = this.#byChannel.get(chan)?.rows;
    if (rows === undefined) return undefined;
    return { ns: rows.map((r) => r.n), taken: [[chan, rows.length]], remove: true };
  }

  /** The ids of every row not merged. */
  *allRows(): Iterable<number> {
    for (const { rows } of this.#byChannel.values()) for (const r of rows) yield r.n;
  }

  /** Every channel with journal rows and its last sequence number. */
  *lastSeqs(): Iterable<[chan: number, seq: number]> {
    for (const [chan, { rows }] of this.#byChannel) yield [chan, rows.at(-1)!.seq];
  }

  /**
   * Called once per group commit, after its batches were written: the slice that commit must merge,
   * if a generation is being merged (one starts when the journal is past its high marks).
   */
  commitSlice(): Slice | undefined {
    const addedRows = this.#addedRows;
    const addedBytes = this.#addedBytes;
    this.#addedRows = 0;
    this.#addedBytes = 0;
    if (this.#gen === undefined && (this.rows >= JOURNAL_HIGH_ROWS || this.bytes >= JOURNAL_HIGH_BYTES))
      this.#startGeneration(this.#lastN, this.rows);
    if (this.#gen === undefined) return undefined;
    return this.#next(
      this.#gen,
      Math.max(SLICE_ROWS, Math.ceil(1.5 * addedRows)),
      Math.max(SLICE_BYTES, Math.ceil(1.5 * addedBytes)),
    );
  }

  /** The rest of the generation being merged, at once (before a trim deletes ops). */
  generationRest(): Slice | undefined {
    if (this.#gen === undefined) return undefined;
    return this.#next(this.#gen, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
  }

  #startGeneration(through: number, rows: number): void {
    this.#gen = through;
    this.#genLeft = rows;
    this.#sweep = [...this.#byChannel.keys()].sort((a, b) => a - b);
    this.#sweepAt = 0;
  }

  /** Up to `maxRows` rows and about `maxBytes` bytes of the generation, in sweep order. */
  #next(gen: number, maxRows: number, maxBytes: number): Slice {
    const slice: Slice = { ns: [], taken: [], remove: false };
    let bytes = 0;
    while (slice.ns.length < maxRows && bytes < maxBytes && this.#sweepAt < this.#sweep.length) {
      const chan = this.#sweep[this.#sweepAt]!;
      const rows = this.#byChannel.get(chan)?.rows ?? [];
      let k = 0;
      while (k < rows.length && rows[k]!.n <= gen && slice.ns.length < maxRows && bytes < maxBytes) {
        slice.ns.push(rows[k]!.n);
        bytes += rows[k]!.bytes;
        k++;
      }
      if (k > 0) slice.taken.push([chan, k]);
      if (k === rows.length || rows[k]!.n > gen) this.#sweepAt++;
    }
    return slice;
  }

  /**
   * Forgets the rows of a slice once merged (in the transaction that merged them): each channel's
   * last merged sequence number (its counter in `channels`), and the generation's end once done.
   */
  merged(slice: Slice): Merged {
    const last: [number, number][] = [];
    for (const [chan, count] of slice.taken) {
      const ch = this.#byChannel.get(chan)!;
      const rows = ch.rows;
      const all = count === rows.length;
      for (let i = 0; i < count; i++) this.#forget(all ? undefined : ch, rows[i]!);
      last.push([chan, rows[count - 1]!.seq]);
      if (all) this.#byChannel.delete(chan);
      else ch.rows = rows.slice(count);
    }
    if (this.#gen === undefined || this.#genLeft > 0) return { last };
    const dropThrough = this.#gen;
    this.#gen = undefined;
    this.#sweep = [];
    return { last, dropThrough };
  }

  /**
   * After a reload: rows through `through` were merged by a generation not finished (they are
   * still in the table); the view's rows up to it are the rest of that generation.
   */
  resumeGeneration(through: number): void {
    let rows = 0;
    for (const list of this.#byChannel.values()) for (const r of list.rows) if (r.n <= through) rows++;
    this.#startGeneration(through, rows);
  }

  /** Counts a merged row out; `ch` undefined: its channel's lookups are dropped whole. */
  #forget(ch: ChannelRows | undefined, row: JournalRow): void {
    if (this.#gen !== undefined && row.n <= this.#gen) this.#genLeft--;
    if (ch !== undefined) {
      ch.ids.delete(row.key);
      if (row.append) {
        const held = ch.appended.get(row.msgSeq)!;
        if (--held.rows === 0) ch.appended.delete(row.msgSeq);
        else held.bytes -= row.bytes;
      }
    }
    this.rows--;
    this.bytes -= row.bytes;
  }

  clear(): void {
    this.#byChannel.clear();
    this.#gen = undefined;
    this.#genLeft = 0;
    this.#sweep = [];
    this.#sweepAt = 0;
    this.#lastN = 0;
    this.#addedRows = 0;
    this.#addedBytes = 0;
    this.rows = 0;
    this.bytes = 0;
  }
}
