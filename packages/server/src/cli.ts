/**
 * The `mooring` command.
 *
 *   mooring serve [options]     run the server (see `mooring serve --help`)
 *   mooring inspect <channel>   a channel's health, leases, presence, log and conversation tree
 *   mooring tail <channel>      follow a channel live, resuming after disconnects
 */
import { parseArgs } from 'node:util';
import { type ApiKey, parseApiKey } from './auth.ts';
import { Capability } from './capabilities.ts';
import {
  loadServeConfig,
  loopbackDevelopmentKey,
  misspeltEnvironment,
  parseDuration,
  SERVE_HELP,
} from './config.ts';
import { makeDirectory } from './make-directory.ts';
import { startServer } from './server.ts';
import { redactRedisUrl } from './store/redis-url.ts';
import { createToken, type TokenRequest } from './tokens.ts';

const USAGE = `Usage: mooring <command>

Commands:
  serve     run the Mooring server (mooring serve --help)
  token     print a signed token for a browser client (mooring token --help)
  inspect   show a channel: delivery health, leases, presence, log, conversation (mooring inspect --help)
  tail      follow a channel live, resuming after disconnects (mooring tail --help)`;

const TOKEN_HELP = `Usage: mooring token --key <name>:<secret> [--client-id <id>] [--capability <json>] [--ttl <duration>]

  --key          the API key that signs the token          [MOORING_KEY]
  --client-id    the identity the token's holder publishes as (default: anonymous)
  --capability   channel glob → operations, as JSON; default: everything the key may do
                 e.g. '{"session:*":["subscribe","publish","append-own","presence"]}'
  --ttl          lifetime: 30m, 1h (default), 24h at most

Operations: subscribe publish history presence append-own update-own update-any delete-own delete-any
            stream-read stream-append stream-create stream-delete (Durable Streams) *`;

async function token(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      key: { type: 'string' },
      'client-id': { type: 'string' },
      capability: { type: 'string' },
      ttl: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(TOKEN_HELP);
    return;
  }
  const key = values.key ?? process.env.MOORING_KEY;
  if (!key) throw new Error(`--key is required\n\n${TOKEN_HELP}`);
  const request: TokenRequest = {};
  // An empty value (an unset shell variable) is refused, never read as "not given": that would be an
  // anonymous token, or one with everything the key may do.
  if (values['client-id'] !== undefined) request.clientId = values['client-id'];
  if (values.ttl !== undefined) request.ttl = parseDuration(values.ttl, 'ttl');
  if (values.capability !== undefined) {
    let capability: unknown;
    try {
      capability = JSON.parse(values.capability);
    } catch {
      throw new Error('--capability must be JSON, e.g. \'{"session:*":["subscribe"]}\'');
    }
    request.capability = Capability.parse(capability).spec;
  }
  const minted = await createToken(parseApiKey(key), request);
  console.log(minted.token);
  process.stderr.write(`expires ${new Date(minted.expiresAt).toISOString()}\n`);
}

/**
 * The young-generation flag this process runs with: `bin/mooring.js` sets --max-semi-space-size=16
 * unless one was given (command line or NODE_OPTIONS) or MOORING_NODE_DEFAULTS=0.
 */
function youngGeneration(): string {
  // Node reads NODE_OPTIONS first and the command line after it: the last one wins
  const flags = [...(process.env.NODE_OPTIONS ?? '').split(/\s+/), ...process.execArgv];
  return flags.findLast((flag) => /^--max[-_]semi[-_]space[-_]size\b/.test(flag)) ?? "Node's default";
}

