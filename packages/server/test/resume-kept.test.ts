/**
 * A resume from the epoch before a new one (here a SQLite file opened after a power loss, §15) is
 * answered `epoch_changed` with `kept`: the serial in the new epoch up to which the client's messages
 * are intact, the catch-up being what changed after it (PROTOCOL.md §6.2). Retention may trim those
 * messages later: `kept` must then not point into trimmed history, where the catch-up from it would
 * silently lack what retention removed (ChannelService.checkResume: `seq >= trimmedThrough`).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { it } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { ChannelService } from '../src/channel-service.ts';
import { LocalHub } from '../src/hub.ts';
import { startServer } from '../src/index.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const BOOT_ID = '/proc/sys/kernel/random/boot_id';
const RETENTION = 60_000;

it(
  'a resume from the epoch before a power loss gets `kept` only where retention has not trimmed the messages after it',
  { skip: !existsSync(BOOT_ID) && `${BOOT_ID} is missing` },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-kept-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 })); // a late WAL file of the closing store: retried
    const path = join(dir, 'mooring.db');
    const options = { path, retentionFor: () => RETENTION };
    const t0 = Date.now();
    const create = (id: string) => ({ action: 'create' as const, publisher: '', id, data: id });

    const first = new SqliteStore(options);
    const old = await first.append('ch', ['m1', 'm2', 'm3', 'm4', 'm5'].map(create), {
      maxMessageSize: 1024,
      now: t0,
    });
    await first.close();
    // left as a power loss leaves it: open, on another boot (its last commits may be undone)
    const db = new DatabaseSync(path);
    db.prepare("UPDATE store_state SET value = '1' WHERE name = 'open'").run();
    db.prepare("UPDATE store_state SET value = 'another-boot' WHERE name = 'boot'").run();
    db.close();

    const store = new SqliteStore(options);
    t.after(() => store.close());
    const service = new ChannelService(store, new LocalHub(), DEFAULT_LIMITS);
    t.after(() => service.leases.close());
    const oldSerial = (seq: number) => `${old.epoch}.${String(seq).padStart(16, '0')}`;
    const info = await store.info('ch');
    assert.ok(info && info.epoch !== old.epoch, 'a new epoch after the power loss');
    assert.deepEqual(info.previous, { epoch: old.epoch, through: 5 });
    const newSerial = (seq: number) => `${info.epoch}.${String(seq).padStart(16, '0')}`;

    const before = await service.checkResume('ch', oldSerial(3));
    assert.equal(before.resumed, false);
    assert.equal(before.reason, 'epoch_changed');
    assert.equal(before.kept, newSerial(3), 'kept: the messages up to 3 are still there');

    // later messages, then retention trims the five of the old epoch (created at t0)
    await store.append('ch', ['m6', 'm7'].map(create), { maxMessageSize: 1024, now: t0 + 2 * RETENTION });
    assert.equal(await store.trim(t0 + RETENTION + 1), 5);
    assert.equal((await store.info('ch'))?.trimmedThrough, 5);

    const trimmed = await service.checkResume('ch', oldSerial(3));
    assert.equal(trimmed.resumed, false);
    assert.equal(trimmed.reason, 'epoch_changed');
    assert.equal(
      trimmed.kept,
      undefined,
      'no kept: messages 4 and 5, after the position, were trimmed (the catch-up from 3 would lack them)',
    );
    // at the last trimmed message: nothing after it is missing
    const atLast = await service.checkResume('ch', oldSerial(5));
    assert.equal(atLast.resumed, false);
    assert.equal(atLast.kept, newSerial(5));
    const page = await store.readSince('ch', newSerial(5), 10);
    assert.deepEqual(
      page.messages.map((m) => m.data),
      ['m6', 'm7'],
      'the catch-up after kept is complete',
    );
  },
);

it(
  'an attach from the epoch before a power loss is answered resumed: false, epoch_changed, with `kept`, and sent what came after it',
  { skip: !existsSync(BOOT_ID) && `${BOOT_ID} is missing` },
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-kept-'));
    t.after(() => rm(dir, { recursive: true, force: true, maxRetries: 5 })); // a late WAL file of the closing store: retried
    const path = join(dir, 'mooring.db');
    const create = (id: string) => ({ action: 'create' as const, publisher: '', id, data: id });
    const first = new SqliteStore({ path });
    const old = await first.append('ch', ['m1', 'm2', 'm3'].map(create), { maxMessageSize: 1024 });
    await first.close();
    // left as a power loss leaves it, then opened on another boot: a new epoch, m1–m3 kept
    const db = new DatabaseSync(path);
    db.prepare("UPDATE store_state SET value = '1' WHERE name = 'open'").run();
    db.prepare("UPDATE store_state SET value = 'another-boot' WHERE name = 'boot'").run();
    db.close();
    const store = new SqliteStore({ path });
    const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store });
    t.after(() => server.close());
    const writer = await RawClient.connect(server.url, { clientId: 'writer' });
    t.after(() => writer.close());
    const m4 = (await writer.publish('ch', [{ data: 'm4' }])).results[0]!.serial;
    const epoch = m4.split('.')[0]!;
    assert.notEqual(epoch, old.epoch, 'a new epoch after the power loss');

    const reader = await RawClient.connect(server.url, { clientId: 'reader' });
    t.after(() => reader.close());
    const attached = await reader.attach('ch', { from: old.results[1]!.serial });
    assert.equal(attached.resumed, false, 'its serials changed: not a resume');
    assert.equal(attached.reason, 'epoch_changed');
    assert.equal(
      attached.kept,
      `${epoch}.0000000000000002`,
      'm1 and m2 are still there, as <epoch>.1 and .2',
    );
    assert.equal(attached.position, m4);
    assert.deepEqual(
      reader.messages('ch').map((m) => m.data),
      ['m3', 'm4'],
      'what came after the kept position',
    );
  },
);
