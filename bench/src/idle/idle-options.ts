/** Command line of the idle-connections measurement (idle-connections.ts). */
import { parseArgs } from 'node:util';

export interface IdleOptions {
  connections: number;
  /** Server processes, all on one port (SO_REUSEPORT). */
  nodes: number;
  /** Client processes, each from its own source address 127.0.0.(2+i). */
  clientProcs: number;
  /** Connections being opened at once, over all client processes. */
  concurrency: number;
  /** Seconds of rest measured after the connections settled. */
  restSeconds: number;
  /** Deadline of the connect phase, and of the whole run, in seconds. */
  connectTimeoutSeconds: number;
  deadlineSeconds: number;
  /**
   * Channels each connection attaches (1: today's run). Above 1 the run measures twice on the same
   * connections: once each holds its first channel, and again once it attached the rest.
   */
  channelsPerConnection: number;
  /** All connections attach their channels among this many (each channel shared); absent: none shared. */
  sharedChannels: number | undefined;
  /** A directory for heap snapshots of the first node at each measurement (absent: none taken). */
  heapSnapshots: string | undefined;
}

/** At most this many channels per connection: the server's default `maxChannelsPerConnection`. */
export const MAX_CHANNELS_PER_CONNECTION = 500;

/**
 * The `k`-th channel (from 0) of connection `connection`. Without sharing every channel is the
 * connection's own (the first is `idle:<connection>`, as before channels per connection); with
 * `shared` channels, connection i attaches K consecutive ones from i × K on, round the N, so each
 * channel has about connections × K / N subscribers.
 */
export function idleChannel(connection: number, k: number, perConnection: number, shared?: number): string {
  if (shared !== undefined) return `idle-shared:${(connection * perConnection + k) % shared}`;
  return k === 0 ? `idle:${connection}` : `idle:${connection}.${k}`;
}

/** One process holds at most this many sockets here (hard `ulimit -n` 20,000, less the process's own). */
export const MAX_SOCKETS_PER_PROCESS = 19_000;

export const IDLE_USAGE = `usage: node bench/src/idle/idle-connections.ts [options]
  --connections N       idle WebSocket connections, each attached to its own channel (default 10000)
  --nodes K             Mooring server processes (memory store), all on one port with reusePort;
                        the kernel spreads the connections over them (default 1)
  --client-procs M      client processes, each connecting from 127.0.0.(2+i), < ${MAX_SOCKETS_PER_PROCESS.toLocaleString('en-US')} sockets
                        each (default: as few as hold N)
  --concurrency C       connections opening at once, over all client processes (default 250)
  --rest S              seconds of CPU at rest measured once connected (default 20: more than one
                        15 s heartbeat round)
  --connect-timeout S   deadline of the connect phase (default 1200)
  --deadline S          deadline of the whole run; children are killed on any exit (default 1800)
  --channels-per-connection K
                        channels each connection attaches (default 1, at most ${MAX_CHANNELS_PER_CONNECTION}); above 1 the
                        memory, CPU and time are measured with one channel each, then again once
                        every connection attached the other K − 1: what each further attachment costs
  --shared-channels N   the K channels of each connection are K of these N (consecutive, round the N:
                        ~connections × K / N subscribers each) instead of channels of its own
  --heap-snapshots DIR  write a heap snapshot of node 1 at each measurement into DIR (for
                        heap-diff.ts); slow and large: use a few thousand connections
  -h, --help            this text
The server processes run with the Node flags of \`mooring serve\` (--max-semi-space-size=16);
BENCH_MOORING_NODE_FLAGS='' runs them with Node's defaults instead, and IDLE_NODE_FLAGS='…' adds
flags after those (the last of a flag wins).`;

function whole(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}`);
  return n;
}

/** The options, or 'help'. Throws on a bad flag (the caller prints the message and the usage). */
export function parseIdleOptions(argv: string[]): IdleOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      connections: { type: 'string' },
      nodes: { type: 'string' },
      'client-procs': { type: 'string' },
      concurrency: { type: 'string' },
      rest: { type: 'string' },
      'connect-timeout': { type: 'string' },
      deadline: { type: 'string' },
      'channels-per-connection': { type: 'string' },
      'shared-channels': { type: 'string' },
      'heap-snapshots': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const connections = whole('connections', values.connections, 10_000);
  const nodes = whole('nodes', values.nodes, 1);
  const clientProcs = whole(
    'client-procs',
    values['client-procs'],
    Math.ceil(connections / MAX_SOCKETS_PER_PROCESS),
  );
  if (clientProcs > 250) throw new Error('--client-procs must be at most 250 (127.0.0.2 … 127.0.0.251)');
  if (connections / clientProcs > MAX_SOCKETS_PER_PROCESS)
    throw new Error(
      `${connections} connections over ${clientProcs} client processes is more than ${MAX_SOCKETS_PER_PROCESS} sockets each: raise --client-procs`,
    );
  if (connections / nodes > MAX_SOCKETS_PER_PROCESS)
    throw new Error(
      `${connections} connections over ${nodes} nodes is more than ${MAX_SOCKETS_PER_PROCESS} each (the kernel does not spread them exactly evenly either): raise --nodes`,
    );
  const channelsPerConnection = whole('channels-per-connection', values['channels-per-connection'], 1);
  if (channelsPerConnection > MAX_CHANNELS_PER_CONNECTION)
    throw new Error(`--channels-per-connection must be at most ${MAX_CHANNELS_PER_CONNECTION}`);
  const sharedChannels =
    values['shared-channels'] === undefined
      ? undefined
      : whole('shared-channels', values['shared-channels'], 1);
  if (sharedChannels !== undefined && sharedChannels < channelsPerConnection)
    throw new Error(
      '--shared-channels must be at least --channels-per-connection (a connection attaches each once)',
    );
  return {
    connections,
    nodes,
    clientProcs,
    concurrency: whole('concurrency', values.concurrency, 250),
    restSeconds: whole('rest', values.rest, 20),
    connectTimeoutSeconds: whole('connect-timeout', values['connect-timeout'], 1200),
    deadlineSeconds: whole('deadline', values.deadline, 1800),
    channelsPerConnection,
    sharedChannels,
    heapSnapshots: values['heap-snapshots'],
  };
}
