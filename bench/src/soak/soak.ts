/**
 * `npm run soak`: many AI sessions streaming through chaos, then a verdict — nothing lost, nothing
 * duplicated, nothing out of order, nothing stuck.
 *
 *                      FaultProxy × agents                FaultProxy × userProxies
 *   ┌───────────────┐   (reset, blackhole,   ┌─────────┐   (same faults)           ┌────────────────┐
 *   │ agent procs   │ ──  delay, bandwidth) ─▶│ mooring │◀── ─────────────────────── │ user procs:    │
 *   │ AgentSession  │                          │ serve   │                           │ UserSession +  │
 *   │ scripted model│  SIGKILL + restart       │ SQLite  │  SIGKILL + restart        │ chunk streams, │
 *   │ → transcripts │  (same run ids)          └─────────┘  (same port, same data)   │ tab reloads    │
 *   └───────────────┘                                                                └────────────────┘
 *
 * `--store redis`: `--nodes` servers on one port (SO_REUSEPORT) sharing a local redis-server; each
 * server kill hits one node, the others carry on, and clients reconnect to whichever node the kernel
 * picks (their connections recovered across nodes).
 *
 * This process owns every random decision (seeded: `--seed` replays the schedule, though not the
 * timing), the proxies, the kills and the reloads. After `--seconds` of chaos, faults stop, killed
 * agents come back (except the ones killed for good), users stop asking, and every run must settle
 * within `--settle`. Then the verifier (`verify.ts`) compares the transcripts with every user's final
 * conversation and every chunk stream they read. Progress on stderr, the summary table on stdout.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FaultProxy, prng, startRedis } from '@mooring/testkit';
import { Chaos, FAULT_KINDS } from './chaos.ts';
import type {
  AgentConfig,
  AgentReport,
  SessionReport,
  UsersConfig,
  UsersReport,
  UsersRequest,
} from './messages.ts';
import { parseSoakOptions, SOAK_HELP, type SoakOptions } from './options.ts';
import { ServerNodes, ServerProcess } from './server-process.ts';
import { summaryTable } from './summary.ts';
import { readTranscripts, totalViolations, verify } from './verify.ts';

const KEY = 'soak:soak-secret';
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const log = (line: string) => process.stderr.write(`${line}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The command line without its seed (`--seed N` or `--seed=N`). */
const replayArgs = (argv: string[]) =>
  argv.filter((a, i) => !a.startsWith('--seed') && argv[i - 1] !== '--seed').join(' ');

const parsed = parseSoakOptions(process.argv.slice(2));
if (parsed === 'help') {
  console.log(SOAK_HELP);
  process.exit(0);
}
const o: SoakOptions = parsed;
const random = prng(o.seed);
const pick = <T>(items: T[]): T | undefined => items[Math.floor(random() * items.length)];
const between = (min: number, max: number) => min + random() * (max - min);
const dir = mkdtempSync(join(tmpdir(), 'mooring-soak-'));
const prefix = `session:soak-${o.seed}-`;
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    log(`soak: ${signal}`);
    process.exit(130);
  });

log(
  `soak: seed ${o.seed} — ${o.sessions} sessions × ${o.tokensPerSecond} tokens/s, ${o.seconds} s of chaos; data in ${dir}`,
);
// Bounded whatever happens: a soak that cannot finish (a child that never answers) fails, loudly.
const watchdogSeconds = o.seconds + o.settleSeconds + 600;
setTimeout(() => {
  log(`soak: watchdog: not finished after ${watchdogSeconds} s; giving up (exit 2)`);
  process.exit(2);
}, watchdogSeconds * 1000);
const replay = `npm run soak -- ${replayArgs(process.argv.slice(2))} --seed ${o.seed}`;
log(`soak: replay with: ${replay}`);

// ------------------------------------------------------------------------------------- server

