/**
 * How fan-out cost grows with the number of subscribers: one Mooring server (memory store, its own
 * process) and, per point of the curve, C channels × S subscribers each, spread over W subscriber
 * processes (subscriber-worker.ts) that connect from 127.0.0.2, .3, … in bounded parallel batches.
 * The publisher (this process) sends 100-byte payloads round-robin over the channels at a rate that
 * offers the same deliveries/s at every point (`deliveries` ÷ S messages/s), so what changes along
 * the curve is only how many connections the server holds and how many each publish reaches.
 *
 * Reported per point: connect time, delivered/s, publish → deliver p50/p99, missing deliveries,
 * a bystander's ping round trip (a connection of its own, attached to nothing, pinging every 50 ms:
 * how long the server's other connections wait behind the fan-out), the server's CPU (split into user and system) and its write/read system calls per second, the
 * load generator's CPU (publisher + workers), every other process's, and deliveries per server
 * core-second with its ratio to the first point (goal ≥ 0.8×).
 */

import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ServerFrame } from '@mooring/protocol';
import { BENCH_KEY } from '../bench-config.ts';
import { connect } from '../clients/mooring-client.ts';
import { sharedClockMs } from '../clock.ts';
import { cpuSeconds, machineBusySeconds, processCpuSeconds } from '../cpu-usage.ts';
import { makePayload } from '../payload.ts';
import { type ServerProcess, spawnServer } from '../spawn-server.ts';
import { Histogram, type LatencySummary } from '../stats.ts';
import type { WorkerReport, WorkerRequest, WorkerStart } from './subscriber-worker.ts';

export interface GrowthPoint {
  channels: number;
  subscribersPerChannel: number;
}

export interface FanoutGrowthOptions {
  points: GrowthPoint[];
  /** Offered deliveries/s at every point. */
  deliveries: number;
  seconds: number;
  warmupSeconds: number;
  workers: number;
  /** Subscribers connecting at once, over all workers. */
  connectConcurrency: number;
  /** Bound on the connect phase, ms. */
  connectTimeoutMs: number;
  /**
   * `mooring` (memory store), or `rooms-floor`: a bare `ws` server with rooms speaking the same
   * frames (servers/rooms-floor-server.ts), the floor of what per-channel fan-out costs.
   */
  server: GrowthServer;
}

export type GrowthServer = 'mooring' | 'rooms-floor';

export interface FanoutGrowthResult {
  channels: number;
  subscribersPerChannel: number;
  subscribers: number;
  connected: number;
  connectFailed: number;
  firstConnectError?: string;
  connectSeconds: number;
  /** Server CPU (cores) while the subscribers connected. */
  connectServerCpu: number;
  offeredMessagesPerSec: number;
  deliveredPerSec: number;
  missing: number;
  latency: LatencySummary;
  /** The bystander's ping → pong round trips during the measured window. */
  bystander: LatencySummary;
  serverCpu: number;
  /** The server's CPU split: user (JavaScript, V8) and system (the kernel: sockets, wakeups), cores. */
  serverUserCpu: number | null;
  serverSysCpu: number | null;
  /** The server's write and read system calls per second (Linux `/proc/<pid>/io`). */
  serverWritesPerSec: number | null;
  serverReadsPerSec: number | null;
  loadCpu: number;
  otherCpu: number | null;
  deliveriesPerServerCore: number;
  disconnects: number;
  publishErrors: number;
  error?: string;
}

const WORKER = fileURLToPath(new URL('./subscriber-worker.ts', import.meta.url));
const SERVERS: Record<
  GrowthServer,
  { path: string; label: string; args: (subscribers: number) => string[] }
> = {
  mooring: {
    path: fileURLToPath(new URL('../servers/mooring-server.ts', import.meta.url)),
    label: 'Mooring (memory)',
    args: (subscribers) => ['memory', 'no-publish-limit', `max-connections=${subscribers + 100}`],
  },
  'rooms-floor': {
    path: fileURLToPath(new URL('../servers/rooms-floor-server.ts', import.meta.url)),
    label: 'rooms floor (ws)',
    args: () => [],
  },
};

class Worker {
  readonly child: ChildProcess;
  readonly #waiting = new Map<string, ((report: WorkerReport) => void)[]>();
  connected = 0;
  readonly index: number;

  constructor(index: number) {
    this.index = index;
    this.child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    this.child.on('message', (report: WorkerReport) => {
      if (report.type === 'progress') this.connected = report.connected;
      const waiter = this.#waiting.get(report.type)?.shift();
      waiter?.(report);
    });
  }

  send(request: WorkerRequest): void {
    if (this.child.connected) this.child.send(request);
  }

