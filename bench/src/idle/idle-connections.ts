/**
 * Server memory per idle connection (issue 15): N WebSocket clients connect to K Mooring nodes
 * (memory store, each its own process, all on one port with reusePort: the kernel spreads the
 * connections), attach one channel each, then sit idle. Each node reports RSS and heap before and
 * after (after a forced GC). Goal: ≤ 10 KB per idle connection. Also the time to accept them all,
 * each node's CPU while they connect and at rest over `--rest` seconds (heartbeats and WebSocket
 * pings), the client processes' CPU and every other process's, and the load average.
 *
 *   node bench/src/idle/idle-connections.ts [--connections 10000] [--nodes 1] [--client-procs M] [--rest 20]
 *     [--channels-per-connection K [--shared-channels N]] [--heap-snapshots DIR]
 *
 * With K channels per connection (above 1), the same connections then attach their other K − 1
 * channels, and the run measures again: memory per attachment beyond the first (the difference over
 * the attachments added), the time and CPU to attach them, and the CPU at rest with K each.
 *
 * The clients live in M processes (idle-clients.ts), each connecting from its own 127.0.0.x, because
 * one process holds at most ~19,000 sockets here (hard `ulimit -n` 20,000); for the same reason
 * 100,000 connections need ≥ 6 nodes. Each node uses the memory store: it measures a node's own
 * memory per connection (a real deployment of several nodes on one port shares the Redis store).
 * Bounded: the connect phase and the whole run have deadlines; the children die with this process.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuSeconds, machineBusySeconds, processCpuSeconds } from '../cpu-usage.ts';
import { type IdleClients, startIdleClients } from './idle-clients.ts';
import { IDLE_USAGE, type IdleOptions, parseIdleOptions } from './idle-options.ts';
import {
  type LoopDelay,
  type MemoryReportingServer,
  type ServerMemory,
  startMemoryReportingServer,
} from './memory-server.ts';

let options: IdleOptions;
try {
  const parsed = parseIdleOptions(process.argv.slice(2));
  if (parsed === 'help') {
    process.stdout.write(`${IDLE_USAGE}\n`);
    process.exit(0);
  }
  options = parsed;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${IDLE_USAGE}\n`);
  process.exit(2);
}

const HEARTBEAT_SECONDS = 15;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : '–';

const runDeadline = setTimeout(() => {
  process.stderr.write(`idle: the whole run was not done in ${options.deadlineSeconds} s; stopping\n`);
  process.exit(1);
}, options.deadlineSeconds * 1000);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));

const nodes: MemoryReportingServer[] = [];
let clients: IdleClients | undefined;
const limits = { maxConnectionsPerKey: options.connections + 100 };
const flags = (process.env.IDLE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const reusePort = options.nodes > 1;
const first = await startMemoryReportingServer(flags, limits, { port: 0, reusePort });
nodes.push(first);
for (let k = 1; k < options.nodes; k++)
  nodes.push(await startMemoryReportingServer(flags, limits, { port: first.port, reusePort }));
const nodeCpu = () => nodes.map((n) => processCpuSeconds(n.pid) ?? Number.NaN);
await sleep(300);
const before = await Promise.all(nodes.map((n) => n.memory()));

process.stderr.write(
  `idle: ${options.connections} connections → ${options.nodes} node(s) on 127.0.0.1:${first.port}${reusePort ? ' (reusePort)' : ''}, ${options.clientProcs} client process(es), ${options.concurrency} at a time; load ${load()}\n`,
);
const connectCpu0 = nodeCpu();
const started = performance.now();
clients = startIdleClients({
  port: first.port,
  connections: options.connections,
  processes: options.clientProcs,
  concurrency: options.concurrency,
  channelsPerConnection: options.channelsPerConnection,
  sharedChannels: options.sharedChannels,
});
const progress = setInterval(() => {
  const seconds = (performance.now() - started) / 1000;
  const connected = clients?.connected ?? 0;
  process.stderr.write(
    `  ~${connected}/${options.connections} connected after ${seconds.toFixed(0)} s (${fmt(connected / seconds)}/s), load ${load()}\n`,
  );
}, 5_000);
// A second baseline once a quarter are connected: RSS grown from there to the end is what each
// further connection costs, without the fixed start-up growth (young generation, compiled code)
// that the from-idle figure spreads over few connections when a node holds few.
let quarter: Promise<ServerMemory[]> | undefined;
const checkpoint = setInterval(() => {
  if ((clients?.connected ?? 0) < options.connections / 4) return;
  clearInterval(checkpoint);
  quarter = Promise.all(nodes.map((n) => n.memory()));
}, 1_000);
let connectTimer: NodeJS.Timeout | undefined;
const ready = await Promise.race([
  clients.ready,
  new Promise<never>((_, reject) => {
    connectTimer = setTimeout(
      () => reject(new Error(`connect phase not done in ${options.connectTimeoutSeconds} s`)),
      options.connectTimeoutSeconds * 1000,
    );
  }),
]).catch(async (err: unknown) => {
  clearInterval(progress);
  clearInterval(checkpoint);
  process.stderr.write(`idle: ${(err as Error).message}\n`);
  await stopAll();
  process.exit(1);
});
clearTimeout(connectTimer);
clearInterval(progress);
clearInterval(checkpoint);
const middle = await quarter;
const acceptSeconds = (performance.now() - started) / 1000;
const connectCpu = nodeCpu().map((c, k) => (c - (connectCpu0[k] ?? 0)) / acceptSeconds);
process.stderr.write(
  `  ${ready.connected} connected (${ready.failed} failed, ${ready.retries} tries again) in ${acceptSeconds.toFixed(1)} s; settling...\n`,
);
await exitIfFailed(ready.failed, 'connections', ready.firstError);
await sleep(2_000);
const after = await Promise.all(nodes.map((n) => n.memory()));

// At rest: heartbeats every 15 s (a frame and a WebSocket ping per connection), nothing else.
const rest = await measureRest(clients);
const { restSeconds, restLoop, restNodes, restServers, restClients, otherCpu, loadAtRest } = rest;

// Channels per connection above one: the same connections attach the rest of their channels, and
// the memory grown from just before to just after, divided by the attachments added, is what each
// further attached channel costs (the connections' own cost is in both and cancels out).
let channels: ChannelsMeasured | undefined;
if (options.channelsPerConnection > 1) channels = await attachTheRest(clients);
else if (options.heapSnapshots !== undefined) await snapshot('k1');
const disconnects = await clients.disconnects();
const stillHeld = await Promise.all(nodes.map((n) => n.memory(false)));

interface NodeRow {
  node: string;
  connections: number;
  rssPerConnectionKB: number;
  heapPerConnectionKB: number;
  externalPerConnectionKB: number;
  /** RSS and heap per connection added after the first quarter (none if the run was too short). */
  marginalRssKB: number;
  marginalHeapKB: number;
  rssBeforeMB: number;
  rssAfterMB: number;
  /** V8's young generation once all were connected, MB (pages it keeps, empty or not). */
  youngAfterMB: number;
  connectCpu: number;
  restCpu: number;
  /** How late the event loop ran at rest (heartbeat rounds), max and p99 ms. */
  restLoop: LoopDelay;
}
const row = (
  node: string,
  b: ServerMemory,
  a: ServerMemory,
  m: ServerMemory | undefined,
  connect: number,
  rest: number,
  restLoop: LoopDelay,
): NodeRow => {
  const per = (x: number, y: number) => (y - x) / a.connections / 1024;
  const added = (key: 'rss' | 'heapUsed') =>
    m === undefined ? Number.NaN : (a[key] - m[key]) / (a.connections - m.connections) / 1024;
  return {
    node,
    connections: a.connections,
    rssPerConnectionKB: per(b.rss, a.rss),
    heapPerConnectionKB: per(b.heapUsed, a.heapUsed),
    externalPerConnectionKB: per(b.external, a.external),
    marginalRssKB: added('rss'),
    marginalHeapKB: added('heapUsed'),
    rssBeforeMB: b.rss / 2 ** 20,
    rssAfterMB: a.rss / 2 ** 20,
    youngAfterMB: a.youngGeneration / 2 ** 20,
    connectCpu: connect,
    restCpu: rest,
    restLoop,
  };
};
const sum = (key: keyof ServerMemory, of: ServerMemory[]) => of.reduce((s, m) => s + m[key], 0);
const total = (of: ServerMemory[]): ServerMemory => ({
  rss: sum('rss', of),
  heapUsed: sum('heapUsed', of),
  external: sum('external', of),
  youngGeneration: sum('youngGeneration', of),
  connections: sum('connections', of),
});
const rows = nodes.map((_, k) =>
  row(
    String(k + 1),
    before[k]!,
    after[k]!,
    middle?.[k],
    connectCpu[k] ?? Number.NaN,
    restNodes[k] ?? Number.NaN,
    restLoop[k] ?? { p50: Number.NaN, p99: Number.NaN, max: Number.NaN },
  ),
);
const all = row(
  'all',
  total(before),
  total(after),
  middle === undefined ? undefined : total(middle),
  connectCpu.reduce((a, b) => a + b, 0),
  restServers,
  {
    p50: Math.max(...restLoop.map((l) => l.p50)),
    p99: Math.max(...restLoop.map((l) => l.p99)),
    max: Math.max(...restLoop.map((l) => l.max)),
  },
);
const perHeartbeatMicros = ((restServers * HEARTBEAT_SECONDS) / all.connections) * 1e6;

