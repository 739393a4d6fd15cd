/**
 * Configuration for `mooring serve`: a JSON file, then `MOORING_*` environment variables, then CLI
 * flags, each overriding the one before (ARCHITECTURE.md §13). Durations accept milliseconds or text such as
 * `15s`, `30m`, `24h`, `7d`, and `forever` for retention.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Limits } from '@mooring/protocol';
import { isPlainObject } from '@mooring/protocol/schemas';
import { type ApiKey, checkApiKey, parseApiKey } from './auth.ts';
import type { DurableStreamsOptions } from './durable-streams/durable-streams-api.ts';
import { makeDirectory } from './make-directory.ts';
import { nearestName } from './nearest-name.ts';
import type { NamespaceRules } from './server.ts';
import { redactRedisUrl } from './store/redis-url.ts';
import { wholeNumber } from './whole-number.ts';

export interface ServeConfig {
  host: string;
  port: number;
  /** Share the port with the other nodes of this machine (SO_REUSEPORT). */
  reusePort: boolean;
  dataDir: string;
  store: 'sqlite' | 'memory' | 'redis';
  /** The SQLite store's `synchronous` (normal: survives a process crash; full: a power loss too). */
  synchronous: 'normal' | 'full';
  /** Start every SQLite channel in a new epoch (once, after restoring a backup of the data dir). */
  newEpochs: boolean;
  /** The Redis store's connection and key prefix (`store: 'redis'`). */
  redis: { url: string; prefix?: string; commandTimeout?: number };
  keys: ApiKey[];
  heartbeatInterval?: number;
  connectionStateTtl?: number;
  /** How long a dropped connection's presence members stay, ms. */
  presenceGrace?: number;
  /** Several nodes (Redis): lease renewal / dead-node sweep period, and how long a silent node lives, ms. */
  sweepInterval?: number;
  nodeTtl?: number;
  /** How long a new long-poll connection may wait before its first poll, ms. */
  firstPollTimeout?: number;
  limits: Partial<Limits>;
  namespaces: Record<string, NamespaceRules>;
  logLevel: string;
  /** The Durable Streams endpoint (PROTOCOL.md §16). */
  durableStreams: DurableStreamsOptions;
}

interface FileConfig {
  host?: string;
  port?: number;
  reusePort?: boolean;
  data?: string;
  store?: 'sqlite' | 'memory' | 'redis';
  /** `'normal'` (default) or `'full'`: the SQLite store's fsync per commit. */
  synchronous?: 'normal' | 'full';
  /** `{ "url": "redis://127.0.0.1:6379", "prefix": "mooring", "commandTimeout": 5000 }` */
  redis?: { url?: string; prefix?: string; commandTimeout?: number };
  /** `"name:secret"` (every operation), or `{ "key": "name:secret", "capability": { glob: [ops] } }`. */
  keys?: Array<string | { key: string; capability?: Record<string, string[]> }>;
  heartbeatInterval?: number | string;
  connectionStateTtl?: number | string;
  presenceGrace?: number | string;
  sweepInterval?: number | string;
  nodeTtl?: number | string;
  firstPollTimeout?: number | string;
  /** Limits and budgets by name (PROTOCOL.md §10). */
  limits?: Partial<Limits>;
  namespaces?: Record<string, { retention?: number | string }>;
  logLevel?: string;
  /**
   * `{ "open": "public/*", "longPollTimeout": "20s", "sseMaxDuration": "60s", "maxAppendBytes": 8388608 }`:
   * `open` is a glob of stream paths served without credentials (none by default).
   */
  durableStreams?: {
    open?: string;
    longPollTimeout?: number | string;
    sseMaxDuration?: number | string;
    maxAppendBytes?: number;
    maxJsonAppendBytes?: number;
    readPageBytes?: number;
    maxConcurrentReads?: number;
    stallTimeout?: number | string;
  };
}

/** Every key of `FileConfig`: anything else in a config file is refused. */
const FILE_KEYS = [
  'host',
  'port',
  'reusePort',
  'data',
  'store',
  'synchronous',
  'redis',
  'keys',
  'heartbeatInterval',
  'connectionStateTtl',
  'presenceGrace',
  'sweepInterval',
  'nodeTtl',
  'firstPollTimeout',
  'limits',
  'namespaces',
  'logLevel',
  'durableStreams',
] as const satisfies readonly (keyof FileConfig)[];
const REDIS_KEYS = ['url', 'prefix', 'commandTimeout'] as const satisfies readonly (keyof NonNullable<
  FileConfig['redis']
>)[];
const DURABLE_STREAMS_KEYS = [
  'open',
  'longPollTimeout',
  'sseMaxDuration',
  'maxAppendBytes',
  'maxJsonAppendBytes',
  'readPageBytes',
  'maxConcurrentReads',
  'stallTimeout',
] as const satisfies readonly (keyof NonNullable<FileConfig['durableStreams']>)[];

