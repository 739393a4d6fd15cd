/**
 * The streams scenario: Mooring's Durable Streams endpoint (`/v1/stream/*`, memory, SQLite and Redis
 * — a redis-server of its own, AOF everysec) side
 * by side with the Durable Streams reference server (`@durable-streams/server`, memory and
 * file-backed), each in its own process, driven by the same load generator in this one:
 *
 *   appends           S streams × A plain POSTs of P bytes, one writer per stream (sequential)
 *   producer appends  the same with Producer-Id/-Epoch/-Seq (the exactly-once path)
 *   catch-up reads    every stream read from -1 to the tail, following Stream-Next-Offset, R rounds:
 *                     catch-ups/s, MB/s, and the bytes a catch-up costs (bodies and headers)
 *   live              a long-poll follower per stream while its writer appends every 20 ms:
 *                     append → delivery latency
 *
 * Measures and reports; asserts nothing about timings.
 */
import { type RedisServer, startRedis } from '@mooring/testkit';
import { BENCH_KEY } from '../bench-config.ts';
import { type ServerProcess, spawnServer } from '../spawn-server.ts';
import { percentile } from '../stats.ts';

export interface StreamsOptions {
  streams: number;
  appends: number;
  payloadBytes: number;
  readRounds: number;
  liveSeconds: number;
  /** Long-poll followers of one stream in the watchers pass. */
  watchers: number;
  only?: string[];
}

interface Target {
  id: string;
  label: string;
  module: string;
  args: string[];
  auth: boolean;
  /** Started with `redis <url>` of a redis-server started for it. */
  redis?: boolean;
}

const mooring = new URL('../servers/mooring-server.ts', import.meta.url).pathname;
const reference = new URL('../servers/ds-reference-server.ts', import.meta.url).pathname;

export const STREAM_TARGETS: Target[] = [
  { id: 'mooring', label: 'Mooring (memory)', module: mooring, args: ['memory'], auth: true },
  { id: 'mooring-sqlite', label: 'Mooring (SQLite)', module: mooring, args: ['sqlite'], auth: true },
  {
    id: 'mooring-redis',
    label: 'Mooring (Redis)',
    module: mooring,
    args: ['redis'],
    auth: true,
    redis: true,
  },
  { id: 'ds-reference', label: 'DS reference (memory)', module: reference, args: ['memory'], auth: false },
  { id: 'ds-reference-file', label: 'DS reference (file)', module: reference, args: ['file'], auth: false },
];

export interface Throughput {
  count: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  serverCpu: number;
}

export interface StreamsResult {
  id: string;
  label: string;
  appends?: Throughput;
  producerAppends?: Throughput;
  reads?: {
    catchUps: number;
    seconds: number;
    perSecond: number;
    mbPerSecond: number;
    bodyBytesPerCatchUp: number;
    headerBytesPerCatchUp: number;
    responsesPerCatchUp: number;
    dataBytesPerStream: number;
  };
  live?: { deliveries: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** One stream, `watchers` long-poll followers, an append every 100 ms. */
  watchers?: {
    watchers: number;
    appends: number;
    deliveries: number;
    p50Ms: number;
    p99Ms: number;
    /** Server CPU-ms per append (every follower's answer and its next poll included). */
    cpuMsPerAppend: number;
  };
  error?: string;
}

async function cpuSeconds(server: ServerProcess): Promise<number> {
  const u = await server.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function timed(
  server: ServerProcess,
  writers: number,
  perWriter: number,
  send: (writer: number, i: number) => Promise<void>,
): Promise<Throughput> {
  const latencies: number[] = [];
  const cpu0 = await cpuSeconds(server);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let i = 0; i < perWriter; i++) {
        const start = performance.now();
        await send(w, i);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const serverCpu = ((await cpuSeconds(server)) - cpu0) / seconds;
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    seconds,
    perSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    serverCpu,
  };
}

function headerBytes(res: Response): number {
  let n = `HTTP/1.1 ${res.status} ${res.statusText}\r\n`.length + 2;
  res.headers.forEach((value, name) => {
    n += name.length + value.length + 4;
  });
  return n;
}

async function runTarget(target: Target, o: StreamsOptions): Promise<StreamsResult> {
  const redis: RedisServer | undefined = target.redis
    ? await startRedis({ appendonly: 'everysec' })
    : undefined;
  const server = await spawnServer(target.module, {
    args: redis ? [...target.args, redis.url] : target.args,
    label: target.id,
  });
  const base = `http://127.0.0.1:${server.port}/v1/stream/bench`;
  const auth: Record<string, string> = target.auth ? { authorization: `Bearer ${BENCH_KEY}` } : {};
  const payload = `${'x'.repeat(Math.max(1, o.payloadBytes - 1))}\n`;
  const result: StreamsResult = { id: target.id, label: target.label };
  const expect = async (res: Response, ok: number[], what: string) => {
    await res.arrayBuffer();
    if (!ok.includes(res.status)) throw new Error(`${what}: HTTP ${res.status}`);
  };
  try {
    for (const kind of ['plain', 'producer', 'live'])
      for (let s = 0; s < o.streams; s++) {
        const res = await fetch(`${base}/${kind}-${s}`, {
          method: 'PUT',
          headers: { ...auth, 'content-type': 'text/plain' },
        });
        await expect(res, [201], 'create');
      }

    process.stderr.write(`  ${target.id}: appends\n`);
    result.appends = await timed(server, o.streams, o.appends, async (w) => {
      const res = await fetch(`${base}/plain-${w}`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'text/plain' },
        body: payload,
      });
      await expect(res, [204], 'append');
    });

