/**
 * The abuse run of issue 5: ≥ 100,000 random and mutated frames and HTTP requests against a live
 * Mooring server in its own process, while a bystander receives a stream. Checks that the server
 * stays up, answers every bad frame with an error (or closes with a code), keeps memory bounded, and
 * that the bystander loses nothing. Prints a table. Bounded in count; stops by itself.
 *
 * Then the adversarial scenarios of issue 10 (`adversarial.ts`), each against a fresh server with
 * default limits, with a second table: what each attack got, server RSS, the bystander's latency.
 * The random part lifts the per-connection frame budgets (it sends thousands of frames per second
 * on purpose, to exercise validation rather than the throttle, which the scenarios cover).
 *
 * Durable Streams requests (`stream-fuzz.ts`, `--stream-requests`) run beside them, with a bystander
 * following a stream that must lose nothing either.
 *
 * Connection requests with a fuzzed `attach` parameter (`--connect-requests`, PROTOCOL.md §5.1): each
 * must be refused with 400 `bad_request`, or connect and get one answer per attach it carried.
 *
 *   node bench/src/fuzz/fuzz-run.ts [--frames 80000] [--requests 20000] [--stream-requests 10000]
 *                                   [--connect-requests 2000] [--seed 1]
 *                                   [--adversarial-only] [--only <scenario name part>]
 *                                   [--store memory|redis]
 *
 * `--store redis`: every server on the Redis store, each with a redis-server of its own (the crowd
 * scenarios then also print that Redis's CPU).
 */
import {
  fuzzConnectAttach,
  fuzzFrameText,
  handshake,
  mutateFrame,
  prng,
  randomText,
  SEED_FRAMES,
  startRedis,
} from '@mooring/testkit';
import WebSocket from 'ws';
import { startMemoryReportingServer } from '../idle/memory-server.ts';
import { printAdversarial, runAdversarial } from './adversarial.ts';
import { streamBystander, streamFuzzer } from './stream-fuzz.ts';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const FRAMES = arg('frames', 80_000);
const REQUESTS = arg('requests', 20_000);
const STREAM_REQUESTS = arg('stream-requests', 10_000);
const CONNECT_REQUESTS = arg('connect-requests', 2_000);
const rand = prng(arg('seed', 1));
const KEY = 'bench:secret';
const onlyIndex = process.argv.indexOf('--only');
const only = onlyIndex > 0 ? process.argv[onlyIndex + 1] : undefined;
const storeIndex = process.argv.indexOf('--store');
const store = storeIndex > 0 ? process.argv[storeIndex + 1] : 'memory';
if (store !== 'memory' && store !== 'redis') throw new Error(`--store: memory or redis, not ${store}`);
if (process.argv.includes('--adversarial-only') || only !== undefined) {
  const rows = await runAdversarial(only, store);
  printAdversarial(rows);
  process.exit(rows.every((r) => r.alive && r.lost === 0) ? 0 : 1);
}

const redis = store === 'redis' ? await startRedis() : undefined;
const server = await startMemoryReportingServer(
  [],
  {
    maxFrameRate: 1_000_000,
    maxFrameBurst: 1_000_000,
    maxPresenceRate: 1_000_000,
  },
  redis ? { redisUrl: redis.url } : {},
);
const { port } = server;
const memory = () => server.memory();
const base = `http://127.0.0.1:${port}`;
const before = await memory();

