/**
 * Reconnect-and-resume time after an outage during which 1,000 messages were published: from the
 * moment the network is back to the moment the subscriber holds all of them, split into
 *
 *   detection  network back → the client declares the old connection dead (`disconnected`)
 *   reconnect  `disconnected` → `connected` (new WebSocket, `connected` frame, identity recovered)
 *   resume     `connected` → the 1,000th missed message delivered (attach from position + catch-up)
 *
 * Real server in its own process, real TCP through a FaultProxy, default client timings unless a
 * scenario says otherwise:
 *
 *   node packages/client/test/measure/reconnect-resume.ts [rounds=3] [missed=1000]
 *
 * Prints numbers; asserts nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultProxy, waitFor } from '@mooring/testkit';
import type { MooringOptions } from '../../src/mooring.ts';
import { Mooring } from '../../src/mooring.ts';
import { childServer, publishFromChild } from './child-server.ts';

const KEY = 'measure:secret';
const ROUNDS = Number(process.argv[2] ?? 3);
const MISSED = Number(process.argv[3] ?? 1000);
/** How long the network stays down (the messages are published in this window). */
const OUTAGE = 3_000;

interface Scenario {
  name: string;
  heartbeatInterval: number;
  fault: 'blackhole' | 'reset';
  /** A browser `online` event when the network is back (the client probes the connection). */
  online?: boolean;
  client?: Partial<MooringOptions>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'blackhole, heartbeat 15 s (default), idleGrace 10 s',
    heartbeatInterval: 15_000,
    fault: 'blackhole',
  },
  {
    name: 'blackhole, heartbeat 15 s, browser `online` event (probeTimeout 5 s)',
    heartbeatInterval: 15_000,
    fault: 'blackhole',
    online: true,
  },
  { name: 'blackhole, heartbeat 5 s, idleGrace 10 s', heartbeatInterval: 5_000, fault: 'blackhole' },
  {
    name: 'blackhole, heartbeat 5 s, idleGrace 2 s',
    heartbeatInterval: 5_000,
    fault: 'blackhole',
    client: { idleGrace: 2_000 },
  },
  {
    name: 'RST + refused during the outage (loss seen at once), default backoff',
    heartbeatInterval: 15_000,
    fault: 'reset',
  },
];

interface Sample {
  detection: number;
  reconnect: number;
  resume: number;
  total: number;
  bytes: number;
}

async function round(scenario: Scenario): Promise<Sample> {
  const server = await childServer({ keys: [KEY], heartbeatInterval: scenario.heartbeatInterval });
  const proxy = await FaultProxy.start({ port: server.port });
  const reader = new Mooring({ url: proxy.url('/'), key: KEY, environment: null, ...scenario.client });
  const channel = reader.channels.get('measure:resume');
  let received = 0;
  let tAll = 0;
  void channel.subscribe(() => {
    received += 1;
    if (received === MISSED + 1) tAll = performance.now();
  });
  await channel.attach();
  await publishFromChild(server.url, KEY, { channel: 'measure:resume', count: 1, size: 100 });
  await waitFor(() => received === 1);
  // Start the outage at a random point of the heartbeat cycle, as a real one would.
  await sleep(Math.random() * scenario.heartbeatInterval);

  let tDisconnected = 0;
  let tConnected = 0;
  reader.connection.on('disconnected', () => {
    if (tDisconnected === 0) tDisconnected = performance.now();
  });
  reader.connection.on('connected', () => {
    if (tConnected === 0) tConnected = performance.now();
  });
  const tDown = performance.now();
  if (scenario.fault === 'blackhole') proxy.blackhole();
  else {
    proxy.refuse();
    await proxy.reset();
  }
  await publishFromChild(server.url, KEY, { channel: 'measure:resume', count: MISSED, size: 100 });
  await sleep(Math.max(0, OUTAGE - (performance.now() - tDown)));
  const bytesBefore = proxy.stats.bytesToClient;
  const tBack = performance.now();
  proxy.pass();
  if (scenario.online) reader.connection.networkChanged('online');
  await waitFor(() => tAll > 0, { timeout: 120_000, interval: 1 });

  const sample: Sample = {
    // a loss noticed during the outage (reset) counts as 0 detection after the network is back
    detection: Math.max(0, tDisconnected - tBack),
    reconnect: tConnected - Math.max(tDisconnected, tBack),
    resume: tAll - tConnected,
    total: tAll - tBack,
    bytes: proxy.stats.bytesToClient - bytesBefore,
  };
  reader.close();
  await sleep(50);
  await proxy.close();
  await server.stop();
  return sample;
}

const ms = (n: number) => `${n.toFixed(0)} ms`.padStart(9);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

console.log(
  `reconnect and resume: ${MISSED} messages (100 B each) missed during a ${OUTAGE} ms outage; ${ROUNDS} rounds, median (min–max)\n`,
);
console.log(
  `${'scenario'.padEnd(72)} ${'detection'.padStart(9)} ${'reconnect'.padStart(9)} ${'resume'.padStart(9)} ${'total'.padStart(9)}  catch-up bytes`,
);
for (const scenario of SCENARIOS) {
  const samples: Sample[] = [];
  for (let i = 0; i < ROUNDS; i++) samples.push(await round(scenario));
  const col = (k: keyof Sample) => ms(median(samples.map((s) => s[k])));
  const range = (k: keyof Sample) =>
    `${Math.min(...samples.map((s) => s[k])).toFixed(0)}–${Math.max(...samples.map((s) => s[k])).toFixed(0)}`;
  console.log(
    `${scenario.name.padEnd(72)} ${col('detection')} ${col('reconnect')} ${col('resume')} ${col('total')}  ${median(samples.map((s) => s.bytes))}`,
  );
  console.log(
    `${''.padEnd(72)} ${range('detection').padStart(9)} ${range('reconnect').padStart(9)} ${range('resume').padStart(9)} ${range('total').padStart(9)}`,
  );
}
process.exit(0);
