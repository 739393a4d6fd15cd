/**
 * Durable Streams requests for the fuzz run (fuzz-run.ts): random methods on a few stream paths and
 * random garbage paths, with random and mutated protocol headers (content types, Stream-TTL,
 * Stream-Expires-At, Producer-*, Stream-Seq, Stream-Closed, fork headers), bodies (text, JSON, bytes,
 * empty) and queries (offsets, live modes, cursors). Every answer must be below 500. A bystander
 * follows a stream that a steady writer appends to and must receive every append, in order.
 */
import { type prng, randomText } from '@mooring/testkit';

type Rand = ReturnType<typeof prng>;
const KEY = 'bench:secret';
const auth = { authorization: `Bearer ${KEY}` };

const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)] as T;

const PATHS = [
  'fz/a',
  'fz/b',
  'fz/json',
  'fz/fork',
  'fz/%ZZ',
  'fz/..%2F..%2Fetc',
  `fz/${'x'.repeat(1100)}`,
  '',
  'fz/a/b/c',
];
const TYPES = [
  'text/plain',
  'application/json',
  'application/octet-stream',
  'APPLICATION/JSON; charset=utf-8',
  '',
  'nope',
  'a/b/c',
];
const INTS = ['0', '1', '2', '-1', '1.5', 'abc', '', '9007199254740993', '00', '+1', '1e3'];
const OFFSETS = [
  '-1',
  'now',
  '0000000000000000_0000000000000000',
  '0000000000000000_0000000000000007',
  '',
  'abc',
  '-2',
  '1_1',
  '9999999999999999_9999999999999999',
];

function headers(rand: Rand): Record<string, string> {
  const h: Record<string, string> = rand() < 0.9 ? { ...auth } : {};
  const type = pick(rand, TYPES);
  if (type !== '' || rand() < 0.2) h['content-type'] = type || 'text/plain';
  if (rand() < 0.1) h['stream-ttl'] = pick(rand, INTS);
  if (rand() < 0.05)
    h['stream-expires-at'] = rand() < 0.5 ? 'yesterday' : new Date(Date.now() + 60_000).toISOString();
  if (rand() < 0.1) h['stream-closed'] = pick(rand, ['true', 'TRUE', 'false', '1', '']);
  if (rand() < 0.2) {
    h['producer-id'] = pick(rand, ['p', '', 'q', 'x'.repeat(300)]);
    if (rand() < 0.9) h['producer-epoch'] = pick(rand, INTS);
    if (rand() < 0.9) h['producer-seq'] = pick(rand, INTS);
  }
  if (rand() < 0.1) h['stream-seq'] = randomText(rand, 12).replace(/[^\x20-\x7e]/g, '');
  if (rand() < 0.05)
    h['stream-forked-from'] = pick(rand, [
      '/v1/stream/fz/a',
      '/v1/stream/none',
      'garbage',
      '/v1/stream/fz/fork',
    ]);
  if (rand() < 0.03) h['stream-fork-offset'] = pick(rand, OFFSETS);
  if (rand() < 0.03) h['stream-fork-sub-offset'] = pick(rand, INTS);
  return h;
}

function body(rand: Rand): string | Uint8Array<ArrayBuffer> | undefined {
  const r = rand();
  if (r < 0.15) return undefined;
  if (r < 0.45) return randomText(rand, 200);
  if (r < 0.75) return JSON.stringify(rand() < 0.5 ? [{ n: rand() }, [1, 2], 'x'] : { deep: [[[rand()]]] });
  if (r < 0.85) return rand() < 0.5 ? '[]' : '[[[[';
  return new Uint8Array(Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
}

function query(rand: Rand): string {
  const q: string[] = [];
  if (rand() < 0.7) q.push(`offset=${encodeURIComponent(pick(rand, OFFSETS))}`);
  if (rand() < 0.3) q.push(`live=${pick(rand, ['long-poll', 'sse', 'bogus', ''])}`);
  if (rand() < 0.1) q.push(`cursor=${pick(rand, ['1', '99999999999', 'abc'])}`);
  if (rand() < 0.05) q.push('offset=-1');
  return q.length ? `?${q.join('&')}` : '';
}

export interface StreamFuzzStats {
  requests: number;
  statuses: Map<number, number>;
}

/** Sends `count` random Durable Streams requests; throws on any 5xx answer. */
export async function streamFuzzer(
  base: string,
  count: number,
  rand: Rand,
  stats: StreamFuzzStats,
): Promise<void> {
  for (const path of ['fz/a', 'fz/b'])
    await fetch(`${base}/v1/stream/${path}`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'text/plain' },
    });
  await fetch(`${base}/v1/stream/fz/json`, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/json' },
  });
  for (let i = 0; i < count; i++) {
    const method = pick(rand, [
      'PUT',
      'POST',
      'POST',
      'POST',
      'GET',
      'GET',
      'HEAD',
      'DELETE',
      'PATCH',
      'OPTIONS',
    ]);
    const path = pick(rand, PATHS);
    const data = method === 'GET' || method === 'HEAD' ? undefined : body(rand);
    const res = await fetch(`${base}/v1/stream/${path}${method === 'GET' ? query(rand) : ''}`, {
      method,
      headers: headers(rand),
      ...(data === undefined ? {} : { body: data }),
      signal: AbortSignal.timeout(5_000),
    });
    await res.arrayBuffer();
    stats.requests++;
    stats.statuses.set(res.status, (stats.statuses.get(res.status) ?? 0) + 1);
    if (res.status >= 500)
      throw new Error(`Durable Streams: HTTP ${res.status} for ${method} /v1/stream/${path.slice(0, 40)}`);
  }
}

/**
 * A steady writer appending 0, 1, 2, … to one stream and a long-poll follower reading it: returns a
 * stop function resolving to [appended, received in order].
 */
export async function streamBystander(
  base: string,
): Promise<() => Promise<{ appended: number; received: number[] }>> {
  const url = `${base}/v1/stream/bystander/log`;
  await fetch(url, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' } });
  let appended = 0;
  let stopped = false;
  const writer = (async () => {
    while (!stopped) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(appended),
      });
      if (res.status === 204) appended++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const received: number[] = [];
  let offset = '-1';
  const reader = (async () => {
    while (!stopped || received.length < appended) {
      const res = await fetch(`${url}?offset=${offset}&live=long-poll`, { headers: auth });
      if (res.status === 200) received.push(...((await res.json()) as number[]));
      else await res.arrayBuffer();
      offset = res.headers.get('stream-next-offset') ?? offset;
    }
  })();
  return async () => {
    stopped = true;
    await writer;
    await Promise.race([reader, new Promise((r) => setTimeout(r, 5_000))]);
    return { appended, received };
  };
}
