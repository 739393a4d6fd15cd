// Recovery keys (ARCHITECTURE.md §5 "Recovery across reload"): a new client instance continues from a saved
// connection key and channel positions; browsers can save one on pagehide (opt-in).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MooringError } from '../src/errors.ts';
import { decodeRecoveryKey, encodeRecoveryKey } from '../src/recovery-key.ts';
import { EPOCH, fakeClient, fakeEnvironment, sent, serial } from './helpers/fake-client.ts';
import { flush } from './helpers/fake-transport.ts';

describe('recovery keys', () => {
  it('round-trip, and reject anything else with a clear error', () => {
    const state = { connectionKey: 'c_1.sig', channels: { 'session:é': serial(4), empty: '' }, savedAt: 42 };
    assert.deepEqual(decodeRecoveryKey(encodeRecoveryKey(state)), state);
    assert.throws(
      () => decodeRecoveryKey('not a key'),
      (e: MooringError) => e.code === 'bad_request' && /recoveryKey\(\)/.test(e.message),
    );
    const bad = encodeRecoveryKey({ ...state, channels: { c: 'nonsense' } });
    assert.throws(() => decodeRecoveryKey(bad), /channel c/);
  });

  it('reject a key that is not an object, lacks a field, or is not UTF-8, with a bad_request error (never a TypeError)', () => {
    const keyOf = (bytes: Uint8Array) =>
      btoa(String.fromCharCode(...bytes))
        .replace(/\+/g, '-')
        .replace(/\//g, '_')
        .replace(/=+$/, '');
    const keyOfJson = (value: unknown) => keyOf(new TextEncoder().encode(JSON.stringify(value)));
    const rejected = (key: string, why: RegExp) =>
      assert.throws(
        () => decodeRecoveryKey(key),
        (e: MooringError) => e.name === 'MooringError' && e.code === 'bad_request' && why.test(e.message),
      );
    rejected(keyOfJson(null), /not an object/);
    rejected(keyOfJson(7), /not an object/);
    rejected(keyOfJson({ v: 1, c: {}, t: 1 }), /fields are missing/);
    rejected(keyOfJson({ v: 1, k: 'c_1.sig', c: {} }), /fields are missing/);
    rejected(keyOfJson({ v: 1, k: 'c_1.sig', t: 1 }), /fields are missing/);
    rejected(keyOfJson({ v: 1, k: 'c_1.sig', c: null, t: 1 }), /fields are missing/);
    // a connection key holding a byte that is not UTF-8: refused, not read as U+FFFD
    const json = new TextEncoder().encode('{"v":1,"k":"c_1.\u0001","c":{},"t":1}');
    json[json.indexOf(1)] = 0xff;
    rejected(keyOf(json), /not base64url JSON/);
  });

  it('lets a fresh client continue the connection identity and each channel from its position', async () => {
    const old = fakeClient();
    const t = await old.connect();
    const a = old.client.channels.get('a');
    const empty = old.client.channels.get('empty');
    void a.subscribe(() => {});
    void empty.attach();
    const [attachA, attachEmpty] = sent(t, 'attach');
    t.frame({
      type: 'attached',
      ref: attachA!.ref,
      channel: 'a',
      resumed: false,
      epoch: EPOCH,
      position: serial(1),
    });
    t.frame({
      type: 'attached',
      ref: attachEmpty!.ref,
      channel: 'empty',
      resumed: false,
      epoch: '',
      position: '',
    });
    t.frame({
      type: 'messages',
      channel: 'a',
      messages: [{ serial: serial(2), version: serial(2), action: 'create', id: 'x', timestamp: 0 }],
    });
    old.client.channels.get('never-attached');
    const key = old.client.recoveryKey();
    assert.deepEqual(decodeRecoveryKey(key).channels, { a: serial(2), empty: '' });

    const fresh = fakeClient({ recover: key });
    await flush();
    const t2 = fresh.transports.last();
    assert.equal(t2.query.get('recover'), old.client.connection.key);
    t2.connected();
    void fresh.client.channels.get('a').attach();
    void fresh.client.channels.get('empty').attach();
    const modes = sent(t2, 'attach').map(({ ref: _r, type: _t, ...rest }) => rest);
    assert.deepEqual(modes, [
      { channel: 'a', from: serial(2) },
      { channel: 'empty', start: true },
    ]);
  });

  it('saves to sessionStorage on pagehide and is picked up by the next page (recoverOnReload)', async () => {
    const env = fakeEnvironment();
    const page1 = fakeClient({ environment: env.environment, recoverOnReload: true });
    const t = await page1.connect();
    void page1.client.channels.get('c').attach();
    const attach = sent(t, 'attach')[0]!;
    t.frame({
      type: 'attached',
      ref: attach.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(9),
    });
    env.fire('pagehide');
    assert.equal(env.storage.getItem(`mooring:recovery:ws://mooring.test/v1/connect`) !== null, true);

    const page2 = fakeClient({ environment: env.environment, recoverOnReload: true });
    await flush();
    const t2 = page2.transports.last();
    assert.equal(t2.query.get('recover'), page1.client.connection.key);
    t2.connected();
    void page2.client.channels.get('c').attach();
    assert.equal(sent(t2, 'attach')[0]?.from, serial(9));
    assert.equal(env.storage.getItem(`mooring:recovery:ws://mooring.test/v1/connect`), null, 'used once');
  });

  it('does not touch storage without recoverOnReload', async () => {
    const env = fakeEnvironment();
    const client = fakeClient({ environment: env.environment });
    await client.connect();
    env.fire('pagehide');
    assert.equal((env.storage as unknown as { items: Map<string, string> }).items.size, 0);
  });

  it('retries at once when the browser reports the network back', async () => {
    const env = fakeEnvironment();
    const { client, transports } = fakeClient({ environment: env.environment, random: () => 0.99 });
    await flush();
    transports.last().end({ code: 1006, reason: '' });
    assert.equal(client.connection.state, 'disconnected');
    env.fire('online');
    assert.equal(client.connection.state, 'connecting');
  });
});