  next<T extends WorkerReport['type']>(type: T): Promise<Extract<WorkerReport, { type: T }>> {
    // a worker already gone never emits 'exit' again: waiting for it would leave this promise
    // unsettled, and the run would end with no report ("unsettled top-level await")
    if (this.child.exitCode !== null || this.child.signalCode !== null)
      return Promise.reject(
        new Error(
          `subscriber worker ${this.index} has exited (${this.child.exitCode ?? this.child.signalCode})`,
        ),
      );
    return new Promise((resolve, reject) => {
      const list = this.#waiting.get(type) ?? [];
      list.push(resolve as (report: WorkerReport) => void);
      this.#waiting.set(type, list);
      this.child.once('exit', (code) =>
        reject(new Error(`subscriber worker ${this.index} exited (${code})`)),
      );
    });
  }

  /** Asks the worker; rejects if it has exited or does not answer within 30 s. */
  ask<T extends 'count' | 'report'>(type: T): Promise<Extract<WorkerReport, { type: T }>> {
    const answer = this.next(type);
    this.send({ type });
    return bounded(answer, 30_000, `subscriber worker ${this.index} answering '${type}'`);
  }

  cpu(): number {
    return processCpuSeconds(this.child.pid ?? -1) ?? 0;
  }

  stop(): void {
    this.send({ type: 'stop' });
    setTimeout(() => this.child.kill('SIGKILL'), 2000).unref();
  }
}

function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done in ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Deliveries counted by every worker so far. */
async function totals(workers: Worker[]): Promise<{ total: number; disconnects: number }> {
  const counts = await Promise.all(workers.map((w) => w.ask('count')));
  return counts.reduce((a, c) => ({ total: a.total + c.total, disconnects: a.disconnects + c.disconnects }), {
    total: 0,
    disconnects: 0,
  });
}

interface Snapshot {
  at: number;
  deliveries: number;
  disconnects: number;
  server: number;
  serverDetail: ServerDetail | undefined;
  load: number;
  machine: number | undefined;
}

/** A process's user and system CPU seconds and its read/write system calls so far (Linux). */
interface ServerDetail {
  user: number;
  sys: number;
  reads: number;
  writes: number;
}

function serverDetail(pid: number): ServerDetail | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const io = readFileSync(`/proc/${pid}/io`, 'latin1');
    const count = (name: string): number => Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(io)?.[1]);
    return {
      user: Number(fields[11]) / 100,
      sys: Number(fields[12]) / 100,
      reads: count('syscr'),
      writes: count('syscw'),
    };
  } catch {
    return undefined;
  }
}

async function snapshot(server: ServerProcess, workers: Worker[]): Promise<Snapshot> {
  const machine = machineBusySeconds();
  const at = performance.now();
  const server0 = cpuSeconds(await server.cpuUsage());
  const detail = serverDetail(server.pid);
  const load = cpuSeconds(process.cpuUsage()) + workers.reduce((sum, w) => sum + w.cpu(), 0);
  const { total, disconnects } = await totals(workers);
  return { at, deliveries: total, disconnects, server: server0, serverDetail: detail, load, machine };
}

