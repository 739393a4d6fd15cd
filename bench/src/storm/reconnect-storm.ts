/**
 * A load balancer drops every connection at once (`npm run bench:storm -- [--clients N] [--channels C]
 * [--rate R] [--store memory|sqlite|redis] [--seconds S] [--profile DIR]`): N `@mooring/client` clients (a token
 * each, its own clientId), each attached to one of C channels, reach a Mooring server (its own
 * process) through a fault proxy; a publisher (API key, straight to the server) publishes R messages
 * a second to every channel. After a warm-up the proxy resets every connection (TCP RST both ways),
 * and every client reconnects, recovers its connection and re-attaches by itself.
 *
 * Reported: how long until every client was attached again (per client, from the reset to its
 * channel's `attached`: p50 / p99 / max), the handshakes the server refused meanwhile, the server's
 * CPU and RSS, and what the clients received: every message of their channel from their first, in
 * order, each once (any gap, duplicate or `continuityLost` is printed and fails the run).
 * `--profile DIR`: the server's `--cpu-prof` into DIR (its whole life: the first connects too).
 * Bounded: each phase has a deadline; everything listens on 127.0.0.1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Mooring } from '@mooring/client';
import { createToken } from '@mooring/server';
import { FaultProxy, type RedisServer, startRedis, waitFor } from '@mooring/testkit';
import { processCpuSeconds } from '../cpu-usage.ts';
import { startMemoryReportingServer } from '../idle/memory-server.ts';
import { percentile } from '../stats.ts';

const { values } = parseArgs({
  options: {
    clients: { type: 'string' },
    channels: { type: 'string' },
    rate: { type: 'string' },
    store: { type: 'string' },
    seconds: { type: 'string' },
    profile: { type: 'string' },
  },
});
const N = Number(values.clients ?? 2_000);
const C = Number(values.channels ?? 20);
const RATE = Number(values.rate ?? 10);
const SECONDS = Number(values.seconds ?? 3);
const STORE = values.store ?? 'memory';
if (STORE !== 'memory' && STORE !== 'sqlite' && STORE !== 'redis')
  throw new Error(`--store: memory, sqlite or redis, not ${STORE}`);
const KEY = 'bench:secret';
const log = (text: string) => process.stderr.write(`${text}\n`);

/** The server's connection counters (`/metrics`): opened by resumed, closed by reason. */
async function serverCounts(): Promise<Map<string, number>> {
  const text = await (await fetch(`${serverUrl}/metrics?key=${KEY}`)).text();
  const counts = new Map<string, number>();
  for (const m of text.matchAll(/^mooring_connections_(opened|closed)_total\{([^}]*)\} (\d+)/gm)) {
    const name = `${m[1]}{${m[2]!.replace(/transport="[^"]*",?/, '')}}`;
    counts.set(name, (counts.get(name) ?? 0) + Number(m[3]));
  }
  return counts;
}

interface Watched {
  client: Mooring;
  channel: number;
  /** The last message number received, per the publisher's count on the channel. */
  last: number;
  received: number;
  problems: string[];
  /** ms after the reset when the channel was attached again. */
  back: number | undefined;
}

