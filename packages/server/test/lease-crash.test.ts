/**
 * Leases across a real crash (PROTOCOL.md §7.1): a `mooring serve` process killed with SIGKILL at the
 * worst moment of a lease expiry, or while leases are held, still ends every orphaned run
 * `status=abandoned` once it is restarted on the same data dir — exactly once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { type Message, parseSerial } from '@mooring/protocol';
import { RawClient } from './support/raw-client.ts';
import { type ServerProcess, spawnServer } from './support/server-process.ts';

const PRELOAD = pathToFileURL(join(import.meta.dirname, 'support', 'crash-preload.ts')).href;
/** A bound on every wait: reached only when the test fails. */
const BOUND_MS = 15_000;

const isAbandoned = (m: Message) => m.headers?.status === 'abandoned';

/** Polls the lease records in the data dir (a second, read-only SQLite connection) until there are none. */
async function leaseRecordsDrained(dir: string): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  for (;;) {
    const db = new DatabaseSync(join(dir, 'mooring.db'), { readOnly: true });
    const n = Number(db.prepare('SELECT count(*) AS n FROM leases').get()?.n);
    db.close();
    if (n === 0) return;
    if (Date.now() > deadline) throw new Error(`${n} lease records never expired`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function withinBound<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), BOUND_MS);
  });
  try {
    return await Promise.race([p, bound]);
  } finally {
    clearTimeout(timer);
  }
}

