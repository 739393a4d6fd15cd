/**
 * Adversarial scenarios of the abuse run (issue 10): each attack runs against a fresh Mooring server
 * in its own process, with default limits, while a bystander (API key) receives a steady stream and
 * measures ping round trips. For each: what the attacker got, the server's RSS (start → peak → end)
 * and the bystander's latency (p50/p99/max) and losses. Every attack is bounded in count and time.
 * With the Redis store (`store: 'redis'`) each scenario's server gets a redis-server of its own.
 */
import { fork } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createToken } from '@mooring/server';
import { type RedisServer, startRedis } from '@mooring/testkit';
import WebSocket from 'ws';
import { processCpuSeconds } from '../cpu-usage.ts';
import { type MemoryReportingServer, startMemoryReportingServer } from '../idle/memory-server.ts';
import { readRedis } from '../redis-stats.ts';

const KEY = 'bench:secret';

export interface ScenarioRow {
  name: string;
  outcome: string;
  rss: [number, number, number];
  p50: number;
  p99: number;
  max: number;
  pings: number;
  lost: number;
  alive: boolean;
}

interface Ctx {
  port: number;
  base: string;
  server: MemoryReportingServer;
  /** The server's redis-server, on the Redis store. */
  redis: RedisServer | undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const token = async (request: Parameters<typeof createToken>[1] = {}) =>
  (await createToken(KEY, request)).token;

/** A WebSocket that resolves with its `connected` frame (or the refusal's HTTP status). */
function openWs(url: string): Promise<{ ws: WebSocket; status: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on('error', () => resolve({ ws, status: 0 }));
    ws.once('unexpected-response', (_req, res) => resolve({ ws, status: res.statusCode ?? 0 }));
    ws.once('message', () => resolve({ ws, status: 101 }));
  });
}

/** Counts the answers `ws` receives into `counts`, by type (errors by code). */
function countAnswers(ws: WebSocket, counts: Map<string, number>): void {
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { type: string; error?: { code: string } };
    const k = f.type === 'error' ? (f.error?.code ?? 'error') : f.type;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  });
}

/** Sends frames as fast as the socket takes them; counts answers by type/code until closed or idle. */
function counter(ws: WebSocket): Map<string, number> {
  const counts = new Map<string, number>();
  countAnswers(ws, counts);
  ws.on('close', (code) => counts.set(`close ${code}`, 1));
  return counts;
}

/** `n` WebSockets opened at `url` (those the server accepted), their answers counted together by type/code. */
async function openCounted(
  url: string,
  n: number,
): Promise<{ sockets: WebSocket[]; counts: Map<string, number> }> {
  const opened = await Promise.all(Array.from({ length: n }, () => openWs(url)));
  const sockets = opened.filter((s) => s.status === 101).map((s) => s.ws);
  const counts = new Map<string, number>();
  for (const ws of sockets) countAnswers(ws, counts);
  return { sockets, counts };
}

const fmt = (counts: Map<string, number>, keys?: string[]) =>
  [...counts]
    .filter(([k]) => !keys || keys.some((x) => k.startsWith(x)))
    .map(([k, n]) => `${k}×${n}`)
    .join(' ');

async function sendAll(ws: WebSocket, frames: Iterable<string>): Promise<void> {
  let i = 0;
  for (const frame of frames) {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(frame);
    if (++i % 200 === 0) {
      while (ws.bufferedAmount > 4 * 2 ** 20 && ws.readyState === ws.OPEN) await sleep(2);
      await new Promise((r) => setImmediate(r));
    }
  }
}

