/**
 * AI token streaming, Mooring against what a team would use instead (`npm run bench -- ai`):
 *
 *   model stub ──tokens on a timer──▶ app / agent ──▶ [relay] ──▶ N users (this process)
 *   (own process)                     (own process)   (own process: Mooring, redis-server, DS server)
 *
 * Systems: the floor (AI SDK SSE straight to the client), `resumable-stream` on a local redis-server,
 * the Durable Streams reference server (one stream per generation, one POST per chunk), and Mooring
 * (memory, SQLite, Redis store) with the agent's coalescing at 40 ms and 0 ms. For each: N responses
 * at once (started over one second), each `seconds` × `rate` tokens.
 *
 * Measured: token → client (model stub's write → user's read, on the machine's monotonic clock), the CPU of
 * the system's own processes (app/agent + relay, Redis from `INFO cpu`) per 1,000 tokens delivered,
 * the users' wire bytes per token; and on a few sampled users: a 10 s gap (the tab closes 3 s into
 * the answer and comes back from its position 10 s later) and a reload (a fresh tab joins the
 * answer at the same moment, from nothing): bytes and time until the user is back at the live edge
 * (has every token the model had written when it reconnected).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { FaultProxy, type RedisServer, startRedis } from '@mooring/testkit';
import {
  type AiClient,
  durableUsers,
  floorUsers,
  mooringUsers,
  resumableUsers,
  socketIoUsers,
  type UserSide,
} from '../ai/ai-clients.ts';
import type { MooringAgentConfig } from '../ai/mooring-agent.ts';
import { TokenTracker } from '../ai/token-tracker.ts';
import { BENCH_KEY } from '../bench-config.ts';
import { sharedClockMs } from '../clock.ts';
import {
  cpuSeconds,
  machineBusySeconds,
  machineStealSeconds,
  processIoCalls,
  processRunQueueSeconds,
} from '../cpu-usage.ts';
import { type GcPauses, type LoopDelay, loopDelay } from '../servers/server-child.ts';
import { type ServerProcess, spawnServer } from '../spawn-server.ts';
import { Histogram, type LatencySummary, median } from '../stats.ts';

export const AI_SYSTEMS = [
  'floor',
  'resumable-stream',
  'durable-streams',
  'socketio',
  'mooring-memory-40',
  'mooring-memory-0',
  'mooring-sqlite-40',
  'mooring-sqlite-0',
  'mooring-redis-40',
  'mooring-embedded-40',
  'mooring-embedded-0',
] as const;
export type AiSystem = (typeof AI_SYSTEMS)[number];

export interface AiOptions {
  responses: number[];
  rate: number;
  seconds: number;
  gapSeconds: number;
  samples: number;
  systems: AiSystem[];
  /** Runs of every system per load, the order reversed every other round (default 1). */
  rounds?: number;
  /**
   * Round trip (ms) added between each app and its store or relay by a delaying proxy in this
   * process (half each way): Mooring's agents apart → server, resumable-stream's app → Redis, the
   * Durable Streams app → its server. Default 0.
   */
  appRttMs?: number;
  /**
   * Round trip (ms) added between the users and the server they read from (the app, or Mooring's
   * or the Durable Streams server), the same way: users on a distant or mobile network. Default 0.
   */
  userRttMs?: number;
  /** The messages frames Mooring's users ask for (default compact, as the SDK does). */
  frames?: 'compact' | 'plain';
  /** Write `--cpu-prof` profiles of the Mooring server and agent, and of this process, here. */
  profileDir?: string;
}

export interface CatchUp {
  /** Users measured (of the samples: some may not have caught up before the answer ended). */
  users: number;
  /** Median bytes received from the reconnect until back at the live edge. */
  bytes: number;
  /** Median ms from the reconnect until back at the live edge. */
  ms: number;
}