async function serve(argv: string[]): Promise<void> {
  const config = loadServeConfig(argv, process.env);
  if (config === 'help') {
    console.log(SERVE_HELP);
    return;
  }
  for (const warning of misspeltEnvironment(process.env))
    process.stderr.write(`mooring: warning: ${warning}\n`);
  let keys: Array<ApiKey | string> = config.keys;
  let devKey: string | undefined;
  if (keys.length === 0) {
    // a development key gives every right and is printed at start: only for a server on this machine
    const dev = loopbackDevelopmentKey(config.host, config.dataDir);
    keys = [dev.key];
    devKey = dev.key;
  }
  if (config.store === 'sqlite') makeDirectory(config.dataDir);
  const redisUrl = redactRedisUrl(config.redis.url);
  // The store waits for Redis as long as it takes (a supervisor may start both at once); say so,
  // rather than leave only the log's retries to explain why no banner comes.
  const waiting =
    config.store === 'redis'
      ? setTimeout(() => {
          process.stderr.write(
            `mooring: waiting for Redis at ${redisUrl} (each failed attempt is logged; Ctrl-C to give up)\n`,
          );
        }, 2_000)
      : undefined;
  const server = await startServer({
    host: config.host,
    port: config.port,
    reusePort: config.reusePort,
    store:
      config.store === 'sqlite'
        ? {
            kind: 'sqlite',
            dataDir: config.dataDir,
            synchronous: config.synchronous,
            ...(config.newEpochs ? { newEpochs: true } : {}),
          }
        : config.store === 'redis'
          ? { kind: 'redis', ...config.redis }
          : { kind: 'memory' },
    keys,
    limits: config.limits,
    namespaces: config.namespaces,
    durableStreams: config.durableStreams,
    logger: config.logLevel,
    tracing: process.env.MOORING_TRACING === '1',
    ...(config.heartbeatInterval === undefined ? {} : { heartbeatInterval: config.heartbeatInterval }),
    ...(config.firstPollTimeout === undefined ? {} : { firstPollTimeout: config.firstPollTimeout }),
    ...(config.connectionStateTtl === undefined ? {} : { connectionStateTtl: config.connectionStateTtl }),
    ...(config.presenceGrace === undefined ? {} : { presenceGrace: config.presenceGrace }),
    ...(config.sweepInterval === undefined ? {} : { sweepInterval: config.sweepInterval }),
    ...(config.nodeTtl === undefined ? {} : { nodeTtl: config.nodeTtl }),
  }).finally(() => clearTimeout(waiting));
  // signals first, the banner after: whoever waits for the banner and then signals gets a graceful stop
  let stopping = false;
  const stop = (signal: string) => {
    // a second signal is not a hurry: Ctrl-C under `npm start` sends SIGINT to npm and the server
    // both, and npm passes its own on; the shutdown itself ends within its deadlines (server.ts)
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${signal}: shutting down (clients are told to reconnect)...\n`);
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  const lines = [
    `Mooring listening on ${server.url}  (store: ${server.store.kind}${config.reusePort ? ', port shared: --reuse-port' : ''}${config.store === 'sqlite' ? `, data: ${config.dataDir}${config.synchronous === 'full' ? ', synchronous: full' : ''}` : ''}${config.store === 'redis' ? `, redis: ${redisUrl}` : ''})`,
    `  WebSocket: ${server.url.replace('http', 'ws')}/v1/connect`,
    `  Dashboard: ${server.url}/dashboard   Metrics: ${server.url}/metrics`,
    `  Durable Streams: ${server.url}/v1/stream/<path>${config.durableStreams.open ? `  (open WITHOUT credentials: ${config.durableStreams.open})` : ''}`,
    `  Node ${process.version}, V8 young generation: ${youngGeneration()}`,
  ];
  if (config.newEpochs)
    lines.push(
      '  --new-epochs: every channel went on in a new epoch (clients re-read; start without it next time)',
    );
  if (devKey) lines.push(`  development key (from ${config.dataDir}/dev-key): ${devKey}`);
  process.stderr.write(`${lines.join('\n')}\n`);
}

async function inspect(argv: string[]): Promise<void> {
  const { inspectCommand } = await import('./inspect/inspect-command.ts');
  await inspectCommand(argv, process.env, (line) => console.log(line));
}

async function tail(argv: string[]): Promise<void> {
  const { tailCommand } = await import('./inspect/tail-command.ts');
  const handle = tailCommand(argv, process.env, {
    write: (text) => process.stdout.write(text),
    status: (line) => process.stderr.write(`${line}\n`),
  });
  if (handle === 'help') return;
  const stop = () => void handle.stop().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const err = await handle.failed;
  process.stderr.write(`mooring tail: ${err.message}\n`);
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') return serve(rest);
  if (command === 'token') return token(rest);
  if (command === 'inspect') return inspect(rest);
  if (command === 'tail') return tail(rest);
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return;
  }
  console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  process.exitCode = 2;
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`mooring: ${(err as Error).message}\n`);
  process.exit(1);
});
