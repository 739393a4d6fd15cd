/**
 * The SQLite store's hold on its file: one store, in one process, per database. A second opener (a
 * second `mooring serve` on the same data folder, a supervisor that starts one too many, a second
 * SqliteStore in the same process) would merge the running store's journal and empty it, and write
 * "closed" at its exit while the first still serves: acknowledged operations lost (the journal's row
 * ids restart under the first store's in-memory view) and power-loss detection turned off. So it is
 * refused before it reads or writes anything of the database.
 *
 * The mechanism: a second, tiny SQLite database next to the store's (`<file>.lock`), opened with
 * `locking_mode=EXCLUSIVE` and an empty `BEGIN EXCLUSIVE`: its connection then holds the file's
 * exclusive lock until it is closed (at the store's close). Why this and not the alternatives:
 * - The lock is a kernel lock (POSIX `fcntl`), dropped by the kernel when the process dies, `kill -9`
 *   included: a crashed node's folder is free again at once, with no stale lock to recognise, and no
 *   pid that another process (a restarted container's pid 1) may have been given since.
 * - SQLite takes it, not our own `fcntl` (Node has none): SQLite also enforces it between the
 *   connections of one process (threads included), which the kernel does not, and it keeps the
 *   process's locks when another connection to the same file closes, where a plain `close()` of any
 *   descriptor of the file would drop them all (POSIX). So nothing here opens the lock file itself.
 * - Not `locking_mode=EXCLUSIVE` on the store's own file: in WAL mode that shuts out every other
 *   connection, the checkpoint worker's too (sqlite-checkpointer.ts).
 * - Not a pid file created with `O_EXCL`: a `kill -9` leaves it behind, and whether its pid is still
 *   the node that wrote it (pid reuse, containers, another host) can only be guessed.
 * The holder's pid is looked up, for the message only, in `/proc/locks` (Linux): what the kernel
 * says holds the lock now, never a file that could be stale.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { messageOf } from './sqlite-codec.ts';
import { StoreError } from './store.ts';

/** A second opener of a SQLite store: `pid` of the process that holds it, where it can be known. */
export class StoreLockedError extends StoreError {
  readonly path: string;
  readonly pid: number | undefined;
  constructor(path: string, pid: number | undefined) {
    const holder =
      pid === process.pid
        ? `this process (pid ${pid}) already has it open: close that store first`
        : pid === undefined
          ? 'another process holds it (its pid is not visible from here): stop that node first'
          : `process ${pid} holds it: stop that node first (kill ${pid})`;
    super(
      'store_unavailable',
      `the SQLite store at ${path} is in use: ${holder}, or give this one another data folder (--data). ` +
        'Two nodes on one data folder would lose acknowledged operations.',
    );
    this.name = 'StoreLockedError';
    this.path = path;
    this.pid = pid;
  }
}

/**
 * The lock file of the store at `path`: of its real path, so that two names of one file (a linked
 * folder) share one lock. Its folder must exist.
 */
export function lockPath(path: string): string {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    // not made yet: the folder's real path
    real = join(realpathSync(dirname(path)), basename(path));
  }
  return `${real}.lock`;
}

export class StoreLock {
  readonly #db: DatabaseSync;

  /** Takes the hold on the store at `path`, at once; throws StoreLockedError if another has it. */
  constructor(path: string) {
    const file = lockPath(path);
    const db = new DatabaseSync(file);
    try {
      // never wait: a store that is running does not let go
      db.exec('PRAGMA busy_timeout = 0');
      db.exec('PRAGMA locking_mode = EXCLUSIVE');
      // the exclusive lock, kept after the COMMIT under locking_mode=EXCLUSIVE
      db.exec('BEGIN EXCLUSIVE');
      db.exec('COMMIT');
    } catch (err) {
      db.close();
      if ((err as { errcode?: unknown }).errcode === 5) throw new StoreLockedError(path, holderOf(file));
      throw new Error(`cannot lock ${file}: ${messageOf(err)}`);
    }
    this.#db = db;
  }

  release(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

/** The pid holding a POSIX lock on `file` (Linux `/proc/locks`), undefined where unknown. */
function holderOf(file: string): number | undefined {
  try {
    const { dev, ino } = statSync(file, { bigint: true });
    // `/proc/locks` names a file as major:minor:inode, in hex:hex:decimal (Linux's dev_t encoding)
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    const id = `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${ino}`;
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      // "1: POSIX  ADVISORY  WRITE 7922 fe:00:2146484 1073741824 1073742335"; "1: -> POSIX ..." waits
      const fields = line.trim().split(/\s+/);
      if (fields[1] === '->' || fields[5] !== id) continue;
      const pid = Number(fields[4]);
      // 0: a process of another pid namespace (another container)
      if (Number.isSafeInteger(pid) && pid > 0) return pid;
    }
  } catch {
    // not Linux, or no /proc: the message says the pid is unknown
  }
  return undefined;
}