export const SERVE_HELP = `Usage: mooring serve [options]

Options (environment variable in brackets, unset when empty; flags override the environment, which
overrides the file):
  --host <addr>             address to listen on            [MOORING_HOST]  default 127.0.0.1
  --port <n>                port (0 = any free port)        [MOORING_PORT]  default 8080
  --reuse-port              share the port with the other nodes of this machine that ask too
                            (SO_REUSEPORT, Linux; the kernel spreads connections over them; they
                            share channels only through --store redis) [MOORING_REUSE_PORT=1]
  --data <dir>              data directory                  [MOORING_DATA]  default ./.mooring
  --store <sqlite|memory|redis>  where channels are stored  [MOORING_STORE] default sqlite
  --synchronous <normal|full>  SQLite: normal keeps every acknowledged operation through a crash
                            of the process, full also through a power loss (an fsync per commit)
                            [MOORING_SYNCHRONOUS] default normal
  --new-epochs              SQLite: start every channel in a new epoch, once, after restoring a
                            backup of the data directory (clients re-read; no serial is reused)
  --redis <url>             Redis for --store redis         [MOORING_REDIS_URL] default redis://127.0.0.1:6379
                            (given alone, it selects the Redis store; several nodes share one Redis;
                            a Cluster: redis+cluster://host:port,host:port,...)
  --config <file>           JSON configuration file         [MOORING_CONFIG]
  --heartbeat <duration>    heartbeat interval (< 60s)      [MOORING_HEARTBEAT] default 15s
  --log-level <level>       silent|fatal|error|warn|info|debug|trace  [MOORING_LOG_LEVEL] default info
  --streams-open <glob>     Durable Streams paths served WITHOUT credentials [MOORING_STREAMS_OPEN]
                            (e.g. 'public/*'; default none; logged at start)
  API key                                                   [MOORING_KEY=<name>:<secret>]
  -h, --help                this text

Without MOORING_KEY or "keys" in the config file, a server on a loopback host (127.0.0.1, ::1,
localhost) generates a development key at its first start, stores it in <data>/dev-key and prints
it; on any other host it refuses to start.`;

