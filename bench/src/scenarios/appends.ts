/**
 * Store-level appends: what an AI app's token stream costs the store, without any network.
 *
 * - concurrent: R responses at once (one channel each, like R simultaneous chat sessions), each a
 *   `create` then A appends of 4–20-char deltas, every append awaited before the next of the same
 *   response. Result: acknowledged appends/s (ack = the promise resolved = committed, for SQLite).
 * - long message: one message receiving L appends in sequence. Appends must cost O(delta), never
 *   O(message), so the last 100 should take about as long as the first 100 (ratio ≈ 1).
 *
 * Each store gets a fresh temporary directory, removed afterwards. After each part the rolled-up
 * data is read back and compared with what was appended, so a fast but wrong store shows up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NewOperation, Store } from '@mooring/server';
import { createStore } from '@mooring/server';
import { type RedisServer, startRedis } from '@mooring/testkit';
import { type RedisCost, readRedis, redisCost } from '../redis-stats.ts';
import { Histogram, type LatencySummary } from '../stats.ts';

export type StoreKind = 'sqlite' | 'memory' | 'redis';

export interface AppendsOptions {
  responses: number;
  appendsPerResponse: number;
  longMessageAppends: number;
  stores: StoreKind[];
}

export interface ConcurrentAppendsResult {
  responses: number;
  appendsPerResponse: number;
  appends: number;
  seconds: number;
  appendsPerSec: number;
  /** Time from calling append to its promise resolving, per append (ms). */
  latency: LatencySummary;
  /** Every response's rolled-up data equals the concatenation of its deltas. */
  verified: boolean;
}

export interface LongMessageResult {
  appends: number;
  seconds: number;
  appendsPerSec: number;
  first100Ms: number;
  last100Ms: number;
  /** last100Ms / first100Ms. */
  ratio: number;
  /**
   * Median time of one append in the last tenth over the first tenth: the same question as `ratio`,
   * less sensitive to one GC pause or a cold cache in a 100-append window.
   */
  medianRatio: number;
  finalLength: number;
  verified: boolean;
}

export interface AppendsResult {
  store: StoreKind;
  concurrent?: ConcurrentAppendsResult;
  longMessage?: LongMessageResult;
  /** Redis: what Redis did per append in the concurrent part (one script per append). */
  redis?: RedisCost;
  error?: string;
}

const DAY = 24 * 60 * 60 * 1000;
const APPEND_OPTIONS = { maxMessageSize: 64 * 1024 * 1024 };
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz     ,.';

