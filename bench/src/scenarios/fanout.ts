/**
 * Fan-out: 1 publisher → N subscribers on one channel, 100-byte payloads, against each server in
 * its own child process, with the same load generator (this process) for all of them.
 *
 *   load generator (this process)                server child (one at a time)
 *   ┌─────────────────────────────┐   ws/TCP    ┌──────────────────────────┐
 *   │ publisher ──────────────────┼────────────▶│ raw ws | Socket.IO |     │
 *   │ N subscribers ◀─────────────┼─────────────│ Mooring (memory|sqlite)  │
 *   └─────────────────────────────┘             └──────────────────────────┘
 */
import { fileURLToPath } from 'node:url';
import { type RedisServer, startRedis } from '@mooring/testkit';
import type { ByteMeter } from '../clients/byte-meter.ts';
import type { Closable, FanoutTarget, Publisher } from '../clients/fanout-target.ts';
import { withTimeout } from '../clients/fanout-target.ts';
import { mooringTarget } from '../clients/mooring-client.ts';
import { rawWsTarget } from '../clients/raw-ws-client.ts';
import { socketIoTarget } from '../clients/socketio-client.ts';
import { socketIoSdkTarget } from '../clients/socketio-sdk-client.ts';
import { scanPayloads } from '../payload.ts';
import { type RedisCost, readRedis, redisCost } from '../redis-stats.ts';
import { type ServerProcess, spawnServer } from '../spawn-server.ts';
import {
  closeAll,
  DeliveryBook,
  type PassResult,
  runRatePass,
  runSaturatePass,
  settle,
} from './fanout-passes.ts';

export interface FanoutOptions {
  subscribers: number;
  /** Offered publish rate of the rate pass, messages/s. */
  rate: number;
  /** Measured seconds of each pass. */
  seconds: number;
  warmupSeconds: number;
  /** Messages in flight in the saturate pass; 0 skips it. */
  inFlight: number;
  /** How long to wait for late deliveries after a pass, ms. */
  drainMs: number;
  /** Subscribers connecting at once. */
  connectConcurrency: number;
  /** How many times each server runs; the least disturbed pass is reported. */
  rounds: number;
  /** Ids of the servers to run (default: all). */
  only?: string[];
}

export interface ServerSpec {
  id: string;
  label: string;
  module: string;
  args: string[];
  target: FanoutTarget;
  /** The meter the target's subscribers are counted in (wire columns), if any. */
  meter?: ByteMeter;
  /**
   * Mooring on the Redis store: a redis-server (AOF everysec) is started for the run and its URL
   * appended to `args`; `nodes` server processes share it, the subscribers spread over them
   * round-robin and the publisher on the first (default 1).
   */
  redis?: { nodes: number };
}

export const serverModule = (name: string): string =>
  fileURLToPath(new URL(`../servers/${name}`, import.meta.url));

export const FANOUT_SERVERS: readonly ServerSpec[] = [
  { id: 'raw-ws', label: 'raw ws', module: serverModule('raw-ws-server.ts'), args: [], target: rawWsTarget },
  {
    id: 'socketio',
    label: 'Socket.IO 4.8',
    module: serverModule('socketio-server.ts'),
    args: [],
    target: socketIoTarget,
  },
  {
    id: 'mooring',
    label: 'Mooring (memory)',
    module: serverModule('mooring-server.ts'),
    args: ['memory'],
    target: mooringTarget,
  },
  {
    id: 'mooring-sqlite',
    label: 'Mooring (SQLite)',
    module: serverModule('mooring-server.ts'),
    args: ['sqlite'],
    target: mooringTarget,
  },
];