async function rest(base: string, path: string, auth: string, body?: unknown): Promise<number> {
  try {
    const res = await fetch(base + path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(60_000),
    });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Grows `count` messages on `channel` to about `mib` MiB each, by 64 KiB appends (API key). */
async function bigMessages(base: string, channel: string, count: number, mib: number): Promise<void> {
  const chunk = 'x'.repeat(60 * 1024);
  await Promise.all(
    Array.from({ length: 4 }, async (_, lane) => {
      for (let m = lane; m < count; m += 4) {
        const res = await fetch(`${base}/v1/channels/${channel}/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
          body: JSON.stringify({ data: chunk }),
        });
        const serial = ((await res.json()) as { results: Array<{ serial: string }> }).results[0]!.serial;
        for (let i = 1; i < (mib * 1024) / 60; i++)
          await rest(base, `/v1/channels/${channel}/messages`, KEY, {
            action: 'append',
            serial,
            data: chunk,
          });
      }
    }),
  );
}

/** Subscribers of the presence storm's crowded channel, in a process of their own. */
const CROWD = 2_000;
let crowd: { stop(): void } | undefined;

/**
 * `count` WebSockets attached to `channel` (API key), held by a subscriber process of the growth
 * bench (subscriber-worker.ts) so that reading their frames costs this process nothing.
 */
async function startCrowd(
  port: number,
  channel: string,
  count: number,
  presence = false,
): Promise<{ stop(): void }> {
  const worker = fork(fileURLToPath(new URL('../growth/subscriber-worker.ts', import.meta.url)), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = new Promise<{ connected: number; failed: number; firstError?: string }>((resolve, reject) => {
    worker.on('message', (report: { type: string; connected: number; failed: number }) => {
      if (report.type === 'ready') resolve(report);
    });
    worker.once('exit', (code) => reject(new Error(`the crowd's process exited (${code})`)));
  });
  worker.send({
    type: 'start',
    port,
    address: '127.0.0.2',
    channels: Array.from({ length: count }, () => channel),
    concurrency: 100,
    key: KEY,
    presence,
  });
  const report = await ready;
  if (report.failed > 0)
    throw new Error(`${report.failed} of the crowd could not attach: ${report.firstError}`);
  return {
    stop() {
      worker.kill('SIGKILL');
    },
  };
}

/**
 * Ends a crowd scenario's attack: its sockets and the crowd stopped. Then `meanwhile()` of the
 * `cpuMeter` read before it tells what the server (and its Redis) used.
 */
function endCrowd(sockets: WebSocket[]): void {
  for (const ws of sockets) ws.terminate();
  crowd?.stop();
  crowd = undefined;
}

/** The CPU the server (and its redis-server) use from now on, as an outcome's tail. */
async function cpuMeter({ server, redis }: Ctx): Promise<{ meanwhile(): Promise<string> }> {
  const server0 = processCpuSeconds(server.pid) ?? Number.NaN;
  const redis0 = redis ? (await readRedis(redis)).cpu : 0;
  return {
    async meanwhile() {
      const used = (processCpuSeconds(server.pid) ?? Number.NaN) - server0;
      const text = `the server's CPU meanwhile ${used.toFixed(1)} s`;
      return redis ? `${text}, its Redis's ${((await readRedis(redis)).cpu - redis0).toFixed(1)} s` : text;
    },
  };
}

interface Scenario {
  name: string;
  /** Runs before the measurement starts (the bystander is not there yet). */
  setup?: (ctx: Ctx) => Promise<void>;
  attack: (ctx: Ctx) => Promise<string>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'big messages (24 × 2 MiB, grown by 64 KiB appends, 4 at once)',
    async attack({ base }) {
      const started = performance.now();
      await bigMessages(base, 'big', 24, 2);
      return `48 MiB stored in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    },
  },
  {
    name: 'history reads of big messages (limit=1000, 4 readers at once)',
    setup: ({ base }) => bigMessages(base, 'big', 24, 2),
    async attack({ base }) {
      const reader = await token({ clientId: 'reader', capability: { 'big*': ['history', 'subscribe'] } });
      const statuses = new Map<number, number>();
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < 5; i++) {
            const s = await rest(base, '/v1/channels/big/messages?limit=1000&direction=forwards', reader);
            statuses.set(s, (statuses.get(s) ?? 0) + 1);
          }
        }),
      );
      return `20 reads of a channel of 24 × 2 MiB: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(' ')}`;
    },
  },
  {
    name: 'presence flood (WS 60 KB × 500 channels; one 1 MiB long-poll POST of 17,000 enters)',
    async attack({ port, base }) {
      const t = await token({ clientId: 'flood' });
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${t}`);
      const counts = counter(ws);
      const data = 'p'.repeat(60_000);
      await sendAll(
        ws,
        Array.from({ length: 500 }, (_, i) =>
          JSON.stringify({ type: 'presence', channel: `p:${i}`, action: 'enter', data }),
        ),
      );
      await sleep(500);
      ws.close();
      const open = await fetch(`${base}/v1/connect/poll?token=${t}`);
      const [connected] = (await open.json()) as Array<{ connectionId: string; connectionKey: string }>;
      const frames = Array.from({ length: 17_000 }, (_, i) => ({
        type: 'presence',
        channel: `q:${i}`,
        action: 'enter',
      }));
      const post = await fetch(`${base}/v1/connections/${connected!.connectionId}/frames`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mooring-connection-key': connected!.connectionKey },
        body: JSON.stringify(frames),
      });
      await post.arrayBuffer();
      const poll = await fetch(`${base}/v1/connections/${connected!.connectionId}/poll`, {
        headers: { 'x-mooring-connection-key': connected!.connectionKey },
      });
      const answers = (await poll.json()) as Array<{ type: string }>;
      const acks = answers.filter((f) => f.type === 'ack').length;
      const dropped = answers.some((f) => f.type === 'disconnect');
      return `WS: ${fmt(counts, ['ack', 'rate', 'too', 'presence', 'close'])}; POST ${post.status}: ${acks} entered, ${dropped ? 'flooder dropped' : 'flooder kept'}`;
    },
  },
  {
    name: 'connection-budget exhaustion (never-polled long-polls of one token)',
    async attack({ port, base }) {
      const t = await token({ clientId: 'mallory', capability: { 'nothing:here': ['subscribe'] } });
      const statuses = new Map<number, number>();
      for (let i = 0; i < 300; i++) {
        const res = await fetch(`${base}/v1/connect/poll?token=${t}`);
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
      const key = await openWs(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
      const alice = await openWs(
        `ws://127.0.0.1:${port}/v1/connect?token=${await token({ clientId: 'alice' })}`,
      );
      key.ws.close();
      alice.ws.close();
      return `300 opens: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(' ')}; then API key ${key.status === 101 ? 'connects' : `gets ${key.status}`}, another clientId ${alice.status === 101 ? 'connects' : `gets ${alice.status}`}`;
    },
  },
  {
    name: 'anonymous connection-budget exhaustion (one token without a clientId: 3,000 never-polled long-polls)',
    async attack({ base }) {
      const t = await token({ capability: { 'nothing:here': ['subscribe'] } });
      const statuses = new Map<number, number>();
      for (let i = 0; i < 3_000; i++) {
        const res = await fetch(`${base}/v1/connect/poll?token=${t}`);
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
      const visitor = await fetch(`${base}/v1/connect/poll?token=${await token()}`);
      await visitor.arrayBuffer();
      return `3,000 opens: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(' ')}; then another anonymous visitor ${visitor.status === 200 ? 'connects' : `gets ${visitor.status}`}`;
    },
  },
  {
    name: 'stuck SSE readers (5, attached from the start of a 24 MiB channel, never reading)',
    setup: ({ base }) => bigMessages(base, 'stuck', 12, 2),
    async attack({ port, base, server }) {
      const before = (await server.memory(false)).connections;
      const sockets = await Promise.all(
        Array.from({ length: 5 }, async () => {
          const socket = netConnect(port, '127.0.0.1');
          socket.write(`GET /v1/connect/sse?key=${KEY} HTTP/1.1\r\nhost: x\r\n\r\n`);
          let text = '';
          const connected = await new Promise<{ connectionId: string; connectionKey: string }>((resolve) => {
            const on = (chunk: Buffer) => {
              text += chunk.toString();
              const m = /data: (\{.*"type":"connected".*\})\n/.exec(text);
              if (m) {
                socket.off('data', on);
                socket.pause(); // and never read again
                resolve(JSON.parse(m[1]!));
              }
            };
            socket.on('data', on);
          });
          socket.on('error', () => {});
          await fetch(`${base}/v1/connections/${connected.connectionId}/frames`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'x-mooring-connection-key': connected.connectionKey,
            },
            body: JSON.stringify({ type: 'attach', channel: 'stuck', start: true }),
          });
          return socket;
        }),
      );
      // a queue that stops draining for two heartbeat rounds (15 s each) is a slow consumer
      const deadline = Date.now() + 50_000;
      let open = 0;
      while (Date.now() < deadline) {
        open = (await server.memory(false)).connections - before;
        if (open === 0) break;
        await sleep(500);
      }
      for (const s of sockets) s.destroy();
      const after = ((Date.now() - deadline + 50_000) / 1000).toFixed(0);
      return open === 0 ? `all 5 dropped after ${after} s` : `${open} of 5 still open after 50 s`;
    },
  },
  {
    name: 'token renewals (3,000 auth frames, alternating capabilities)',
    async attack({ port }) {
      const tokens = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          token({
            clientId: 'renew',
            capability: i % 2 ? { 'session:public': ['subscribe'] } : { '*': ['*'] },
          }),
        ),
      );
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${tokens[0]}`);
      const counts = counter(ws);
      await sendAll(
        ws,
        Array.from({ length: 3_000 }, (_, i) =>
          JSON.stringify({ type: 'auth', token: tokens[i % 10], ref: i }),
        ),
      );
      await sleep(1_000);
      ws.close();
      counts.delete('connected');
      counts.delete('heartbeat');
      return fmt(counts);
    },
  },
  {
    // Each auth frame makes the server verify a signature: within the frame budget every connection
    // may send 100 a second, so a holder's many connections could keep the server verifying.
    name: 'sustained token renewals (one clientId: 50 connections × 90 auth frames/s for 5 s)',
    async attack({ port }) {
      const tokens = await Promise.all(
        Array.from({ length: 10 }, () => token({ clientId: 'renewer', capability: { '*': ['*'] } })),
      );
      const { sockets, counts } = await openCounted(
        `ws://127.0.0.1:${port}/v1/connect?token=${tokens[0]}`,
        50,
      );
      const until = Date.now() + 5_000;
      let sent = 0;
      while (Date.now() < until) {
        // 9 frames per connection every 100 ms: under the frame rate, which alone would drop them
        for (const ws of sockets)
          for (let i = 0; i < 9 && ws.readyState === ws.OPEN; i++)
            ws.send(JSON.stringify({ type: 'auth', token: tokens[sent++ % 10], ref: sent }));
        await sleep(100);
      }
      await sleep(1_000);
      for (const ws of sockets) ws.close();
      counts.delete('heartbeat');
      return `${sockets.length} connected, ${sent} auth frames: ${fmt(counts)}`;
    },
  },
  {
    // Attaching reads the store (the position, a catch-up): within the frame budget every connection
    // may attach and detach 50 times a second.
    name: 'attach churn (one clientId: 50 connections × 40 attaches (rewind 20) + 40 detaches/s for 5 s)',
    async attack({ port, base }) {
      // channels with something to catch up on: 20 messages each
      for (let c = 0; c < 10; c++)
        await rest(
          base,
          `/v1/channels/churn-${c}/messages`,
          KEY,
          Array.from({ length: 20 }, (_, i) => ({ data: `message ${i}` })),
        );
      const t = await token({ clientId: 'churner', capability: { '*': ['*'] } });
      const { sockets, counts } = await openCounted(`ws://127.0.0.1:${port}/v1/connect?token=${t}`, 50);
      const until = Date.now() + 5_000;
      let sent = 0;
      // every 100 ms each connection detaches the 4 channels it attached the round before (so each
      // attach is answered before its detach) and attaches 4 others
      for (let round = 0; Date.now() < until; round++) {
        for (const [n, ws] of sockets.entries())
          for (let i = 0; i < 4 && ws.readyState === ws.OPEN; i++) {
            const previous = `churn-${(n + i + (round - 1) * 5) % 10}`;
            const channel = `churn-${(n + i + round * 5) % 10}`;
            if (round > 0) ws.send(JSON.stringify({ type: 'detach', channel: previous, ref: sent++ }));
            ws.send(JSON.stringify({ type: 'attach', channel, rewind: 20, ref: sent++ }));
          }
        await sleep(100);
      }
      await sleep(1_000);
      for (const ws of sockets) ws.close();
      counts.delete('heartbeat');
      return `${sockets.length} connected, ${sent} frames: ${fmt(counts)}`;
    },
  },
  {
    name: 'REST floods (token: 16 loops × 5 s of publishes; 3,000 leases)',
    async attack({ base }) {
      const t = await token({ clientId: 'rest' });
      const statuses = new Map<number, number>();
      const until = Date.now() + 5_000;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (Date.now() < until) {
            const s = await rest(base, '/v1/channels/flood/messages', t, { data: 'x' });
            statuses.set(s, (statuses.get(s) ?? 0) + 1);
          }
        }),
      );
      const leased = new Map<number, number>();
      const agent = await token({ clientId: 'leases' });
      for (let i = 0; i < 3_000; i++) {
        if (i % 900 === 0) await sleep(1_000); // stay inside the publish budget: leases are what is tested
        const s = await rest(base, '/v1/channels/leases/messages', agent, { data: i, lease: 3_600_000 });
        leased.set(s, (leased.get(s) ?? 0) + 1);
      }
      const ok = statuses.get(200) ?? 0;
      return `publishes: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(' ')} (${(ok / 5).toFixed(0)} stored/s); leases: ${[...leased].map(([s, n]) => `${s}×${n}`).join(' ')}`;
    },
  },
  {
    name: 'filling the store (token: 64 KiB publishes for 5 s, 8 in flight on a WebSocket)',
    async attack({ port }) {
      const t = await token({ clientId: 'filler' });
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${t}`);
      const counts = counter(ws);
      const data = 'x'.repeat(64 * 1024 - 8);
      const until = Date.now() + 5_000;
      const answered = () => (counts.get('ack') ?? 0) + (counts.get('rate_limited') ?? 0);
      let sent = 0;
      while (Date.now() < until && ws.readyState === ws.OPEN) {
        for (let i = 0; i < 8; i++)
          ws.send(
            JSON.stringify({ type: 'publish', channel: 'fill', ops: [{ name: 'blob', data }], ref: sent++ }),
          );
        // eight in flight: their answers come before the next eight
        while (answered() < sent && ws.readyState === ws.OPEN && Date.now() < until + 5_000) await sleep(1);
      }
      ws.close();
      const stored = counts.get('ack') ?? 0;
      return `${fmt(counts, ['ack', 'rate', 'close'])}: ${((stored * 64) / 1024 / 5).toFixed(2)} MB/s stored`;
    },
  },
  {
    name: 'connection churn (token: connect and drop without a close, 16 at once, 5 s)',
    async attack({ port }) {
      const t = await token({ clientId: 'churner' });
      const statuses = new Map<number, number>();
      const until = Date.now() + 5_000;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (Date.now() < until) {
            const { ws, status } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${t}`);
            statuses.set(status, (statuses.get(status) ?? 0) + 1);
            ws.terminate(); // no close: the identity stays recoverable
          }
        }),
      );
      return `handshakes: ${[...statuses].map(([s, n]) => `${s}×${n}`).join(' ')}`;
    },
  },
  {
    name: 'pipelined leased creates (token: 3,000 sent at once on one WebSocket)',
    async attack({ port }) {
      const t = await token({ clientId: 'pipelined' });
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${t}`);
      const counts = counter(ws);
      // sent without waiting for answers: each is checked while the others are in flight
      // (maxLeasesPerClient 1,000; maxPublishRate 1,000 with a burst of as many)
      await sendAll(
        ws,
        Array.from({ length: 3_000 }, (_, i) =>
          JSON.stringify({
            type: 'publish',
            channel: 'pipelined',
            ops: [{ data: i, lease: 3_600_000 }],
            ref: i,
          }),
        ),
      );
      await sleep(2_000);
      ws.close();
      return fmt(counts, ['ack', 'too', 'rate', 'close']);
    },
  },
  {
    name: 'Durable Streams floods (token: 16 loops × 5 s of appends; 500 waiting long-polls)',
    async attack({ base }) {
      const t = await token({ clientId: 'streams', capability: { 'stream:*': ['*'] } });
      const call = async (path: string, init: RequestInit): Promise<number> => {
        try {
          const res = await fetch(`${base}/v1/stream/${path}`, {
            ...init,
            headers: { authorization: `Bearer ${t}`, 'content-type': 'text/plain' },
          });
          await res.arrayBuffer();
          return res.status;
        } catch {
          return 0;
        }
      };
      await call('flood', { method: 'PUT' });
      const appends = new Map<number, number>();
      const until = Date.now() + 5_000;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (Date.now() < until) {
            const s = await call('flood', { method: 'POST', body: 'x'.repeat(1024) });
            appends.set(s, (appends.get(s) ?? 0) + 1);
          }
        }),
      );
      // long-polls at the tail, all at once: those within the client's connection budget wait (to
      // the poll timeout, 250 ms on this server: 204), the rest are refused at once (429)
      const polls = new Map<number, number>();
      await Promise.all(
        Array.from({ length: 500 }, async () => {
          const s = await call('flood?offset=now&live=long-poll', {});
          polls.set(s, (polls.get(s) ?? 0) + 1);
        }),
      );
      const ok = appends.get(204) ?? 0;
      return `appends: ${[...appends].map(([s, n]) => `${s}×${n}`).join(' ')} (${(ok / 5).toFixed(0)} stored/s); 500 long-polls at once: ${[...polls].map(([s, n]) => `${s === 204 ? 'waited' : s}×${n}`).join(' ')}`;
    },
  },
  {
    name: 'hostile capability globs (8-star glob × 250-char channel names)',
    async attack({ port }) {
      const glob = '*a*a*a*a*a*a*a*a*b';
      const t = await token({ clientId: 'glob', capability: { [glob]: ['subscribe', 'publish'] } });
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?token=${t}`);
      const counts = counter(ws);
      const channel = 'a'.repeat(250);
      await sendAll(
        ws,
        Array.from({ length: 500 }, (_, i) =>
          JSON.stringify({ type: 'publish', channel: `${channel}${i % 10}`, ops: [{ data: 1 }], ref: i }),
        ),
      );
      await sleep(1_000);
      ws.close();
      return fmt(counts, ['ack', 'forbidden', 'rate', 'close']);
    },
  },
  {
    name: `presence storm on a crowded channel (${CROWD} subscribers; one clientId: 10 connections × 10 presence updates/s for 5 s)`,
    setup: async ({ port }) => {
      crowd = await startCrowd(port, 'crowd', CROWD);
    },
    async attack(ctx) {
      const { port } = ctx;
      const cpu = await cpuMeter(ctx);
      const t = await token({ clientId: 'storm' });
      const { sockets, counts } = await openCounted(`ws://127.0.0.1:${port}/v1/connect?token=${t}`, 10);
      try {
        for (const [i, ws] of sockets.entries())
          ws.send(JSON.stringify({ type: 'presence', channel: 'crowd', action: 'enter', data: { i } }));
        const until = Date.now() + 5_000;
        for (let tick = 0; Date.now() < until; tick++) {
          for (const [i, ws] of sockets.entries())
            ws.send(
              JSON.stringify({ type: 'presence', channel: 'crowd', action: 'update', data: { i, tick } }),
            );
          await sleep(100);
        }
        await sleep(500);
      } finally {
        endCrowd(sockets);
      }
      return `${sockets.length} connections: ${fmt(counts, ['ack', 'rate', 'presence'])}; ${await cpu.meanwhile()}`;
    },
  },
  {
    name: 'attach churn on a channel of 1,000 presence members (one clientId: 50 connections attaching and detaching in turn for 5 s)',
    setup: async ({ port }) => {
      crowd = await startCrowd(port, 'members', 1_000, true);
      await sleep(1_000); // the enters answered
    },
    async attack(ctx) {
      const { port } = ctx;
      const cpu = await cpuMeter(ctx);
      const t = await token({ clientId: 'churner' });
      const { sockets, counts } = await openCounted(`ws://127.0.0.1:${port}/v1/connect?token=${t}`, 50);
      try {
        // each connection attaches, detaches once attached, attaches again once detached, …
        const until = Date.now() + 5_000;
        const attach = JSON.stringify({ type: 'attach', channel: 'members' });
        const detach = JSON.stringify({ type: 'detach', channel: 'members' });
        for (const ws of sockets) {
          ws.on('message', (data) => {
            if (Date.now() >= until) return;
            const text = data.toString();
            if (text.startsWith('{"type":"attached"')) ws.send(detach);
            else if (text.startsWith('{"type":"detached"') || text.startsWith('{"type":"error"'))
              setTimeout(() => ws.send(attach), 10);
          });
          ws.send(attach);
        }
        await sleep(5_500);
      } finally {
        endCrowd(sockets);
      }
      return `${sockets.length} connections: ${fmt(counts, ['attached', 'presence', 'detached', 'rate', 'close'])}; ${await cpu.meanwhile()}`;
    },
  },
  {
    name: 'ping flood (50,000 pings on one connection)',
    async attack({ port }) {
      const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
      const counts = counter(ws);
      const ping = JSON.stringify({ type: 'ping' });
      await sendAll(
        ws,
        (function* () {
          for (let i = 0; i < 50_000; i++) yield ping;
        })(),
      );
      await sleep(1_000);
      ws.close();
      return fmt(counts, ['pong', 'rate', 'close']);
    },
  },
];

