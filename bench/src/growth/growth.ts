/**
 * How the cost grows (issue 15): the fan-out curve (1,000 → 10,000 subscribers on one channel, and
 * 1,000 channels × 10) and the SQLite appends curve (200 → 2,000 concurrent streams, the long
 * message's flatness as a median over runs). Markdown on stdout, progress on stderr, every number in
 * bench/results/growth.json. Bounded: each connect phase has a deadline, each pass a fixed length,
 * and the whole run a time limit; everything listens on 127.0.0.1 only.
 *
 *   npm run bench:growth -- [fanout|appends|all] [--points 1000,2000,5000,10000,1000x10]
 *     [--deliveries 20000] [--seconds 8] [--warmup 2] [--workers 4] [--connect-concurrency 200]
 *     [--server mooring|rooms-floor]   (rooms-floor: a bare ws server with rooms, the fan-out floor)
 *     [--streams 200,500,1000,2000] [--appends 500 | --total N] [--long-appends 20000] [--runs 3]
 *     [--checkpoint worker|inline]   (where the SQLite store's WAL checkpoints run, for A/B runs)
 *
 * A point is `S` (S subscribers on one channel) or `CxS` (C channels × S subscribers each).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type AppendsGrowthResult, appendsGrowthMarkdown, runAppendsGrowth } from './appends-growth.ts';
import {
  type FanoutGrowthResult,
  fanoutGrowthMarkdown,
  type GrowthPoint,
  type GrowthServer,
  runFanoutGrowth,
} from './fanout-growth.ts';

const RUN_LIMIT_MS = 20 * 60 * 1000;

const USAGE = `usage: npm run bench:growth -- [fanout|appends|all] [--points 1000,2000,5000,10000,1000x10]
  [--deliveries 20000] [--seconds 8] [--warmup 2] [--workers 4] [--connect-concurrency 200]
  [--server mooring|rooms-floor]
  [--streams 200,500,1000,2000] [--appends 500 | --total N] [--long-appends 20000] [--runs 3]
  [--checkpoint worker|inline]
`;

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    allowPositionals: true,
    options: {
      points: { type: 'string', default: '1000,2000,5000,10000,1000x10' },
      deliveries: { type: 'string', default: '20000' },
      seconds: { type: 'string', default: '8' },
      warmup: { type: 'string', default: '2' },
      workers: { type: 'string', default: '4' },
      'connect-concurrency': { type: 'string', default: '200' },
      'connect-timeout': { type: 'string', default: '180' },
      streams: { type: 'string', default: '200,500,1000,2000' },
      appends: { type: 'string', default: '500' },
      total: { type: 'string' },
      'long-appends': { type: 'string', default: '20000' },
      runs: { type: 'string', default: '3' },
      checkpoint: { type: 'string' },
      server: { type: 'string', default: 'mooring' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
try {
  parsed = parse();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${USAGE}`);
  process.exit(64);
}
const { values, positionals } = parsed;
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const part = positionals[0] ?? 'all';
if (part !== 'fanout' && part !== 'appends' && part !== 'all') {
  process.stderr.write(`unknown part '${part}': fanout, appends or all\n`);
  process.exit(64);
}
const number = (name: string, value: string): number => {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`--${name} must be a positive number\n`);
    process.exit(64);
  }
  return n;
};
const points: GrowthPoint[] = values.points.split(',').map((p) => {
  const [a, b] = p.toLowerCase().split('x');
  return b === undefined
    ? { channels: 1, subscribersPerChannel: Math.round(number('points', a ?? '')) }
    : {
        channels: Math.round(number('points', a ?? '')),
        subscribersPerChannel: Math.round(number('points', b)),
      };
});

const watchdog = setTimeout(() => {
  process.stderr.write(`growth: still running after ${RUN_LIMIT_MS / 60000} min, giving up\n`);
  process.exit(2);
}, RUN_LIMIT_MS);
watchdog.unref();

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ');
const header = `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown'}, Node ${process.version}; load average at start ${load()}`;
process.stderr.write(`${header}\n`);

function growthServer(value: string): GrowthServer {
  if (value === 'mooring' || value === 'rooms-floor') return value;
  process.stderr.write(`--server must be mooring or rooms-floor, not '${value}'\n`);
  process.exit(64);
}

const fanoutOptions = {
  points,
  deliveries: number('deliveries', values.deliveries),
  seconds: number('seconds', values.seconds),
  warmupSeconds: number('warmup', values.warmup),
  workers: Math.round(number('workers', values.workers)),
  connectConcurrency: Math.round(number('connect-concurrency', values['connect-concurrency'])),
  connectTimeoutMs: number('connect-timeout', values['connect-timeout']) * 1000,
  server: growthServer(values.server),
};
const appendsOptions = {
  streams: values.streams.split(',').map((s) => Math.round(number('streams', s))),
  appendsPerStream: Math.round(number('appends', values.appends)),
  ...(values.total === undefined ? {} : { totalAppends: Math.round(number('total', values.total)) }),
  longMessageAppends: Math.round(number('long-appends', values['long-appends'])),
  runs: Math.round(number('runs', values.runs)),
  ...(values.checkpoint === 'inline' || values.checkpoint === 'worker'
    ? { checkpoint: values.checkpoint as 'inline' | 'worker' }
    : {}),
};

const sections = [`## How the cost grows (${new Date().toISOString()})`, header];
let fanout: FanoutGrowthResult[] | undefined;
let appends: AppendsGrowthResult | undefined;
if (part === 'fanout' || part === 'all') {
  fanout = await runFanoutGrowth(fanoutOptions);
  sections.push(fanoutGrowthMarkdown(fanout, fanoutOptions), `Load average after fan-out: ${load()}`);
}
if (part === 'appends' || part === 'all') {
  appends = await runAppendsGrowth(appendsOptions);
  sections.push(appendsGrowthMarkdown(appends, appendsOptions), `Load average after appends: ${load()}`);
}
process.stdout.write(`${sections.join('\n\n')}\n`);
const dir = fileURLToPath(new URL('../../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(
  `${dir}growth.json`,
  `${JSON.stringify({ fanoutOptions, appendsOptions, fanout, appends }, null, 2)}\n`,
);
process.exit((fanout ?? []).some((r) => r.error !== undefined) ? 1 : 0);