export function parseDuration(value: number | string, what: string): number {
  if (typeof value === 'number') return value;
  // from a JSON file, anything may come: `true`, `null`, an object
  if (typeof value !== 'string')
    throw new Error(`${what}: not a duration: ${JSON.stringify(value)} (use e.g. 500ms, 15s, 30m, 24h, 7d)`);
  if (value === 'forever') return Number.POSITIVE_INFINITY;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m)
    throw new Error(`${what}: not a duration: ${JSON.stringify(value)} (use e.g. 500ms, 15s, 30m, 24h, 7d)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms'] ?? 1;
  return Number(m[1]) * unit;
}

/** pino's levels, quietest last. */
const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The environment variables `mooring serve` reads (SERVE_HELP and the README list them). */
export const SERVE_ENVIRONMENT = [
  'MOORING_HOST',
  'MOORING_PORT',
  'MOORING_REUSE_PORT',
  'MOORING_DATA',
  'MOORING_STORE',
  'MOORING_SYNCHRONOUS',
  'MOORING_REDIS_URL',
  'MOORING_CONFIG',
  'MOORING_HEARTBEAT',
  'MOORING_LOG_LEVEL',
  'MOORING_STREAMS_OPEN',
  'MOORING_KEY',
  'MOORING_CONNECTION_STATE_TTL',
  'MOORING_PRESENCE_GRACE',
  'MOORING_SWEEP_INTERVAL',
  'MOORING_NODE_TTL',
  'MOORING_NODE_DEFAULTS',
  'MOORING_TRACING',
] as const;

/**
 * Warnings for `MOORING_*` variables that look like a misspelt setting (`MOORING_PROT`): such a
 * variable is ignored, leaving the default in force without a word. Others (an application's own
 * `MOORING_URL`, say) are not a setting's near miss and are left alone.
 */
export function misspeltEnvironment(environment: NodeJS.ProcessEnv): string[] {
  const known: readonly string[] = SERVE_ENVIRONMENT;
  const warnings: string[] = [];
  for (const name of Object.keys(environment)) {
    if (!name.startsWith('MOORING_') || known.includes(name)) continue;
    const near = nearestName(name, known);
    if (near !== undefined) warnings.push(`${name} is not a setting of mooring serve; did you mean ${near}?`);
  }
  return warnings;
}

export function loadServeConfig(argv: string[], environment: NodeJS.ProcessEnv): ServeConfig | 'help' {
  // An empty variable is an unset one (a template that renders `MOORING_PORT=`), as for MOORING_KEY.
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(environment).filter(([name, value]) => name.startsWith('MOORING_') && value !== ''),
  );
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      'reuse-port': { type: 'boolean' },
      data: { type: 'string' },
      store: { type: 'string' },
      synchronous: { type: 'string' },
      'new-epochs': { type: 'boolean' },
      redis: { type: 'string' },
      config: { type: 'string' },
      heartbeat: { type: 'string' },
      'log-level': { type: 'string' },
      'streams-open': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const configPath = values.config ?? env.MOORING_CONFIG;
  const file: FileConfig = configPath ? readConfigFile(configPath) : {};

  const givenPort = values.port ?? env.MOORING_PORT ?? file.port ?? 8080;
  // a file's number is taken as it is; a string (flag, environment, file) is digits only
  const port = typeof givenPort === 'string' ? wholeNumber(givenPort) : givenPort;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`port must be 0-65535, got ${JSON.stringify(givenPort)}`);
  const reusePort =
    values['reuse-port'] ?? flag(env.MOORING_REUSE_PORT, 'MOORING_REUSE_PORT') ?? file.reusePort ?? false;
  if (typeof reusePort !== 'boolean') throw new Error('"reusePort" in the config file is true or false');
  const redisUrl = values.redis ?? env.MOORING_REDIS_URL ?? file.redis?.url;
  const store = values.store ?? env.MOORING_STORE ?? file.store ?? (redisUrl ? 'redis' : 'sqlite');
  if (store !== 'sqlite' && store !== 'memory' && store !== 'redis')
    throw new Error(`store must be sqlite, memory or redis, got ${JSON.stringify(store)}`);
  const synchronous = values.synchronous ?? env.MOORING_SYNCHRONOUS ?? file.synchronous ?? 'normal';
  if (synchronous !== 'normal' && synchronous !== 'full')
    throw new Error(`synchronous must be normal or full, got ${JSON.stringify(synchronous)}`);
  const newEpochs = values['new-epochs'] ?? false;
  if (newEpochs && store !== 'sqlite')
    throw new Error(
      `--new-epochs is for the SQLite store (a Redis restored from a backup starts new epochs by itself; memory starts new ones at every start), not ${store}`,
    );
  if (reusePort && store === 'sqlite')
    throw new Error(
      'reusePort runs several nodes on one port: they need a store they share (--store redis); two nodes on one SQLite file would clash (--store memory keeps each node apart)',
    );
  if (file.redis !== undefined && (typeof file.redis !== 'object' || file.redis === null))
    throw new Error('"redis" in the config file is { "url": "redis://host:port", "prefix": "mooring" }');
  if (file.redis !== undefined) refuseUnknown(file.redis, REDIS_KEYS, '"redis" in the config file');
  const redis: ServeConfig['redis'] = { url: redisUrl ?? 'redis://127.0.0.1:6379' };
  if (!/^(rediss?|redis\+clusters?):\/\//.test(redis.url))
    throw new Error(
      `the Redis URL must start with redis://, rediss:// or redis+cluster:// (lower case), got ${JSON.stringify(redactRedisUrl(redis.url))}`,
    );
  if (file.redis?.prefix !== undefined) redis.prefix = String(file.redis.prefix);
  if (file.redis?.commandTimeout !== undefined) {
    const ms = Number(file.redis.commandTimeout);
    if (!(ms > 0)) throw new Error('"redis.commandTimeout" in the config file is a number of ms above 0');
    redis.commandTimeout = ms;
  }
  const heartbeat = values.heartbeat ?? env.MOORING_HEARTBEAT ?? file.heartbeatInterval;
  const ttl = env.MOORING_CONNECTION_STATE_TTL ?? file.connectionStateTtl;

  const namespaces: Record<string, NamespaceRules> = {};
  if (file.namespaces !== undefined && !isPlainObject(file.namespaces))
    throw new Error('"namespaces" in the config file is an object, e.g. { "chat": { "retention": "7d" } }');
  for (const [name, rules] of Object.entries(file.namespaces ?? {})) {
    if (!isPlainObject(rules))
      throw new Error(`namespaces.${name} in the config file is an object, e.g. { "retention": "7d" }`);
    refuseUnknown(rules, ['retention'], `namespaces.${name} in the config file`);
    namespaces[name] =
      rules.retention === undefined
        ? {}
        : { retention: parseDuration(rules.retention, `namespaces.${name}.retention`) };
  }
  const config: ServeConfig = {
    host: values.host ?? env.MOORING_HOST ?? file.host ?? '127.0.0.1',
    port,
    reusePort,
    dataDir: values.data ?? env.MOORING_DATA ?? file.data ?? '.mooring',
    store,
    synchronous,
    newEpochs,
    redis,
    keys: env.MOORING_KEY ? [parseApiKey(env.MOORING_KEY)] : keysFromFile(file.keys),
    limits: file.limits ?? {},
    namespaces,
    logLevel: values['log-level'] ?? env.MOORING_LOG_LEVEL ?? file.logLevel ?? 'info',
    durableStreams: durableStreamsConfig(
      file.durableStreams,
      values['streams-open'] ?? env.MOORING_STREAMS_OPEN,
    ),
  };
  // An empty value (an unset shell variable in `--host "$HOST"`) is refused, not taken as given:
  // Node would listen on every interface for an empty host, and use the current folder for data.
  if (typeof config.host !== 'string' || config.host.trim() === '')
    throw new Error(
      `host must be an address to listen on (127.0.0.1; 0.0.0.0 for every interface), got ${JSON.stringify(config.host)}`,
    );
  if (typeof config.dataDir !== 'string' || config.dataDir.trim() === '')
    throw new Error(`data must be a folder for the SQLite store, got ${JSON.stringify(config.dataDir)}`);
  if (!LOG_LEVELS.includes(config.logLevel))
    throw new Error(
      `log level must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(config.logLevel)}`,
    );
  if (heartbeat !== undefined) config.heartbeatInterval = parseDuration(heartbeat, 'heartbeat');
  if (ttl !== undefined) config.connectionStateTtl = parseDuration(ttl, 'connectionStateTtl');
  const durations = [
    ['presenceGrace', env.MOORING_PRESENCE_GRACE ?? file.presenceGrace],
    ['sweepInterval', env.MOORING_SWEEP_INTERVAL ?? file.sweepInterval],
    ['nodeTtl', env.MOORING_NODE_TTL ?? file.nodeTtl],
  ] as const;
  for (const [name, value] of durations) if (value !== undefined) config[name] = parseDuration(value, name);
  if (file.firstPollTimeout !== undefined)
    config.firstPollTimeout = parseDuration(file.firstPollTimeout, 'firstPollTimeout');
  return config;
}

