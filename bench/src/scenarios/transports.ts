/**
 * Mooring over its three transports, same server, same frames (PROTOCOL.md §12): WebSocket, HTTP
 * streaming (SSE) and long-polling. Two parts, each run against a fresh server per transport:
 *
 *   fan-out  1 WebSocket publisher → N subscribers on the transport under test, one channel:
 *            the rate and saturate passes of the fan-out scenario (fanout-passes.ts), plus the
 *            subscribers' wire bytes per delivery.
 *   tokens   R responses streaming appends at T tokens/s, one subscriber per response on the
 *            transport under test (token-stream.ts): latency and wire bytes per token.
 *
 * The server is Mooring with the memory store (the store is the same for every transport, so it is
 * left out) and no per-connection publish limit (the saturated publisher may exceed 1,000/s).
 */
import { ByteMeter } from '../clients/byte-meter.ts';
import type { FanoutTarget } from '../clients/fanout-target.ts';
import { mooringWsTarget, subscribeWs } from '../clients/mooring-client.ts';
import { mooringHttpTarget, subscribeHttp } from '../clients/mooring-http-client.ts';
import {
  type FanoutOptions,
  type FanoutServerResult,
  runFanout,
  type ServerSpec,
  serverModule,
} from './fanout.ts';
import {
  runTokenStream,
  type SubscribeFn,
  type TokenStreamOptions,
  type TokenStreamResult,
} from './token-stream.ts';

export type TransportId = 'ws' | 'sse' | 'longpoll';

interface TransportSpec {
  id: TransportId;
  label: string;
  target: (meter: ByteMeter) => FanoutTarget;
  subscribe: SubscribeFn;
}

export const TRANSPORTS: readonly TransportSpec[] = [
  {
    id: 'ws',
    label: 'WebSocket',
    target: (meter) => mooringWsTarget(meter),
    subscribe: (port, channel, handlers, meter) => subscribeWs(port, channel, handlers, meter),
  },
  {
    id: 'sse',
    label: 'SSE (HTTP streaming)',
    target: (meter) => mooringHttpTarget('sse', meter),
    subscribe: (port, channel, handlers, meter) => subscribeHttp('sse', port, channel, handlers, meter),
  },
  {
    id: 'longpoll',
    label: 'long-polling',
    target: (meter) => mooringHttpTarget('longpoll', meter),
    subscribe: (port, channel, handlers, meter) => subscribeHttp('longpoll', port, channel, handlers, meter),
  },
];

const SERVER_MODULE = serverModule('mooring-server.ts');
const SERVER_ARGS = ['memory', 'no-publish-limit'];

export interface TransportsOptions {
  fanout: Omit<FanoutOptions, 'only'>;
  tokens: TokenStreamOptions;
  rounds: number;
  /** Transport ids to run (default: all three). */
  only?: string[];
}

export interface TokenTransportResult {
  id: TransportId;
  label: string;
  /** With several rounds, the least disturbed (least CPU used by other processes). */
  result?: TokenStreamResult;
  all: TokenStreamResult[];
  error?: string;
}

export interface TransportsResult {
  fanout: FanoutServerResult[];
  tokens: TokenTransportResult[];
}

export async function runTransports(options: TransportsOptions): Promise<TransportsResult> {
  const transports = TRANSPORTS.filter((t) => options.only === undefined || options.only.includes(t.id));
  const specs: ServerSpec[] = transports.map((t) => {
    const meter = new ByteMeter();
    return {
      id: t.id,
      label: t.label,
      module: SERVER_MODULE,
      args: SERVER_ARGS,
      target: t.target(meter),
      meter,
    };
  });
  const fanout = await runFanout({ ...options.fanout, rounds: options.rounds }, specs, 'transports fan-out');

  const runs = new Map<TransportId, { all: TokenStreamResult[]; error?: string }>();
  for (let round = 1; round <= options.rounds; round++) {
    if (options.rounds > 1) process.stderr.write(`transports tokens round ${round} of ${options.rounds}\n`);
    for (const t of round % 2 === 1 ? transports : [...transports].reverse()) {
      const entry = runs.get(t.id) ?? { all: [] };
      runs.set(t.id, entry);
      try {
        const result = await runTokenStream(
          t.label,
          SERVER_MODULE,
          SERVER_ARGS,
          t.subscribe,
          new ByteMeter(),
          {
            ...options.tokens,
          },
        );
        entry.all.push({ ...result, round });
      } catch (error) {
        entry.error = error instanceof Error ? error.message.split('\n')[0]! : String(error);
        process.stderr.write(`  [${t.label}] tokens failed: ${entry.error}\n`);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const tokens = transports.map((t): TokenTransportResult => {
    const entry = runs.get(t.id) ?? { all: [] };
    let best: TokenStreamResult | undefined;
    for (const r of entry.all) if (best === undefined || (r.otherCpu ?? 0) < (best.otherCpu ?? 0)) best = r;
    return {
      id: t.id,
      label: t.label,
      all: entry.all,
      ...(best === undefined ? {} : { result: best }),
      ...(entry.error === undefined ? {} : { error: entry.error }),
    };
  });
  return { fanout, tokens };
}
