/**
 * `echo: false` (PROTOCOL.md §6.2 "Echo"): the server leaves a connection's own operations out of
 * its live stream, and the position still moves past them — no hole seen, nothing missed, resume
 * exact.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { startServer } from '@mooring/server';
import { Mooring } from '../src/index.ts';

it('echo: false leaves out own operations, delivers the others with no hole to repair', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  const a = new Mooring({ url: server.url, key: 'test:secret', clientId: 'agent', environment: null });
  const b = new Mooring({ url: server.url, key: 'test:secret', clientId: 'user', environment: null });
  t.after(() => {
    a.close();
    b.close();
  });
  const quiet = a.channels.get('session:echo', { echo: false });
  const loud = b.channels.get('session:echo');
  assert.equal(quiet.echo, false);
  const seenByA: Message[] = [];
  const seenByB: Message[] = [];
  await quiet.subscribe((m) => seenByA.push(m));
  await loud.subscribe((m) => seenByB.push(m));

  const created = await quiet.publish('run', 'a');
  await quiet.append(created, 'b');
  const input = await loud.publish('input', 'x'); // others' op right after own ones
  await quiet.append(created, 'c');
  await quiet.publishBatch([{ action: 'append', serial: created, data: 'd' }, { name: 'part' }]);
  const last = await loud.publish('input', 'y');
  await quiet.append(created, 'e'); // own ops at the end: nothing follows them

  const marker = await loud.publish('input', 'z'); // A's frames are in order: once this is in, all is
  await until(() => seenByA.some((m) => m.version === marker) && seenByB.length === 9);
  assert.deepEqual(
    seenByA.map((m) => m.version),
    [input, last, marker],
  );
  assert.equal(quiet.gapsRepaired, 0, 'each frame said where it continues: no hole was repaired');
  assert.equal(quiet.position, marker);
  assert.equal(loud.gapsRepaired, 0);
  assert.equal(seenByB.map((m) => m.data ?? '').join(''), 'abxcdyez', 'the other client sees all');
});

it('echo: false in a delivery that mixes own and others’ operations: the others arrive, in one frame each run, no hole', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  // in-process clients: what they publish in one synchronous block is stored in one turn, and a
  // channel with more than 4 subscribers gets one delivery per turn, mixing both publishers
  const local = (clientId: string) =>
    new Mooring({
      url: server.url,
      key: 'test:secret',
      clientId,
      environment: null,
      transport: server.localTransport,
    });
  const a = local('agent');
  const b = local('user');
  const watchers = Array.from({ length: 4 }, (_, i) => local(`watcher-${i}`));
  t.after(() => {
    for (const c of [a, b, ...watchers]) c.close();
  });
  const channel = 'session:echo-mixed';
  const quiet = a.channels.get(channel, { echo: false });
  const loud = b.channels.get(channel);
  const seenByA: Message[] = [];
  await quiet.subscribe((m) => seenByA.push(m));
  await loud.attach();
  for (const w of watchers) await w.channels.get(channel).attach();
  const others: Promise<string>[] = [];
  for (let round = 0; round < 5; round++) {
    void quiet.publish('own', `a${round}`);
    others.push(loud.publish('other', `b${round}`));
  }
  const serials = await Promise.all(others);
  await until(() => seenByA.some((m) => m.version === serials[serials.length - 1]));
  assert.deepEqual(
    seenByA.map((m) => m.data),
    ['b0', 'b1', 'b2', 'b3', 'b4'],
  );
  assert.equal(quiet.gapsRepaired, 0, 'no other operation was left out');
});

it('echo: false resumes exactly: what others published while away arrives, own ops come back once, rolled up', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  const b = new Mooring({ url: server.url, key: 'test:secret', clientId: 'user', environment: null });
  t.after(() => b.close());
  const loud = b.channels.get('session:echo-resume');
  await loud.attach();

  const a1 = new Mooring({ url: server.url, key: 'test:secret', clientId: 'agent', environment: null });
  const quiet1 = a1.channels.get('session:echo-resume', { echo: false });
  const seen1: Message[] = [];
  await quiet1.subscribe((m) => seen1.push(m));
  const first = await loud.publish('input', 'x');
  const run = await quiet1.publish('run', 'a');
  await quiet1.append(run, 'b');
  await until(() => seen1.some((m) => m.version === first));
  const recover = a1.recoveryKey();
  a1.close();

  const missed = await loud.publish('input', 'y');
  const a2 = new Mooring({
    url: server.url,
    key: 'test:secret',
    clientId: 'agent',
    environment: null,
    recover,
  });
  t.after(() => a2.close());
  const quiet2 = a2.channels.get('session:echo-resume', { echo: false });
  const seen2: Message[] = [];
  let lost = false;
  quiet2.on('continuityLost', () => {
    lost = true;
  });
  const attached = await quiet2.subscribe((m) => seen2.push(m));
  assert.equal(attached.resumed, true);
  assert.equal(lost, false);
  assert.equal(seen1[0]?.version, first);
  // the catch-up holds what was missed; own operations after the position come rolled up, once
  assert.deepEqual(
    seen2.map((m) => [m.serial, m.data]),
    [
      [run, 'ab'],
      [missed, 'y'],
    ],
    'own run once, rolled up, then what others published while away',
  );
  assert.ok(seen2.every((m) => m.version > first));
  const later = await loud.publish('input', 'z');
  await until(() => seen2.some((m) => m.version === later));
  assert.equal(quiet2.gapsRepaired, 0);
});

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((resolve) => setImmediate(resolve));
}