/** `1`/`true`/`yes` or `0`/`false`/`no` (an environment variable); undefined when unset. */
function flag(value: string | undefined, name: string): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new Error(`${name} is 1 or 0, got ${JSON.stringify(value)}`);
}

function durableStreamsConfig(
  file: FileConfig['durableStreams'],
  open: string | undefined,
): DurableStreamsOptions {
  if (file !== undefined && (typeof file !== 'object' || file === null))
    throw new Error('"durableStreams" in the config file is an object, e.g. { "open": "public/*" }');
  if (file !== undefined) refuseUnknown(file, DURABLE_STREAMS_KEYS, '"durableStreams" in the config file');
  const out: DurableStreamsOptions = {};
  const glob = open ?? file?.open;
  if (glob !== undefined) {
    if (typeof glob !== 'string' || glob.length === 0 || /\s/.test(glob))
      throw new Error(`durableStreams.open must be a glob of stream paths, got ${JSON.stringify(glob)}`);
    out.open = glob;
  }
  if (file?.longPollTimeout !== undefined)
    out.longPollTimeout = parseDuration(file.longPollTimeout, 'durableStreams.longPollTimeout');
  if (file?.sseMaxDuration !== undefined)
    out.sseMaxDuration = parseDuration(file.sseMaxDuration, 'durableStreams.sseMaxDuration');
  if (file?.stallTimeout !== undefined)
    out.stallTimeout = parseDuration(file.stallTimeout, 'durableStreams.stallTimeout');
  for (const name of [
    'maxAppendBytes',
    'maxJsonAppendBytes',
    'readPageBytes',
    'maxConcurrentReads',
  ] as const) {
    const value = file?.[name];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1)
      throw new Error(
        `durableStreams.${name} must be a positive whole number${name === 'maxConcurrentReads' ? '' : ' of bytes'}`,
      );
    out[name] = value;
  }
  return out;
}