/** Servers a run can name with --servers but that are not in the default run. */
export const EXTRA_FANOUT_SERVERS: readonly ServerSpec[] = [
  ...[1, 2, 3].map(
    (nodes): ServerSpec => ({
      id: nodes === 1 ? 'mooring-redis' : `mooring-redis-${nodes}`,
      label: nodes === 1 ? 'Mooring (Redis store)' : `Mooring (Redis store, ${nodes} nodes)`,
      module: serverModule('mooring-server.ts'),
      args: ['redis'],
      target: mooringTarget,
      redis: { nodes },
    }),
  ),
  {
    id: 'socketio-sdk',
    label: 'Socket.IO 4.8 (client SDK)',
    module: serverModule('socketio-server.ts'),
    args: [],
    target: socketIoSdkTarget,
  },
];

export interface FanoutServerResult {
  id: string;
  label: string;
  subscribers: number;
  connectSeconds: number;
  /** One per mode: with several rounds, the least disturbed (see runFanout). */
  passes: PassResult[];
  /** Every pass of every round. */
  allPasses?: PassResult[];
  /** Set when the server could not be run or a pass failed; passes holds what completed. */
  error?: string;
  /** Redis store: what Redis did per publish from the subscribers' connect to the end (both passes). */
  redis?: RedisCost;
}

/** Several server processes measured as one (their CPU summed): the nodes sharing one Redis. */
function cluster(nodes: ServerProcess[]): ServerProcess {
  const first = nodes[0]!;
  return {
    port: first.port,
    pid: first.pid,
    async cpuUsage() {
      const usages = await Promise.all(nodes.map((n) => n.cpuUsage()));
      return usages.reduce((a, u) => ({ user: a.user + u.user, system: a.system + u.system }), {
        user: 0,
        system: 0,
      });
    },
    ask: (type, timeoutMs) => first.ask(type, timeoutMs),
    async stop(graceMs) {
      await Promise.all(nodes.map((n) => n.stop(graceMs)));
    },
  };
}

async function connectSubscribers(
  spec: ServerSpec,
  ports: number[],
  book: DeliveryBook,
  options: FanoutOptions,
  into: Closable[],
  closing: { value: boolean },
): Promise<void> {
  const handlers = {
    onText: (text: string) => {
      scanPayloads(text, book.onPayload);
    },
    onClose: (reason: string) => {
      if (closing.value) return;
      if (book.disconnects++ === 0)
        process.stderr.write(`  [${spec.label}] a subscriber disconnected: ${reason}\n`);
      book.subscribers--;
    },
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < options.subscribers && !closing.value) {
      const port = ports[next % ports.length]!;
      next++;
      const subscriber = await spec.target.subscribe(port, handlers);
      // A failed or timed-out connect phase may have closed everything meanwhile.
      if (closing.value) {
        subscriber.close();
        return;
      }
      into.push(subscriber);
      book.subscribers++;
      if (into.length % 250 === 0) process.stderr.write(`  [${spec.label}] ${into.length} subscribers\n`);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(options.connectConcurrency, options.subscribers) }, worker),
  );
}

