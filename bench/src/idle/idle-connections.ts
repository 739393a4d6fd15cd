/**
 * Server memory per idle connection: N WebSocket clients connect to a Mooring server (its own child
 * process) and attach one channel each, then sit idle; the server reports RSS and heap before and
 * after (after a forced GC). Target (issue 3): ≤ 16 KB per idle connection.
 *
 *   node bench/src/idle/idle-connections.ts [--connections 10000]
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

interface MemoryReport {
  type: 'memory';
  rss: number;
  heapUsed: number;
  external: number;
  connections: number;
}

const count = Number(process.argv[process.argv.indexOf('--connections') + 1] || 10_000);
const child = fork(fileURLToPath(new URL('./idle-server.ts', import.meta.url)), [], {
  execArgv: ['--expose-gc', ...(process.env.IDLE_NODE_FLAGS ?? '').split(' ').filter(Boolean)],
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
});
process.on('exit', () => child.kill('SIGKILL'));
const next = <T>(type: string) =>
  new Promise<T>((resolve) => {
    const on = (msg: { type: string }) => {
      if (msg.type === type) {
        child.off('message', on);
        resolve(msg as T);
      }
    };
    child.on('message', on);
  });
const memory = async () => {
  child.send({ type: 'memory' });
  return next<MemoryReport>('memory');
};

const { port } = await next<{ port: number }>('ready');
await new Promise((r) => setTimeout(r, 300));
const before = await memory();
const sockets: WebSocket[] = [];
const batch = 250;
for (let i = 0; i < count; i += batch) {
  await Promise.all(
    Array.from({ length: Math.min(batch, count - i) }, (_, j) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/connect?key=bench:secret`, {
        perMessageDeflate: false,
      });
      sockets.push(ws);
      return new Promise<void>((resolve, reject) => {
        ws.once('error', reject);
        ws.once('message', () => {
          ws.send(JSON.stringify({ type: 'attach', channel: `idle:${i + j}` }));
          resolve();
        });
      });
    }),
  );
  if ((i / batch) % 8 === 0) process.stderr.write(`\ridle: ${i + batch}/${count} connected`);
}
process.stderr.write(`\ridle: ${count}/${count} connected, settling...\n`);
await new Promise((r) => setTimeout(r, 2_000));
const after = await memory();
const per = (a: number, b: number) => (b - a) / count / 1024;
const result = {
  connections: after.connections,
  rssPerConnectionKB: Number(per(before.rss, after.rss).toFixed(2)),
  heapPerConnectionKB: Number(per(before.heapUsed, after.heapUsed).toFixed(2)),
  externalPerConnectionKB: Number(per(before.external, after.external).toFixed(2)),
  rssBeforeMB: Math.round(before.rss / 2 ** 20),
  rssAfterMB: Math.round(after.rss / 2 ** 20),
};
console.log(
  '| idle connections | RSS / conn (KB) | JS heap / conn (KB) | external / conn (KB) | RSS before → after (MB) |',
);
console.log('|---|---|---|---|---|');
console.log(
  `| ${result.connections} | ${result.rssPerConnectionKB} | ${result.heapPerConnectionKB} | ${result.externalPerConnectionKB} | ${result.rssBeforeMB} → ${result.rssAfterMB} |`,
);
for (const ws of sockets) ws.terminate();
child.send({ type: 'stop' });
await new Promise((r) => setTimeout(r, 500));
process.exit(0);
