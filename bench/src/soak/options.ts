/**
 * The soak's command line. Every default is the full soak; `--help` prints the table.
 */
import { parseArgs } from 'node:util';

export interface SoakOptions {
  sessions: number;
  seconds: number;
  seed: number;
  tokensPerSecond: number;
  minTokens: number;
  maxTokens: number;
  agentProcesses: number;
  sessionsPerConnection: number;
  userProcesses: number;
  userProxies: number;
  faultEveryMs: number;
  agentKillEverySeconds: number;
  killForGood: number;
  serverKillEverySeconds: number;
  /** With `store: 'redis'`: SIGKILL the redis-server (AOF `always`) every so many s; 0 = never. */
  redisKillEverySeconds: number;
  /**
   * With `store: 'redis'`: SIGSTOP the redis-server every so many s for 1–8 s (below and beyond the
   * servers' 5 s command deadline), then SIGCONT; 0 = never.
   */
  redisFreezeEverySeconds: number;
  reloadEveryMs: number;
  leaseMs: number;
  coalesceMs: number;
  heartbeat: string;
  idleGraceMs: number;
  upgradeIntervalMs: number;
  settleSeconds: number;
  userTransports: Array<'websocket' | 'sse' | 'longpoll'>;
  /** `sqlite`: one server on its data directory; `redis`: `nodes` servers sharing a redis-server and one port. */
  store: 'sqlite' | 'redis';
  nodes: number;
  json: boolean;
}

export const SOAK_HELP = `Usage: npm run soak -- [options]      (node bench/src/soak/soak.ts [options])

  --sessions N            AI sessions (one user, one agent each)                 default 200
  --seconds S             seconds of chaos (then faults stop and every run settles) default 180
  --seed N                seed of the model text and of every chaos decision     default random
  --tps N                 model tokens per second per run                         default 30
  --tokens MIN-MAX        tokens per run                                          default 60-300
  --agents N              agent processes (each SIGKILLed and restarted)          default sessions/25, 2..8
  --per-connection N      sessions per agent connection                           default 10
  --user-processes N      processes holding the users                             default sessions/100, 1..3
  --user-proxies N        fault proxies shared by the users                       default 8
  --fault-every MS        one network fault every MS ms                           default 400
  --agent-kill-every S    SIGKILL an agent process every S s (restart 0.2 s–2 leases later) default 15
  --kill-for-good N       agent processes killed for good halfway (their runs must end abandoned) default 1
  --server-kill-every S   SIGKILL the server every S s, restart on the same port and data default 60
  --redis-kill-every S    with --store redis: SIGKILL the redis-server every S s and start it
                          again on its AOF (appendfsync always: nothing acknowledged is lost,
                          every channel goes on in a new epoch); 0 = never            default 0
  --redis-freeze-every S  with --store redis: SIGSTOP the redis-server every S s for 1–8 s, then
                          SIGCONT (a frozen host: connections stay open, nothing answers,
                          commands time out and may still run once it thaws); 0 = never default 0
  --reload-every MS       reload one user's tab every MS ms (recovery key or from start) default 500
  --lease MS              run lease                                              default 5000
  --coalesce MS           agent delta coalescing window                          default 40
  --heartbeat D           server heartbeat                                        default 2s
  --idle-grace MS         client grace after the heartbeat before a silent link is dead default 3000
  --upgrade-interval MS   clients on a fallback transport try WebSocket again every MS default 5000
  --settle S              how long runs may take to settle after the chaos        default 90
  --user-transports LIST  transports the users may use (websocket,sse,longpoll)   default all, with fallback
  --store sqlite|redis    sqlite: one server on its data dir; redis: --nodes servers on one
                          port (SO_REUSEPORT) sharing a local redis-server; a kill hits one node default sqlite
  --nodes N               server nodes with --store redis                          default 2
  --json                  also print the result as one JSON line

Exit code: 0 nothing lost, duplicated, reordered or stuck; 1 a violation (the seed replays the
schedule); 2 the soak itself could not run.`;

