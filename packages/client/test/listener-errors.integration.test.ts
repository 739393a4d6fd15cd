// A listener that throws, against a real server (an outside review, stop 59): with `onListenerError`
// the client hands the exception to it — from every emitter: a channel's messages and events, its
// presence, the connection — and nothing reaches `uncaughtException`, which in Node ends the process
// (a long-lived agent with one bad message handler). Without the option the error still surfaces as
// an uncaught exception, as Node's EventEmitter would, and the other listeners go on either way.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { MooringError } from '../src/errors.ts';
import { client, connected, realServer, waitFor } from './helpers/real-server.ts';

/** What reaches `uncaughtException` while `run` goes on (the test runner would fail the file on it). */
async function uncaught(run: (seen: unknown[]) => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  process.setUncaughtExceptionCaptureCallback((error) => seen.push(error));
  try {
    await run(seen);
    // a re-throw goes out in a microtask: let any that is due land before looking
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.setUncaughtExceptionCaptureCallback(null);
  }
  return seen;
}

class Bad extends Error {}

describe('a listener that throws', () => {
  it('with onListenerError: the hook gets it, nothing is uncaught, the other listeners and later messages still arrive', async (t) => {
    const server = await realServer(t);
    const writer = client(t, server.url, { clientId: 'writer' });
    const hooked: Array<{ error: unknown; event: string }> = [];
    const reader = client(t, server.url, {
      clientId: 'agent',
      onListenerError: (error, event) => hooked.push({ error, event }),
    });
    const channel = reader.channels.get('room:listener');
    const bad: unknown[] = [];
    const good: unknown[] = [];
    const escaped = await uncaught(async () => {
      await channel.subscribe((m: Message) => {
        bad.push(m.data);
        if (m.data === 'poison') throw new Bad(`cannot handle ${String(m.data)}`);
      });
      await channel.subscribe((m: Message) => good.push(m.data));
      const out = writer.channels.get('room:listener');
      await out.publish('m', 1);
      await out.publish('m', 'poison');
      await out.publish('m', 3);
      await waitFor(() => good.length === 3, { message: 'the other listener missed messages' });
    });
    assert.deepEqual(escaped, [], 'an exception reached uncaughtException');
    assert.deepEqual(good, [1, 'poison', 3]);
    assert.deepEqual(bad, [1, 'poison', 3], 'the throwing listener was dropped');
    assert.equal(hooked.length, 1);
    assert.equal(hooked[0]?.event, 'message');
    assert.ok(hooked[0]?.error instanceof Bad);
    assert.equal(reader.connection.state, 'connected');
    assert.equal(channel.state, 'attached');
  });

  it('with onListenerError: the connection, channel and presence listeners that throw reach it too, named by their event', async (t) => {
    const server = await realServer(t);
    const events: string[] = [];
    const reader = client(t, server.url, {
      clientId: 'agent',
      autoConnect: false,
      onListenerError: (error, event) => {
        assert.ok(error instanceof Bad);
        events.push(event);
      },
    });
    const escaped = await uncaught(async () => {
      const off = reader.connection.on('statechange', () => {
        throw new Bad('statechange');
      });
      reader.connection.once('connected', () => {
        throw new Bad('connected');
      });
      const channel = reader.channels.get('room:events');
      channel.on('attached', () => {
        throw new Bad('attached');
      });
      await channel.presence.subscribe(() => {
        throw new Bad('presence');
      });
      off();
      await channel.presence.enter({ here: true });
      await waitFor(() => events.includes('presence'), { message: 'the presence listener never ran' });
    });
    assert.deepEqual(escaped, [], 'an exception reached uncaughtException');
    assert.deepEqual(
      [...new Set(events)].sort(),
      ['attached', 'connected', 'presence', 'statechange'],
      `events: ${events.join(', ')}`,
    );
  });

  it('a hook that throws has its own error surface as an uncaught exception', async (t) => {
    const server = await realServer(t);
    const reader = client(t, server.url, {
      onListenerError: () => {
        throw new Error('the hook failed');
      },
    });
    await connected(reader);
    const escaped = await uncaught(async () => {
      reader.connection.on('error', () => {
        throw new Bad('listener');
      });
      reader.connection.reportError(new MooringError('internal', 'reported'));
    });
    assert.deepEqual(
      escaped.map((e) => (e as Error).message),
      ['the hook failed'],
    );
  });

  it('without onListenerError: the error is re-thrown (uncaught), and the other listeners and later messages still arrive', async (t) => {
    const server = await realServer(t);
    const writer = client(t, server.url, { clientId: 'writer' });
    const reader = client(t, server.url, { clientId: 'agent' });
    const channel = reader.channels.get('room:listener');
    const good: unknown[] = [];
    const escaped = await uncaught(async (seen) => {
      await channel.subscribe((m: Message) => {
        if (m.data === 'poison') throw new Bad('poison');
      });
      await channel.subscribe((m: Message) => good.push(m.data));
      const out = writer.channels.get('room:listener');
      await out.publish('m', 'poison');
      await out.publish('m', 2);
      await waitFor(() => good.length === 2 && seen.length > 0, { message: 'nothing surfaced' });
    });
    assert.equal(escaped.length, 1);
    assert.ok(escaped[0] instanceof Bad);
    assert.deepEqual(good, ['poison', 2]);
    assert.equal(channel.state, 'attached');
  });

  it('refuses an onListenerError that is not a function', (t) => {
    assert.throws(
      () => client(t, 'http://127.0.0.1:1', { autoConnect: false, onListenerError: 'log' as never }),
      (e: MooringError) => e.code === 'bad_request' && /onListenerError/.test(e.message),
    );
  });
});