export interface AiResult {
  system: AiSystem;
  responses: number;
  /** Which round of `--rounds` (1-based). */
  round: number;
  tokensPerResponse: number;
  latency?: LatencySummary;
  /** The hop split of the same tokens: model stub → the app (or agent) process, and app → user. */
  modelToApp?: LatencySummary;
  appToUser?: LatencySummary;
  /** The first token of each response alone: time to first token, model → user. */
  firstToken?: LatencySummary;
  /** The first token's two hops: model → app (the app's start of a response) and app → user. */
  firstTokenHops?: { modelToApp: LatencySummary; appToUser: LatencySummary };
  /** Event-loop delay p99 (ms) during the run: the app (or agent), the relay, the users' process. */
  loopP99?: { app: number; relay: number | undefined; users: number };
  /**
   * Seconds the app's (or agent's) and the relay's main threads waited for a core during the run
   * (runnable, not running: the machine's cores were busy), per 1,000 tokens delivered.
   */
  coreWaitPer1000?: { app: number | undefined; relay: number | undefined };
  /** Read and write system calls of the app (or agent) and of the relay, per token delivered. */
  ioCallsPerToken?: { app: number | undefined; relay: number | undefined };
  /** The garbage collector's pauses during the run in the app (or agent) and the relay process. */
  gc?: { app: GcPauses; relay: GcPauses | undefined };
  delivered?: number;
  missing?: number;
  /** CPU seconds of the system's own processes per 1,000 tokens delivered. */
  cpuPer1000?: number;
  /** The relay's share of it (Mooring server, redis-server, DS server). */
  relayCpuPer1000?: number;
  bytesPerToken?: number;
  gap?: CatchUp | string;
  reload?: CatchUp | string;
  loadCpu?: number;
  otherCpu?: number | null;
  /** Cores the host took for other guests during the window (CPU steal; inside `otherCpu`). */
  stealCpu?: number | null;
  error?: string;
}

/** Read + write system calls per token, app / relay, or – when not measured. */
const callsText = (c: { app: number | undefined; relay: number | undefined }): string =>
  `${c.app?.toFixed(2) ?? '–'} / ${c.relay?.toFixed(2) ?? '–'}`;

/** Seconds per 1,000 tokens as ms, or – when not measured. */
const ms1k = (seconds: number | undefined): string =>
  seconds === undefined ? '–' : (seconds * 1000).toFixed(0);

const MODULE = (path: string): string => new URL(path, import.meta.url).pathname;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function redisCpu(redis: RedisServer | undefined): Promise<number> {
  if (redis === undefined) return 0;
  const info = await redis.command('INFO', 'cpu');
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return field('used_cpu_sys') + field('used_cpu_user');
}

interface Deployment {
  users: UserSide;
  /** The process that reads the model (app or agent): it knows when each token reached it. */
  app: ServerProcess;
  /** The system's own processes (app or agent, relay). */
  own: ServerProcess[];
  relay: ServerProcess | undefined;
  redis: RedisServer | undefined;
  stop(): Promise<void>;
}