/** Deterministic deltas (mulberry32), 4–20 chars, so every run appends the same text. */
function deltaPool(size: number, seed = 42): string[] {
  let state = seed >>> 0;
  const random = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Array.from({ length: size }, () => {
    const length = 4 + Math.floor(random() * 17);
    let text = '';
    for (let i = 0; i < length; i++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
    return text;
  });
}

const DELTAS = deltaPool(4096);
const delta = (n: number): string => DELTAS[n % DELTAS.length]!;

async function createMessage(store: Store, channel: string, id: string): Promise<string> {
  const op: NewOperation = { action: 'create', publisher: '', id, name: 'text', data: '', clientId: 'bench' };
  const { results } = await store.append(channel, [op], APPEND_OPTIONS);
  const serial = results[0]?.serial;
  if (serial === undefined) throw new Error(`no serial for the create on ${channel}`);
  return serial;
}

function appendOp(id: string, serial: string, data: string): NewOperation {
  return { action: 'append', publisher: '', id, serial, data, clientId: 'bench' };
}

async function readData(store: Store, channel: string): Promise<unknown> {
  const page = await store.history(channel, { direction: 'backwards', limit: 1 });
  return page.messages[0]?.data;
}

export async function runConcurrentAppends(
  store: Store,
  options: AppendsOptions,
): Promise<ConcurrentAppendsResult> {
  const { responses, appendsPerResponse } = options;
  const channels = Array.from({ length: responses }, (_, i) => `bench:response-${i}`);
  const serials = await Promise.all(channels.map((channel, i) => createMessage(store, channel, `r${i}`)));
  const histogram = new Histogram();
  const started = performance.now();
  await Promise.all(
    channels.map(async (channel, i) => {
      const serial = serials[i]!;
      for (let n = 0; n < appendsPerResponse; n++) {
        const sent = performance.now();
        await store.append(channel, [appendOp(`r${i}:${n}`, serial, delta(i + n))], APPEND_OPTIONS);
        histogram.recordMs(performance.now() - sent);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  let verified = true;
  for (let i = 0; i < responses; i++) {
    let expected = '';
    for (let n = 0; n < appendsPerResponse; n++) expected += delta(i + n);
    if ((await readData(store, channels[i]!)) !== expected) verified = false;
  }
  const appends = responses * appendsPerResponse;
  return {
    responses,
    appendsPerResponse,
    appends,
    seconds,
    appendsPerSec: appends / seconds,
    latency: histogram.summary(),
    verified,
  };
}

export async function runLongMessage(store: Store, appends: number): Promise<LongMessageResult> {
  const channel = 'bench:long-message';
  const serial = await createMessage(store, channel, 'long');
  const durations = new Float64Array(appends);
  let expected = '';
  const started = performance.now();
  for (let n = 0; n < appends; n++) {
    const data = delta(n);
    expected += data;
    const sent = performance.now();
    await store.append(channel, [appendOp(`long:${n}`, serial, data)], APPEND_OPTIONS);
    durations[n] = performance.now() - sent;
  }
  const seconds = (performance.now() - started) / 1000;
  const window = Math.min(100, Math.floor(appends / 2));
  const sum = (from: number, to: number): number => durations.subarray(from, to).reduce((a, b) => a + b, 0);
  const first100Ms = sum(0, window);
  const last100Ms = sum(appends - window, appends);
  const tenth = Math.max(1, Math.floor(appends / 10));
  const median = (from: number, to: number): number => {
    const sorted = Array.from(durations.subarray(from, to)).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };
  const medianRatio = median(appends - tenth, appends) / median(0, tenth);
  const data = await readData(store, channel);
  return {
    appends,
    seconds,
    appendsPerSec: appends / seconds,
    first100Ms,
    last100Ms,
    ratio: last100Ms / first100Ms,
    medianRatio,
    finalLength: typeof data === 'string' ? data.length : -1,
    verified: data === expected,
  };
}

async function runStore(kind: StoreKind, options: AppendsOptions): Promise<AppendsResult> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-appends-'));
  const result: AppendsResult = { store: kind };
  let store: Store | undefined;
  let redis: RedisServer | undefined;
  try {
    // Redis: a redis-server of its own, with the AOF (everysec) a production node would use.
    if (kind === 'redis') redis = await startRedis({ appendonly: 'everysec' });
    store = await createStore(
      kind === 'sqlite'
        ? { kind: 'sqlite', path: join(dir, 'bench.db') }
        : redis
          ? { kind: 'redis', url: redis.url }
          : { kind: 'memory' },
      () => DAY,
    );
    process.stderr.write(
      `appends [${kind}]: ${options.responses} responses × ${options.appendsPerResponse} appends\n`,
    );
    const before = redis === undefined ? undefined : await readRedis(redis);
    result.concurrent = await runConcurrentAppends(store, options);
    if (redis !== undefined && before !== undefined) result.redis = redisCost(before, await readRedis(redis));
    process.stderr.write(
      `  ${Math.round(result.concurrent.appendsPerSec).toLocaleString('en-US')} appends/s; long message: ${options.longMessageAppends} appends\n`,
    );
    result.longMessage = await runLongMessage(store, options.longMessageAppends);
    process.stderr.write(`  last 100 / first 100: ${result.longMessage.ratio.toFixed(2)}\n`);
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
    process.stderr.write(`  [${kind}] failed: ${result.error}\n`);
  } finally {
    await store?.close();
    await redis?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

export async function runAppends(options: AppendsOptions): Promise<AppendsResult[]> {
  const results: AppendsResult[] = [];
  for (const kind of options.stores) results.push(await runStore(kind, options));
  return results;
}