export function parseSoakOptions(argv: string[]): SoakOptions | 'help' {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      sessions: { type: 'string', default: '200' },
      seconds: { type: 'string', default: '180' },
      seed: { type: 'string' },
      tps: { type: 'string', default: '30' },
      tokens: { type: 'string', default: '60-300' },
      agents: { type: 'string' },
      'per-connection': { type: 'string', default: '10' },
      'user-processes': { type: 'string' },
      'user-proxies': { type: 'string', default: '8' },
      'fault-every': { type: 'string', default: '400' },
      'agent-kill-every': { type: 'string', default: '15' },
      'kill-for-good': { type: 'string', default: '1' },
      'server-kill-every': { type: 'string', default: '60' },
      'redis-kill-every': { type: 'string', default: '0' },
      'redis-freeze-every': { type: 'string', default: '0' },
      'reload-every': { type: 'string', default: '500' },
      lease: { type: 'string', default: '5000' },
      coalesce: { type: 'string', default: '40' },
      heartbeat: { type: 'string', default: '2s' },
      'idle-grace': { type: 'string', default: '3000' },
      'upgrade-interval': { type: 'string', default: '5000' },
      settle: { type: 'string', default: '90' },
      'user-transports': { type: 'string', default: 'websocket,sse,longpoll' },
      store: { type: 'string', default: 'sqlite' },
      nodes: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (v.help) return 'help';
  const num = (name: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min}, got ${value}`);
    return n;
  };
  const sessions = Math.floor(num('sessions', v.sessions, 1));
  const store = v.store;
  if (store !== 'sqlite' && store !== 'redis')
    throw new Error(`--store must be sqlite or redis, got ${store}`);
  if (store === 'sqlite' && v['redis-kill-every'] !== '0')
    throw new Error('--redis-kill-every needs --store redis');
  if (store === 'sqlite' && v['redis-freeze-every'] !== '0')
    throw new Error('--redis-freeze-every needs --store redis');
  if (store === 'sqlite' && v.nodes !== undefined && v.nodes !== '1')
    throw new Error('--nodes needs --store redis (SQLite is one process on its file)');
  const [min, max] = (v.tokens ?? '').split('-').map(Number);
  if (!Number.isInteger(min) || !Number.isInteger(max) || min! < 1 || max! < min!)
    throw new Error(`--tokens must be MIN-MAX, got ${v.tokens}`);
  return {
    sessions,
    seconds: num('seconds', v.seconds, 1),
    seed: v.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Math.floor(num('seed', v.seed, 0)),
    tokensPerSecond: Math.floor(num('tps', v.tps, 1)),
    minTokens: min!,
    maxTokens: max!,
    agentProcesses: Math.floor(
      v.agents === undefined
        ? Math.min(8, Math.max(2, Math.ceil(sessions / 25)))
        : num('agents', v.agents, 1),
    ),
    sessionsPerConnection: Math.floor(num('per-connection', v['per-connection'], 1)),
    userProcesses: Math.floor(
      v['user-processes'] === undefined
        ? Math.min(3, Math.max(1, Math.ceil(sessions / 100)))
        : num('user-processes', v['user-processes'], 1),
    ),
    userProxies: Math.floor(num('user-proxies', v['user-proxies'], 1)),
    faultEveryMs: num('fault-every', v['fault-every'], 10),
    agentKillEverySeconds: num('agent-kill-every', v['agent-kill-every'], 0),
    killForGood: Math.floor(num('kill-for-good', v['kill-for-good'], 0)),
    serverKillEverySeconds: num('server-kill-every', v['server-kill-every'], 0),
    redisKillEverySeconds: num('redis-kill-every', v['redis-kill-every'], 0),
    redisFreezeEverySeconds: num('redis-freeze-every', v['redis-freeze-every'], 0),
    reloadEveryMs: num('reload-every', v['reload-every'], 0),
    leaseMs: num('lease', v.lease, 100),
    coalesceMs: num('coalesce', v.coalesce, 0),
    heartbeat: v.heartbeat ?? '2s',
    idleGraceMs: num('idle-grace', v['idle-grace'], 0),
    upgradeIntervalMs: num('upgrade-interval', v['upgrade-interval'], 100),
    settleSeconds: num('settle', v.settle, 1),
    userTransports: transportList(v['user-transports'] ?? ''),
    store,
    nodes: Math.floor(v.nodes === undefined ? (store === 'redis' ? 2 : 1) : num('nodes', v.nodes, 1)),
    json: v.json ?? false,
  };
}

function transportList(value: string): Array<'websocket' | 'sse' | 'longpoll'> {
  const kinds = value.split(',').filter((k) => k !== '');
  const known = ['websocket', 'sse', 'longpoll'] as const;
  const out = kinds.filter((k): k is (typeof known)[number] => (known as readonly string[]).includes(k));
  if (out.length === 0 || out.length !== kinds.length)
    throw new Error(`--user-transports must list websocket, sse, longpoll; got ${value}`);
  return out;
}