const lines = [
  `### Idle connections: ${fmt(options.connections)} over ${options.nodes} node(s)${reusePort ? ' on one port (reusePort)' : ''}, clients in ${options.clientProcs} process(es)`,
  '',
  '| node | connections | RSS / conn (KB) | JS heap / conn (KB) | external / conn (KB) | after the first quarter: RSS / heap per conn (KB) | RSS before → after (MB) | of which young generation (MB) | CPU while connecting (cores) | CPU at rest (cores) | loop delay at rest p99 / max ms |',
  '|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|',
  ...[...rows, ...(rows.length > 1 ? [all] : [])].map(
    (r) =>
      `| ${r.node === 'all' ? '**all**' : r.node} | ${fmt(r.connections)} | ${fmt(r.rssPerConnectionKB, 2)} | ${fmt(r.heapPerConnectionKB, 2)} | ${fmt(r.externalPerConnectionKB, 2)} | ${fmt(r.marginalRssKB, 2)} / ${fmt(r.marginalHeapKB, 2)} | ${fmt(r.rssBeforeMB)} → ${fmt(r.rssAfterMB)} | ${fmt(r.youngAfterMB)} | ${fmt(r.connectCpu, 2)} | ${fmt(r.restCpu, 3)} | ${fmt(r.restLoop.p99, 1)} / ${fmt(r.restLoop.max, 1)} |`,
  ),
  '',
  `Accepted and attached all ${fmt(all.connections)} in ${fmt(acceptSeconds, 1)} s (${fmt(all.connections / acceptSeconds)}/s, ${options.concurrency} opening at a time). ` +
    `At rest over ${fmt(restSeconds, 1)} s: servers ${fmt(restServers, 3)} cores (${fmt(perHeartbeatMicros, 1)} µs per connection per ${HEARTBEAT_SECONDS} s heartbeat round), ` +
    `clients ${fmt(restClients, 3)}, other processes ${fmt(otherCpu, 2)}; load average ${loadAtRest} → ${load()}. ` +
    `Closed while at rest: ${fmt(disconnects)}; still open: ${fmt(sum('connections', stillHeld))}.`,
];
if (channels !== undefined) lines.push('', ...channelLines(channels));
console.log(lines.join('\n'));