/** The bystander: a stream it must receive in full, and ping round trips every 50 ms. */
async function bystander(port: number) {
  const { ws } = await openWs(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
  const { ws: publisher } = await openWs(`ws://127.0.0.1:${port}/v1/connect?key=${KEY}`);
  const received = new Set<number>();
  const rtts: number[] = [];
  let waiting: { ref: number; at: number; resolve: () => void } | undefined;
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString());
    if (f.type === 'messages') for (const m of f.messages) received.add(m.data as number);
    if (f.type === 'pong' && waiting && f.ref === waiting.ref) {
      rtts.push(performance.now() - waiting.at);
      waiting.resolve();
    }
  });
  ws.send(JSON.stringify({ type: 'attach', channel: 'bystander', ref: 'attach' }));
  let published = 0;
  let running = true;
  const ticker = setInterval(() => {
    publisher.send(JSON.stringify({ type: 'publish', channel: 'bystander', ops: [{ data: published++ }] }));
  }, 50);
  const pinging = (async () => {
    for (let ref = 1; running; ref++) {
      await new Promise<void>((resolve) => {
        waiting = { ref, at: performance.now(), resolve };
        ws.send(JSON.stringify({ type: 'ping', ref }));
        setTimeout(resolve, 30_000).unref();
      });
      await sleep(50);
    }
  })();
  return {
    rtts,
    async stop() {
      running = false;
      clearInterval(ticker);
      await pinging;
      const deadline = Date.now() + 10_000;
      while (received.size < published && Date.now() < deadline) await sleep(10);
      ws.terminate();
      publisher.terminate();
      return published - received.size;
    },
  };
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

