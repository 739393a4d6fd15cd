/**
 * How long a new client takes from `subscribe` to `attached` on a channel of 20 messages, through a
 * delaying proxy (`--delay` ms each way, default 50: a 100 ms round trip), per transport: what a page
 * reload costs in round trips. Seven clients one after the other; prints each and the median.
 *
 *   npx node bench/src/attach-rtt.ts [--transport websocket|sse|longpoll] [--delay 50]
 */
import { Mooring } from '@mooring/client';
import type { TransportKind } from '@mooring/protocol';
import { startServer } from '@mooring/server';
import { FaultProxy } from '@mooring/testkit';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const transport = arg('transport', 'longpoll') as TransportKind;
const delay = Number(arg('delay', '50'));

const server = await startServer({
  host: '127.0.0.1',
  port: 0,
  keys: ['bench:secret'],
  store: { kind: 'memory' },
});
const writer = new Mooring({ url: server.url, key: 'bench:secret', environment: null });
for (let i = 0; i < 20; i++) await writer.channels.get('session:reload').publish('text', `message ${i}`);
const proxy = await FaultProxy.start({ port: server.port });
proxy.delay(delay);
const times: number[] = [];
for (let run = 0; run < 7; run++) {
  const started = performance.now();
  const client = new Mooring({
    url: proxy.url('/'),
    key: 'bench:secret',
    environment: null,
    transports: [transport],
  });
  let received = 0;
  await client.channels.get('session:reload', { start: true }).subscribe(() => received++);
  times.push(performance.now() - started);
  if (received !== 20) throw new Error(`received ${received} of 20 messages`);
  client.close();
}
const sorted = [...times].sort((a, b) => a - b);
console.log(
  `${transport}, ${2 * delay} ms round trip: subscribe → attached ${times.map((t) => t.toFixed(0)).join(', ')} ms; median ${sorted[3]?.toFixed(0)}`,
);
writer.close();
await proxy.close();
await server.close();
process.exit(0);