const dir = fileURLToPath(new URL('../../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(
  `${dir}idle-connections.json`,
  `${JSON.stringify({ at: new Date().toISOString(), options, acceptSeconds, restSeconds, restClients, otherCpu, loadAtRest, disconnects, nodes: rows, all, channels }, null, 2)}\n`,
);
await stopAll();
clearTimeout(runDeadline);
process.exit(0);

/** Ends the run (every child stopped, exit code 1) when any of `what` failed. */
async function exitIfFailed(failed: number, what: string, firstError: unknown): Promise<void> {
  if (failed === 0) return;
  process.stderr.write(`idle: ${failed} ${what} failed: ${firstError}\n`);
  await stopAll();
  process.exit(1);
}

async function stopAll(): Promise<void> {
  await clients?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
}

interface Rest {
  restSeconds: number;
  /** How late each node's event loop ran at rest, ms. */
  restLoop: LoopDelay[];
  /** Each node's CPU at rest, and all of theirs, cores. */
  restNodes: number[];
  restServers: number;
  restClients: number;
  otherCpu: number;
  loadAtRest: string;
}

/** CPU and event-loop delay over `--rest` seconds in which nothing happens but heartbeats. */
async function measureRest(held: IdleClients): Promise<Rest> {
  process.stderr.write(`  at rest for ${options.restSeconds} s...\n`);
  const loadAtRest = load();
  await Promise.all(nodes.map((n) => n.loopDelay())); // from here on
  const rest0 = {
    at: performance.now(),
    nodes: nodeCpu(),
    clients: held.cpuSeconds(),
    self: cpuSeconds(process.cpuUsage()),
    machine: machineBusySeconds(),
  };
  await sleep(options.restSeconds * 1000);
  const restSeconds = (performance.now() - rest0.at) / 1000;
  const restLoop = await Promise.all(nodes.map((n) => n.loopDelay()));
  const restNodes = nodeCpu().map((c, k) => (c - (rest0.nodes[k] ?? 0)) / restSeconds);
  const restClients = (held.cpuSeconds() - rest0.clients) / restSeconds;
  const restSelf = (cpuSeconds(process.cpuUsage()) - rest0.self) / restSeconds;
  const machine = machineBusySeconds();
  const restServers = restNodes.reduce((a, b) => a + b, 0);
  const otherCpu =
    machine === undefined || rest0.machine === undefined
      ? Number.NaN
      : Math.max(0, (machine - rest0.machine) / restSeconds - restServers - restClients - restSelf);
  return { restSeconds, restLoop, restNodes, restServers, restClients, otherCpu, loadAtRest };
}

interface ChannelsMeasured {
  /** Attachments added over all connections (connections × (K − 1)). */
  added: number;
  attachSeconds: number;
  /** Each node's CPU while the connections attached the rest, cores. */
  attachCpu: number[];
  /** Each node's memory with one channel per connection (just before attaching the rest), and with K. */
  one: ServerMemory[];
  all: ServerMemory[];
  rest: Rest;
}

/** Has every connection attach its other K − 1 channels, and measures memory, time and CPU again. */
async function attachTheRest(held: IdleClients): Promise<ChannelsMeasured> {
  const more = options.channelsPerConnection - 1;
  const one = await Promise.all(nodes.map((n) => n.memory()));
  if (options.heapSnapshots !== undefined) await snapshot('k1');
  process.stderr.write(
    `  attaching ${fmt(options.connections * more)} more channels (${more} per connection${options.sharedChannels === undefined ? '' : `, among ${fmt(options.sharedChannels)} shared`}); load ${load()}\n`,
  );
  const cpu0 = nodeCpu();
  const at = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    held.attachMore(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`attach phase not done in ${options.connectTimeoutSeconds} s`)),
        options.connectTimeoutSeconds * 1000,
      );
    }),
  ]).catch(async (err: unknown) => {
    process.stderr.write(`idle: ${(err as Error).message}\n`);
    await stopAll();
    process.exit(1);
  });
  clearTimeout(timer);
  const attachSeconds = (performance.now() - at) / 1000;
  const attachCpu = nodeCpu().map((c, k) => (c - (cpu0[k] ?? 0)) / attachSeconds);
  process.stderr.write(
    `  ${result.attached} attached (${result.failed} failed) in ${attachSeconds.toFixed(1)} s; settling...\n`,
  );
  await exitIfFailed(result.failed, 'attaches', result.firstError);
  await sleep(2_000);
  const all = await Promise.all(nodes.map((n) => n.memory()));
  if (options.heapSnapshots !== undefined) await snapshot(`k${options.channelsPerConnection}`);
  return { added: result.attached, attachSeconds, attachCpu, one, all, rest: await measureRest(held) };
}