async function deploy(
  system: AiSystem,
  stub: ServerProcess,
  n: number,
  tokens: number,
  options: AiOptions,
  round: number,
): Promise<Deployment> {
  const prof = (name: string): string[] =>
    options.profileDir === undefined
      ? []
      : [
          '--cpu-prof',
          `--cpu-prof-dir=${options.profileDir}`,
          `--cpu-prof-name=${name}-${system}-${n}${(options.rounds ?? 1) > 1 ? `-r${round}` : ''}.cpuprofile`,
        ];
  const started: ServerProcess[] = [];
  let redis: RedisServer | undefined;
  const proxies: FaultProxy[] = [];
  const stop = async (): Promise<void> => {
    for (const p of proxies) await p.close();
    for (const p of started.reverse()) await p.stop();
    await redis?.close();
  };
  /** The port `port` is reached on through a proxy adding `rtt` ms of round trip (none for 0). */
  const distant = async (port: number, rtt: number): Promise<number> => {
    if (rtt === 0) return port;
    const proxy = await FaultProxy.start({ port });
    proxy.delay(rtt / 2);
    proxies.push(proxy);
    return proxy.port;
  };
  const fromApp = (port: number) => distant(port, options.appRttMs ?? 0);
  const fromUsers = (port: number) => distant(port, options.userRttMs ?? 0);
  try {
    const stubPort = String(stub.port);
    // the app alone, no relay: the floor, and a team's own Socket.IO (the app is the relay)
    const appOnly = async (mode: 'floor' | 'socketio', usersOf: (port: number) => UserSide) => {
      const app = await spawnServer(MODULE('../ai/app-server.ts'), {
        args: [mode, stubPort],
        label: `app ${mode}`,
        execArgv: prof('app'),
      });
      started.push(app);
      return { users: usersOf(await fromUsers(app.port)), app, own: [app], relay: undefined, redis, stop };
    };
    if (system === 'floor') return await appOnly('floor', floorUsers);
    if (system === 'socketio') return await appOnly('socketio', socketIoUsers);
    if (system === 'resumable-stream') {
      redis = await startRedis();
      const app = await spawnServer(MODULE('../ai/app-server.ts'), {
        args: ['resumable', stubPort, `redis://127.0.0.1:${await fromApp(redis.port)}`],
        label: 'app resumable',
        execArgv: prof('app'),
      });
      started.push(app);
      return {
        users: resumableUsers(await fromUsers(app.port)),
        app,
        own: [app],
        relay: undefined,
        redis,
        stop,
      };
    }
    if (system === 'durable-streams') {
      const ds = await spawnServer(MODULE('../ai/durable-streams-server.ts'), { label: 'durable streams' });
      started.push(ds);
      const app = await spawnServer(MODULE('../ai/app-server.ts'), {
        args: ['durable', stubPort, `http://127.0.0.1:${await fromApp(ds.port)}`],
        label: 'app durable',
        execArgv: prof('app'),
      });
      started.push(app);
      return {
        users: durableUsers(await fromUsers(app.port), await fromUsers(ds.port)),
        app,
        own: [app, ds],
        relay: ds,
        redis,
        stop,
      };
    }
    if (system.startsWith('mooring-embedded-')) {
      // the agents in the server's process, over the in-process transport: no agent → server hop
      const profEmbedded = prof('embedded');
      const embedded = await spawnServer(MODULE('../ai/mooring-embedded.ts'), {
        args: [
          'memory',
          JSON.stringify({
            key: BENCH_KEY,
            stubPort: stub.port,
            responses: n,
            tokens,
            rate: options.rate,
            coalesceMs: Number(system.slice('mooring-embedded-'.length)),
            perConnection: 50,
          }),
        ],
        label: 'mooring embedded',
        readyTimeoutMs: 60_000,
        execArgv: profEmbedded,
      });
      started.push(embedded);
      return {
        users: mooringUsers(`http://127.0.0.1:${await fromUsers(embedded.port)}`, BENCH_KEY, options.frames),
        app: embedded,
        own: [embedded],
        relay: undefined,
        redis,
        stop,
      };
    }
    const [, store, coalesce] = system.split('-') as [string, 'memory' | 'sqlite' | 'redis', string];
    if (store === 'redis') redis = await startRedis({ appendonly: 'everysec' });
    const profServer = prof('server');
    const server = await spawnServer(MODULE('../servers/mooring-server.ts'), {
      args: [store, ...(redis ? [redis.url] : []), 'no-publish-limit'],
      label: `mooring ${store}`,
      execArgv: profServer,
    });
    started.push(server);
    const config: MooringAgentConfig = {
      url: `http://127.0.0.1:${await fromApp(server.port)}`,
      key: BENCH_KEY,
      stubPort: stub.port,
      responses: n,
      tokens,
      rate: options.rate,
      coalesceMs: Number(coalesce),
      perConnection: 50,
    };
    const profAgent = prof('agent');
    const agent = await spawnServer(MODULE('../ai/mooring-agent.ts'), {
      args: [JSON.stringify(config)],
      label: 'mooring agent',
      readyTimeoutMs: 60_000,
      execArgv: profAgent,
    });
    started.push(agent);
    return {
      users: mooringUsers(`http://127.0.0.1:${await fromUsers(server.port)}`, BENCH_KEY, options.frames),
      app: agent,
      own: [server, agent],
      relay: server,
      redis,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

interface CpuSnap {
  own: number;
  relay: number;
  /** Run-queue waits so far (s) of the app's and the relay's main threads. */
  waitApp: number | undefined;
  waitRelay: number | undefined;
  /** Read and write system calls so far of the app's and the relay's processes. */
  callsApp: number | undefined;
  callsRelay: number | undefined;
  load: number;
  machine: number | undefined;
  /** CPU steal so far, summed over the machine's cores (s). */
  steal: number | undefined;
  t: number;
}

async function cpuSnap(d: Deployment, stub: ServerProcess): Promise<CpuSnap & { stub: number }> {
  const own = await Promise.all(d.own.map((p) => p.cpuUsage()));
  const relay = d.relay === undefined ? 0 : cpuSeconds(await d.relay.cpuUsage());
  const r = await redisCpu(d.redis);
  return {
    waitApp: processRunQueueSeconds(d.app.pid),
    waitRelay: d.relay === undefined ? undefined : processRunQueueSeconds(d.relay.pid),
    callsApp: processIoCalls(d.app.pid),
    callsRelay: d.relay === undefined ? undefined : processIoCalls(d.relay.pid),
    own: own.reduce((sum, u) => sum + cpuSeconds(u), 0) + r,
    relay: relay + r,
    load: cpuSeconds(process.cpuUsage()),
    machine: machineBusySeconds(),
    steal: machineStealSeconds(),
    stub: cpuSeconds(await stub.cpuUsage()),
    t: performance.now(),
  };
}

/** Median of the catch-ups of the sampled users: bytes and ms from the reconnect to the live edge. */
function catchUps(
  samples: { tracker: TokenTracker; at: number; bytesAt: number }[],
  emits: Record<string, number[]>,
): CatchUp | string {
  const bytes: number[] = [];
  const ms: number[] = [];
  for (const { tracker, at, bytesAt } of samples) {
    const times = emits[tracker.response] ?? [];
    let edge = 0;
    let complete = true;
    for (let k = 0; k < times.length; k++) {
      if (times[k]! > at) break;
      const arrived = tracker.arrived[k]!;
      if (arrived === 0) complete = false;
      edge = Math.max(edge, arrived);
    }
    if (!complete || edge === 0) continue;
    ms.push(Math.max(0, edge - at));
    bytes.push(tracker.bytesAt(edge) - bytesAt);
  }
  if (ms.length === 0) return 'never caught up';
  return { users: ms.length, bytes: median(bytes), ms: median(ms) };
}

async function runOne(system: AiSystem, n: number, round: number, options: AiOptions): Promise<AiResult> {
  const tokens = Math.round(options.seconds * options.rate);
  const result: AiResult = { system, responses: n, round, tokensPerResponse: tokens };
  process.stderr.write(`ai: ${system}, ${n} responses × ${tokens} tokens at ${options.rate}/s\n`);
  const stub = await spawnServer(MODULE('../ai/model-stub.ts'), { label: 'model stub' });
  let d: Deployment | undefined;
  const tabs: AiClient[] = [];
  try {
    d = await deploy(system, stub, n, tokens, options, round);
    const trackers = Array.from({ length: n }, (_, r) => new TokenTracker(r, tokens));
    // Open every tab first (connections, attach), so that the measured part is the streaming.
    let next = 0;
    const opener = async (): Promise<void> => {
      while (next < n) {
        const r = next++;
        tabs[r] = await d!.users.open(trackers[r]!);
      }
    };
    await Promise.all(Array.from({ length: 25 }, opener));
    const step = Math.max(1, Math.floor(n / options.samples));
    const gapped = new Set<number>();
    if (d.users.resume) for (let r = 0; r < n && gapped.size < options.samples; r += step) gapped.add(r);
    const usersLoop = monitorEventLoopDelay({ resolution: 5 });
    await d.app.ask('loop');
    await d.relay?.ask('loop');
    usersLoop.enable();
    const before = await cpuSnap(d, stub);
    const t0 = performance.now();
    const begun: Promise<void>[] = [];
    for (let r = 0; r < n; r++) {
      const at = t0 + (r * 1000) / n;
      begun.push(
        sleep(Math.max(0, at - performance.now())).then(() =>
          d!.users.begin(tabs[r]!, { response: r, tokens, rate: options.rate }),
        ),
      );
    }
    // Gaps: close 3 s in, come back `gapSeconds` later from the position; reloads join at that moment.
    const gapSamples: { tracker: TokenTracker; at: number; bytesAt: number }[] = [];
    const reloadSamples: { tracker: TokenTracker; at: number; bytesAt: number }[] = [];
    const reloadTabs: AiClient[] = [];
    const sampling = (async () => {
      await sleep(3000);
      for (const r of gapped) tabs[r]!.close();
      await sleep(options.gapSeconds * 1000);
      const users = d!.users;
      await Promise.all(
        [...gapped].map(async (r) => {
          const tracker = trackers[r]!;
          const sample = { tracker, at: sharedClockMs(), bytesAt: tracker.meter.totals().read };
          gapSamples.push(sample);
          tabs[r] = await users.resume!(tracker, tabs[r]!);
        }),
      );
      if (users.reload) {
        await Promise.all(
          [...gapped].map(async (r) => {
            const tracker = new TokenTracker(r, tokens);
            reloadSamples.push({ tracker, at: sharedClockMs(), bytesAt: 0 });
            reloadTabs.push(await users.reload!(tracker));
          }),
        );
      }
    })();
    await Promise.all(begun);
    const deadline = performance.now() + options.seconds * 1000 + 30_000;
    while (performance.now() < deadline && trackers.some((t) => !t.complete)) await sleep(100);
    await sampling;
    const after = await cpuSnap(d, stub);
    usersLoop.disable();
    const appLoop = await d.app.ask<{ delay: LoopDelay; gc: GcPauses }>('loop');
    const relayLoop = await d.relay?.ask<{ delay: LoopDelay; gc: GcPauses }>('loop');
    result.loopP99 = { app: appLoop.delay.p99, relay: relayLoop?.delay.p99, users: loopDelay(usersLoop).p99 };
    result.gc = { app: appLoop.gc, relay: relayLoop?.gc };
    const { emits } = await stub.ask<{ emits: Record<string, number[]> }>('emits');
    const { arrivals } = await d.app.ask<{ arrivals: Record<string, number[]> }>('arrivals');
    const histogram = new Histogram();
    const toApp = new Histogram();
    const toUser = new Histogram();
    const first = new Histogram();
    const firstToApp = new Histogram();
    const firstToUser = new Histogram();
    let delivered = 0;
    let expected = 0;
    let bytes = 0;
    let measuredTokens = 0;
    for (const tracker of trackers) {
      delivered += tracker.tokensReceived;
      if (gapped.has(tracker.response)) continue;
      const times = emits[tracker.response] ?? [];
      const atApp = arrivals[tracker.response] ?? [];
      expected += tokens;
      measuredTokens += tracker.tokensReceived;
      bytes += tracker.meter.totals().read;
      for (let k = 0; k < tokens; k++) {
        const arrived = tracker.arrived[k]!;
        if (arrived > 0 && times[k] !== undefined) {
          histogram.recordMs(Math.max(0, arrived - times[k]!));
          if (k === 0) first.recordMs(Math.max(0, arrived - times[k]!));
        }
        const app = atApp[k];
        if (app !== undefined && times[k] !== undefined) toApp.recordMs(Math.max(0, app - times[k]!));
        if (app !== undefined && arrived > 0) toUser.recordMs(Math.max(0, arrived - app));
        if (k === 0 && app !== undefined && times[k] !== undefined)
          firstToApp.recordMs(Math.max(0, app - times[k]!));
        if (k === 0 && app !== undefined && arrived > 0) firstToUser.recordMs(Math.max(0, arrived - app));
      }
    }
    const seconds = (after.t - before.t) / 1000;
    result.latency = histogram.summary();
    result.modelToApp = toApp.summary();
    result.appToUser = toUser.summary();
    result.firstToken = first.summary();
    result.firstTokenHops = { modelToApp: firstToApp.summary(), appToUser: firstToUser.summary() };
    result.delivered = delivered;
    result.missing = expected - measuredTokens;
    result.cpuPer1000 = ((after.own - before.own) / delivered) * 1000;
    result.relayCpuPer1000 = ((after.relay - before.relay) / delivered) * 1000;
    /** What a /proc counter grew by during the window, per `per` tokens (undefined: not read). */
    const grew = (a: number | undefined, b: number | undefined, per = 1) =>
      a === undefined || b === undefined ? undefined : ((b - a) / delivered) * per;
    result.coreWaitPer1000 = {
      app: grew(before.waitApp, after.waitApp, 1000),
      relay: grew(before.waitRelay, after.waitRelay, 1000),
    };
    result.ioCallsPerToken = {
      app: grew(before.callsApp, after.callsApp),
      relay: grew(before.callsRelay, after.callsRelay),
    };
    result.bytesPerToken = bytes / measuredTokens;
    result.gap = d.users.resume
      ? catchUps(gapSamples, emits)
      : 'cannot resume: the answer is lost (regenerate)';
    result.reload = d.users.reload
      ? catchUps(reloadSamples, emits)
      : 'cannot resume: the answer is lost (regenerate)';
    result.loadCpu = (after.load - before.load) / seconds;
    result.otherCpu =
      before.machine === undefined || after.machine === undefined
        ? null
        : Math.max(
            0,
            (after.machine - before.machine) / seconds -
              (after.own - before.own) / seconds -
              (after.load - before.load) / seconds -
              (after.stub - before.stub) / seconds,
          );
    result.stealCpu =
      before.steal === undefined || after.steal === undefined ? null : (after.steal - before.steal) / seconds;
    for (const tab of reloadTabs) tab.close();
    process.stderr.write(
      `  p50 ${result.latency.p50.toFixed(1)} p99 ${result.latency.p99.toFixed(1)} ms; first token p50 ${result.firstToken.p50.toFixed(1)} (model → app ${result.firstTokenHops.modelToApp.p50.toFixed(1)}, app → user ${result.firstTokenHops.appToUser.p50.toFixed(1)}) (model → app p99 ${result.modelToApp.p99.toFixed(1)}, app → user p50 ${result.appToUser.p50.toFixed(1)} p99 ${result.appToUser.p99.toFixed(1)}; loop delay p99 app ${result.loopP99.app.toFixed(1)} relay ${result.loopP99.relay?.toFixed(1) ?? '–'} users ${result.loopP99.users.toFixed(1)}; GC pauses app ${result.gc.app.totalMs.toFixed(0)} ms (longest ${result.gc.app.maxMs.toFixed(1)})${result.gc.relay ? `, relay ${result.gc.relay.totalMs.toFixed(0)} ms (longest ${result.gc.relay.maxMs.toFixed(1)})` : ''}); waited for a core ${ms1k(result.coreWaitPer1000.app)} / ${ms1k(result.coreWaitPer1000.relay)} ms per 1k tokens (app / relay), ${callsText(result.ioCallsPerToken)} system calls per token (app / relay), ${result.missing} missing, ${result.cpuPer1000.toFixed(3)} CPU-s/1k tokens${result.stealCpu ? `; the host took ${result.stealCpu.toFixed(2)} cores (CPU steal)` : ''}\n`,
    );
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    process.stderr.write(`  [${system}] failed: ${result.error}\n`);
  } finally {
    for (const tab of tabs) tab?.close();
    await d?.stop();
    await stub.stop();
  }
  return result;
}

/**
 * Every system at every load, `rounds` times: round 2 runs the systems in the opposite order, so a
 * disturbance that comes and goes does not always fall on the same system.
 */
export async function runAiStreaming(options: AiOptions): Promise<AiResult[]> {
  const results: AiResult[] = [];
  const rounds = options.rounds ?? 1;
  for (const n of options.responses) {
    for (let round = 1; round <= rounds; round++) {
      const order = round % 2 === 1 ? options.systems : [...options.systems].reverse();
      if (rounds > 1) process.stderr.write(`ai: ${n} responses, round ${round} of ${rounds}\n`);
      for (const system of order) results.push(await runOne(system, n, round, options));
    }
  }
  return results;
}
