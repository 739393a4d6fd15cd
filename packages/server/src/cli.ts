/**
 * The `mooring` command.
 *
 *   mooring serve [options]     run the server (see `mooring serve --help`)
 */
import { mkdirSync } from 'node:fs';
import { developmentKey, loadServeConfig, SERVE_HELP } from './config.ts';
import { startServer } from './server.ts';

const USAGE = `Usage: mooring <command>

Commands:
  serve     run the Mooring server (mooring serve --help)`;

async function serve(argv: string[]): Promise<void> {
  const config = loadServeConfig(argv, process.env);
  if (config === 'help') {
    console.log(SERVE_HELP);
    return;
  }
  let keys = config.keys;
  let devKey: string | undefined;
  if (keys.length === 0) {
    const dev = developmentKey(config.dataDir);
    keys = [dev.key];
    devKey = dev.key;
  }
  if (config.store === 'sqlite') mkdirSync(config.dataDir, { recursive: true });
  const server = await startServer({
    host: config.host,
    port: config.port,
    store: config.store === 'sqlite' ? { kind: 'sqlite', dataDir: config.dataDir } : { kind: 'memory' },
    keys,
    limits: config.limits,
    namespaces: config.namespaces,
    logger: config.logLevel,
    ...(config.heartbeatInterval === undefined ? {} : { heartbeatInterval: config.heartbeatInterval }),
    ...(config.connectionStateTtl === undefined ? {} : { connectionStateTtl: config.connectionStateTtl }),
  });
  const lines = [
    `Mooring listening on ${server.url}  (store: ${server.store.kind}${config.store === 'sqlite' ? `, data: ${config.dataDir}` : ''})`,
    `  WebSocket: ${server.url.replace('http', 'ws')}/v1/connect`,
  ];
  if (devKey) lines.push(`  development key (from ${config.dataDir}/dev-key): ${devKey}`);
  process.stderr.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = (signal: string) => {
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
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'serve') return serve(rest);
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
