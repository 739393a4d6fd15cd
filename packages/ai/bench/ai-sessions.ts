/**
 * AI sessions benchmark (not a test: it measures and reports, it asserts nothing about timings).
 *
 *   ┌──────────────┐  ai.part appends   ┌────────────────┐  fan-out   ┌──────────────────────────┐
 *   │ agents child │ ─────────────────▶ │ server child   │ ─────────▶ │ this process: N users    │
 *   │ N runs,      │  (coalesced 40 ms) │ (CPU measured) │            │ fold + run chunk stream  │
 *   │ 30 tok/s     │                    └────────────────┘            │ (what useChat consumes)  │
 *   └──────────────┘                                                  └──────────────────────────┘
 *
 * 1. Load: N concurrent sessions, one run each, streaming `tps` tokens/s for `seconds`. Each token
 *    carries its emission time; each user measures model-token → client latency at the chunk stream a
 *    ChatTransport hands to the AI SDK. Server CPU comes from /proc for the server process alone.
 * 2. Catch-up: K of the users connect through a FaultProxy; mid-run their connections are cut and
 *    refused for `gap` seconds, then allowed again: the time from reconnecting to caught up (the
 *    channel's `attached` after the rolled-up catch-up), and the bytes received for it relative to
 *    the response text (target ≤ 1.5×: compact catch-up, ARCHITECTURE.md §4.3).
 *
 *   node packages/ai/bench/ai-sessions.ts [--runs 500] [--tps 30] [--seconds 20] [--gap 10]
 *        [--catchup 5] [--agent-connections 25] [--coalesce 40] [--store memory|sqlite]
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Mooring } from '@mooring/client';
import { FaultProxy } from '@mooring/testkit';
import { ConversationTree, EVENT_INPUT, runChunkStream, SessionFeed } from '../src/index.ts';
import { BENCH_KEY, nowMicros } from './bench-key.ts';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '500' },
    tps: { type: 'string', default: '30' },
    seconds: { type: 'string', default: '20' },
    gap: { type: 'string', default: '10' },
    catchup: { type: 'string', default: '5' },
    'agent-connections': { type: 'string', default: '25' },
    coalesce: { type: 'string', default: '40' },
    store: { type: 'string', default: 'memory' },
  },
});
const RUNS = Number(args.runs);
const TPS = Number(args.tps);
const SECONDS = Number(args.seconds);
const GAP = Number(args.gap);
const CATCHUP = Math.min(Number(args.catchup), RUNS);
const AGENT_CONNECTIONS = Number(args['agent-connections']);
const COALESCE = Number(args.coalesce);
const PREFIX = `session:bench-${Date.now().toString(36)}-`;
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Busy CPU seconds of the whole machine (all processes, all cores). */
function machineSeconds(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line
    .slice(4)
    .trim()
    .split(/\s+/)
    .map(Number);
  return (user + nice + system + irq + softirq + steal) / 100;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

// ------------------------------------------------------------------------------------ processes

const server = fork(here('./server-child.ts'), [args.store ?? 'memory', tmpdir()], {
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
const children = [server];
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
const port = await new Promise<number>((resolve, reject) => {
  server.once('message', (m: { type: string; port: number }) =>
    m.type === 'ready' ? resolve(m.port) : reject(m),
  );
  server.once('exit', (code) => reject(new Error(`server exited ${code}`)));
});
const url = `http://127.0.0.1:${port}`;
log(`server pid ${server.pid} on ${url}`);

const agents = fork(
  here('./agents-child.ts'),
  [
    JSON.stringify({
      url,
      prefix: PREFIX,
      sessions: RUNS,
      connections: AGENT_CONNECTIONS,
      tps: TPS,
      seconds: SECONDS,
      coalesceMs: COALESCE,
    }),
  ],
  { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
);
children.push(agents);
let agentErrors = 0;
await new Promise<void>((resolve, reject) => {
  agents.on('message', (m: { type: string; error?: string }) => {
    if (m.type === 'ready') resolve();
    else if (m.type === 'error' && agentErrors++ < 5) log(`agent error: ${m.error}`);
  });
  agents.once('exit', (code) => reject(new Error(`agents exited ${code}`)));
});
log(`${RUNS} agent sessions ready on ${AGENT_CONNECTIONS} connections`);

// ---------------------------------------------------------------------------------------- users

interface User {
  index: number;
  client: Mooring;
  tree: ConversationTree;
  proxy: FaultProxy | undefined;
  tokens: number;
  text: string;
  done: Promise<void>;
}

const latencies: number[] = [];
let measuring = false;

async function user(index: number, proxy: FaultProxy | undefined): Promise<User> {
  const client = new Mooring({
    url: proxy ? proxy.url('/') : url,
    key: BENCH_KEY,
    clientId: `user-${index}`,
    environment: null,
  });
  const channel = client.channels.get(`${PREFIX}${index}`, { start: true });
  const tree = new ConversationTree();
  const source = new SessionFeed(channel, tree); // the fold + live tracking a UserSession uses
  await source.start();
  const u: User = { index, client, tree, proxy, tokens: 0, text: '', done: Promise.resolve() };
  u.done = new Promise<void>((resolve) => {
    const off = source.watch((c) => {
      if (c.kind !== 'run') return;
      off();
      const reader = runChunkStream(source, c.node.id).getReader();
      void (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return resolve();
          if (r.value.type !== 'text-delta') continue;
          const at = nowMicros();
          u.text += r.value.delta;
          for (const token of r.value.delta.split(' ')) {
            const sent = Number(token.slice(token.indexOf(':') + 1));
            if (!token || !Number.isFinite(sent)) continue;
            u.tokens++;
            if (measuring && !u.proxy) latencies.push((at - sent) / 1000);
          }
        }
      })();
    });
  });
  const id = `q-${index}`;
  await channel.publish(
    EVENT_INPUT,
    { message: { id, role: 'user', parts: [{ type: 'text', text: 'stream please' }] } },
    { id: `input:${id}`, headers: { input: id } },
  );
  return u;
}

const proxies: FaultProxy[] = [];
for (let i = 0; i < CATCHUP; i++) proxies.push(await FaultProxy.start({ port }));
const users: User[] = [];
for (let i = 0; i < RUNS; i++) users.push(await user(i, proxies[i]));
log(`${RUNS} users subscribed and sent their input`);

// ------------------------------------------------------------------------------------- measure

const WARMUP = 2;
await new Promise((r) => setTimeout(r, WARMUP * 1000));
measuring = true;
const cpuStart = {
  server: cpuSeconds(server.pid!),
  agents: cpuSeconds(agents.pid!),
  users: cpuSeconds(process.pid),
  machine: machineSeconds(),
};
const wallStart = performance.now();

// Catch-up: cut the proxied users off for GAP seconds, mid-run.
const catchups: Array<{
  reconnectMs: number;
  ms: number;
  bytes: number;
  textBytes: number;
  missedBytes: number;
  resumed: boolean;
}> = [];
const catchupDone = (async () => {
  if (proxies.length === 0) return;
  const cut = users.filter((u) => u.proxy);
  const before = cut.map((u) => Buffer.byteLength(u.text));
  for (const p of proxies) {
    p.refuse();
    await p.reset();
  }
  await new Promise((r) => setTimeout(r, GAP * 1000));
  await Promise.all(
    cut.map(async (u, k) => {
      const proxy = u.proxy!;
      const channel = u.client.channels.get(`${PREFIX}${u.index}`);
      const bytes0 = proxy.stats.bytesToClient;
      const t0 = performance.now();
      let connectedAt = t0;
      const offConnected = u.client.connection.on('connected', () => {
        connectedAt = performance.now();
      });
      const attached = new Promise<boolean>((resolve) => {
        const off = channel.on('attached', (a) => {
          off();
          resolve(a.resumed);
        });
      });
      proxy.pass();
      u.client.connection.connect();
      const resumed = await attached;
      offConnected();
      const ms = performance.now() - connectedAt;
      const reconnectMs = connectedAt - t0;
      const bytes = proxy.stats.bytesToClient - bytes0;
      const runId = u.tree.runs[0]?.id ?? '';
      const full = u.tree.parts(runId)[0]?.text ?? '';
      catchups.push({
        reconnectMs,
        ms,
        bytes,
        textBytes: Buffer.byteLength(full),
        missedBytes: Buffer.byteLength(full) - (before[k] ?? 0),
        resumed,
      });
    }),
  );
})();

const measureFor = Math.max(1, SECONDS - WARMUP - 2);
await new Promise((r) => setTimeout(r, measureFor * 1000));
const wall = (performance.now() - wallStart) / 1000;
const cpuEnd = {
  server: cpuSeconds(server.pid!),
  agents: cpuSeconds(agents.pid!),
  users: cpuSeconds(process.pid),
  machine: machineSeconds(),
};
measuring = false;
await catchupDone;
await Promise.race([Promise.all(users.map((u) => u.done)), new Promise((r) => setTimeout(r, 30_000))]);

// --------------------------------------------------------------------------------------- report

const expected = TPS * SECONDS;
const complete = users.filter((u) => u.tokens === expected).length;
const sorted = latencies.sort((a, b) => a - b);
const serverCores = (cpuEnd.server - cpuStart.server) / wall;
const result = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model ?? '?', node: process.version },
  config: {
    runs: RUNS,
    tps: TPS,
    seconds: SECONDS,
    coalesceMs: COALESCE,
    agentConnections: AGENT_CONNECTIONS,
    store: args.store,
  },
  tokensPerSecond: RUNS * TPS,
  latencyMs: {
    samples: sorted.length,
    mean: sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length),
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? Number.NaN,
  },
  cpuCores: {
    server: serverCores,
    agents: (cpuEnd.agents - cpuStart.agents) / wall,
    users: (cpuEnd.users - cpuStart.users) / wall,
    machine: (cpuEnd.machine - cpuStart.machine) / wall,
  },
  usersComplete: `${complete}/${RUNS}`,
  agentErrors,
  catchup: catchups,
};

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '—');
const out: string[] = [];
out.push(
  `## AI sessions: ${RUNS} concurrent runs × ${TPS} tokens/s (${RUNS * TPS} tokens/s), coalesce ${COALESCE} ms`,
);
out.push('');
out.push(
  `machine: ${result.machine.cpus} × ${result.machine.model}, node ${result.machine.node}; store: ${args.store}`,
);
out.push('');
out.push('| model token → client chunk stream | mean | p50 | p90 | p99 | max | samples |');
out.push('|---|---|---|---|---|---|---|');
out.push(
  `| latency (ms) | ${f(result.latencyMs.mean)} | ${f(result.latencyMs.p50)} | ${f(result.latencyMs.p90)} | ${f(result.latencyMs.p99)} | ${f(result.latencyMs.max)} | ${sorted.length} |`,
);
out.push('');
out.push(
  '| CPU (cores, measured window) | server | agents process | users process | whole machine (all processes) |',
);
out.push('|---|---|---|---|---|');
out.push(
  `| | ${f(serverCores, 2)} | ${f(result.cpuCores.agents, 2)} | ${f(result.cpuCores.users, 2)} | ${f(result.cpuCores.machine, 2)} of ${result.machine.cpus} |`,
);
out.push('');
out.push(
  `users that received every token exactly once: ${result.usersComplete}; agent errors: ${agentErrors}`,
);
if (catchups.length > 0) {
  out.push('');
  out.push(
    `| catch-up after a ${GAP} s disconnect mid-run | reconnect (ms) | catch-up: connected → attached (ms) | bytes received | response text (bytes) | missed text (bytes) | bytes / text |`,
  );
  out.push('|---|---|---|---|---|---|---|');
  catchups.forEach((c, i) => {
    out.push(
      `| user ${i} (resumed: ${c.resumed}) | ${f(c.reconnectMs)} | ${f(c.ms)} | ${c.bytes} | ${c.textBytes} | ${c.missedBytes} | ${f(c.bytes / c.textBytes, 2)}× |`,
    );
  });
}
process.stdout.write(`${out.join('\n')}\n\n`);
process.stdout.write(`${JSON.stringify(result)}\n`);

for (const u of users) u.client.close();
for (const p of proxies) await p.close();
agents.kill('SIGKILL');
server.send({ type: 'stop' });
await new Promise((r) => setTimeout(r, 500));
process.exit(0);
