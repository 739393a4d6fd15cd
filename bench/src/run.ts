/**
 * `npm run bench`: runs the scenarios, prints markdown tables on stdout (progress goes to stderr)
 * and writes every number to bench/results/latest.json. Measures and reports; asserts nothing about
 * timings (ARCHITECTURE.md §14). Exits 1 only when a scenario could not run, 2 on the global time limit.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseBenchOptions, USAGE } from './cli-options.ts';
import { machineStealSeconds } from './cpu-usage.ts';
import { appendsMarkdown, fanoutMarkdown, TARGETS } from './report.ts';
import { aiMarkdown } from './report-ai.ts';
import { streamsMarkdown } from './report-streams.ts';
import { transportsMarkdown } from './report-transports.ts';
import { type AiResult, runAiStreaming } from './scenarios/ai-streaming.ts';
import { type AppendsResult, runAppends } from './scenarios/appends.ts';
import { type CatchupResult, catchupMarkdown, runCatchup } from './scenarios/catchup.ts';
import {
  EXTRA_FANOUT_SERVERS,
  FANOUT_SERVERS,
  type FanoutServerResult,
  runFanout,
} from './scenarios/fanout.ts';
import { runStreams, type StreamsResult } from './scenarios/streams.ts';
import { runTransports, type TransportsResult } from './scenarios/transports.ts';

/** Whole-run limit: however the scenarios behave, the process ends (children are killed on exit). */
const RUN_LIMIT_MS = (process.argv.includes('ai') ? 45 : 15) * 60 * 1000;

