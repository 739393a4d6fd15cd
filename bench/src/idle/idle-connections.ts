/**
 * Server memory per idle connection: N WebSocket clients connect to a Mooring server (its own child
 * process) and attach one channel each, then sit idle; the server reports RSS and heap before and
 * after (after a forced GC). Target (issue 3): ≤ 16 KB per idle connection.
 *
 *   node bench/src/idle/idle-connections.ts [--connections 10000]
 */
import WebSocket from 'ws';
import { startMemoryReportingServer } from './memory-server.ts';

const count = Number(process.argv[process.argv.indexOf('--connections') + 1] || 10_000);
const server = await startMemoryReportingServer(
  (process.env.IDLE_NODE_FLAGS ?? '').split(' ').filter(Boolean),
);
const { port } = server;
const memory = () => server.memory();
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
await server.stop();
process.exit(0);
