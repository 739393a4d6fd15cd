/**
 * Client memory per subscribed channel: heap used by one `Mooring` client with N attached channels
 * (a listener each), before and after one message per channel. The server runs in its own process.
 *
 *   node --expose-gc packages/client/test/measure/client-memory.ts [channels=1000]
 *
 * Prints numbers; asserts nothing (ARCHITECTURE.md §14: performance is measured, not asserted).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '@mooring/testkit';
import { Mooring } from '../../src/mooring.ts';
import { childServer, publishFromChild } from './child-server.ts';

const KEY = 'measure:secret';
const N = Number(process.argv[2] ?? 1000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

async function heapUsed(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc?.();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed;
}

const kib = (bytes: number) => `${(bytes / 1024).toFixed(2)} KiB`;

// The default maxChannelsPerConnection is 500; this measurement needs N on one connection.
const server = await childServer({ keys: [KEY], limits: { maxChannelsPerConnection: Math.max(N, 500) } });
const reader = new Mooring({ url: server.url, key: KEY, environment: null });
await waitFor(() => reader.connection.state === 'connected');
await reader.connection.ping();

const base = await heapUsed();
let received = 0;
const listener = () => {
  received += 1;
};
const names = Array.from({ length: N }, (_, i) => `m:${i}`);
for (const name of names) reader.channels.get(name);
const created = await heapUsed();
await Promise.all(names.map((name) => reader.channels.get(name).subscribe(listener)));
const attached = await heapUsed();

await publishFromChild(server.url, KEY, { channels: names, size: 100 });
await waitFor(() => received === N, { timeout: 60_000 });
const afterMessage = await heapUsed();

console.log(`client memory, ${N} channels on one connection (heapUsed after gc)`);
console.log(`  baseline (connected client)          ${kib(base)}`);
console.log(
  `  ${N} channels created (channels.get)  +${kib(created - base)}  = ${kib((created - base) / N)} per channel`,
);
console.log(
  `  ${N} channels attached, 1 listener each +${kib(attached - base)}  = ${kib((attached - base) / N)} per channel`,
);
console.log(
  `  after 1 message (100 B) per channel  +${kib(afterMessage - base)}  = ${kib((afterMessage - base) / N)} per channel`,
);
console.log(`  rss ${kib(process.memoryUsage().rss)}`);

reader.close();
await sleep(50);
await server.stop();
process.exit(0);
