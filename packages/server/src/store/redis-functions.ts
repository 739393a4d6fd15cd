/**
 * The write scripts that ask which Redis runs them (`runId()`, redis-run-id.ts) run as the functions
 * of one Redis Function library, `mooring_<hash>`: the library reads `INFO server` once and keeps the
 * run_id (CACHED_RUN_ID_LUA), where a script run by EVAL, which keeps nothing between calls, asks on
 * every call (3–4 µs of the ~20 µs of Redis CPU of a publish; Redis is single-threaded). Each script's
 * Lua is the same either way: its body becomes the callback, `KEYS` and `ARGV` its parameters.
 *
 * - The name carries a hash of the code, and so do its functions' names (Redis names functions across
 *   libraries): two versions of Mooring in a rolling upgrade each load their own library and never
 *   replace the other's. `FUNCTION LOAD` without REPLACE; "already exists" is a success.
 * - Ordering: the library is sent (`FUNCTION LOAD`, not awaited) right before the first FCALL on each
 *   connection epoch (`scriptEpoch`: a reconnect, a replacement — Redis may have restarted or failed
 *   over), routed by the FCALL's key, so the shard that runs the FCALL has the library when it does:
 *   never a second try sent after commands sent behind the first (the order redis-script.ts keeps).
 * - A library Redis forgot (FUNCTION FLUSH, a shard that never saw it): "Function not found", the
 *   FCALL did not run, so the library is loaded and the FCALL sent once more (as after a NOSCRIPT).
 * - A Redis that refuses functions (an ACL that allows EVAL but not FCALL or FUNCTION LOAD, a managed
 *   Redis that disabled them, a Redis before 7): the connection runs the same scripts by
 *   EVALSHA/EVAL, each asking `INFO server` per call, and says so once (`onFallback`). Decided when
 *   the store opens, and again when an FCALL is refused (only ever towards EVAL).
 */
import { createHash } from 'node:crypto';
import { ErrorReply } from 'redis';
import { CACHED_RUN_ID_LUA, RUN_ID_LUA } from './redis-run-id.ts';

interface Entry {
  /** The function's name in Redis. */
  fn: string;
  /** The script as EVAL runs it (RUN_ID_LUA before the body), and its SHA. */
  text: string;
  sha: string;
}

/** A set of named scripts (Lua bodies that may call `runId()`), as one function library. */
export class RedisLibrary<Name extends string = string> {
  /** `mooring_<hash>`: the hash of the scripts, so another version is another library. */
  readonly name: string;
  /** What `FUNCTION LOAD` is sent. */
  readonly code: string;
  readonly #entries = new Map<Name, Entry>();

  constructor(scripts: Record<Name, string>) {
    const names = Object.keys(scripts).sort() as Name[];
    const hash = createHash('sha1');
    for (const name of names) hash.update(`${name}\n${scripts[name]}\n`);
    hash.update(CACHED_RUN_ID_LUA);
    this.name = `mooring_${hash.digest('hex').slice(0, 16)}`;
    const parts = [`#!lua name=${this.name}\n`, CACHED_RUN_ID_LUA];
    for (const name of names) {
      const fn = `${this.name}_${name}`;
      const text = RUN_ID_LUA + scripts[name];
      this.#entries.set(name, { fn, text, sha: createHash('sha1').update(text).digest('hex') });
      // the body's last line may be a comment: `end` on a line of its own
      parts.push(`redis.register_function('${fn}', function(KEYS, ARGV)\n${scripts[name]}\nend)\n`);
    }
    this.code = parts.join('');
  }

  entry(name: Name): Entry {
    const entry = this.#entries.get(name);
    if (!entry) throw new Error(`no script ${name} in the Redis library`);
    return entry;
  }

  get scripts(): Name[] {
    return [...this.#entries.keys()];
  }
}

/** How the library's calls reach Redis: one connection (its epoch) and the store's `send`. */
export interface FunctionLink {
  /** Sends one command to the node owning `key`. */
  send(key: string, args: string[]): Promise<unknown>;
  /** Sends one command to every master. */
  eachMaster(args: string[]): Promise<unknown[]>;
  /** The connection's `scriptEpoch` (redis-connection.ts). */
  scriptEpoch(): number;
}

/** Runs a library's scripts on one connection: by FCALL, or by EVAL where Redis refuses functions. */
export class RedisFunctions<Name extends string = string> {
  readonly #library: RedisLibrary<Name>;
  readonly #link: FunctionLink;
  readonly #onFallback: (err: ErrorReply) => void;
  /** The connection epoch the library was last sent on (undefined: not yet, or that load failed). */
  #loadedAt: number | undefined;
  /** Redis refused functions: EVALSHA/EVAL from now on. */
  #evalOnly = false;

  constructor(library: RedisLibrary<Name>, link: FunctionLink, onFallback: (err: ErrorReply) => void) {
    this.#library = library;
    this.#link = link;
    this.#onFallback = onFallback;
  }