export async function runGrowthPoint(
  point: GrowthPoint,
  options: FanoutGrowthOptions,
): Promise<FanoutGrowthResult> {
  const subscribers = point.channels * point.subscribersPerChannel;
  const label = `${point.channels} × ${point.subscribersPerChannel}`;
  const rate = options.deliveries / point.subscribersPerChannel;
  const result: FanoutGrowthResult = {
    channels: point.channels,
    subscribersPerChannel: point.subscribersPerChannel,
    subscribers,
    connected: 0,
    connectFailed: 0,
    connectSeconds: 0,
    connectServerCpu: 0,
    offeredMessagesPerSec: rate,
    deliveredPerSec: 0,
    missing: 0,
    latency: new Histogram().summary(),
    bystander: new Histogram().summary(),
    serverCpu: 0,
    serverUserCpu: null,
    serverSysCpu: null,
    serverWritesPerSec: null,
    serverReadsPerSec: null,
    loadCpu: 0,
    otherCpu: null,
    deliveriesPerServerCore: Number.NaN,
    disconnects: 0,
    publishErrors: 0,
  };
  process.stderr.write(`growth fanout: ${label} subscribers, ${rate.toFixed(1)} msgs/s\n`);
  let server: ServerProcess | undefined;
  const workers: Worker[] = [];
  let publisher: Awaited<ReturnType<typeof connect>> | undefined;
  let pinger: Awaited<ReturnType<typeof connect>> | undefined;
  let pinging: NodeJS.Timeout | undefined;
  try {
    const spec = SERVERS[options.server];
    server = await spawnServer(spec.path, {
      args: spec.args(subscribers),
      label: spec.label,
      // GROWTH_PROFILE_DIR: a --cpu-prof of the server at each point, to see where its time goes.
      ...(process.env.GROWTH_PROFILE_DIR === undefined
        ? {}
        : { execArgv: ['--cpu-prof', `--cpu-prof-dir=${process.env.GROWTH_PROFILE_DIR}`] }),
    });
    const count = Math.min(options.workers, subscribers);
    const shares: string[][] = Array.from({ length: count }, () => []);
    for (let i = 0; i < subscribers; i++) shares[i % count]!.push(`growth:${i % point.channels}`);
    const serverCpu0 = cpuSeconds(await server.cpuUsage());
    const started = performance.now();
    for (let w = 0; w < count; w++) {
      const worker = new Worker(w);
      workers.push(worker);
      const start: WorkerStart = {
        type: 'start',
        port: server.port,
        address: `127.0.0.${2 + w}`,
        channels: shares[w]!,
        concurrency: Math.max(1, Math.ceil(options.connectConcurrency / count)),
        key: BENCH_KEY,
      };
      worker.send(start);
    }
    const progress = setInterval(() => {
      const connected = workers.reduce((sum, w) => sum + w.connected, 0);
      process.stderr.write(
        `  [${label}] ~${connected} connected after ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
      );
    }, 5000);
    try {
      const ready = await bounded(
        Promise.all(workers.map((w) => w.next('ready'))),
        options.connectTimeoutMs,
        'connecting subscribers',
      );
      result.connected = ready.reduce((sum, r) => sum + r.connected, 0);
      result.connectFailed = ready.reduce((sum, r) => sum + r.failed, 0);
      const firstError = ready.find((r) => r.firstError !== undefined)?.firstError;
      if (firstError !== undefined) result.firstConnectError = firstError;
    } finally {
      clearInterval(progress);
    }
    result.connectSeconds = (performance.now() - started) / 1000;
    result.connectServerCpu = (cpuSeconds(await server.cpuUsage()) - serverCpu0) / result.connectSeconds;
    process.stderr.write(
      `  [${label}] ${result.connected} connected (${result.connectFailed} failed) in ${result.connectSeconds.toFixed(1)} s\n`,
    );
    if (result.connectFailed > 0)
      throw new Error(`${result.connectFailed} subscribers could not connect: ${result.firstConnectError}`);

    const socket = await connect(server.port);
    publisher = socket;
    socket.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as ServerFrame;
      if (frame.type === 'error') result.publishErrors++;
    });
    socket.on('error', () => {});

    // The bystander: one ping in flight at a time, the next 50 ms after its pong; measured only
    // between the two snapshots.
    const bystander = await connect(server.port);
    pinger = bystander;
    const rtts = new Histogram();
    let measuring = false;
    let pingedAt: number | undefined;
    const ping = (): void => {
      pingedAt = performance.now();
      bystander.send('{"type":"ping","ref":1}');
    };
    bystander.on('message', (data) => {
      if (pingedAt === undefined || !data.toString().startsWith('{"type":"pong"')) return;
      if (measuring) rtts.recordMs(performance.now() - pingedAt);
      pingedAt = undefined;
      pinging = setTimeout(ping, 50);
    });
    bystander.on('error', () => {});
    ping();

    // Open loop: warm-up, then the measured seqs [warm, total); then up to 3 s of drain.
    const warm = Math.round(rate * options.warmupSeconds);
    const total = warm + Math.max(1, Math.round(rate * options.seconds));
    for (const w of workers) w.send({ type: 'window', from: warm, to: total });
    let sent = 0;
    const t0 = performance.now();
    /** Sends what is due by now, up to `limit` (the window opens exactly at `warm`). */
    const publishDue = (limit: number): void => {
      const due = Math.min(limit, Math.floor(((performance.now() - t0) * rate) / 1000) + 1);
      for (; sent < due; sent++) {
        const channel = `growth:${sent % point.channels}`;
        const payload = makePayload(sent, sharedClockMs());
        socket.send(
          `{"type":"publish","ref":${sent},"channel":"${channel}","ops":[{"name":"t","data":"${payload}"}]}`,
        );
      }
    };
    while (sent < warm) {
      publishDue(warm);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const open = await snapshot(server, workers);
    measuring = true;
    while (sent < total) {
      publishDue(total);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const close = await snapshot(server, workers);
    measuring = false;
    result.bystander = rtts.summary();
    const expected = (total - warm) * point.subscribersPerChannel;
    const drainUntil = performance.now() + 3000;
    let reports = await Promise.all(workers.map((w) => w.ask('report')));
    while (reports.reduce((sum, r) => sum + r.measured, 0) < expected && performance.now() < drainUntil) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      reports = await Promise.all(workers.map((w) => w.ask('report')));
    }
    const histogram = new Histogram();
    for (const r of reports) histogram.merge(r.histogram);
    const seconds = (close.at - open.at) / 1000;
    result.latency = histogram.summary();
    result.missing = expected - histogram.count;
    result.deliveredPerSec = (close.deliveries - open.deliveries) / seconds;
    result.serverCpu = (close.server - open.server) / seconds;
    result.loadCpu = (close.load - open.load) / seconds;
    if (open.serverDetail !== undefined && close.serverDetail !== undefined) {
      result.serverUserCpu = (close.serverDetail.user - open.serverDetail.user) / seconds;
      result.serverSysCpu = (close.serverDetail.sys - open.serverDetail.sys) / seconds;
      result.serverWritesPerSec = (close.serverDetail.writes - open.serverDetail.writes) / seconds;
      result.serverReadsPerSec = (close.serverDetail.reads - open.serverDetail.reads) / seconds;
    }
    result.otherCpu =
      open.machine === undefined || close.machine === undefined
        ? null
        : Math.max(0, (close.machine - open.machine) / seconds - result.serverCpu - result.loadCpu);
    result.deliveriesPerServerCore =
      result.serverCpu > 0 ? result.deliveredPerSec / result.serverCpu : Number.NaN;
    result.disconnects = close.disconnects;
    process.stderr.write(
      `  [${label}] ${Math.round(result.deliveredPerSec)} deliveries/s, server ${result.serverCpu.toFixed(2)} cores, p99 ${result.latency.p99.toFixed(1)} ms\n`,
    );
  } catch (error) {
    result.error = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    process.stderr.write(`  [${label}] failed: ${result.error}\n`);
  } finally {
    publisher?.terminate();
    clearTimeout(pinging);
    pinger?.terminate();
    for (const w of workers) w.stop();
    await server?.stop();
    await Promise.all(
      workers.map((w) =>
        w.child.exitCode !== null ? undefined : new Promise((resolve) => w.child.once('exit', resolve)),
      ),
    );
  }
  return result;
}

export async function runFanoutGrowth(options: FanoutGrowthOptions): Promise<FanoutGrowthResult[]> {
  const results: FanoutGrowthResult[] = [];
  for (const point of options.points) results.push(await runGrowthPoint(point, options));
  return results;
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
    : '–';

export function fanoutGrowthMarkdown(results: FanoutGrowthResult[], options: FanoutGrowthOptions): string {
  const base = results[0]?.deliveriesPerServerCore ?? Number.NaN;
  const lines = [
    `### Fan-out growth (${SERVERS[options.server].label}): ${fmt(options.deliveries)} deliveries/s offered at every point, ${options.seconds} s measured, subscribers in ${options.workers} processes`,
    '',
    '| channels × subscribers | connected in s (server CPU) | msgs/s | delivered/s | p50 / p99 ms | missing | bystander ping p50 / p99 / max ms | server CPU (user / sys) | server writes/s (reads/s) | load-gen / other CPU | deliveries / server core-s | ÷ first (≥ 0.8) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const shape = `${fmt(r.channels)} × ${fmt(r.subscribersPerChannel)} = ${fmt(r.subscribers)}`;
    if (r.error !== undefined && r.deliveredPerSec === 0) {
      lines.push(
        `| ${shape} | ${fmt(r.connectSeconds, 1)} | – | – | – | – | – | – | – | – | – | failed: ${r.error} |`,
      );
      continue;
    }
    const ratio = r.deliveriesPerServerCore / base;
    lines.push(
      `| ${shape} | ${fmt(r.connectSeconds, 1)} (${fmt(r.connectServerCpu, 2)}) | ${fmt(r.offeredMessagesPerSec, 1)} | ${fmt(r.deliveredPerSec)} | ${fmt(r.latency.p50, 1)} / ${fmt(r.latency.p99, 1)} | ${fmt(r.missing)} | ${r.bystander.count === 0 ? '–' : `${fmt(r.bystander.p50, 1)} / ${fmt(r.bystander.p99, 1)} / ${fmt(r.bystander.max, 1)}`} | ${fmt(r.serverCpu, 2)}${r.serverUserCpu === null || r.serverSysCpu === null ? '' : ` (${fmt(r.serverUserCpu, 2)} / ${fmt(r.serverSysCpu, 2)})`} | ${r.serverWritesPerSec === null || r.serverReadsPerSec === null ? '–' : `${fmt(r.serverWritesPerSec)} (${fmt(r.serverReadsPerSec)})`} | ${fmt(r.loadCpu, 2)} / ${r.otherCpu === null ? '–' : fmt(r.otherCpu, 2)} | ${fmt(r.deliveriesPerServerCore)} | ${fmt(ratio, 2)}${Number.isFinite(ratio) ? (ratio >= 0.8 ? ' ✓' : ' ✗') : ''} |`,
    );
  }
  return lines.join('\n');
}
