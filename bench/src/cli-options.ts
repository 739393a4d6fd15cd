/**
 * Command line of `npm run bench` (bench/src/run.ts):
 *
 *   node bench/src/run.ts [fanout|appends|transports|streams|all] [--subscribers N] [--seconds S] [--rate R]
 *        [--in-flight W] [--rounds N] [--servers raw-ws,socketio,mooring,mooring-sqlite,socketio-sdk]
 *        [--responses N] [--appends N] [--long-appends N] [--stores sqlite,memory,redis]
 *        [--transports ws,sse,longpoll] [--streams N] [--token-rate T]
 *        [--ds-streams N] [--ds-appends N] [--ds-watchers N] [--ds-servers mooring,mooring-sqlite,mooring-redis,ds-reference,ds-reference-file]
 */
import { parseArgs } from 'node:util';
import { AI_SYSTEMS, type AiSystem } from './scenarios/ai-streaming.ts';
import type { StoreKind } from './scenarios/appends.ts';

export interface BenchOptions {
  scenario: 'fanout' | 'appends' | 'transports' | 'streams' | 'ai' | 'catchup' | 'all';
  /** Fan-out subscribers (default 1000). */
  subscribers: number;
  /** Subscribers per transport in the transports fan-out: --subscribers if given, else 300. */
  transportSubscribers: number;
  seconds: number;
  warmupSeconds: number;
  rate: number;
  inFlight: number;
  rounds: number;
  servers: string[] | undefined;
  responses: number;
  appendsPerResponse: number;
  longMessageAppends: number;
  stores: StoreKind[];
  transports: string[] | undefined;
  streams: number;
  tokenRate: number;
  /** Durable Streams scenario: streams, appends per stream, and which servers. */
  dsStreams: number;
  dsAppends: number;
  dsWatchers: number;
  dsServers: string[] | undefined;
  /** The ai scenario: loads (concurrent responses), answer length, gap, sampled users, systems. */
  aiResponses: number[];
  aiSeconds: number;
  aiGap: number;
  aiSamples: number;
  aiSystems: AiSystem[];
  /** The ai scenario: round trip in ms added between each app and its store or relay (0: none). */
  aiAppRtt: number;
  /** The ai scenario: round trip in ms added between the users and their server (0: none). */
  aiUserRtt: number;
  /** The ai scenario: the frames Mooring's users ask for (compact: PROTOCOL.md §6.5, the SDK's default). */
  aiFrames: 'compact' | 'plain';
  profileDir: string | undefined;
  /** The catchup scenario: gap lengths in seconds. */
  gaps: number[];
}

export const USAGE = `usage: node bench/src/run.ts [fanout|appends|transports|streams|ai|catchup|all] [options]
  --subscribers N   fan-out subscribers (default 1000; 300 per transport in transports)
  --seconds S       measured seconds per fan-out pass (default 8)
  --warmup S        unmeasured seconds before each rate pass (default 2)
  --rate R          offered publish rate of the rate pass, msgs/s (default 50)
  --in-flight W     messages in flight in the saturate pass, 0 to skip it (default 8)
  --rounds N        run each server N times, alternating the order, and report the least
                    disturbed pass (least CPU used by other processes); default 1. ai: every
                    round, then each system's p99 per round, median and target rounds held
  --servers LIST    comma-separated: raw-ws,socketio,mooring,mooring-sqlite (default all),
                    also socketio-sdk (Socket.IO through socket.io-client)
  --responses N     concurrent responses in the appends scenario (default 200)
  --appends N       appends per response (default 500)
  --long-appends N  appends to the single long message (default 20000)
  --stores LIST     comma-separated: sqlite,memory,redis (default sqlite,memory; redis starts
                    a redis-server of its own, AOF everysec)
  --transports LIST comma-separated: ws,sse,longpoll (default all three)
  --streams N       concurrent token-streaming responses in transports (default 50)
  --token-rate T    tokens/s of each response in transports and ai (default 30)
  --ds-streams N    Durable Streams in the streams scenario (default 20)
  --ds-appends N    appends per stream in the streams scenario (default 500)
  --ds-watchers N   long-poll followers of one stream in its watchers pass (default 300)
  --ds-servers L    mooring,mooring-sqlite,mooring-redis,ds-reference,ds-reference-file (default all)
  ai (not part of all):
  --ai-responses L  comma-separated loads, concurrent responses (default 100,500)
  --ai-seconds S    length of each answer in seconds (default 20)
  --ai-gap S        the gap of the sampled users (default 10)
  --ai-samples N    users sampled for the gap and the reload (default 10)
  --ai-systems LIST ${AI_SYSTEMS.join(',')}
  --ai-app-rtt MS   round trip added between each app and its store or relay (Mooring's
                    server, resumable-stream's Redis, the Durable Streams server) by a delaying
                    proxy: the app runs in another zone (default 0; the embedded agents and the
                    floor have no such link)
  --ai-user-rtt MS  round trip added between the users and the server they read from, the
                    same way: users on a distant or mobile network (default 0)
  --ai-frames F     compact (the SDK's default, PROTOCOL.md §6.5) or plain: the messages
                    frames Mooring's users ask for
  --profile DIR     --cpu-prof of every server-side process (app, relay, agent) into DIR
  catchup (not part of all; --stores picks memory or sqlite, the first given):
  --gaps LIST       gap lengths in seconds (default 1,10,60,600)`;