// the bystander: a subscriber that must receive every message of a steady stream
const bystander = new WebSocket(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
const received: number[] = [];
await new Promise<void>((resolve) =>
  bystander.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type === 'connected')
      bystander.send(JSON.stringify({ type: 'attach', channel: 'bystander', ref: 1 }));
    if (f.type === 'attached') resolve();
    if (f.type === 'messages') for (const m of f.messages) received.push(m.data as number);
  }),
);
const publisher = new WebSocket(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
await new Promise((r) => publisher.once('message', r));
let published = 0;

// realtime fuzzers: 8 WebSocket connections; a closed one is replaced
const stats = {
  frames: 0,
  answers: 0,
  errors: 0,
  closes: new Map<number, number>(),
  requests: 0,
  statuses: new Map<number, number>(),
};
const streamStats = { requests: 0, statuses: new Map<number, number>() };
const NOT_ANSWERS = new Set(['connected', 'heartbeat', 'messages', 'presence', 'disconnect']);
async function fuzzer(count: number): Promise<void> {
  let sent = 0;
  while (sent < count) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}&clientId=fuzz`);
    let answered = 0;
    let mine = 0;
    const closed = new Promise<void>((resolve) =>
      ws.on('close', (code) => {
        stats.closes.set(code, (stats.closes.get(code) ?? 0) + 1);
        resolve();
      }),
    );
    ws.on('error', () => {});
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (NOT_ANSWERS.has(f.type)) return;
      answered++;
      stats.answers++;
      if (f.type === 'error') stats.errors++;
    });
    await new Promise((r) => ws.once('message', r));
    while (sent < count && ws.readyState === ws.OPEN) {
      ws.send(fuzzFrameText(rand));
      sent++;
      mine++;
      stats.frames++;
      if (mine % 200 === 0) {
        // let answers catch up, so that memory reflects steady state, not our own burst
        const deadline = Date.now() + 5_000;
        while (answered < mine && ws.readyState === ws.OPEN && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 2));
      }
    }
    const deadline = Date.now() + 10_000;
    while (answered < mine && ws.readyState === ws.OPEN && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    if (ws.readyState === ws.OPEN && answered < mine)
      throw new Error(`${mine - answered} frames got no answer`);
    ws.close();
    await closed;
  }
}

// HTTP fuzzing: REST and the HTTP transports' upstream, with random methods, paths and bodies
const PATHS = [
  '/v1/channels/fuzz:r/messages',
  '/v1/channels/fuzz:r',
  '/v1/channels/fuzz:r/presence',
  '/v1/tokens',
  '/v1/connect/poll',
  '/v1/connections/c_x/frames',
  '/v1/nope',
  '/health',
  '/v1/channels/%ZZ/messages',
];
async function httpFuzzer(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const path = PATHS[Math.floor(rand() * PATHS.length)]!;
    const method = rand() < 0.6 ? 'POST' : rand() < 0.5 ? 'GET' : 'DELETE';
    const body =
      method === 'GET'
        ? undefined
        : rand() < 0.5
          ? randomText(rand, 400)
          : JSON.stringify(mutateFrame(SEED_FRAMES[1], rand));
    const auth =
      rand() < 0.8
        ? { authorization: `Bearer ${KEY}` }
        : rand() < 0.5
          ? { authorization: 'Bearer a.b.c' }
          : {};
    const res = await fetch(base + path + (rand() < 0.2 ? '?limit=-1&from=zz' : ''), {
      method,
      headers: { 'content-type': 'application/json', ...auth },
      ...(body === undefined ? {} : { body }),
    });
    await res.arrayBuffer();
    stats.requests++;
    stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500) throw new Error(`HTTP ${res.status} for ${method} ${path}`);
  }
}

// connection requests with a fuzzed `attach`: a typed 400, or one answer per attach after `connected`
const connectStats = {
  requests: 0,
  refused: 0,
  connected: 0,
  asked: 0,
  answered: 0,
  other: new Map<string, number>(),
};
async function connectFuzzer(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const url = new URL(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
    url.searchParams.set('attach', fuzzConnectAttach(rand)); // lone surrogates become U+FFFD
    const ws = new WebSocket(url);
    ws.on('error', () => {});
    let attaching = -1;
    let answers = 0;
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString());
      if (f.type === 'connected') attaching = f.attaching ?? -1;
      else if (f.type === 'attached' || f.type === 'error') answers++;
    });
    const opened = await handshake(ws).catch((err: unknown) => ({ status: 0, body: String(err) }));
    let outcome = 'open';
    if (opened !== 'open') {
      let code = '?';
      try {
        code = JSON.parse(opened.body).error.code;
      } catch {}
      outcome = `${opened.status} ${code}`;
    }
    connectStats.requests++;
    if (outcome === '400 bad_request') {
      connectStats.refused++;
      continue;
    }
    if (outcome !== 'open') {
      connectStats.other.set(outcome, (connectStats.other.get(outcome) ?? 0) + 1);
      continue;
    }
    const deadline = Date.now() + 5_000;
    while ((attaching < 0 || answers < attaching) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 2));
    connectStats.connected++;
    connectStats.asked += Math.max(attaching, 0);
    connectStats.answered += answers;
    if (attaching < 0 || answers !== attaching) {
      const what =
        attaching < 0 ? 'no attaching in connected' : `${answers} answers to ${attaching} attaches`;
      connectStats.other.set(what, (connectStats.other.get(what) ?? 0) + 1);
    }
    ws.terminate();
  }
}

const ticker = setInterval(() => {
  publisher.send(JSON.stringify({ type: 'publish', channel: 'bystander', ops: [{ data: published++ }] }));
}, 20);
let peak = before.rss;
const sampler = setInterval(async () => {
  const m = await memory();
  peak = Math.max(peak, m.rss);
  process.stderr.write(
    `\rfuzz: ${stats.frames} frames, ${stats.requests} requests, ${streamStats.requests} stream requests, server RSS ${(m.rss / 2 ** 20).toFixed(0)} MB   `,
  );
}, 1_000);
const started = Date.now();
const stopStreamBystander = await streamBystander(base);
await Promise.all([
  ...Array.from({ length: 8 }, () => fuzzer(FRAMES / 8)),
  httpFuzzer(REQUESTS / 2),
  httpFuzzer(REQUESTS / 2),
  streamFuzzer(base, STREAM_REQUESTS / 2, rand, streamStats),
  streamFuzzer(base, STREAM_REQUESTS / 2, rand, streamStats),
  connectFuzzer(CONNECT_REQUESTS),
]);
const streamWatch = await stopStreamBystander();
clearInterval(ticker);
clearInterval(sampler);
const seconds = (Date.now() - started) / 1000;
const deadline = Date.now() + 10_000;
while (received.length < published && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
const after = await memory();
process.stderr.write('\n');

const lost = published - new Set(received).size;
const mb = (n: number) => (n / 2 ** 20).toFixed(0);
console.log(
  '| inputs | frames | HTTP requests | answers / frames | errors | closes (code×n) | HTTP statuses | server alive | RSS start → peak → end (MB) | bystander |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
console.log(
  `| ${stats.frames + stats.requests} in ${seconds.toFixed(0)} s | ${stats.frames} | ${stats.requests} | ${stats.answers} / ${stats.frames} | ${stats.errors} | ${[...stats.closes].map(([c, n]) => `${c}×${n}`).join(' ')} | ${[
    ...stats.statuses,
  ]
    .sort()
    .map(([c, n]) => `${c}×${n}`)
    .join(
      ' ',
    )} | ${server.exited ? 'NO' : 'yes'} | ${mb(before.rss)} → ${mb(peak)} → ${mb(after.rss)} | ${received.length}/${published} received, ${lost} lost |`,
);
const streamLost = streamWatch.appended - streamWatch.received.length;
const streamInOrder = streamWatch.received.every((n, i) => n === i);
console.log('');
console.log('| Durable Streams requests | HTTP statuses | stream bystander |');
console.log('|---|---|---|');
console.log(
  `| ${streamStats.requests} | ${[...streamStats.statuses]
    .sort()
    .map(([c, n]) => `${c}×${n}`)
    .join(
      ' ',
    )} | ${streamWatch.received.length}/${streamWatch.appended} received${streamInOrder ? ' in order' : ' OUT OF ORDER'}, ${streamLost} lost |`,
);
console.log('');
console.log(
  '| connection requests with a fuzzed attach | refused 400 bad_request | connected: attaches answered / asked | anything else |',
);
console.log('|---|---|---|---|');
console.log(
  `| ${connectStats.requests} | ${connectStats.refused} | ${connectStats.connected}: ${connectStats.answered} / ${connectStats.asked} | ${
    [...connectStats.other].map(([what, n]) => `${what} ×${n}`).join(', ') || 'none'
  } |`,
);
bystander.terminate();
publisher.terminate();
const crashed = server.exited;
await server.stop();
await redis?.close();

console.log('');
const rows = await runAdversarial(undefined, store);
printAdversarial(rows);
process.exit(
  crashed ||
    lost > 0 ||
    streamLost !== 0 ||
    !streamInOrder ||
    connectStats.other.size > 0 ||
    rows.some((r) => !r.alive || r.lost > 0)
    ? 1
    : 0,
);
