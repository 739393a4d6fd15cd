/**
 * `npm start`: the Mooring server (SQLite in ./.mooring) and the demo page, with an in-process agent
 * that streams scripted answers. Mooring's own settings come from the same environment variables and
 * config file as `mooring serve` (MOORING_KEY, MOORING_DATA, MOORING_PORT, MOORING_HOST, …); the
 * flags below override them.
 */
import { parseArgs } from 'node:util';
// The CLI's configuration loader and development key, so the demo reads the same settings.
import { loadServeConfig, loopbackDevelopmentKey, parseApiKey } from '@mooring/server';
import { startDemo } from './demo.ts';

const HELP = `Usage: npm start [-- options]

  --port <n>           the demo page                  [DEMO_PORT]     default 3000
  --mooring-port <n>   the Mooring server             [MOORING_PORT]  default 8080
  --host <addr>        listen address of both         [MOORING_HOST]  default 127.0.0.1
  --data <dir>         Mooring's SQLite data          [MOORING_DATA]  default ./.mooring
  --pace <x>           agent speed factor (0.5 = twice as fast)       default 1
  API key                                              [MOORING_KEY=<name>:<secret>]  default: the dev key in <data>/dev-key
                                                       (on a loopback host only: required with any other --host)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'mooring-port': { type: 'string' },
      host: { type: 'string' },
      data: { type: 'string' },
      pace: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(HELP);
    return;
  }
  const config = loadServeConfig([], process.env);
  if (config === 'help') return;
  const dataDir = values.data ?? config.dataDir;
  const host = values.host ?? config.host;
  // As `mooring serve`: the development key gives every right (it mints the pages' tokens) and is
  // kept in a file, so it is made only for a demo that listens on this machine alone.
  const key = config.keys[0] ?? parseApiKey(loopbackDevelopmentKey(host, dataDir).key);
  const demo = await startDemo({
    key,
    host,
    port: port(values.port ?? process.env.DEMO_PORT ?? '3000'),
    mooringPort: values['mooring-port'] === undefined ? config.port : port(values['mooring-port']),
    dataDir,
    pace: pace(values.pace ?? '1'),
    logLevel: process.env.MOORING_LOG_LEVEL ?? 'warn',
  });

  process.stderr.write(`
  Mooring demo   ${demo.url}
  Mooring        ${demo.mooringUrl}  (SQLite in ${dataDir}, key "${key.name}")

  Try this: open ${demo.url} and ask something (the suggestions start a ~15 s answer).
  Open the same link in a second tab — or on another device — and watch both stream the same answer.
  Reload a tab mid-answer: it comes back to exactly where it was and keeps going, with nothing
  regenerated. In devtools (Network) switch to Offline for a few seconds and back: the badge shows
  the reconnect and the delivery panel what was caught up — or use the Network chaos buttons (drop,
  blackhole, refuse WebSocket, buffer streams) on one tab. Press Stop: the agent stops and every
  tab shows the answer as cancelled. Ask to book a table: the tool asks first, approve it on any tab.
  Take over as operator in one tab to answer another as a human, then hand back.
  Ctrl-C stops the demo; the sessions stay in ${dataDir}.

`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    demo.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

function pace(text: string): number {
  const n = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n < 0)
    throw new Error(`--pace must be a number ≥ 0, got ${JSON.stringify(text)}`);
  return n;
}

function port(text: string): number {
  // digits only: Number('') is 0, a random port
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(n) || n > 65535) throw new Error(`not a port: ${JSON.stringify(text)}`);
  return n;
}

main().catch((err: unknown) => {
  process.stderr.write(`demo: ${(err as Error).message}\n`);
  process.exit(1);
});