let options: ReturnType<typeof parseBenchOptions>;
try {
  options = parseBenchOptions(process.argv.slice(2));
  const known = [...FANOUT_SERVERS, ...EXTRA_FANOUT_SERVERS].map((s) => s.id);
  for (const id of options.servers ?? []) if (!known.includes(id)) throw new Error(`unknown server '${id}'`);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${USAGE}\n`);
  process.exit(64);
}

const watchdog = setTimeout(() => {
  process.stderr.write(`bench: still running after ${RUN_LIMIT_MS / 60000} min, giving up\n`);
  process.exit(2);
}, RUN_LIMIT_MS);
watchdog.unref();

/** The code measured: commit, and whether the packages had uncommitted changes at the time. */
function gitState(): string {
  const git = (...args: string[]): string =>
    execFileSync('git', args, {
      encoding: 'utf8',
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  try {
    const dirty = git('status', '--porcelain', '--', 'packages') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' + uncommitted changes in packages/' : ''}`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

const cpuList = cpus();
const machine = {
  cpus: cpuList.length,
  model: cpuList[0]?.model ?? 'unknown',
  node: process.version,
  platform: platform(),
  loadavgAtStart: loadavg(),
  code: gitState(),
};
process.stderr.write(
  `bench: ${machine.cpus} × ${machine.model}, Node ${machine.node}, load average ${machine.loadavgAtStart.map((l) => l.toFixed(2)).join(' ')}\n`,
);
if ((machine.loadavgAtStart[0] ?? 0) > 0.5) {
  process.stderr.write('bench: the machine is already busy; numbers will be low and noisy\n');
}
// A virtual machine's cores can be taken by the host (CPU steal): the load average does not show it.
const stealBefore = machineStealSeconds();
await sleep(1000);
const stealAfter = machineStealSeconds();
const stealAtStart =
  stealBefore === undefined || stealAfter === undefined ? undefined : stealAfter - stealBefore;
if (stealAtStart !== undefined && stealAtStart >= 0.05) {
  process.stderr.write(
    `bench: the host took ${stealAtStart.toFixed(2)} of the ${machine.cpus} cores in the last second (CPU steal); latencies will be the host's\n`,
  );
}

const started = new Date();
let fanout: FanoutServerResult[] | undefined;
let appends: AppendsResult[] | undefined;
let transports: TransportsResult | undefined;
let ai: AiResult[] | undefined;
let catchup: CatchupResult[] | undefined;
const catchupStore = options.stores[0] === 'memory' ? 'memory' : 'sqlite';
let streams: StreamsResult[] | undefined;
const streamsOptions = {
  streams: options.dsStreams,
  appends: options.dsAppends,
  payloadBytes: 100,
  readRounds: 5,
  liveSeconds: 3,
  watchers: options.dsWatchers,
  ...(options.dsServers === undefined ? {} : { only: options.dsServers }),
};
if (options.scenario === 'fanout' || options.scenario === 'all') {
  fanout = await runFanout({
    subscribers: options.subscribers,
    rate: options.rate,
    seconds: options.seconds,
    warmupSeconds: options.warmupSeconds,
    inFlight: options.inFlight,
    rounds: options.rounds,
    drainMs: 3000,
    connectConcurrency: 50,
    ...(options.servers === undefined ? {} : { only: options.servers }),
  });
}
if (options.scenario === 'appends' || options.scenario === 'all') {
  appends = await runAppends({
    responses: options.responses,
    appendsPerResponse: options.appendsPerResponse,
    longMessageAppends: options.longMessageAppends,
    stores: options.stores,
  });
}
if (options.scenario === 'transports' || options.scenario === 'all') {
  transports = await runTransports({
    fanout: {
      subscribers: options.transportSubscribers,
      rate: options.rate,
      seconds: options.seconds,
      warmupSeconds: options.warmupSeconds,
      inFlight: options.inFlight,
      rounds: options.rounds,
      drainMs: 3000,
      connectConcurrency: 50,
    },
    tokens: {
      streams: options.streams,
      tokenRate: options.tokenRate,
      warmupSeconds: options.warmupSeconds,
      seconds: options.seconds,
      drainMs: 3000,
      connectConcurrency: 25,
    },
    rounds: options.rounds,
    ...(options.transports === undefined ? {} : { only: options.transports }),
  });
}

if (options.scenario === 'ai') {
  ai = await runAiStreaming({
    responses: options.aiResponses,
    rate: options.tokenRate,
    seconds: options.aiSeconds,
    gapSeconds: options.aiGap,
    samples: options.aiSamples,
    systems: options.aiSystems,
    rounds: options.rounds,
    appRttMs: options.aiAppRtt,
    userRttMs: options.aiUserRtt,
    frames: options.aiFrames,
    ...(options.profileDir === undefined ? {} : { profileDir: options.profileDir }),
  });
}

if (options.scenario === 'catchup') {
  catchup = await runCatchup({ gaps: options.gaps, tokenRate: options.tokenRate, store: catchupStore });
}

if (options.scenario === 'streams' || options.scenario === 'all') streams = await runStreams(streamsOptions);

const sections = [
  `## Mooring benchmarks (${started.toISOString()})`,
  `Machine: ${machine.cpus} × ${machine.model}, Node ${machine.node} (${machine.platform}); ` +
    `load average at start ${machine.loadavgAtStart.map((l) => l.toFixed(2)).join(' / ')}${stealAtStart ? `, CPU steal at start ${stealAtStart.toFixed(2)} cores` : ''}; code ${machine.code}. ` +
    'Each server runs in its own process; the load generator (publisher and all subscribers) in another. ' +
    'CPU columns are cores used during the measured window.',
];
if (fanout !== undefined) {
  sections.push(
    fanoutMarkdown(fanout, {
      subscribers: options.subscribers,
      rounds: options.rounds,
      inFlight: options.inFlight,
      rate: options.rate,
    }),
  );
}
if (appends !== undefined) sections.push(appendsMarkdown(appends));
if (transports !== undefined) {
  sections.push(
    transportsMarkdown(transports, {
      subscribers: options.transportSubscribers,
      rounds: options.rounds,
      inFlight: options.inFlight,
      rate: options.rate,
    }),
  );
}
if (ai !== undefined) {
  sections.push(
    aiMarkdown(ai, {
      rate: options.tokenRate,
      seconds: options.aiSeconds,
      gapSeconds: options.aiGap,
      appRttMs: options.aiAppRtt,
      userRttMs: options.aiUserRtt,
    }),
  );
}
if (catchup !== undefined) sections.push(catchupMarkdown(catchup, catchupStore, options.tokenRate));
if (streams !== undefined) sections.push(streamsMarkdown(streams, streamsOptions));
process.stdout.write(`${sections.join('\n\n')}\n`);

const resultsDir = fileURLToPath(new URL('../results/', import.meta.url));
mkdirSync(resultsDir, { recursive: true });
const file = `${resultsDir}latest.json`;
writeFileSync(
  file,
  `${JSON.stringify({ startedAt: started.toISOString(), machine, options, targets: TARGETS, fanout, appends, transports, streams, ai, catchup }, null, 2)}\n`,
);
process.stderr.write(`bench: results written to ${file}\n`);

const failed =
  (fanout ?? []).some((r) => r.error !== undefined) ||
  (appends ?? []).some((r) => r.error !== undefined) ||
  (transports?.fanout ?? []).some((r) => r.error !== undefined) ||
  (transports?.tokens ?? []).some((r) => r.error !== undefined) ||
  (streams ?? []).some((r) => r.error !== undefined) ||
  (ai ?? []).some((r) => r.error !== undefined) ||
  (catchup ?? []).some((r) => r.error !== undefined);
process.exit(failed ? 1 : 0);