let serverLog = 0;
// Killed Redis comes back from its AOF with everything it acknowledged (fsync before each answer).
const redis =
  o.store === 'redis'
    ? await startRedis(o.redisKillEverySeconds > 0 ? { appendonly: 'always' } : {})
    : undefined;
if (redis) process.on('exit', () => void redis.close()); // however this process ends
const server = new ServerNodes(
  Array.from(
    { length: o.nodes },
    (_, i) =>
      new ServerProcess({
        dataDir: join(dir, o.nodes === 1 ? 'data' : `data-${i}`),
        key: KEY,
        heartbeat: o.heartbeat,
        ...(redis === undefined ? {} : { redis: redis.url }),
        log: (line) => {
          // Every line goes to server-<i>.log (kept with the data when the soak fails). The start
          // banner repeats on every restart, and info lines (lease expiries) are many: shown are
          // the warnings and errors, and lines that are not the log's JSON.
          appendFileSync(join(dir, `server-${i}.log`), `${line}\n`);
          if (/^(Mooring listening|\s+(WebSocket|Dashboard):)/.test(line)) return;
          if (logLevel(line) < 40) return;
          if (serverLog++ < 20) log(`  [server ${i}] ${line.slice(0, 300)}`);
        },
      }),
  ),
);
process.on('exit', () => server.killNow()); // however this process ends
await server.start();
log(
  `soak: mooring serve (${o.store}${redis ? `, ${o.nodes} nodes, redis-server on ${redis.port}` : ''}) pid ${server.pids} on port ${server.port}`,
);

// ------------------------------------------------------------------------------------- agents

const stats = {
  modelTokens: 0,
  userTokens: 0,
  inputs: 0,
  agentKills: 0,
  agentRestarts: 0,
  serverKills: 0,
  redisKills: 0,
  redisFreezes: 0,
  reloadsRecover: 0,
  reloadsStart: 0,
  agentErrors: 0,
  userErrors: 0,
};

interface Agent {
  index: number;
  config: AgentConfig;
  proxy: FaultProxy;
  child: ChildProcess | undefined;
  dead: boolean;
  forGood: boolean;
}

/** A pino line's level (30 info, 40 warn, 50 error); a line that is not one counts as a warning. */
function logLevel(line: string): number {
  if (!line.startsWith('{')) return 40;
  try {
    const level = (JSON.parse(line) as { level?: unknown }).level;
    return typeof level === 'number' ? level : 40;
  } catch {
    return 40;
  }
}