/** A heap snapshot of node 1 into `--heap-snapshots` (taken after the memory it would disturb). */
async function snapshot(label: string): Promise<void> {
  const directory = options.heapSnapshots!;
  mkdirSync(directory, { recursive: true });
  const path = join(directory, `idle-${label}-node1.heapsnapshot`);
  process.stderr.write(`  heap snapshot of node 1: ${path}\n`);
  await nodes[0]!.heapSnapshot(path);
}

/** The table of what each attached channel beyond the first costs, per node and in all. */
function channelLines(m: ChannelsMeasured): string[] {
  const K = options.channelsPerConnection;
  const perNode = nodes.map((_, k) => ({
    node: String(k + 1),
    one: m.one[k]!,
    all: m.all[k]!,
    attachCpu: m.attachCpu[k] ?? Number.NaN,
    rest1: rest.restNodes[k] ?? Number.NaN,
    restK: m.rest.restNodes[k] ?? Number.NaN,
    loop1: rest.restLoop[k],
    loopK: m.rest.restLoop[k],
  }));
  const rows = [
    ...perNode,
    ...(nodes.length > 1
      ? [
          {
            node: '**all**',
            one: total(m.one),
            all: total(m.all),
            attachCpu: m.attachCpu.reduce((a, b) => a + b, 0),
            rest1: rest.restServers,
            restK: m.rest.restServers,
            loop1: undefined,
            loopK: undefined,
          },
        ]
      : []),
  ];
  const shared =
    options.sharedChannels === undefined
      ? 'each its own'
      : `K of ${fmt(options.sharedChannels)} shared, ~${fmt((options.connections * K) / options.sharedChannels)} subscribers each`;
  const mb = (bytes: number) => fmt(bytes / 2 ** 20);
  const perRound = (cores: number, connections: number) =>
    fmt(((cores * HEARTBEAT_SECONDS) / connections) * 1e6, 1);
  const loop = (l: LoopDelay | undefined) => (l === undefined ? '–' : `${fmt(l.p99, 1)} / ${fmt(l.max, 1)}`);
  return [
    `### Attached channels: 1 → ${K} per connection (${shared}), ${fmt(options.connections)} connections`,
    '',
    '| node | connections | attachments added | JS heap / attachment (B) | RSS / attachment (B) | external / attachment (B) | JS heap 1 → K (MB) | RSS 1 → K (MB) | attached in (s) | attaches/s | CPU while attaching (cores) | CPU at rest 1 → K (cores) | per conn per heartbeat round 1 → K (µs) | loop delay at rest p99 / max ms, 1 → K |',
    '|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|---|---|',
    ...rows.map((r) => {
      const added = r.all.connections * (K - 1);
      const per = (key: 'heapUsed' | 'rss' | 'external') => fmt((r.all[key] - r.one[key]) / added);
      return `| ${r.node} | ${fmt(r.all.connections)} | ${fmt(added)} | ${per('heapUsed')} | ${per('rss')} | ${per('external')} | ${mb(r.one.heapUsed)} → ${mb(r.all.heapUsed)} | ${mb(r.one.rss)} → ${mb(r.all.rss)} | ${fmt(m.attachSeconds, 1)} | ${fmt(m.added / m.attachSeconds)} | ${fmt(r.attachCpu, 2)} | ${fmt(r.rest1, 3)} → ${fmt(r.restK, 3)} | ${perRound(r.rest1, r.all.connections)} → ${perRound(r.restK, r.all.connections)} | ${loop(r.loop1)} → ${loop(r.loopK)} |`;
    }),
    '',
    `Attached ${fmt(m.added)} more in ${fmt(m.attachSeconds, 1)} s (${fmt(m.added / m.attachSeconds)}/s, ${options.concurrency} connections attaching at a time, each its ${K - 1} at once). ` +
      `At rest with ${K} each: clients ${fmt(m.rest.restClients, 3)} cores, other processes ${fmt(m.rest.otherCpu, 2)}; load average ${m.rest.loadAtRest} → ${load()}.` +
      (options.heapSnapshots === undefined
        ? ''
        : ' Heap snapshots were taken between the readings: the RSS figures include them.'),
  ];
}
