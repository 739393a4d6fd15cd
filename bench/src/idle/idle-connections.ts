/**
 * Server memory per idle connection: N WebSocket clients connect to a Mooring server (its own child
 * process) and attach one channel each, then sit idle; the server reports RSS and heap before and
 * after (after a forced GC). Target (issue 3): ≤ 16 KB per idle connection. Also the time to accept
 * them all (connected and attached, 250 at a time) and the server's CPU at rest over `--rest`
 * seconds (default 20: more than one heartbeat round of 15 s).
 *
 *   node bench/src/idle/idle-connections.ts [--connections 10000] [--rest 20]
 *
 * The file-descriptor limit of the machine bounds N (the server holds one per connection): on a
 * machine whose hard `ulimit -n` is 20,000, about 19,000 is the most one server process can hold.
 */
import WebSocket from 'ws';
import { processCpuSeconds } from '../cpu-usage.ts';
import { startMemoryReportingServer } from './memory-server.ts';

const count = Number(process.argv[process.argv.indexOf('--connections') + 1] || 10_000);
const restSeconds = process.argv.includes('--rest')
  ? Number(process.argv[process.argv.indexOf('--rest') + 1])
  : 20;
const server = await startMemoryReportingServer(
  (process.env.IDLE_NODE_FLAGS ?? '').split(' ').filter(Boolean),
);
const { port } = server;
const memory = () => server.memory();
await new Promise((r) => setTimeout(r, 300));
const before = await memory();
const sockets: WebSocket[] = [];
const batch = 250;
const acceptStarted = performance.now();
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
const acceptSeconds = (performance.now() - acceptStarted) / 1000;
process.stderr.write(`\ridle: ${count}/${count} connected, settling...\n`);
await new Promise((r) => setTimeout(r, 2_000));
const after = await memory();
// At rest: only heartbeats (and the load generator answering WebSocket pings).
const cpuBefore = processCpuSeconds(server.pid);
await new Promise((r) => setTimeout(r, restSeconds * 1000));
const cpuAfter = processCpuSeconds(server.pid);
const restCpu =
  cpuBefore === undefined || cpuAfter === undefined ? Number.NaN : (cpuAfter - cpuBefore) / restSeconds;
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
  '| idle connections | RSS / conn (KB) | JS heap / conn (KB) | external / conn (KB) | RSS before → after (MB) | accept all (s) | server CPU at rest (cores) |',
);
console.log('|---|---|---|---|---|---|---|');
console.log(
  `| ${result.connections} | ${result.rssPerConnectionKB} | ${result.heapPerConnectionKB} | ${result.externalPerConnectionKB} | ${result.rssBeforeMB} → ${result.rssAfterMB} | ${acceptSeconds.toFixed(1)} | ${restCpu.toFixed(3)} over ${restSeconds} s |`,
);
for (const ws of sockets) ws.terminate();
await server.stop();
process.exit(0);
