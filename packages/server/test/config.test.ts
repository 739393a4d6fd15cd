/**
 * The config of `mooring serve` (ARCHITECTURE.md §13): flags over the environment over the config
 * file; a key that is not a setting, or a setting of the wrong shape, stops the start with a message
 * naming it, instead of leaving a default in force or failing later with a `TypeError`.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import {
  developmentKey,
  loadServeConfig,
  misspeltEnvironment,
  parseDuration,
  SERVE_ENVIRONMENT,
  SERVE_HELP,
  type ServeConfig,
} from '../src/config.ts';
import { startServer } from '../src/index.ts';

describe('config file', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mooring-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const load = async (content: unknown) => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(content));
    return () => loadServeConfig(['--config', file], {});
  };

  it('takes every setting it documents', async () => {
    const config = (
      await load({
        host: '127.0.0.1',
        port: 0,
        reusePort: false,
        data: join(dir, 'data'),
        store: 'memory',
        redis: { url: 'redis://127.0.0.1:6379' },
        keys: ['app:secret'],
        heartbeatInterval: '10s',
        connectionStateTtl: '2m',
        presenceGrace: '15s',
        sweepInterval: '1s',
        nodeTtl: '10s',
        firstPollTimeout: '10s',
        limits: { maxFrameRate: 50 },
        namespaces: { chat: { retention: '7d' } },
        logLevel: 'warn',
        durableStreams: {
          open: 'public/*',
          stallTimeout: '20s',
          maxJsonAppendBytes: 65_536,
          maxConcurrentReads: 2,
        },
      })
    )();
    assert.ok(config !== 'help');
    assert.deepEqual(config.durableStreams, {
      open: 'public/*',
      stallTimeout: 20_000,
      maxJsonAppendBytes: 65_536,
      maxConcurrentReads: 2,
    });
    assert.equal(config.heartbeatInterval, 10_000);
    assert.equal(config.limits.maxFrameRate, 50);
    assert.equal(config.logLevel, 'warn');
  });

  /** Loads `content` as the config file with `env`, and the flags `argv`. */
  const config = async (content: unknown, env: NodeJS.ProcessEnv = {}, argv: string[] = []) => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(content));
    const loaded = loadServeConfig(['--config', file, ...argv], env);
    assert.ok(loaded !== 'help');
    return loaded as ServeConfig;
  };

  it('flags over the environment over the file, for every setting that has all three', async () => {
    const file = {
      host: '10.0.0.1',
      port: 1001,
      store: 'memory',
      data: 'file-data',
      synchronous: 'full',
      logLevel: 'warn',
      heartbeatInterval: '1s',
      redis: { url: 'redis://file:1' },
      durableStreams: { open: 'file/*' },
    };
    const env = {
      MOORING_HOST: '10.0.0.2',
      MOORING_PORT: '1002',
      MOORING_STORE: 'sqlite',
      MOORING_DATA: 'env-data',
      MOORING_SYNCHRONOUS: 'normal',
      MOORING_LOG_LEVEL: 'error',
      MOORING_HEARTBEAT: '2s',
      MOORING_REDIS_URL: 'redis://env:2',
      MOORING_STREAMS_OPEN: 'env/*',
    };
    const flags = [
      ...['--host', '10.0.0.3', '--port', '1003', '--store', 'redis', '--data', 'flag-data'],
      ...['--synchronous', 'full'],
      ...[
        '--log-level',
        'debug',
        '--heartbeat',
        '3s',
        '--redis',
        'redis://flag:3',
        '--streams-open',
        'flag/*',
      ],
    ];
    const pick = (c: ServeConfig) => [
      c.host,
      c.port,
      c.store,
      c.dataDir,
      c.synchronous,
      c.logLevel,
      c.heartbeatInterval,
      c.redis.url,
      c.durableStreams.open,
    ];
    assert.deepEqual(pick(await config(file)), [
      '10.0.0.1',
      1001,
      'memory',
      'file-data',
      'full',
      'warn',
      1000,
      'redis://file:1',
      'file/*',
    ]);
    assert.deepEqual(pick(await config(file, env)), [
      '10.0.0.2',
      1002,
      'sqlite',
      'env-data',
      'normal',
      'error',
      2000,
      'redis://env:2',
      'env/*',
    ]);
    assert.deepEqual(pick(await config(file, env, flags)), [
      '10.0.0.3',
      1003,
      'redis',
      'flag-data',
      'full',
      'debug',
      3000,
      'redis://flag:3',
      'flag/*',
    ]);
    // the other durations: the environment over the file
    const durations = await config(
      { connectionStateTtl: '1m', presenceGrace: '1s', sweepInterval: '2s', nodeTtl: '3s' },
      {
        MOORING_CONNECTION_STATE_TTL: '2m',
        MOORING_PRESENCE_GRACE: '4s',
        MOORING_SWEEP_INTERVAL: '5s',
        MOORING_NODE_TTL: '6s',
      },
    );
    assert.deepEqual(
      [durations.connectionStateTtl, durations.presenceGrace, durations.sweepInterval, durations.nodeTtl],
      [120_000, 4_000, 5_000, 6_000],
    );
  });

  it('an environment variable set empty is unset: the file, or the default, applies', async () => {
    const empty = Object.fromEntries(
      [
        'HOST',
        'PORT',
        'STORE',
        'DATA',
        'LOG_LEVEL',
        'HEARTBEAT',
        'REDIS_URL',
        'STREAMS_OPEN',
        'CONNECTION_STATE_TTL',
        'PRESENCE_GRACE',
        'SWEEP_INTERVAL',
        'NODE_TTL',
        'KEY',
        'REUSE_PORT',
        'CONFIG',
      ].map((name) => [`MOORING_${name}`, '']),
    );
    const c = await config({ port: 1001, presenceGrace: '1s', durableStreams: { open: 'file/*' } }, empty);
    assert.deepEqual(
      [c.host, c.port, c.store, c.dataDir, c.presenceGrace, c.durableStreams.open, c.keys],
      ['127.0.0.1', 1001, 'sqlite', '.mooring', 1_000, 'file/*', []],
    );
  });

  it('unknown flags are refused; ports run from 0 to 65535', async () => {
    assert.throws(() => loadServeConfig(['--prot', '80'], {}), /Unknown option '--prot'/);
    assert.equal((await config({ port: 65_535 })).port, 65_535);
    assert.equal((await config({ port: 0 })).port, 0, '0: any free port');
    assert.equal((loadServeConfig(['--port', '8081'], {}) as ServeConfig).port, 8081);
    assert.throws(() => loadServeConfig(['--port', 'abc'], {}), /port must be 0-65535, got "abc"/);
    assert.throws(() => loadServeConfig(['--port', ''], {}), /got ""/, 'not 0, a random port');
    assert.throws(() => loadServeConfig([], { MOORING_PORT: '0x50' }), /got "0x50"/);
    assert.equal(
      (await config({ durableStreams: { maxConcurrentReads: 1 } })).durableStreams.maxConcurrentReads,
      1,
    );
  });

  it('refuses an empty host, data folder or store, and a log level pino does not have, naming what was given', () => {
    // `--host "$HOST"` with HOST unset: Node would listen on every interface
    assert.throws(() => loadServeConfig(['--host', ''], {}), /host must be an address to listen on .*got ""/);
    assert.throws(() => loadServeConfig(['--host', ' '], {}), /got " "/);
    assert.throws(
      () => loadServeConfig(['--data', ''], {}),
      /data must be a folder for the SQLite store, got ""/,
    );
    assert.throws(
      () => loadServeConfig(['--store', ''], {}),
      /store must be sqlite, memory or redis, got ""/,
    );
    assert.throws(
      () => loadServeConfig(['--log-level', 'loud'], {}),
      /log level must be one of trace, debug, info, warn, error, fatal, silent, got "loud"/,
    );
    assert.throws(() => loadServeConfig(['--log-level', ''], {}), /log level must be one of/);
    // an empty environment variable is unset (the default applies), as before
    const c = loadServeConfig([], {
      MOORING_HOST: '',
      MOORING_DATA: '',
      MOORING_LOG_LEVEL: '',
    }) as ServeConfig;
    assert.deepEqual([c.host, c.dataDir, c.logLevel], ['127.0.0.1', '.mooring', 'info']);
    assert.equal((loadServeConfig(['--log-level', 'silent'], {}) as ServeConfig).logLevel, 'silent');
  });

  it('the defaults: 127.0.0.1:8080, SQLite in .mooring, a Redis URL of its own when asked for Redis, no keys', async () => {
    const c = await config({});
    assert.deepEqual(
      [
        c.host,
        c.port,
        c.reusePort,
        c.store,
        c.dataDir,
        c.logLevel,
        c.redis.url,
        c.keys,
        c.limits,
        c.namespaces,
      ],
      ['127.0.0.1', 8080, false, 'sqlite', '.mooring', 'info', 'redis://127.0.0.1:6379', [], {}, {}],
    );
    for (const key of [
      'heartbeatInterval',
      'connectionStateTtl',
      'presenceGrace',
      'sweepInterval',
      'nodeTtl',
    ])
      assert.equal(key in c, false, `${key}: the server's own default`);
    assert.deepEqual(c.durableStreams, {});
    // a Redis URL alone picks the Redis store
    assert.equal((await config({}, { MOORING_REDIS_URL: 'redis://r:1' })).store, 'redis');
    assert.equal((await config({ redis: { url: 'rediss://r:1' } })).store, 'redis');
  });

  it('MOORING_KEY replaces the keys of the file; keys are "name:secret" or { key, capability }', async () => {
    const file = {
      keys: ['app:secret', { key: 'ro:secret2', capability: { 'public:*': ['subscribe'] } }, { key: 'b:s' }],
    };
    const fromFile = await config(file);
    assert.deepEqual(
      fromFile.keys.map((k) => [k.name, k.capability]),
      [
        ['app', undefined],
        ['ro', { 'public:*': ['subscribe'] }],
        ['b', undefined],
      ],
    );
    assert.equal('capability' in fromFile.keys[2]!, false, 'no capability: the key may do everything');
    const fromEnv = await config(file, { MOORING_KEY: 'env:secret3' });
    assert.deepEqual(
      fromEnv.keys.map((k) => k.name),
      ['env'],
    );
  });

  it('MOORING_REUSE_PORT is 1/true/yes or 0/false/no (empty: unset); reusePort needs a shared store', async () => {
    for (const value of ['1', 'true', 'YES'])
      assert.equal((await config({ store: 'redis' }, { MOORING_REUSE_PORT: value })).reusePort, true, value);
    for (const value of ['0', 'false', 'No'])
      assert.equal(
        (await config({ store: 'redis', reusePort: true }, { MOORING_REUSE_PORT: value })).reusePort,
        false,
      );
    assert.equal(
      (await config({ store: 'redis', reusePort: true }, { MOORING_REUSE_PORT: '' })).reusePort,
      true,
    );
    assert.equal(
      (await config({ store: 'memory' }, {}, ['--reuse-port'])).reusePort,
      true,
      'memory: nodes apart',
    );
    await assert.rejects(
      config({}, { MOORING_REUSE_PORT: 'maybe' }),
      /MOORING_REUSE_PORT is 1 or 0, got "maybe"/,
    );
    await assert.rejects(config({ reusePort: 'yes' }), /"reusePort" in the config file is true or false/);
    await assert.rejects(config({ reusePort: true }), /reusePort runs several nodes on one port/);
  });

  it('refuses each setting of the wrong shape, naming it', async () => {
    const refused: [unknown, RegExp][] = [
      [{ port: -1 }, /port must be 0-65535, got -1/],
      [{ port: 65_536 }, /port must be 0-65535, got 65536/],
      [{ port: 80.5 }, /port must be 0-65535/],
      [{ port: 'http' }, /port must be 0-65535, got "http"/],
      [{ port: '' }, /port must be 0-65535, got ""/],
      [{ port: true }, /port must be 0-65535, got true/],
      [{ port: ' 80' }, /port must be 0-65535, got " 80"/],
      [{ store: 'postgres' }, /store must be sqlite, memory or redis, got "postgres"/],
      [{ redis: 'redis://r:1' }, /"redis" in the config file is \{ "url"/],
      [{ redis: null }, /"redis" in the config file is \{ "url"/],
      [{ redis: { url: 'http://r:1' } }, /the Redis URL must start with redis:\/\//],
      // refused, and shown without its password (an upper-case scheme is not one we read)
      [
        { redis: { url: 'REDIS://:hunter2@r:1' } },
        /the Redis URL must start with .*got "REDIS:\/\/\*\*\*@r:1"/,
      ],
      // an empty list is a key set meant and left unfilled, not a wish for a development key
      [{ keys: [] }, /"keys" in the config file is empty: give at least one "name:secret"/],
      [
        { redis: { commandTimeout: 0 } },
        /"redis.commandTimeout" in the config file is a number of ms above 0/,
      ],
      [{ redis: { commandTimeout: 'soon' } }, /"redis.commandTimeout"/],
      [{ heartbeatInterval: 'soon' }, /heartbeat: not a duration: "soon"/],
      [{ heartbeatInterval: true }, /heartbeat: not a duration: true/],
      [{ presenceGrace: { s: 1 } }, /presenceGrace: not a duration/],
      [{ firstPollTimeout: '10 parsecs' }, /firstPollTimeout: not a duration/],
      [{ namespaces: { chat: { retention: 'a week' } } }, /namespaces\.chat\.retention: not a duration/],
      [{ namespaces: { chat: null } }, /namespaces\.chat in the config file is an object/],
      [{ namespaces: ['chat'] }, /"namespaces" in the config file is an object/],
      [{ keys: 'app:secret' }, /"keys" in the config file is a list/],
      [{ keys: [5] }, /each entry of "keys" is "name:secret" or \{ "key"/],
      [{ keys: [null] }, /each entry of "keys"/],
      [{ keys: [{ key: 5 }] }, /each entry of "keys"/],
      [{ durableStreams: 'public/*' }, /"durableStreams" in the config file is an object/],
      [{ durableStreams: null }, /"durableStreams" in the config file is an object/],
      [{ durableStreams: { open: '' } }, /durableStreams\.open must be a glob of stream paths, got ""/],
      [{ durableStreams: { open: 'a b' } }, /durableStreams\.open must be a glob/],
      [{ durableStreams: { open: 5 } }, /durableStreams\.open must be a glob/],
      [
        { durableStreams: { maxAppendBytes: 0 } },
        /durableStreams\.maxAppendBytes must be a positive whole number of bytes/,
      ],
      [
        { durableStreams: { readPageBytes: 1.5 } },
        /durableStreams\.readPageBytes must be a positive whole number of bytes/,
      ],
      [
        { durableStreams: { maxConcurrentReads: 0 } },
        /durableStreams\.maxConcurrentReads must be a positive whole number$/,
      ],
      [{ durableStreams: { longPollTimeout: 'x' } }, /durableStreams\.longPollTimeout: not a duration/],
    ];
    for (const [content, message] of refused)
      await assert.rejects(config(content), message, JSON.stringify(content));
    await assert.rejects(
      config({}, { MOORING_STORE: 'mongo' }),
      /store must be sqlite, memory or redis, got "mongo"/,
    );
  });

  it('refuses a config file that is not a JSON object, or not there, naming it', async () => {
    for (const content of ['[1]', 'null', '5', '{"port": 80', '']) {
      const file = join(dir, `bad${Math.random().toString(36).slice(2)}.json`);
      await writeFile(file, content);
      assert.throws(
        () => loadServeConfig(['--config', file], {}),
        /config file .* is not a JSON object/,
        content,
      );
    }
    // where it is malformed, never the text around it (a secret may sit there)
    const trailing = join(dir, 'trailing.json');
    await writeFile(trailing, '{"keys": ["app:TopSecretValue123",]}');
    assert.throws(
      () => loadServeConfig(['--config', trailing], {}),
      (err: Error) =>
        /is not a JSON object: malformed JSON/.test(err.message) && !err.message.includes('Secret'),
    );
    assert.throws(
      () => loadServeConfig([], { MOORING_CONFIG: join(dir, 'missing.json') }),
      /cannot read config file .*missing\.json/,
    );
  });

  it('a retention below 0 (or not a number) refuses the start; 0 (a namespace that keeps nothing) is said at start', async () => {
    for (const retention of [-1, Number.NaN, Number('x')])
      await assert.rejects(
        startServer({
          port: 0,
          host: '127.0.0.1',
          keys: ['app:0123456789abcdef0123456789abcdef'],
          store: { kind: 'memory' },
          namespaces: { chat: { retention } },
        }),
        /namespaces\.chat\.retention must be a number of ms, 0 or more/,
        String(retention),
      );
    const said: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => said.push(line) });
    const server = await startServer({
      port: 0,
      host: '127.0.0.1',
      keys: ['app:0123456789abcdef0123456789abcdef'],
      store: { kind: 'memory' },
      namespaces: { typing: { retention: parseDuration('0s', 'retention') } },
      logger,
    });
    await server.close();
    assert.ok(
      said.some((line) => line.includes('namespace typing keeps nothing (retention 0)')),
      said.join(''),
    );
  });

  it('durations: a number is ms; text takes ms, s, m, h, d, decimals, or forever', () => {
    const cases: [number | string, number][] = [
      [250, 250],
      ['250', 250],
      ['500ms', 500],
      ['15s', 15_000],
      ['1.5s', 1_500],
      ['30m', 1_800_000],
      ['24h', 86_400_000],
      ['7d', 604_800_000],
      [' 2s ', 2_000],
      ['forever', Number.POSITIVE_INFINITY],
    ];
    for (const [value, ms] of cases) assert.equal(parseDuration(value, 'x'), ms, String(value));
    for (const value of ['', 's', '-1s', '1w', '1e3', 'never'])
      assert.throws(() => parseDuration(value, 'ttl'), /ttl: not a duration/, value);
  });

  it('the development key: made once in the data directory, then read back; an empty file is made again', () => {
    const data = join(dir, `dev${Math.random().toString(36).slice(2)}`, 'nested');
    const first = developmentKey(data);
    assert.equal(first.created, true);
    assert.match(first.key, /^dev:[A-Za-z0-9_-]{32}$/);
    assert.equal(readFileSync(join(data, 'dev-key'), 'utf8'), `${first.key}\n`);
    assert.deepEqual(developmentKey(data), { key: first.key, created: false });
    writeFileSync(join(data, 'dev-key'), '\n');
    const again = developmentKey(data);
    assert.equal(again.created, true);
    assert.notEqual(again.key, first.key);
    assert.ok(existsSync(join(data, 'dev-key')));
  });

  it('refuses a key that is not a setting, naming the nearest one', async () => {
    assert.throws(
      await load({ heartbeatIntervall: '10s' }),
      /"heartbeatIntervall" is not a setting; did you mean "heartbeatInterval"\?/,
    );
    assert.throws(await load({ Port: 8080 }), /"Port" is not a setting; did you mean "port"\?/);
    assert.throws(await load({ colour: 'blue' }), /"colour" is not a setting \(known: host, port, /);
  });

  it('refuses a key that is not a setting inside redis, durableStreams, a namespace or a key entry', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [
        { redis: { url: 'redis://127.0.0.1:6379', prefx: 'app' } },
        /"redis" in the config file: "prefx" is not a setting; did you mean "prefix"\?/,
      ],
      [
        { redis: { commandTimout: 2000 } },
        /"commandTimout" is not a setting; did you mean "commandTimeout"\?/,
      ],
      [
        { durableStreams: { maxAppendbytes: 1024 } },
        /"durableStreams" in the config file: "maxAppendbytes" is not a setting; did you mean "maxAppendBytes"\?/,
      ],
      [
        { namespaces: { session: { retension: '7d' } } },
        /namespaces\.session in the config file: "retension" is not a setting; did you mean "retention"\?/,
      ],
      // a misspelt capability would have left the key with every operation
      [
        { keys: [{ key: 'app:secret', capabilty: { 'public:*': ['subscribe'] } }] },
        /an entry of "keys" in the config file: "capabilty" is not a setting; did you mean "capability"\?/,
      ],
      // an unset value a template wrote as null (or false, "") is no capability, not every operation
      ...[null, false, '', 0, ['public:*']].map((capability): [unknown, RegExp] => [
        { keys: [{ key: 'app:secret', capability }] },
        /API key app: its capability must be an object of channel glob → operations/,
      ]),
    ];
    for (const [content, message] of cases)
      assert.throws(await load(content), message, JSON.stringify(content));
    // what is right still loads
    const config = (
      await load({
        redis: { url: 'redis://127.0.0.1:6379', prefix: 'app', commandTimeout: 2000 },
        durableStreams: { maxAppendBytes: 1024, open: 'public/*' },
        namespaces: { session: { retention: '7d' } },
        keys: [{ key: 'app:secret', capability: { 'public:*': ['subscribe'] } }],
      })
    )();
    assert.ok(config !== 'help');
    assert.equal(config.redis.prefix, 'app');
    assert.equal(config.durableStreams.maxAppendBytes, 1024);
    assert.deepEqual(config.keys[0]?.capability, { 'public:*': ['subscribe'] });
  });

  it('warns of a MOORING_ variable that looks like a misspelt setting, and of no other', () => {
    assert.deepEqual(
      misspeltEnvironment({
        MOORING_PROT: '9000',
        MOORING_LOG_LEVL: 'debug',
        MOORING_PORT: '8080',
        MOORING_URL: 'http://127.0.0.1:8080',
        MOORING_TOKEN: 't',
        MOORING_APP_THEME: 'dark',
        PORT: '1',
      }),
      [
        'MOORING_PROT is not a setting of mooring serve; did you mean MOORING_PORT?',
        'MOORING_LOG_LEVL is not a setting of mooring serve; did you mean MOORING_LOG_LEVEL?',
      ],
    );
  });

  it('every variable the serve help names is one it knows', () => {
    const named = [...SERVE_HELP.matchAll(/\b(MOORING_[A-Z_]+)/g)].map((m) => m[1]);
    for (const name of named) assert.ok((SERVE_ENVIRONMENT as readonly string[]).includes(name ?? ''), name);
  });

  it('takes synchronous from --synchronous, MOORING_SYNCHRONOUS or the file (normal by default), and refuses another value', async () => {
    const config = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const c = loadServeConfig(argv, env);
      assert.notEqual(c, 'help');
      return c as Exclude<typeof c, 'help'>;
    };
    assert.equal(config([]).synchronous, 'normal');
    assert.equal(config([], { MOORING_SYNCHRONOUS: 'full' }).synchronous, 'full');
    assert.equal(config(['--synchronous', 'normal'], { MOORING_SYNCHRONOUS: 'full' }).synchronous, 'normal');
    assert.throws(
      () => config(['--synchronous', 'fsync']),
      /synchronous must be normal or full, got "fsync"/,
    );
    assert.equal(config([]).newEpochs, false);
    assert.equal(config(['--new-epochs']).newEpochs, true);
    assert.throws(() => config(['--new-epochs', '--store', 'redis']), /--new-epochs is for the SQLite store/);
  });

  it('every MOORING_ variable the server reads is one it knows (none is warned of as misspelt)', () => {
    const src = fileURLToPath(new URL('../src/', import.meta.url));
    const read = new Set<string>();
    for (const file of readdirSync(src, { recursive: true, encoding: 'utf8' })) {
      // inspect and tail are other commands, with variables of their own (MOORING_URL, MOORING_TOKEN)
      if (!file.endsWith('.ts') || file.startsWith('inspect')) continue;
      for (const m of readFileSync(join(src, file), 'utf8').matchAll(/\.(MOORING_[A-Z0-9_]+)\b/g))
        read.add(m[1]!);
    }
    assert.ok(read.has('MOORING_TRACING') && read.has('MOORING_PORT'), [...read].join(' '));
    for (const name of read)
      assert.ok(
        (SERVE_ENVIRONMENT as readonly string[]).includes(name),
        `${name} is read but not in SERVE_ENVIRONMENT`,
      );
  });

  it('mooring serve prints that warning at start', { skip: !existsSync('/proc/self') }, () => {
    // a data folder that cannot be made ends the start right after the warnings
    const { NODE_OPTIONS: _, ...env } = process.env;
    const r = spawnSync(
      process.execPath,
      [
        fileURLToPath(new URL('../src/cli.ts', import.meta.url)),
        'serve',
        '--port',
        '0',
        '--data',
        '/proc/mooring-x',
      ],
      { env: { ...env, MOORING_KEY: 'a:b', MOORING_PROT: '9000' }, encoding: 'utf8', timeout: 30_000 },
    );
    assert.match(
      r.stderr,
      /mooring: warning: MOORING_PROT is not a setting of mooring serve; did you mean MOORING_PORT\?/,
    );
  });
});
