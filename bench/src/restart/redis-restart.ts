/**
 * What a Redis restart costs the sessions on it (`npm run bench:restart -- [--sessions N] [--inputs K]`):
 * N `UserSession`s (50 per client connection) on one Mooring node on a local `redis-server` with
 * AOF `always`, each channel holding K inputs of ~200 bytes; Redis is killed (SIGKILL) and
 * restarted, then every session sends one input. Every channel goes on in a new epoch at its first
 * publish (PROTOCOL.md §15: Mooring cannot tell a lossless restart from a lossy one), so every
 * session is told `continuityLost`. Reported: how many were told, the history reads they made and
 * the messages those read, the time from the first send until every session shows its new input and
 * is live again, and the CPU of this process (the clients) meanwhile. `--lossy`: no AOF, and an RDB
 * snapshot taken before each session's last input, so the restart loses one input per session
 * (Redis's default persistence after a crash): every session then reloads from history.
 */
import { parseArgs } from 'node:util';
import { UserSession } from '@mooring/ai';
import { Mooring } from '@mooring/client';
import { startServer } from '@mooring/server';
import { startRedis, waitFor } from '@mooring/testkit';

const { values } = parseArgs({
  options: { sessions: { type: 'string' }, inputs: { type: 'string' }, lossy: { type: 'boolean' } },
});
const lossy = values.lossy === true;
const N = Number(values.sessions ?? 200);
const K = Number(values.inputs ?? 40);
const PER_CLIENT = 50;
const KEY = 'bench:secret';

// lossy: no AOF; an RDB snapshot before each session's last input, which the restart loses
const redis = await startRedis(lossy ? {} : { appendonly: 'always' });
const server = await startServer({
  port: 0,
  host: '127.0.0.1',
  keys: [KEY],
  store: { kind: 'redis', url: redis.url },
});
const clients: Mooring[] = [];
const sessions: UserSession[] = [];
const counted = { reads: 0, items: 0, lost: 0 };
try {
  process.stderr.write(`starting ${N} sessions with ${K} inputs each… `);
  for (let i = 0; i < N; i++) {
    if (i % PER_CLIENT === 0)
      clients.push(new Mooring({ url: server.url, key: KEY, clientId: `user-${i}`, environment: null }));
    const channel = clients.at(-1)!.channels.get(`session:restart-${i}`, { start: true });
    const history = channel.history.bind(channel);
    channel.history = async (query) => {
      counted.reads++;
      const page = await history(query);
      counted.items += page.items.length;
      return page;
    };
    channel.on('continuityLost', () => counted.lost++);
    const session = new UserSession({ channel });
    await session.start();
    sessions.push(session);
  }
  const inputs = (from: number, to: number) =>
    Promise.all(
      sessions.map(async (s) => {
        for (let k = from; k < to; k++) await s.send(`input ${k} ${'x'.repeat(200)}`);
      }),
    );
  await inputs(0, lossy ? K - 1 : K);
  if (lossy) {
    await redis.command('SAVE');
    await inputs(K - 1, K);
  }
  Object.assign(counted, { reads: 0, items: 0, lost: 0 });
  process.stderr.write('restarting Redis… ');
  await redis.stop('SIGKILL');
  await redis.restart();
  await waitFor(async () => (await fetch(`${server.url}/ready`)).status === 200, { timeout: 30_000 });
  process.stderr.write('sending…\n');
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(sessions.map((s) => s.send('after the restart')));
  // lossy: each session's last input is gone, the one sent after the restart takes its place
  const whole = lossy ? K : K + 1;
  const sentAfter = (s: UserSession) =>
    s.tree.inputs.some((i) =>
      i.message.parts.some((p) => p.type === 'text' && p.text === 'after the restart'),
    );
  await waitFor(() => sessions.every((s) => s.live && sentAfter(s) && s.tree.inputs.length === whole), {
    timeout: 120_000,
    interval: 5,
  });
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  console.log(
    '| sessions × inputs | told continuityLost | history reads | messages read | every session whole again | client CPU |',
  );
  console.log('|---|---:|---:|---:|---:|---:|');
  console.log(
    `| ${N} × ${K}${lossy ? ', lossy' : ''} | ${counted.lost} | ${counted.reads} | ${counted.items} | ${Math.round(ms)} ms | ${Math.round((used.user + used.system) / 1000)} ms |`,
  );
} finally {
  for (const s of sessions) s.close();
  for (const c of clients) c.close();
  await server.close();
  await redis.close();
}