let redis: RedisServer | undefined;
let dir: string | undefined;
if (STORE === 'redis') redis = await startRedis({ appendonly: 'everysec' });
if (STORE === 'sqlite') dir = await mkdtemp(join(tmpdir(), 'mooring-storm-'));
const server = await startMemoryReportingServer(
  values.profile ? ['--cpu-prof', `--cpu-prof-dir=${values.profile}`] : [],
  {},
  redis ? { redisUrl: redis.url } : dir ? { sqlitePath: join(dir, 'storm.db') } : {},
);
const serverUrl = `http://127.0.0.1:${server.port}`;
const proxy = await FaultProxy.start({ port: server.port });
const watched: Watched[] = [];
const publisher = new Mooring({ url: serverUrl, key: KEY, clientId: 'publisher', environment: null });
let resetAt = Number.POSITIVE_INFINITY;
let refused = 0;
/** After the reset: connection attempts the clients made, and why their connections changed state. */
let attempts = 0;
const reasons = new Map<string, number>();
const counts = new Array<number>(C).fill(0);
let publishing: NodeJS.Timeout | undefined;
let sampler: NodeJS.Timeout | undefined;
try {
  log(`${N} clients on ${C} channels (${STORE} store), ${RATE} messages/s per channel`);
  const started = performance.now();
  for (let i = 0; i < N; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, N - i) }, async (_, k) => {
        const id = i + k;
        const { token } = await createToken(KEY, { clientId: `user-${id}` });
        const client = new Mooring({ url: proxy.url('/'), token, environment: null });
        const w: Watched = { client, channel: id % C, last: 0, received: 0, problems: [], back: undefined };
        client.connection.on('statechange', ({ current, reason }) => {
          if (reason?.code === 'rate_limited' || reason?.code === 'too_many_connections') refused++;
          if (performance.now() < resetAt) return;
          if (current === 'connecting') attempts++;
          if (reason) reasons.set(reason.code, (reasons.get(reason.code) ?? 0) + 1);
        });
        const channel = client.channels.get(`storm:${w.channel}`);
        channel.on('attached', () => {
          if (w.back === undefined && performance.now() >= resetAt) w.back = performance.now() - resetAt;
        });
        channel.on('continuityLost', () => w.problems.push('continuityLost'));
        await channel.subscribe((m) => {
          const n = (m.data as { n: number }).n;
          if (w.last !== 0 && n !== w.last + 1) w.problems.push(`${w.last} → ${n}`);
          w.last = Math.max(w.last, n);
          w.received++;
        });
        watched.push(w);
      }),
    );
  }
  log(`connected and attached in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  publishing = setInterval(() => {
    for (let c = 0; c < C; c++)
      for (let k = 0; k < RATE / 10; k++)
        publisher.channels
          .get(`storm:${c}`)
          .publish('m', { n: ++counts[c]! })
          .catch(() => {});
  }, 100);
  await new Promise((r) => setTimeout(r, SECONDS * 1_000));
  if (RATE > 0) await waitFor(() => watched.every((w) => w.received > 0), { timeout: 30_000 });

  const metrics0 = await serverCounts();
  const cpu0 = processCpuSeconds(server.pid) ?? Number.NaN;
  let peak = (await server.memory(false)).rss;
  const rssBefore = peak;
  resetAt = performance.now();
  await proxy.reset();
  log(`reset ${N} connections`);
  sampler = setInterval(async () => {
    if (!server.exited) peak = Math.max(peak, (await server.memory(false)).rss);
  }, 250);
  await waitFor(() => watched.every((w) => w.back !== undefined), { timeout: 120_000, interval: 20 });
  const allBack = performance.now() - resetAt;
  const transports = new Map<string, number>();
  for (const w of watched) {
    const kind = w.client.connection.transport ?? 'none';
    transports.set(kind, (transports.get(kind) ?? 0) + 1);
  }
  const cpu = (processCpuSeconds(server.pid) ?? Number.NaN) - cpu0;
  clearInterval(sampler);
  sampler = undefined;

  // a few seconds more live, then every client must have every message of its channel
  await new Promise((r) => setTimeout(r, SECONDS * 1_000));
  clearInterval(publishing);
  publishing = undefined;
  await waitFor(() => watched.every((w) => w.last === counts[w.channel]), { timeout: 30_000 });

  const back = watched.map((w) => w.back ?? Number.NaN).sort((a, b) => a - b);
  const problems = watched.filter((w) => w.problems.length > 0);
  console.log(
    '| store | clients × channels | all attached again | per client p50 / p99 / max | handshakes refused | server CPU until all back | server RSS before → peak (MB) | messages received | gaps, duplicates, continuityLost |',
  );
  console.log('|---|---|---:|---|---:|---:|---|---:|---|');
  const mb = (n: number) => (n / 2 ** 20).toFixed(0);
  console.log(
    `| ${STORE} | ${N} × ${C} | ${(allBack / 1000).toFixed(2)} s | ${percentile(back, 0.5).toFixed(0)} / ${percentile(back, 0.99).toFixed(0)} / ${back.at(-1)?.toFixed(0)} ms | ${refused} | ${cpu.toFixed(2)} s | ${mb(rssBefore)} → ${mb(peak)} | ${watched.reduce((a, w) => a + w.received, 0)} | ${problems.length === 0 ? 'none' : `${problems.length} clients: ${problems[0]!.problems.slice(0, 3).join(', ')}`} |`,
  );
  const metrics1 = await serverCounts();
  const delta = [...metrics1]
    .map(([name, n]) => [name, n - (metrics0.get(name) ?? 0)] as const)
    .filter(([, n]) => n > 0);
  log(`the server meanwhile: ${delta.map(([name, n]) => `${name} ${n}`).join(', ')}`);
  log(
    `after the reset: ${attempts} connection attempts for ${N} clients; reasons: ${[...reasons].map(([code, n]) => `${code}×${n}`).join(', ') || 'none'}; transports once all were back: ${[...transports].map(([kind, n]) => `${kind}×${n}`).join(', ')}`,
  );
  if (problems.length > 0) process.exitCode = 1;
} catch (err) {
  const missing = watched.filter((w) => w.back === undefined);
  log(
    `failed: ${(err as Error).message}; ${missing.length} clients not attached again (first: state ${missing[0]?.client.connection.state})`,
  );
  process.exitCode = 1;
} finally {
  if (sampler) clearInterval(sampler);
  if (publishing) clearInterval(publishing);
  for (const w of watched) w.client.close();
  publisher.close();
  await proxy.close();
  await server.stop();
  await redis?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
}