function keysFromFile(keys: FileConfig['keys']): ApiKey[] {
  if (keys === undefined) return [];
  if (!Array.isArray(keys)) throw new Error('"keys" in the config file is a list, e.g. ["app:secret"]');
  // an empty list is a key set meant and left unfilled (a template), not a wish for a development key
  if (keys.length === 0)
    throw new Error(
      '"keys" in the config file is empty: give at least one "name:secret", or leave "keys" out for a development key',
    );
  return keys.map(keyFromFile);
}

function keyFromFile(entry: string | { key: string; capability?: Record<string, string[]> }): ApiKey {
  if (typeof entry === 'string') return parseApiKey(entry);
  if (typeof entry !== 'object' || entry === null || typeof entry.key !== 'string')
    throw new Error('each entry of "keys" is "name:secret" or { "key": "name:secret", "capability": {...} }');
  // a misspelt "capability" would leave the key with every operation
  refuseUnknown(entry, ['key', 'capability'], 'an entry of "keys" in the config file');
  const key = parseApiKey(entry.key);
  if (entry.capability !== undefined) key.capability = entry.capability;
  checkApiKey(key); // a "capability": null would read as every operation
  return key;
}

function readConfigFile(path: string): FileConfig {
  let text: string;
  let parsed: object;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  try {
    parsed = JSON.parse(text);
    if (!isPlainObject(parsed)) throw new Error('not an object');
  } catch (err) {
    // only where: V8's message quotes the file around the fault, which may be part of a secret
    throw new Error(`config file ${path} is not a JSON object: ${jsonFault(text, err as Error)}`);
  }
  refuseUnknown(parsed, FILE_KEYS, `config file ${path}`);
  return parsed as FileConfig;
}

/** Where a JSON text is malformed (line and column), without quoting it. */
function jsonFault(text: string, err: Error): string {
  if (err.message === 'not an object') return 'not an object';
  const at = /position (\d+)/.exec(err.message);
  if (!at) return 'malformed JSON (look for a comma, quote or bracket too many or missing)';
  const before = text.slice(0, Number(at[1]));
  const line = before.split('\n').length;
  const column = before.length - before.lastIndexOf('\n');
  return `malformed JSON at line ${line}, column ${column}`;
}

/** A misspelt key would otherwise be ignored without a word, leaving its default in force. */
function refuseUnknown(object: object, known: readonly string[], where: string): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const near = nearestName(key, known);
    throw new Error(
      `${where}: "${key}" is not a setting${near ? `; did you mean "${near}"?` : ''} (known: ${known.join(', ')})`,
    );
  }
}

/** Whether `host` only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * The development key of a server listening on `host` with no key configured (`mooring serve`, the
 * demo): it gives every right and is printed at start, so it is made (or read) only for a server on
 * this machine; on any other host this refuses, saying what to set.
 */
export function loopbackDevelopmentKey(host: string, dataDir: string): { key: string; created: boolean } {
  if (!isLoopback(host))
    throw new Error(
      `no API key is configured and --host ${host} is not a loopback address: set MOORING_KEY=<name>:<secret> (or "keys" in the config file); a development key is made only for a server on 127.0.0.1, ::1 or localhost`,
    );
  return developmentKey(dataDir);
}

/** Reads `<dataDir>/dev-key`, or makes one. Returns the key and whether it was just made. */
export function developmentKey(dataDir: string): { key: string; created: boolean } {
  const path = join(dataDir, 'dev-key');
  try {
    const key = readFileSync(path, 'utf8').trim();
    if (key) return { key, created: false };
  } catch {
    // not there yet
  }
  makeDirectory(dataDir);
  const key = `dev:${randomBytes(24).toString('base64url')}`;
  writeFileSync(path, `${key}\n`, { mode: 0o600 });
  return { key, created: true };
}