  /**
   * Loads the library on every master, or finds that Redis refuses functions (then the EVAL scripts
   * are cached instead, as SCRIPT LOAD did before). A Redis that refuses writes for now (out of
   * memory, a replica, persistence failing: FUNCTION LOAD is a write) opens as it did before the
   * library: the first FCALL sends it again.
   */
  async open(): Promise<void> {
    const epoch = this.#link.scriptEpoch();
    try {
      await this.#link.eachMaster(['FUNCTION', 'LOAD', this.#library.code]);
    } catch (err) {
      if (!(err instanceof ErrorReply)) throw err;
      if (refusesFunctions(err)) {
        this.#fallBack(err);
        for (const name of this.#library.scripts)
          await this.#link.eachMaster(['SCRIPT', 'LOAD', this.#library.entry(name).text]);
        return;
      }
      if (!alreadyLoaded(err)) return;
    }
    // (every master was sent it: one answering "already exists" has it, and so has every other one
    // unless it refused, which its first FCALL finds out)
    this.#loadedAt = epoch;
  }

  async run(name: Name, keys: string[], args: string[]): Promise<unknown> {
    if (this.#evalOnly) return this.#eval(name, keys, args);
    const key = keys[0]!;
    const call = ['FCALL', this.#library.entry(name).fn, String(keys.length), ...keys, ...args];
    const epoch = this.#link.scriptEpoch();
    let load = this.#loadedAt === epoch ? undefined : this.#load(key, epoch);
    for (let tries = 1; ; tries++) {
      try {
        return await this.#link.send(key, call);
      } catch (err) {
        if (!(err instanceof ErrorReply)) throw err;
        if (refusesFunctions(err)) return this.#fellBack(err, name, keys, args);
        // anything else but "not found" may come from a run (a script error after a write): never again
        if (!notFound(err)) throw err;
        const failed = await load;
        if (failed instanceof ErrorReply && refusesFunctions(failed))
          return this.#fellBack(failed, name, keys, args);
        // why Redis would not load it (out of memory, a replica now: READONLY), rather than "not found"
        if (tries === 2) throw failed ?? err;
      }
      // Redis forgot the library (FUNCTION FLUSH, a shard that never had it): the FCALL did not run
      load = this.#load(key, epoch);
    }
  }

  /**
   * Sends the library (not awaited by the caller's FCALL, which goes right behind it on the same
   * connection). Resolves with the error that kept it from being loaded, if any; never rejects.
   */
  #load(key: string, epoch: number): Promise<unknown> {
    this.#loadedAt = epoch;
    return this.#link.send(key, ['FUNCTION', 'LOAD', this.#library.code]).then(
      () => undefined,
      (err: unknown) => {
        if (err instanceof ErrorReply && alreadyLoaded(err)) return undefined;
        // not loaded (a connection lost, LOADING, out of memory): sent again before the next FCALL;
        // refused for good: FCALL goes on as long as the library is there (another node loaded it)
        const refused = err instanceof ErrorReply && refusesFunctions(err);
        if (!refused && this.#loadedAt === epoch) this.#loadedAt = undefined;
        return err;
      },
    );
  }

  /** The FCALL was refused, so it did not run: once by EVAL, and every call after it. */
  #fellBack(err: ErrorReply, name: Name, keys: string[], args: string[]): Promise<unknown> {
    this.#fallBack(err);
    return this.#eval(name, keys, args);
  }

  #fallBack(err: ErrorReply): void {
    if (this.#evalOnly) return;
    this.#evalOnly = true;
    this.#onFallback(err);
  }

  /** By SHA; in full when Redis does not know it (NOSCRIPT: the EVALSHA did not run). */
  async #eval(name: Name, keys: string[], args: string[]): Promise<unknown> {
    const { text, sha } = this.#library.entry(name);
    const tail = [String(keys.length), ...keys, ...args];
    try {
      return await this.#link.send(keys[0]!, ['EVALSHA', sha, ...tail]);
    } catch (err) {
      if (err instanceof ErrorReply && err.message.startsWith('NOSCRIPT'))
        return this.#link.send(keys[0]!, ['EVAL', text, ...tail]);
      throw err;
    }
  }
}

/** "Library 'mooring_…' already exists": this version's library, loaded before (by any node). */
function alreadyLoaded(err: ErrorReply): boolean {
  return /^ERR Library '[^']*' already exists/.test(err.message);
}

/** "Function not found": Redis does not have the library (flushed, or a shard that never saw it). */
function notFound(err: ErrorReply): boolean {
  return err.message.startsWith('ERR Function not found');
}

/**
 * Redis will not run functions for this connection: an ACL without FCALL or FUNCTION LOAD
 * ("NOPERM … 'fcall' command"), the commands renamed away or missing (a managed Redis, Redis < 7).
 * Never a refusal of what the script does inside (that names its own command, and EVAL meets it too).
 */
function refusesFunctions(err: ErrorReply): boolean {
  return (
    /^NOPERM .*'(fcall|function\|load)'/i.test(err.message) ||
    /^ERR unknown command ['`](fcall|function)['`]/i.test(err.message) ||
    /^ERR unknown subcommand ['`]load['`]/i.test(err.message)
  );
}
