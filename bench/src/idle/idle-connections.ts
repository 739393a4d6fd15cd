/**
 * Server memory per idle connection (issue 15): N WebSocket clients connect to K Mooring nodes
 * (memory store, each its own process, all on one port with reusePort: the kernel spreads the
 * connections), attach one channel each, then sit idle. Each node reports RSS and heap before and
 * after (after a forced GC). Goal: ≤ 10 KB per idle connection. Also the time to accept them all,
 * each node's CPU while they connect and at rest over `--rest` seconds (heartbeats and WebSocket
 * pings), the client processes' CPU and every other process's, and the load average.
 *
 *   node bench/src/idle/idle-connections.ts [--connections 10000] [--nodes 1] [--client-procs M] [--rest 20]
 *
 * The clients live in M processes (idle-clients.ts), each connecting from its own 127.0.0.x, because
 * one process holds at most ~19,000 sockets here (hard `ulimit -n` 20,000); for the same reason
 * 100,000 connections need ≥ 6 nodes. Each node uses the memory store: it measures a node's own
 * memory per connection (a real deployment of several nodes on one port shares the Redis store).
 * Bounded: the connect phase and the whole run have deadlines; the children die with this process.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
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
if (ready.failed > 0) {
  process.stderr.write(`idle: ${ready.failed} connections failed: ${ready.firstError}\n`);
  await stopAll();
  process.exit(1);
}
await sleep(2_000);
const after = await Promise.all(nodes.map((n) => n.memory()));

// At rest: heartbeats every 15 s (a frame and a WebSocket ping per connection), nothing else.
process.stderr.write(`  at rest for ${options.restSeconds} s...\n`);
const loadAtRest = load();
await Promise.all(nodes.map((n) => n.loopDelay())); // from here on
const rest0 = {
  at: performance.now(),
  nodes: nodeCpu(),
  clients: clients.cpuSeconds(),
  self: cpuSeconds(process.cpuUsage()),
  machine: machineBusySeconds(),
};
await sleep(options.restSeconds * 1000);
const restSeconds = (performance.now() - rest0.at) / 1000;
const restLoop = await Promise.all(nodes.map((n) => n.loopDelay()));
const restNodes = nodeCpu().map((c, k) => (c - (rest0.nodes[k] ?? 0)) / restSeconds);
const restClients = (clients.cpuSeconds() - rest0.clients) / restSeconds;
const restSelf = (cpuSeconds(process.cpuUsage()) - rest0.self) / restSeconds;
const machine = machineBusySeconds();
const restServers = restNodes.reduce((a, b) => a + b, 0);
const otherCpu =
  machine === undefined || rest0.machine === undefined
    ? Number.NaN
    : Math.max(0, (machine - rest0.machine) / restSeconds - restServers - restClients - restSelf);
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
console.log(lines.join('\n'));

const dir = fileURLToPath(new URL('../../results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(
  `${dir}idle-connections.json`,
  `${JSON.stringify({ at: new Date().toISOString(), options, acceptSeconds, restSeconds, restClients, otherCpu, loadAtRest, disconnects, nodes: rows, all }, null, 2)}\n`,
);
await stopAll();
clearTimeout(runDeadline);
process.exit(0);

async function stopAll(): Promise<void> {
  await clients?.stop();
  await Promise.all(nodes.map((n) => n.stop()));
}