function positiveNumber(
  name: string,
  value: string | undefined,
  fallback: number,
  allowZero = false,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero))
    throw new Error(`--${name} must be a positive number`);
  return n;
}

function list(value: string | undefined): string[] | undefined {
  return value === undefined
    ? undefined
    : value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
}

export function parseBenchOptions(argv: string[]): BenchOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      subscribers: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      rate: { type: 'string' },
      'in-flight': { type: 'string' },
      rounds: { type: 'string' },
      servers: { type: 'string' },
      responses: { type: 'string' },
      appends: { type: 'string' },
      'long-appends': { type: 'string' },
      stores: { type: 'string' },
      transports: { type: 'string' },
      streams: { type: 'string' },
      'token-rate': { type: 'string' },
      'ds-streams': { type: 'string' },
      'ds-appends': { type: 'string' },
      'ds-watchers': { type: 'string' },
      'ds-servers': { type: 'string' },
      'ai-responses': { type: 'string' },
      'ai-seconds': { type: 'string' },
      'ai-gap': { type: 'string' },
      'ai-samples': { type: 'string' },
      'ai-systems': { type: 'string' },
      'ai-app-rtt': { type: 'string' },
      'ai-user-rtt': { type: 'string' },
      'ai-frames': { type: 'string' },
      profile: { type: 'string' },
      gaps: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const scenario = positionals[0] ?? 'all';
  if (
    scenario !== 'fanout' &&
    scenario !== 'appends' &&
    scenario !== 'transports' &&
    scenario !== 'streams' &&
    scenario !== 'ai' &&
    scenario !== 'catchup' &&
    scenario !== 'all'
  ) {
    throw new Error(`unknown scenario '${scenario}'\n${USAGE}`);
  }
  const stores = list(values.stores) ?? ['sqlite', 'memory'];
  for (const store of stores) {
    if (store !== 'sqlite' && store !== 'memory' && store !== 'redis')
      throw new Error(`unknown store '${store}'`);
  }
  const transports = list(values.transports);
  for (const transport of transports ?? []) {
    if (transport !== 'ws' && transport !== 'sse' && transport !== 'longpoll')
      throw new Error(`unknown transport '${transport}'`);
  }
  const aiSystems = list(values['ai-systems']) ?? [...AI_SYSTEMS];
  for (const system of aiSystems) {
    if (!(AI_SYSTEMS as readonly string[]).includes(system)) throw new Error(`unknown ai system '${system}'`);
  }
  const aiFrames = values['ai-frames'] ?? 'compact';
  if (aiFrames !== 'compact' && aiFrames !== 'plain')
    throw new Error(`--ai-frames must be compact or plain, not '${aiFrames}'`);
  return {
    scenario,
    subscribers: Math.round(positiveNumber('subscribers', values.subscribers, 1000)),
    transportSubscribers: Math.round(positiveNumber('subscribers', values.subscribers, 300)),
    seconds: positiveNumber('seconds', values.seconds, 8),
    warmupSeconds: positiveNumber('warmup', values.warmup, 2, true),
    rate: positiveNumber('rate', values.rate, 50),
    inFlight: Math.round(positiveNumber('in-flight', values['in-flight'], 8, true)),
    rounds: Math.round(positiveNumber('rounds', values.rounds, 1)),
    servers: list(values.servers),
    responses: Math.round(positiveNumber('responses', values.responses, 200)),
    appendsPerResponse: Math.round(positiveNumber('appends', values.appends, 500)),
    longMessageAppends: Math.round(positiveNumber('long-appends', values['long-appends'], 20000)),
    stores: stores as StoreKind[],
    transports,
    streams: Math.round(positiveNumber('streams', values.streams, 50)),
    tokenRate: positiveNumber('token-rate', values['token-rate'], 30),
    dsStreams: Math.round(positiveNumber('ds-streams', values['ds-streams'], 20)),
    dsAppends: Math.round(positiveNumber('ds-appends', values['ds-appends'], 500)),
    dsWatchers: Math.round(positiveNumber('ds-watchers', values['ds-watchers'], 300)),
    dsServers: list(values['ds-servers']),
    aiResponses: (list(values['ai-responses']) ?? ['100', '500']).map((v) =>
      Math.round(positiveNumber('ai-responses', v, 100)),
    ),
    aiSeconds: positiveNumber('ai-seconds', values['ai-seconds'], 20),
    aiGap: positiveNumber('ai-gap', values['ai-gap'], 10),
    aiSamples: Math.round(positiveNumber('ai-samples', values['ai-samples'], 10)),
    aiSystems: aiSystems as AiSystem[],
    aiAppRtt: positiveNumber('ai-app-rtt', values['ai-app-rtt'], 0, true),
    aiUserRtt: positiveNumber('ai-user-rtt', values['ai-user-rtt'], 0, true),
    aiFrames,
    profileDir: values.profile,
    gaps: (list(values.gaps) ?? ['1', '10', '60', '600']).map((v) => positiveNumber('gaps', v, 1)),
  };
}