export async function runFanoutServer(spec: ServerSpec, options: FanoutOptions): Promise<FanoutServerResult> {
  const result: FanoutServerResult = {
    id: spec.id,
    label: spec.label,
    subscribers: 0,
    connectSeconds: 0,
    passes: [],
  };
  const subscribers: Closable[] = [];
  const closing = { value: false };
  let publisher: Publisher | undefined;
  process.stderr.write(`fanout: ${spec.label}\n`);
  let server: ServerProcess | undefined;
  let redis: RedisServer | undefined;
  try {
    let ports: number[];
    if (spec.redis !== undefined) {
      const r = await startRedis({ appendonly: 'everysec' });
      redis = r;
      const nodes: ServerProcess[] = [];
      try {
        for (let i = 0; i < spec.redis.nodes; i++) {
          nodes.push(
            await spawnServer(spec.module, { args: [...spec.args, r.url], label: `${spec.label} #${i + 1}` }),
          );
        }
      } catch (error) {
        await Promise.all(nodes.map((n) => n.stop()));
        throw error;
      }
      server = cluster(nodes);
      ports = nodes.map((n) => n.port);
    } else {
      server = await spawnServer(spec.module, { args: spec.args, label: spec.label });
      ports = [server.port];
    }
    const book = new DeliveryBook();
    const started = performance.now();
    await withTimeout(
      connectSubscribers(spec, ports, book, options, subscribers, closing),
      60000,
      'connecting subscribers',
    );
    publisher = await spec.target.publisher(server.port);
    // After the connections: their registry and presence writes are not the publishes' cost.
    const redisBefore = redis === undefined ? undefined : await readRedis(redis);
    result.connectSeconds = (performance.now() - started) / 1000;
    result.subscribers = book.subscribers;
    process.stderr.write(
      `  [${spec.label}] ${book.subscribers} subscribers connected in ${result.connectSeconds.toFixed(1)} s\n`,
    );
    const ctx = { label: spec.label, book, publisher, server, drainMs: options.drainMs, meter: spec.meter };
    result.passes.push(await runRatePass(ctx, options.rate, options.warmupSeconds, options.seconds));
    if (options.inFlight > 0) {
      if (!(await settle(book))) process.stderr.write(`  [${spec.label}] still delivering after 30 s\n`);
      result.passes.push(await runSaturatePass(ctx, options.inFlight, 1, options.seconds));
    }
    if (redis !== undefined && redisBefore !== undefined)
      result.redis = redisCost(redisBefore, await readRedis(redis));
  } catch (error) {
    result.error = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    process.stderr.write(`  [${spec.label}] failed: ${result.error}\n`);
  } finally {
    closing.value = true;
    closeAll(subscribers);
    publisher?.close();
    await server?.stop();
    await redis?.close();
    spec.meter?.clear();
  }
  return result;
}

/**
 * The pass of each mode with the least CPU taken by other processes: on a shared machine, the
 * least disturbed measurement (not the best number).
 */
function leastDisturbed(passes: PassResult[]): PassResult[] {
  const chosen = new Map<PassResult['mode'], PassResult>();
  for (const pass of passes) {
    const held = chosen.get(pass.mode);
    if (held === undefined || (pass.otherCpu ?? 0) < (held.otherCpu ?? 0)) chosen.set(pass.mode, pass);
  }
  return [...chosen.values()];
}

/**
 * Runs every selected server `rounds` times (alternating the order, so no server always runs
 * first or last) and keeps, per server and mode, the least disturbed pass; all are in `allPasses`.
 * `specs` replaces the servers of the fan-out scenario (the transports scenario passes its own).
 */
export async function runFanout(
  options: FanoutOptions,
  specs: readonly ServerSpec[] = options.only === undefined
    ? FANOUT_SERVERS
    : [...FANOUT_SERVERS, ...EXTRA_FANOUT_SERVERS].filter((spec) => options.only?.includes(spec.id)),
  scenario = 'fanout',
): Promise<FanoutServerResult[]> {
  const byId = new Map<string, FanoutServerResult[]>();
  for (let round = 1; round <= options.rounds; round++) {
    if (options.rounds > 1) process.stderr.write(`${scenario} round ${round} of ${options.rounds}\n`);
    for (const spec of round % 2 === 1 ? specs : [...specs].reverse()) {
      const result = await runFanoutServer(spec, options);
      result.passes = result.passes.map((pass) => ({ ...pass, round }));
      byId.set(spec.id, [...(byId.get(spec.id) ?? []), result]);
      // Let the sockets of the previous run close before the next server starts.
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  return specs.map((spec) => {
    const runs = byId.get(spec.id) ?? [];
    const allPasses = runs.flatMap((run) => run.passes);
    const error = runs.find((run) => run.error !== undefined)?.error;
    return {
      id: spec.id,
      label: spec.label,
      subscribers: Math.min(...runs.map((run) => run.subscribers)),
      connectSeconds: Math.max(...runs.map((run) => run.connectSeconds)),
      passes: leastDisturbed(allPasses),
      allPasses,
      ...(runs[0]?.redis === undefined ? {} : { redis: runs[0].redis }),
      ...(error === undefined ? {} : { error }),
    };
  });
}