describe('leases across kill -9', () => {
  for (const mode of ['before-remove', 'after-remove'] as const) {
    it(`an expiry crashed ${mode === 'before-remove' ? 'after storing the update, before removing the record' : 'right after removing the record'} still ends the run abandoned, once`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'mooring-lease-crash-'));
      const children: ServerProcess[] = [];
      const clients: RawClient[] = [];
      const channel = 'session:lease-kill';
      try {
        const first = await spawnServer(['--store', 'sqlite', '--data', dir], {
          // keep the inherited options (the source-condition resolution of the workspace packages)
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`.trim(),
          MOORING_TEST_CRASH: `lease:${mode}`,
        });
        children.push(first);
        const agent = await RawClient.connect(first.url, { clientId: 'agent' });
        clients.push(agent);
        const ack = await agent.publish(channel, [
          { id: 'run', name: 'ai.run', data: '', headers: { status: 'streaming', run: 'r1' }, lease: 200 },
        ]);
        const serial = ack.results[0]!.serial;
        await agent.publish(channel, [{ action: 'append', serial, id: 'run:1', data: 'partial' }]);
        agent.kill(); // the agent died; 200 ms later the server expires the lease, and dies doing it
        assert.equal(await withinBound('the server killing itself', first.exited), 'SIGKILL');

        const second = await spawnServer(['--store', 'sqlite', '--data', dir]);
        children.push(second);
        const watcher = await RawClient.connect(second.url);
        clients.push(watcher);
        await watcher.attach(channel, { start: true });
        await watcher.next((f) => f.type === 'messages' && f.messages.some(isAbandoned), BOUND_MS);
        // A re-armed record expires again (its update is then a duplicate); wait until none is left.
        await leaseRecordsDrained(dir);

        const reader = await RawClient.connect(second.url);
        clients.push(reader);
        const attached = await reader.attach(channel, { start: true });
        const [run] = reader.messages(channel);
        assert.equal(run?.serial, serial);
        assert.equal(run?.data, 'partial', 'the partial output stays');
        assert.deepEqual(run?.headers, { status: 'abandoned', run: 'r1' });
        // create, append, one abandoned update: a second expiry would have stored a 4th operation
        assert.equal(parseSerial(attached.position)!.seq, 3, 'the abandoned update is stored once');
      } finally {
        for (const c of clients) c.kill();
        for (const child of children) child.child.kill('SIGKILL');
        await Promise.all(children.map((c) => c.exited));
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('a run ended (lease 0) just before a crash, whose end is resent after the restart, is not abandoned', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-lease-end-crash-'));
    const children: ServerProcess[] = [];
    const clients: RawClient[] = [];
    const channel = 'session:lease-end-crash';
    try {
      // COMMIT 1: the run's create; COMMIT 2: its end. The server dies right after the second: the
      // end is stored, its acknowledgement never sent, and the lease record was never removed.
      const first = await spawnServer(['--store', 'sqlite', '--data', dir], {
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`.trim(),
        MOORING_TEST_CRASH: 'commit:2',
      });
      children.push(first);
      const agent = await RawClient.connect(first.url, { clientId: 'agent' });
      clients.push(agent);
      const serial = (
        await agent.publish(channel, [
          // a lease far longer than a restart takes on a loaded machine: the resent end must be what
          // ends it, not a race with the re-armed expiry
          { id: 'run', data: 'answer', headers: { status: 'streaming' }, lease: 5_000 },
        ])
      ).results[0]!.serial;
      const end = {
        action: 'update' as const,
        serial,
        id: 'run:end',
        headers: { status: 'complete' },
        lease: 0,
      };
      agent.send({ type: 'publish', channel, ops: [end] });
      assert.equal(await withinBound('the crash after the end', first.exited), 'SIGKILL');

      const second = await spawnServer(['--store', 'sqlite', '--data', dir]);
      children.push(second);
      const back = await RawClient.connect(second.url, { clientId: 'agent' });
      clients.push(back);
      // the agent resends what was never acknowledged: a duplicate, which must still end the lease
      const resent = await back.publish(channel, [end]);
      assert.equal(resent.results[0]!.duplicate, true);
      await leaseRecordsDrained(dir);
      const reader = await RawClient.connect(second.url);
      clients.push(reader);
      await reader.attach(channel, { start: true });
      assert.deepEqual(
        reader.messages(channel)[0]?.headers,
        { status: 'complete' },
        'complete, not abandoned',
      );
    } finally {
      for (const c of clients) c.kill();
      for (const child of children) child.child.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exited));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('re-arms the leases held when the server was killed: abandoned unless the publisher writes again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-lease-rearm-'));
    const children: ServerProcess[] = [];
    const clients: RawClient[] = [];
    const channel = 'session:lease-rearm';
    try {
      const first = await spawnServer(['--store', 'sqlite', '--data', dir]);
      children.push(first);
      const agent = await RawClient.connect(first.url, { clientId: 'agent' });
      clients.push(agent);
      const orphan = (
        await agent.publish(channel, [{ id: 'o', data: '', headers: { status: 'streaming' }, lease: 1500 }])
      ).results[0]!.serial;
      const alive = (
        await agent.publish(channel, [{ id: 'l', data: '', headers: { status: 'streaming' }, lease: 1500 }])
      ).results[0]!.serial;
      first.child.kill('SIGKILL'); // the server crashes while both leases are held by a live agent
      assert.equal(await withinBound('the kill', first.exited), 'SIGKILL');

      const second = await spawnServer(['--store', 'sqlite', '--data', dir]);
      children.push(second);
      // the agent comes back (a new connection, same clientId) and carries on with one of its runs
      const back = await RawClient.connect(second.url, { clientId: 'agent' });
      clients.push(back);
      await back.publish(channel, [{ action: 'append', serial: alive, id: 'l:1', data: '.' }]);
      const watcher = await RawClient.connect(second.url);
      clients.push(watcher);
      await watcher.attach(channel, { start: true });
      await watcher.next(
        (f) => f.type === 'messages' && f.messages.some((m) => m.serial === orphan && isAbandoned(m)),
        BOUND_MS,
      );
      await back.publish(channel, [
        { action: 'update', serial: alive, id: 'l:end', headers: { status: 'complete' }, lease: 0 },
      ]);
      await watcher.next(
        (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'complete'),
        BOUND_MS,
      );
      await leaseRecordsDrained(dir);
      assert.deepEqual(
        watcher
          .messages(channel)
          .filter(isAbandoned)
          .map((m) => m.serial),
        [orphan],
        'only the run nobody continued was abandoned',
      );
    } finally {
      for (const c of clients) c.kill();
      for (const child of children) child.child.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exited));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