function forkChild(module: string, config: unknown): ChildProcess {
  const child = fork(here(module), [JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'json',
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function startAgent(agent: Agent): Promise<void> {
  const child = forkChild('./agent-child.ts', agent.config);
  agent.child = child;
  agent.dead = false;
  return new Promise<void>((resolve) => {
    child.on('message', (m: AgentReport) => {
      if (m.type === 'ready') resolve();
      else if (m.type === 'progress') stats.modelTokens += m.tokens;
      else if (m.type === 'error' && stats.agentErrors++ < 5) log(`  [agent] ${m.error.slice(0, 300)}`);
    });
    child.once('exit', () => resolve());
  });
}

async function killAgent(agent: Agent): Promise<void> {
  const child = agent.child;
  agent.dead = true;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGKILL');
  await gone;
}

const agents: Agent[] = [];
for (let a = 0; a < o.agentProcesses; a++) {
  const proxy = await FaultProxy.start({ port: server.port });
  const sessions: number[] = [];
  for (let s = a; s < o.sessions; s += o.agentProcesses) sessions.push(s);
  agents.push({
    index: a,
    proxy,
    child: undefined,
    dead: true,
    forGood: false,
    config: {
      name: `agent-${a}`,
      url: proxy.url('/'),
      key: KEY,
      seed: o.seed,
      prefix,
      sessions,
      sessionsPerConnection: o.sessionsPerConnection,
      tokensPerSecond: o.tokensPerSecond,
      minTokens: o.minTokens,
      maxTokens: o.maxTokens,
      leaseMs: o.leaseMs,
      coalesceMs: o.coalesceMs,
      idleGraceMs: o.idleGraceMs,
      upgradeIntervalMs: o.upgradeIntervalMs,
      transcript: join(dir, `transcript-${a}.jsonl`),
    },
  });
}
await Promise.all(agents.map((a) => startAgent(a)));
log(`soak: ${agents.length} agent processes ready`);

// -------------------------------------------------------------------------------------- users

const userProxies: FaultProxy[] = [];
for (let p = 0; p < o.userProxies; p++) userProxies.push(await FaultProxy.start({ port: server.port }));

interface Users {
  child: ChildProcess;
  config: UsersConfig;
  status: Extract<UsersReport, { type: 'status' }> | undefined;
  reported: boolean;
}
const users: Users[] = [];
const usersOf = new Map<number, Users>();
await Promise.all(
  Array.from({ length: o.userProcesses }, (_, u) => {
    const sessions: UsersConfig['sessions'] = [];
    for (let s = u; s < o.sessions; s += o.userProcesses)
      sessions.push({ index: s, url: userProxies[s % userProxies.length]!.url('/') });
    const config: UsersConfig = {
      key: KEY,
      seed: o.seed,
      prefix,
      sessions,
      idleGraceMs: o.idleGraceMs,
      upgradeIntervalMs: o.upgradeIntervalMs,
      transports: o.userTransports,
      report: join(dir, `users-${u}.json`),
    };
    const child = forkChild('./user-child.ts', config);
    const entry: Users = { child, config, status: undefined, reported: false };
    users.push(entry);
    for (const s of sessions) usersOf.set(s.index, entry);
    return new Promise<void>((resolve, reject) => {
      child.on('message', (m: UsersReport) => {
        if (m.type === 'ready') resolve();
        else if (m.type === 'progress') {
          stats.userTokens += m.tokens;
          stats.inputs += m.inputs;
        } else if (m.type === 'status') entry.status = m;
        else if (m.type === 'reported') entry.reported = true;
        else if (m.type === 'error' && stats.userErrors++ < 5) log(`  [users] ${m.error.slice(0, 300)}`);
      });
      child.once('exit', (code) => reject(new Error(`users process ${u} exited (${code})`)));
    });
  }),
);
const toUsers = (u: Users, request: UsersRequest) => u.child.send(request);
log(`soak: ${o.sessions} users following their sessions`);

// -------------------------------------------------------------------------------------- chaos

const started = Date.now();
const elapsed = () => (Date.now() - started) / 1000;
const chaos = new Chaos([...agents.map((a) => a.proxy), ...userProxies], random);
chaos.start(o.faultEveryMs);
const timers: Array<ReturnType<typeof setInterval>> = [];
const pending = new Set<Promise<unknown>>();
const track = (p: Promise<unknown>) => {
  pending.add(p);
  void p.finally(() => pending.delete(p));
};
let chaosOn = true;

if (o.agentKillEverySeconds > 0)
  timers.push(
    setInterval(() => {
      const agent = pick(agents.filter((a) => !a.dead));
      if (!agent) return;
      const downMs = between(200, 2 * o.leaseMs);
      stats.agentKills++;
      track(
        (async () => {
          await killAgent(agent);
          await sleep(downMs);
          if (agent.forGood) return;
          stats.agentRestarts++;
          await startAgent(agent);
        })(),
      );
    }, o.agentKillEverySeconds * 1000),
  );

const orphaned = new Set<number>();
if (o.killForGood > 0 && o.agentProcesses > 1) {
  const victims = agents.slice(0, Math.min(o.killForGood, o.agentProcesses - 1));
  timers.push(
    setTimeout(
      () => {
        for (const agent of victims) {
          agent.forGood = true;
          for (const s of agent.config.sessions) orphaned.add(s);
          stats.agentKills++;
          track(killAgent(agent));
          log(
            `soak: agent-${agent.index} killed for good (${agent.config.sessions.length} sessions orphaned)`,
          );
        }
      },
      (o.seconds * 1000) / 2,
    ),
  );
}

/** The node killed and not started again yet. */
let serverDown: ServerProcess | undefined;
/** A server that cannot start again on its data after a SIGKILL has lost durability: a violation. */
async function restartServer(node: ServerProcess): Promise<void> {
  try {
    await node.start();
  } catch (err) {
    log(`soak: FAILED — the server did not start again after SIGKILL: ${(err as Error).message}`);
    log(`soak: replay the schedule with: ${replay}; data kept in ${dir}`);
    process.exit(1);
  }
}
if (o.serverKillEverySeconds > 0)
  timers.push(
    setInterval(() => {
      if (serverDown) return;
      stats.serverKills++;
      const downMs = between(300, 2000);
      track(
        (async () => {
          const node = server.victim();
          serverDown = node;
          await node.kill();
          await sleep(downMs);
          await restartServer(node);
          serverDown = undefined;
          const which = server.nodes.length > 1 ? `node ${server.nodes.indexOf(node)}` : 'server';
          log(`soak: ${which} SIGKILLed and restarted (pid ${node.pid}, ${Math.round(downMs)} ms down)`);
        })(),
      );
    }, o.serverKillEverySeconds * 1000),
  );

/** A Redis killed or frozen and not back yet (awaited before the settle); one such fault at a time. */
let redisDown: Promise<void> | undefined;
if (redis && o.redisKillEverySeconds > 0)
  timers.push(
    setInterval(() => {
      if (redisDown) return;
      stats.redisKills++;
      const downMs = between(300, 2000);
      redisDown = (async () => {
        await redis.stop('SIGKILL');
        await sleep(downMs);
        try {
          await redis.restart();
        } catch (err) {
          log(`soak: FAILED — redis-server did not start again after SIGKILL: ${(err as Error).message}`);
          process.exit(1);
        }
        log(`soak: redis-server SIGKILLed and restarted on its AOF (${Math.round(downMs)} ms down)`);
        redisDown = undefined;
      })();
      track(redisDown);
    }, o.redisKillEverySeconds * 1000),
  );
if (redis && o.redisFreezeEverySeconds > 0)
  timers.push(
    setInterval(() => {
      if (redisDown) return;
      stats.redisFreezes++;
      // below and beyond the servers' 5 s command deadline: commands that timed out may still run
      const frozenMs = between(1000, 8000);
      redisDown = (async () => {
        redis.freeze();
        await sleep(frozenMs);
        redis.thaw();
        log(`soak: redis-server frozen (SIGSTOP) for ${Math.round(frozenMs)} ms, thawed`);
        redisDown = undefined;
      })();
      track(redisDown);
    }, o.redisFreezeEverySeconds * 1000),
  );

if (o.reloadEveryMs > 0)
  timers.push(
    setInterval(() => {
      const session = Math.floor(random() * o.sessions);
      const mode = random() < 0.5 ? 'recover' : 'start';
      if (mode === 'recover') stats.reloadsRecover++;
      else stats.reloadsStart++;
      const u = usersOf.get(session);
      if (u) toUsers(u, { type: 'reload', session, mode });
    }, o.reloadEveryMs),
  );

timers.push(setInterval(() => server.sample(), 1000));
let lastTokens = 0;
let lastAt = Date.now();
const progress = (phase: string) => {
  const now = Date.now();
  const rate = ((stats.modelTokens - lastTokens) * 1000) / Math.max(1, now - lastAt);
  lastTokens = stats.modelTokens;
  lastAt = now;
  const faults = FAULT_KINDS.map((k) => `${k} ${chaos.counts[k]}`).join(', ');
  log(
    `[${phase} ${elapsed().toFixed(0)}s] model tokens ${stats.modelTokens} (${rate.toFixed(0)}/s), users read ${stats.userTokens}, inputs ${stats.inputs} | faults ${chaos.total} (${faults}) | server kills ${stats.serverKills}, ${redis ? `redis kills ${stats.redisKills}, freezes ${stats.redisFreezes}, ` : ''}agent kills ${stats.agentKills}, reloads ${stats.reloadsRecover + stats.reloadsStart} | server RSS ${server.rssMax.toFixed(0)} MiB max`,
  );
};
const progressTimer = setInterval(() => progress(chaosOn ? 'chaos' : 'settle'), 5000);

await sleep(o.seconds * 1000);

// ------------------------------------------------------------------------------------- settle

chaosOn = false;
chaos.stop();
for (const t of timers.slice(0, -1)) clearInterval(t);
await Promise.all([...pending]);
if (serverDown) await restartServer(serverDown);
for (const agent of agents) if (agent.dead && !agent.forGood) track(startAgent(agent));
for (const u of users)
  toUsers(u, { type: 'stop', orphaned: [...orphaned].filter((s) => usersOf.get(s) === u) });
log(
  `soak: chaos over after ${elapsed().toFixed(0)} s; waiting up to ${o.settleSeconds} s for every run to settle`,
);

const settleBy = Date.now() + o.settleSeconds * 1000;
let settled = false;
while (Date.now() < settleBy) {
  for (const u of users) toUsers(u, { type: 'status' });
  await sleep(1000);
  if (users.every((u) => u.status && u.status.settled === u.status.of)) {
    settled = true;
    break;
  }
}
if (!settled)
  for (const u of users)
    if (u.status && u.status.settled < u.status.of)
      log(
        `soak: not settled: ${u.status.of - u.status.settled} sessions, e.g. ${u.status.unsettled.join('; ')}`,
      );
const settleSeconds = (Date.now() - (settleBy - o.settleSeconds * 1000)) / 1000;
clearInterval(progressTimer);
progress('end');

for (const u of users) toUsers(u, { type: 'report' });
const reportBy = Date.now() + 60_000;
while (!users.every((u) => u.reported) && Date.now() < reportBy) await sleep(200);
if (!users.every((u) => u.reported)) {
  log('soak: a users process did not report');
  process.exit(2);
}
server.sample();
const reports: SessionReport[] = users.flatMap(
  (u) => JSON.parse(readFileSync(u.config.report, 'utf8')) as SessionReport[],
);
const transcripts = readTranscripts(agents.map((a) => a.config.transcript));
const result = verify(o.seed, transcripts, reports, orphaned);
const bad = totalViolations(result);

process.stdout.write(
  `${summaryTable({
    options: o,
    result,
    chaosSeconds: o.seconds,
    settleSeconds,
    faults: chaos.counts,
    stats,
    rss: { min: server.rssMin, max: server.rssMax },
    serverStarts: server.starts,
  })}\n`,
);
if (o.json)
  process.stdout.write(
    `${JSON.stringify({ seed: o.seed, options: o, result, faults: chaos.counts, stats, rss: { min: server.rssMin, max: server.rssMax } })}\n`,
  );
for (const e of result.examples) log(`  violation: ${e}`);
log(
  bad === 0
    ? `soak: OK — seed ${o.seed}: nothing lost, duplicated, reordered or stuck; every tab in its presence set`
    : `soak: FAILED — ${bad} violations; replay the schedule with: ${replay}`,
);

for (const agent of agents) await killAgent(agent);
for (const u of users) u.child.kill('SIGKILL');
await server.kill();
if (redis && bad > 0) {
  // the log as Redis holds it (every message's op ids in order: `o:<seq>`), to read the failure from
  await redis.command('SAVE');
  cpSync(join(redis.dir, 'dump.rdb'), join(dir, 'redis-dump.rdb'));
}
await redis?.close();
for (const p of [...userProxies, ...agents.map((a) => a.proxy)]) await p.close();
if (bad === 0) rmSync(dir, { recursive: true, force: true });
else log(`soak: data, transcripts and reports kept in ${dir}`);
process.exit(bad === 0 ? 0 : 1);
