/** Message leases (ARCHITECTURE.md §5.6, PROTOCOL.md §7.1): a run whose publisher vanished ends `abandoned`. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import pino from 'pino';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import type { AppendResult, RolledUpPage } from '../src/store/store.ts';
import { type Fixture, metricsText, metricValue, rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const abandoned = (c: RawClient, channel: string) =>
  c.messages(channel).filter((m) => m.action === 'update' && m.headers?.status === 'abandoned');

describe('message leases', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('sqlite');
  });
  after(() => fx.close());

  it('marks a message abandoned when its publisher is gone longer than the lease, keeping other headers', async () => {
    const channel = 'session:lease-crash';
    const watcher = await RawClient.connect(fx.server.url);
    await watcher.attach(channel);
    const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
    const ack = await agent.publish(channel, [
      { id: 'run', name: 'ai.run', data: '', headers: { status: 'streaming', run: 'r1' }, lease: 300 },
    ]);
    await agent.publish(channel, [
      { action: 'append', serial: ack.results[0]!.serial, id: 'run:1', data: 'partial' },
    ]);
    agent.kill(); // the agent process died mid-run
    const update = (await watcher.next(
      (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
    )) as { messages: Message[] };
    const m = update.messages.find((x) => x.headers?.status === 'abandoned')!;
    assert.equal(m.serial, ack.results[0]!.serial);
    assert.deepEqual(m.headers, { status: 'abandoned', run: 'r1' });
    const history = await rest(fx.server, `/v1/channels/${channel}/messages`);
    const rolled = (history.body.items as Message[])[0]!;
    assert.equal(rolled.data, 'partial', 'the partial output stays');
    assert.equal(rolled.headers?.status, 'abandoned');
    await watcher.close();
  });

  it('does nothing once the lease is released, or while the publisher comes back in time', async () => {
    const channel = 'session:lease-ok';
    const watcher = await RawClient.connect(fx.server.url);
    await watcher.attach(channel);
    const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
    const done = await agent.publish(channel, [
      { id: 'a', data: '', headers: { status: 'streaming' }, lease: 200 },
    ]);
    await agent.publish(channel, [
      {
        action: 'update',
        serial: done.results[0]!.serial,
        id: 'a:end',
        headers: { status: 'complete' },
        lease: 0,
      },
    ]);
    const held = await agent.publish(channel, [
      { id: 'b', data: '', headers: { status: 'streaming' }, lease: 400 },
    ]);
    // a network blip: the agent's socket dies and it comes back with its connection key at once
    agent.kill();
    const back = await RawClient.connect(fx.server.url, {
      clientId: 'agent',
      recover: agent.connected.connectionKey,
    });
    assert.equal(back.connected.resumed, true);
    // Let the lease (400 ms) run out had it been armed; then a sentinel, awaited: an `abandoned`
    // update stored by an expiry would have reached the watcher before it.
    await new Promise((r) => setTimeout(r, 700));
    const sentinel = await back.publish(channel, [{ id: 'sentinel', data: 'after the lease' }]);
    await watcher.next(
      (f) => f.type === 'messages' && f.messages.some((m) => m.serial === sentinel.results[0]!.serial),
    );
    assert.deepEqual(abandoned(watcher, channel), [], 'no message was abandoned');
    await back.publish(channel, [
      {
        action: 'update',
        serial: held.results[0]!.serial,
        id: 'b:end',
        headers: { status: 'complete' },
        lease: 0,
      },
    ]);
    await Promise.all([watcher.close(), back.close()]);
  });

  it('holds a REST publisher lease by activity', async () => {
    const channel = 'session:lease-rest';
    const watcher = await RawClient.connect(fx.server.url);
    await watcher.attach(channel);
    const created = await rest(fx.server, `/v1/channels/${channel}/messages`, {
      body: { id: 'srv', data: '', headers: { status: 'streaming' }, lease: 300 },
    });
    const serial = (created.body.results as Array<{ serial: string }>)[0]!.serial;
    await rest(fx.server, `/v1/channels/${channel}/messages`, {
      body: { action: 'append', serial, id: 'srv:1', data: 'x', lease: 300 },
    });
    await watcher.next(
      (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
    );
    assert.equal(abandoned(watcher, channel).length, 1);
    const bad = await rest(fx.server, `/v1/channels/${channel}/messages`, { body: { data: 'x', lease: 5 } });
    assert.equal(bad.status, 400);
    await watcher.close();
  });

  it('re-arms leases after a server restart: abandoned unless the publisher (same clientId) writes again', async () => {
    const channel = 'session:lease-restart';
    const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
    const orphan = await agent.publish(channel, [
      { id: 'o', data: '', headers: { status: 'streaming' }, lease: 400 },
    ]);
    const alive = await agent.publish(channel, [
      { id: 'l', data: '', headers: { status: 'streaming' }, lease: 400 },
    ]);
    agent.kill();
    const server = await fx.restart(); // a clean restart: the registry of connections is gone
    const watcher = await RawClient.connect(server.url);
    await watcher.attach(channel);
    // the agent comes back with a new connection (no identity to recover) and carries on with one run
    const back = await RawClient.connect(server.url, { clientId: 'agent' });
    assert.equal(back.connected.resumed, false);
    const liveSerial = alive.results[0]!.serial;
    for (let i = 0; i < 3; i++) {
      await back.publish(channel, [{ action: 'append', serial: liveSerial, id: `l:${i}`, data: '.' }]);
      await new Promise((r) => setTimeout(r, 150));
    }
    await watcher.next(
      (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
    );
    // Both leases were re-armed with the same 400 ms: had the continued one not been taken back, its
    // expiry would have run with the orphan's. The run's end, awaited, comes after anything it stored.
    const end = await back.publish(channel, [
      { action: 'update', serial: liveSerial, id: 'l:end', headers: { status: 'complete' }, lease: 0 },
    ]);
    await watcher.next(
      (f) =>
        f.type === 'messages' &&
        f.messages.some((m) => m.version === end.results[0]!.serial || m.headers?.status === 'complete'),
    );
    assert.deepEqual(
      abandoned(watcher, channel).map((m) => m.serial),
      [orphan.results[0]!.serial],
      'only the run nobody continued was abandoned',
    );
    await Promise.all([watcher.close(), back.close()]);
  });

  it('keeps the record and retries an expiry the store refused, until the abandoned update is stored', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-lease-retry-'));
    const path = join(dir, 'mooring.db');
    // another process holds the write lock for a while: the expiry's update fails with SQLITE_BUSY
    const store = new SqliteStore({ path, busyTimeoutMs: 10 });
    // the expiry reads the message, then appends the update: either refusal counts
    const refused: unknown[] = [];
    const note = (err: unknown): never => {
      refused.push(err);
      throw err;
    };
    const history = store.history.bind(store);
    store.history = (...args): Promise<RolledUpPage> => history(...args).catch(note);
    const append = store.append.bind(store);
    store.append = (...args): Promise<AppendResult> => append(...args).catch(note);
    const own = await startFixture('memory', { store });
    const other = new DatabaseSync(path);
    try {
      const channel = 'session:lease-retry';
      const watcher = await RawClient.connect(own.server.url);
      await watcher.attach(channel);
      const agent = await RawClient.connect(own.server.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: '', headers: { status: 'streaming' }, lease: 150 },
      ]);
      other.exec('BEGIN IMMEDIATE');
      agent.kill();
      const deadline = Date.now() + 10_000;
      while (refused.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.ok(refused.length > 0, 'the expiry was refused by the store');
      const records = Number(other.prepare('SELECT count(*) AS n FROM leases').get()?.n);
      assert.equal(records, 1, 'the lease record stays while its expiry is not stored');
      other.exec('ROLLBACK');
      const update = (await watcher.next(
        (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
      )) as { messages: Message[] };
      assert.equal(update.messages[0]!.serial, ack.results[0]!.serial);
      await watcher.close();
    } finally {
      if (other.isTransaction) other.exec('ROLLBACK');
      other.close();
      await own.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('message leases: a restart keeps them counted against their holder', () => {
  it('a holder at maxLeasesPerClient before a restart is refused one more lease after it', async () => {
    const fx = await startFixture('sqlite', { limits: { maxLeasesPerClient: 2 } });
    const channel = 'session:lease-count';
    try {
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      for (const id of ['r1', 'r2'])
        await agent.publish(channel, [{ id, data: '', headers: { status: 'streaming' }, lease: 60_000 }]);
      agent.kill();
      const server = await fx.restart(); // both lease records re-armed from the SQLite file
      const back = await RawClient.connect(server.url, { clientId: 'agent' });
      // Before, restored leases counted against no one: the agent could hold 2 more than its limit.
      const third = await back.request({
        type: 'publish',
        channel,
        ops: [{ id: 'r3', data: '', lease: 60_000 }],
      });
      assert.equal(third.type === 'error' && third.error.code, 'too_many_leases');
      // another holder is not held to the agent's leases
      const other = await rest(server, `/v1/channels/${channel}/messages`, {
        body: { id: 'o1', data: '', lease: 60_000 },
      });
      assert.equal(other.status, 200);
      await back.close();
    } finally {
      await fx.close();
    }
  });

  it('lease records of an older table (no owner column) still load, counted against no one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-lease-owner-'));
    const path = join(dir, 'mooring.db');
    const old = new DatabaseSync(path);
    old.exec(
      'CREATE TABLE leases (channel TEXT NOT NULL, serial TEXT NOT NULL, ms INTEGER NOT NULL, client_id TEXT, PRIMARY KEY (channel, serial)) WITHOUT ROWID',
    );
    old.prepare('INSERT INTO leases VALUES (?, ?, ?, ?)').run('session:old', 'e.1', 60_000, 'agent');
    old.exec('PRAGMA user_version = 2');
    old.close();
    const store = new SqliteStore({ path });
    try {
      assert.deepEqual(store.leases.all(), [
        { channel: 'session:old', serial: 'e.1', ms: 60_000, clientId: 'agent' },
      ]);
      store.leases.save({ channel: 'session:old', serial: 'e.2', ms: 60_000, owner: 'key\u0000test\u0000' });
      assert.deepEqual(
        store.leases.all().find((r) => r.serial === 'e.2'),
        { channel: 'session:old', serial: 'e.2', ms: 60_000, owner: 'key\u0000test\u0000' },
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('message leases: what operators see', () => {
  it('counts leases and expiries in /metrics and logs each run marked abandoned', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk, _enc, done) {
          lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    );
    const fx = await startFixture('memory', { logger });
    const metric = async (series: string) => metricValue(await metricsText(fx.server), series);
    try {
      const channel = 'session:lease-metrics';
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: '', headers: { status: 'streaming' }, lease: 200 },
      ]);
      const serial = ack.results[0]!.serial;
      const ended = await agent.publish(channel, [
        { id: 'done', data: '', headers: { status: 'streaming' }, lease: 200 },
      ]);
      assert.equal(await metric('mooring_leases '), 2);
      await agent.publish(channel, [
        {
          action: 'update',
          serial: ended.results[0]!.serial,
          id: 'end',
          headers: { status: 'complete' },
          lease: 0,
        },
      ]);
      assert.equal(await metric('mooring_leases '), 1);
      agent.kill(); // the agent died mid-run: its one open run expires
      await waitFor(async () => (await metric('mooring_lease_expiries_total{outcome="abandoned"}')) === 1, {
        message: 'the expiry was not counted',
      });
      assert.equal(await metric('mooring_leases '), 0);
      const logged = lines.filter(
        (l) => l.msg === 'lease expired: its publisher is gone, the run is marked abandoned',
      );
      assert.equal(logged.length, 1);
      assert.equal(logged[0]!.channel, channel);
      assert.equal(logged[0]!.serial, serial);
      assert.equal(logged[0]!.version, serial, 'the version the expiry read: the create, nothing after it');
    } finally {
      await fx.close();
    }
  });
});