    process.stderr.write(`  ${target.id}: producer appends\n`);
    result.producerAppends = await timed(server, o.streams, o.appends, async (w, i) => {
      const res = await fetch(`${base}/producer-${w}`, {
        method: 'POST',
        headers: {
          ...auth,
          'content-type': 'text/plain',
          'producer-id': `writer-${w}`,
          'producer-epoch': '0',
          'producer-seq': String(i),
        },
        body: payload,
      });
      await expect(res, [200], 'producer append');
    });

    process.stderr.write(`  ${target.id}: catch-up reads\n`);
    let body = 0;
    let headers = 0;
    let responses = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: o.streams }, async (_, s) => {
        for (let round = 0; round < o.readRounds; round++) {
          let offset = '-1';
          for (;;) {
            const res = await fetch(`${base}/plain-${s}?offset=${encodeURIComponent(offset)}`, {
              headers: auth,
            });
            const bytes = (await res.arrayBuffer()).byteLength;
            if (res.status !== 200) throw new Error(`catch-up read: HTTP ${res.status}`);
            body += bytes;
            headers += headerBytes(res);
            responses++;
            offset = res.headers.get('stream-next-offset') ?? offset;
            if (res.headers.get('stream-up-to-date') === 'true') break;
          }
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const catchUps = o.streams * o.readRounds;
    result.reads = {
      catchUps,
      seconds,
      perSecond: catchUps / seconds,
      mbPerSecond: body / seconds / 2 ** 20,
      bodyBytesPerCatchUp: body / catchUps,
      headerBytesPerCatchUp: headers / catchUps,
      responsesPerCatchUp: responses / catchUps,
      dataBytesPerStream: o.appends * payload.length,
    };

    process.stderr.write(`  ${target.id}: live\n`);
    const latencies: number[] = [];
    let stop = false;
    const followers = Array.from({ length: o.streams }, async (_, s) => {
      let offset = 'now';
      while (!stop) {
        const res = await fetch(`${base}/live-${s}?offset=${offset}&live=long-poll`, { headers: auth });
        const text = await res.text();
        const now = Date.now();
        if (res.status === 200)
          for (const line of text.split('\n')) if (line !== '') latencies.push(now - Number(line));
        offset = res.headers.get('stream-next-offset') ?? offset;
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    const writers = Array.from({ length: o.streams }, async (_, s) => {
      const until = Date.now() + o.liveSeconds * 1000;
      while (Date.now() < until) {
        const res = await fetch(`${base}/live-${s}`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'text/plain' },
          body: `${Date.now()}\n`,
        });
        await expect(res, [204], 'live append');
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    await Promise.all(writers);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    // followers end with their next answer: one more append each wakes them
    await Promise.all(
      Array.from({ length: o.streams }, (_, s) =>
        fetch(`${base}/live-${s}`, {
          method: 'POST',
          headers: { ...auth, 'content-type': 'text/plain' },
          body: `${Date.now()}\n`,
        }).then((r) => r.arrayBuffer()),
      ),
    );
    await Promise.race([Promise.all(followers), new Promise((r) => setTimeout(r, 5_000))]);
    latencies.sort((a, b) => a - b);
    result.live = {
      deliveries: latencies.length,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      maxMs: latencies.at(-1) ?? 0,
    };

    process.stderr.write(`  ${target.id}: ${o.watchers} watchers of one stream\n`);
    result.watchers = await watch(server, `${base}/watched`, auth, o.watchers, o.liveSeconds);
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  } finally {
    await server.stop();
    await redis?.close();
  }
  return result;
}

/**
 * One stream followed by `count` long-polls (each polls again at once from its next offset) while a
 * writer appends a timestamp every 100 ms for `seconds`: append → delivery latency over every
 * follower, and the server's CPU per append.
 */
async function watch(
  server: ServerProcess,
  url: string,
  auth: Record<string, string>,
  count: number,
  seconds: number,
): Promise<NonNullable<StreamsResult['watchers']>> {
  const created = await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'text/plain' } });
  await created.arrayBuffer();
  if (created.status !== 201) throw new Error(`watched stream: HTTP ${created.status}`);
  const latencies: number[] = [];
  let stop = false;
  let measuring = false;
  const followers = Array.from({ length: count }, async () => {
    let offset = 'now';
    while (!stop) {
      const res = await fetch(`${url}?offset=${offset}&live=long-poll`, { headers: auth });
      const text = await res.text();
      const now = Date.now();
      if (res.status === 200 && measuring)
        for (const line of text.split('\n')) if (line !== '') latencies.push(now - Number(line));
      offset = res.headers.get('stream-next-offset') ?? offset;
    }
  });
  const append = async () => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'text/plain' },
      body: `${Date.now()}\n`,
    });
    await res.arrayBuffer();
    if (res.status !== 204) throw new Error(`watched append: HTTP ${res.status}`);
  };
  await new Promise((r) => setTimeout(r, 500)); // every follower waiting
  measuring = true;
  const cpu0 = await cpuSeconds(server);
  let appends = 0;
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    await append();
    appends++;
    await new Promise((r) => setTimeout(r, 100));
  }
  const cpu = (await cpuSeconds(server)) - cpu0;
  measuring = false;
  stop = true;
  await append(); // wakes every follower, which then ends
  await Promise.race([Promise.all(followers), new Promise((r) => setTimeout(r, 5_000))]);
  latencies.sort((a, b) => a - b);
  return {
    watchers: count,
    appends,
    deliveries: latencies.length,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    cpuMsPerAppend: (cpu * 1000) / appends,
  };
}

export async function runStreams(o: StreamsOptions): Promise<StreamsResult[]> {
  const results: StreamsResult[] = [];
  for (const target of STREAM_TARGETS) {
    if (o.only && !o.only.includes(target.id)) continue;
    process.stderr.write(`streams: ${target.label}\n`);
    results.push(await runTarget(target, o));
  }
  return results;
}