export async function runAdversarial(
  only?: string,
  store: 'memory' | 'redis' = 'memory',
): Promise<ScenarioRow[]> {
  const rows: ScenarioRow[] = [];
  for (const { name, setup, attack } of SCENARIOS) {
    if (only && !name.includes(only)) continue;
    process.stderr.write(`adversarial (${store}): ${name}\n`);
    const redis = store === 'redis' ? await startRedis() : undefined;
    const server = await startMemoryReportingServer([], {}, redis ? { redisUrl: redis.url } : {});
    const ctx = { port: server.port, base: `http://127.0.0.1:${server.port}`, server, redis };
    await setup?.(ctx);
    const start = (await server.memory()).rss;
    let peak = start;
    let sampling = false;
    const sampler = setInterval(async () => {
      if (sampling) return; // a busy server answers late: one sample at a time
      sampling = true;
      peak = Math.max(peak, (await server.memory(false)).rss);
      sampling = false;
    }, 250);
    const by = await bystander(server.port);
    let outcome: string;
    try {
      outcome = await attack(ctx);
    } catch (err) {
      outcome = `attack failed: ${(err as Error).message}`;
    }
    const lost = await by.stop();
    clearInterval(sampler);
    const end = server.exited ? 0 : (await server.memory()).rss;
    const sorted = [...by.rtts].sort((a, b) => a - b);
    rows.push({
      name,
      outcome,
      rss: [start, peak, end],
      p50: quantile(sorted, 0.5),
      p99: quantile(sorted, 0.99),
      max: sorted[sorted.length - 1] ?? 0,
      pings: sorted.length,
      lost,
      alive: !server.exited,
    });
    await server.stop();
    await redis?.close();
  }
  return rows;
}

export function printAdversarial(rows: ScenarioRow[]): void {
  const mb = (n: number) => (n / 2 ** 20).toFixed(0);
  console.log(
    '| scenario | what the attacker got | server RSS start → peak → end (MB) | bystander ping p50 / p99 / max (ms) | bystander stream | server alive |',
  );
  console.log('|---|---|---|---|---|---|');
  for (const r of rows)
    console.log(
      `| ${r.name} | ${r.outcome} | ${r.rss.map(mb).join(' → ')} | ${r.p50.toFixed(1)} / ${r.p99.toFixed(1)} / ${r.max.toFixed(0)} (${r.pings} pings) | ${r.lost === 0 ? 'nothing lost' : `${r.lost} lost`} | ${r.alive ? 'yes' : 'NO'} |`,
    );
}
