/**
 * WAL checkpoints of the SQLite store, copied back on a worker thread with a connection of its own,
 * so that the bulk of that work (reading the WAL, writing the database file, its fsync) never blocks
 * the event loop. SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold, on
 * the committing thread: in the store that is the event loop, and every ~1,000 pages of WAL a batch
 * of acknowledgements (and everything else the server does) waited 10–30 ms for it.
 *
 * Guarantees:
 * - Durability is not affected: a checkpoint only copies committed frames; acknowledged operations
 *   are in the WAL before it runs (ack after COMMIT), whatever the checkpointer does.
 * - The WAL stays bounded. The worker's PASSIVE checkpoints never wait for the writer, but only the
 *   writer can rewind the WAL, and only when every frame was copied before it began: a writer that
 *   never pauses (the group commit under load) would let the WAL grow for ever. So once the worker
 *   reports more than `rewindFrames` frames, `onRewind` runs on the store's thread: a RESTART
 *   checkpoint that copies only what the worker has not copied yet (a few ms of writes) and rewinds.
 * - The worker checkpoints on its own clock (every `intervalMs`), so every write of the file is
 *   covered: appends, trims, leases and Durable Streams alike. If it cannot run, `onFailure` tells
 *   the store to go back to SQLite's automatic checkpoint.
 */
import { Worker } from 'node:worker_threads';

/**
 * The worker: one connection, `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs` (it never waits on
 * a lock; with nothing new in the WAL it only reads the WAL index), reporting the WAL's size when
 * it changed.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { DatabaseSync } = require('node:sqlite');
const db = new DatabaseSync(workerData.path);
db.exec('PRAGMA busy_timeout = 0');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
let reported = -1;
const timer = setInterval(() => {
  try {
    const row = checkpoint.get();
    const log = Number(row.log);
    // -1: it could not run (another connection held the checkpoint lock: the store's own rewind,
    // say). The WAL did not change for that; taken as a size, the next tick's real one would be
    // reported again and ask for a rewind again.
    if (!(log >= 0)) return;
    if (log !== reported) parentPort.postMessage({ log, checkpointed: Number(row.checkpointed) });
    reported = log;
  } catch {
    // SQLITE_BUSY (another checkpoint runs) or an I/O error: tried again on the next tick
  }
}, workerData.intervalMs);
parentPort.on('message', (request) => {
  if (request !== 'close') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

interface CheckpointReport {
  /** Frames in the WAL (since it was last rewound). */
  log: number;
  checkpointed: number;
}

export interface CheckpointerOptions {
  /** Time between two checkpoints of the worker, ms. */
  intervalMs?: number;
  /** WAL frames past which `onRewind` is called. */
  rewindFrames?: number;
  /**
   * Called on the store's thread when the WAL outgrew `rewindFrames`: checkpoint the rest inline
   * and rewind it. If it could not (busy), the next report asks again.
   */
  onRewind: () => void;
  /** The worker could not start or died: the store must checkpoint by itself from now on. */
  onFailure: (error: Error) => void;
}

export class SqliteCheckpointer {
  readonly #worker: Worker;
  #failed = false;
  #exited = false;
  #closing: Promise<void> | undefined;

  constructor(path: string, options: CheckpointerOptions) {
    const rewindFrames = options.rewindFrames ?? 4096;
    this.#worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, intervalMs: options.intervalMs ?? 50 },
    });
    // A checkpointer alone never keeps the process alive.
    this.#worker.unref();
    const fail = (error: Error): void => {
      if (this.#failed || this.#closing !== undefined) return;
      this.#failed = true;
      options.onFailure(error);
    };
    // a rewind that could not run (busy) is asked for again by the next report: the WAL has grown
    this.#worker.on('message', (report: CheckpointReport) => {
      if (report.log > rewindFrames && !this.#failed && this.#closing === undefined) options.onRewind();
    });
    this.#worker.on('error', fail);
    this.#worker.on('exit', (code) => {
      this.#exited = true;
      fail(new Error(`the checkpoint worker exited (${code})`));
    });
  }

  /** True when the store must checkpoint by itself (the worker failed). */
  get failed(): boolean {
    return this.#failed;
  }

  /** Closes the worker's connection (after any checkpoint in progress) and ends the worker. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      if (this.#exited) return resolve();
      // Bounded: a worker stuck in a checkpoint for 5 s is terminated.
      const timer = setTimeout(() => void this.#worker.terminate().then(() => resolve()), 5000);
      this.#worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#worker.postMessage('close');
    });
    return this.#closing;
  }
}
