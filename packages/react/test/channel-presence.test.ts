// useChannel and usePresence against a real server, under StrictMode: a message grown by appends is
// one message with the whole text (nothing lost or doubled by StrictMode's resubscribe), and a
// component's presence is entered once and left once.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { PresenceEvent } from '@mooring/client';
import type { Message, Ref, ServerFrame } from '@mooring/protocol';
import { startServer } from '@mooring/server';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { act, cleanup, render, screen } from '@testing-library/react';
import type { ActivityProps } from 'react';
import { Activity, createElement } from 'react';
import { WebSocket } from 'ws';
import { created, EPOCH, fakeClient, sent, serial } from '../../client/test/helpers/fake-client.ts';
import type { FakeTransport } from '../../client/test/helpers/fake-transport.ts';
import { flush } from '../../client/test/helpers/fake-transport.ts';
import type { UseChannelOptions, UseChannelResult, UsePresenceResult } from '../src/index.ts';
import { MooringProvider, useChannel, usePresence, useSession } from '../src/index.ts';
import { closeDom } from './helpers/dom.ts';
import { client, clientOptions, KEY, realServer, restartRedis, waitFor } from './helpers/fixture.ts';
import { mount, strict } from './helpers/mount.ts';

after(async () => {
  cleanup();
  await closeDom();
});

/** `useChannel(name, options)` rendered under StrictMode. */
function mountChannel(
  t: { after(fn: () => void): void },
  mooring: ReturnType<typeof client>,
  name: string,
  options: Parameters<typeof useChannel>[1],
): { current: () => UseChannelResult; unmount(): void } {
  return mount(t, mooring, () => useChannel(name, options));
}

const texts = (result: UseChannelResult) => result.messages.map((m) => m.data);

/** `ws` delivering each message in a task of its own, as the WebSocket of a browser does. */
class BrowserLikeWebSocket extends WebSocket {
  constructor(url: string) {
    super(url, { allowSynchronousEvents: false });
  }
}

describe('useChannel', () => {
  it('folds creates and appends into one message each, in order, exactly once under StrictMode', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const publisher = client(t, server.url, { clientId: 'publisher' });
    const early = await publisher.channels.get(name).publish('note', 'before the hook mounted');

    let latest: UseChannelResult | undefined;
    function Messages() {
      latest = useChannel(name, { rewind: 10 });
      return createElement(
        'ul',
        null,
        latest.messages.map((m) => createElement('li', { key: m.serial }, String(m.data))),
      );
    }
    const view = render(strict(client(t, server.url, { clientId: 'reader' }), createElement(Messages)));
    t.after(() => view.unmount());
    await waitFor(() => screen.queryByText('before the hook mounted'));

    const channel = publisher.channels.get(name);
    const serial = await channel.publish('answer', 'Hel');
    for (const delta of ['lo', ', ', 'wor', 'ld']) await channel.append(serial, delta);
    await act(() => latest?.publish('note', 'from the hook') ?? Promise.resolve(''));
    await waitFor(() => screen.queryByText('Hello, world') && screen.queryByText('from the hook'));

    assert.deepEqual(
      latest?.messages.map((m) => [m.serial, m.data]),
      [
        [early, 'before the hook mounted'],
        [serial, 'Hello, world'],
        [latest?.messages[2]?.serial, 'from the hook'],
      ],
    );
    assert.equal(latest?.state, 'attached');
    assert.equal(latest?.position, latest?.messages[2]?.serial);
  });

  it('start: every retained message before live ones; from: only what follows that serial', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    const first = await channel.publish('note', 'one');
    await channel.publish('note', 'two');

    const all = mountChannel(t, client(t, server.url), name, { start: true });
    const after = mountChannel(t, client(t, server.url), name, { from: first });
    await waitFor(() => all.current().state === 'attached' && after.current().state === 'attached');
    await channel.publish('note', 'three');
    await waitFor(() => all.current().messages.length === 3 && after.current().messages.length === 2);
    assert.deepEqual(texts(all.current()), ['one', 'two', 'three']);
    assert.deepEqual(
      texts(after.current()),
      ['two', 'three'],
      'from: replayed the serial itself, or nothing',
    );
    assert.equal(after.current().attach?.resumed, true);
  });

  it('grows the oldest message of the list by its appends, in place', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    const oldest = await channel.publish('answer', 'Hel');
    await channel.publish('note', 'after it');
    const hook = mountChannel(t, client(t, server.url), name, { rewind: 10 });
    await waitFor(() => hook.current().messages.length === 2);
    await channel.append(oldest, 'lo');
    await waitFor(() => hook.current().messages[0]?.data === 'Hello', { message: 'the append never showed' });
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
  });

  it('a log gone on in a new epoch that kept every message: the list renamed into it, no message twice, no continuityLost', async (t) => {
    // a SQLite file opened with new epochs (as after a restored backup or a power loss; a Redis
    // restart does the same), on the same port: the hook's client resumes and is told `kept`
    const dir = await mkdtemp(join(tmpdir(), 'mooring-react-epochs-'));
    const path = join(dir, 'mooring.db');
    const start = (port: number, newEpochs: boolean) =>
      startServer({ port, host: '127.0.0.1', keys: [KEY], store: { kind: 'sqlite', path, newEpochs } });
    let server = await start(0, false);
    t.after(() => server.close());
    // after hooks run in the order they were added: the folder goes once the server has closed its files
    t.after(() => rm(dir, { recursive: true, force: true }));
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    const answer = await channel.publish('answer', 'Hel');
    await channel.publish('note', 'after it');
    const hook = mountChannel(t, client(t, server.url), name, { rewind: 10 });
    await waitFor(() => hook.current().messages.length === 2);
    const before = hook.current().position;

    await server.close();
    server = await start(server.port, true);
    await waitFor(() => hook.current().position !== before && hook.current().state === 'attached', {
      message: 'the hook never resumed in the new epoch',
    });
    // the publisher still names its message by the serial of the old epoch: it reaches it
    await channel.append(answer, 'lo');
    await waitFor(() => hook.current().messages[0]?.data === 'Hello', { message: 'the append never showed' });
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
    assert.equal(hook.current().continuityLost, undefined);
    const epoch = hook.current().position.slice(0, 12);
    assert.ok(hook.current().messages.every((m) => m.serial.startsWith(epoch)));
  });

  it('across a Redis restart that kept every message: no render shows a message under its old and its new serial', async (t) => {
    // the catch-up after the restart brings the changed message under its serial of the new epoch
    // before `attached` tells the hook `kept` (PROTOCOL.md §6.2): until then the list held the old copy
    const skip = redisSkipReason();
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    const answer = await channel.publish('answer', 'Hel');
    await channel.publish('note', 'after it');
    const renders: string[][] = [];
    // each frame in its own task, as a browser's WebSocket delivers them (`ws` may deliver the
    // frames of one read in one task): React renders between the catch-up and `attached`
    const hook = mount(t, client(t, server.url, { WebSocket: BrowserLikeWebSocket }), () => {
      const result = useChannel(name, { rewind: 10 });
      renders.push(result.messages.map((m) => `${m.serial} ${String(m.data)}`));
      return result;
    });
    await waitFor(() => hook.current().messages.length === 2);
    const before = hook.current().position;

    await restartRedis(redis, server);
    // the first publish on the new Redis starts the new epoch; the hook's client, live, sees a
    // version of another epoch and resumes: epoch_changed, kept, the answer in the catch-up
    await channel.append(answer, 'lo');
    await waitFor(() => hook.current().messages[0]?.data === 'Hello', { message: 'the append never showed' });
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
    assert.notEqual(hook.current().position.slice(0, 12), before.slice(0, 12), 'no new epoch');
    assert.equal(hook.current().continuityLost, undefined);
    const twice = renders.filter((list) => list.length > 2);
    assert.deepEqual(twice, [], 'a render showed a message twice (old serial and new serial)');
  });

  it('limit keeps the newest messages only', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    const hook = mountChannel(t, client(t, server.url), name, { limit: 2 });
    await waitFor(() => hook.current().state === 'attached');
    for (const text of ['a', 'b', 'c', 'd']) await channel.publish('note', text);
    await waitFor(() => hook.current().messages.at(-1)?.data === 'd');
    assert.deepEqual(texts(hook.current()), ['c', 'd']);
  });

  it('a refused attach shows the failed state and its error', async (t) => {
    const server = await startServer({
      port: 0,
      host: '127.0.0.1',
      keys: [{ name: 'narrow', secret: 's3', capability: { 'other:*': ['subscribe'] } }],
      store: { kind: 'memory' },
      logger: 'silent',
    });
    t.after(() => server.close());
    const hook = mountChannel(t, client(t, server.url, { key: 'narrow:s3' }), `chat:${randomUUID()}`, {});
    await waitFor(() => hook.current().state === 'failed', { message: 'the refused attach never failed' });
    assert.equal(hook.current().error?.code, 'forbidden');
    await act(() => new Promise((r) => setTimeout(r, 20))); // whatever follows must not clear it
    assert.equal(hook.current().error?.code, 'forbidden');
  });

  it('stops listening to the channel when it unmounts', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const reader = client(t, server.url);
    const channel = reader.channels.get(name); // the app's own: not released by the hooks
    const hook = mountChannel(t, reader, name, {});
    await waitFor(() => hook.current().state === 'attached');
    assert.equal(hook.current().channel, channel);
    let unsubscribed = 0;
    const unsubscribe = channel.unsubscribe.bind(channel);
    channel.unsubscribe = ((...args: Parameters<typeof unsubscribe>) => {
      unsubscribed++;
      return unsubscribe(...args);
    }) as typeof channel.unsubscribe;
    hook.unmount();
    // deferred by a macrotask (a StrictMode remount would keep listening)
    await waitFor(() => unsubscribed > 0, {
      message: "the unmounted hook still receives the channel's messages",
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(unsubscribed, 1);
    assert.equal(reader.channels.get(name), channel, 'a channel the app got itself was released');
    assert.equal(channel.state, 'attached');
  });

  it('a second hook mounted later, a remount and a name switched back all show the history', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const other = `chat:${randomUUID()}`;
    const publisher = client(t, server.url, { clientId: 'publisher' });
    for (const text of ['one', 'two', 'three']) await publisher.channels.get(name).publish('note', text);
    await publisher.channels.get(other).publish('note', 'elsewhere');
    const reader = client(t, server.url, { clientId: 'reader' });

    const seen: Record<string, UseChannelResult> = {};
    function List({ slot, room }: { slot: string; room: string }) {
      seen[slot] = useChannel(room, { start: true });
      return null;
    }
    const app = (room: string, second: boolean) =>
      strict(
        reader,
        createElement(
          'div',
          null,
          createElement(List, { slot: 'first', room }),
          second ? createElement(List, { slot: 'second', room }) : null,
        ),
      );
    const view = render(app(name, false));
    t.after(() => view.unmount());
    await waitFor(() => seen.first?.messages.length === 3);

    view.rerender(app(name, true));
    await waitFor(() => seen.second?.state === 'attached');
    assert.deepEqual(
      texts(seen.second as UseChannelResult),
      ['one', 'two', 'three'],
      'the second hook saw no history',
    );

    view.unmount(); // navigating away and straight back: the same list, nothing read again
    const again = render(app(name, false));
    t.after(() => again.unmount());
    await waitFor(() => seen.first?.state === 'attached');
    assert.deepEqual(
      texts(seen.first as UseChannelResult),
      ['one', 'two', 'three'],
      'the remount saw no history',
    );

    again.rerender(app(other, false));
    await waitFor(() => seen.first?.messages[0]?.data === 'elsewhere');
    await waitFor(() => !reader.channels.has(name), {
      message: 'the channel left behind was never released',
    });
    again.rerender(app(name, false)); // needs fix 1 (release then get) when messages flow meanwhile
    await waitFor(() => seen.first?.messages.length === 3, {
      message: 'the name switched back saw no history',
    });
    assert.deepEqual(texts(seen.first as UseChannelResult), ['one', 'two', 'three']);
    await publisher.channels.get(name).publish('note', 'four');
    await waitFor(() => seen.first?.messages.length === 4);
    assert.deepEqual(texts(seen.first as UseChannelResult), ['one', 'two', 'three', 'four']);
  });

  it('releases the channel a macrotask after its last hook unmounts, not between StrictMode mounts', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const reader = client(t, server.url);
    const hook = mountChannel(t, reader, name, { start: true });
    await waitFor(() => hook.current().state === 'attached');
    const channel = hook.current().channel;
    await new Promise((r) => setTimeout(r, 20)); // StrictMode's unmount → mount released nothing
    assert.ok(reader.channels.has(name) && reader.channels.get(name) === channel, 'released while mounted');
    assert.equal(channel?.state, 'attached');
    hook.unmount();
    assert.ok(reader.channels.has(name), 'released at once: a remount in this pass would attach again');
    await waitFor(() => !reader.channels.has(name), { message: 'the client still holds the channel' });
    await waitFor(() => channel?.state === 'detached');
  });

  it('keeps a channel a usePresence hook still uses when the last useChannel on it unmounts', async (t) => {
    const server = await realServer(t);
    const name = `room:${randomUUID()}`;
    const reader = client(t, server.url, { clientId: 'reader' });
    const list = mountChannel(t, reader, name, {});
    const presence = mount(t, reader, () => usePresence(name, { data: { here: true } }));
    await waitFor(() => list.current().state === 'attached' && presence.current().members.length === 1);
    const channel = list.current().channel;
    list.unmount();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(
      reader.channels.has(name) && reader.channels.get(name),
      channel,
      'released under usePresence',
    );
    assert.equal(channel?.state, 'attached');
    presence.unmount();
    await waitFor(() => !reader.channels.has(name), { message: 'the client still holds the channel' });
  });

  it("never releases a session's channel: a useChannel on it unmounting leaves the useSession attached", async (t) => {
    const server = await realServer(t);
    const name = `session:${randomUUID()}`;
    const reader = client(t, server.url, { clientId: 'reader' });
    const list = mountChannel(t, reader, name, {});
    const session = mount(t, reader, () => useSession(name));
    await waitFor(() => list.current().state === 'attached' && session.current().settled);
    const channel = list.current().channel;
    list.unmount();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(
      reader.channels.has(name) && reader.channels.get(name),
      channel,
      'released under the session',
    );
    assert.equal(channel?.state, 'attached');
  });

  it('hooks on one channel share one subscription and one list; StrictMode doubles and drops nothing', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const publisher = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    await publisher.publish('note', 'before');
    const reader = client(t, server.url, { clientId: 'reader' });
    const channel = reader.channels.get(name, { start: true });
    let subscriptions = 0;
    const subscribe = channel.subscribe.bind(channel);
    channel.subscribe = ((...args: Parameters<typeof subscribe>) => {
      subscriptions++;
      return (subscribe as (...a: unknown[]) => ReturnType<typeof subscribe>)(...args);
    }) as typeof channel.subscribe;
    const lists: UseChannelResult[] = [];
    function List({ index }: { index: number }) {
      lists[index] = useChannel(name, { start: true });
      return null;
    }
    const view = render(
      strict(
        reader,
        createElement('div', null, createElement(List, { index: 0 }), createElement(List, { index: 1 })),
      ),
    );
    t.after(() => view.unmount());
    await waitFor(() => lists[0]?.state === 'attached');
    const serial = await publisher.publish('answer', 'Hel');
    for (const delta of ['lo', ', ', 'world']) await publisher.append(serial, delta);
    await publisher.publish('note', 'after');
    await waitFor(
      () => lists[0]?.messages.at(-1)?.data === 'after' && lists[1]?.messages.at(-1)?.data === 'after',
    );
    for (const list of lists) assert.deepEqual(texts(list), ['before', 'Hello, world', 'after']);
    assert.equal(lists[0]?.messages, lists[1]?.messages, 'each hook folds a list of its own');
    assert.equal(subscriptions, 1, 'each hook (or StrictMode pass) subscribed again');
  });

  it('hidden by <Activity> and shown again under a provider with options: follows the new client', async (t) => {
    const server = await realServer(t);
    const name = `chat:${randomUUID()}`;
    const channel = client(t, server.url, { clientId: 'publisher' }).channels.get(name);
    let latest: UseChannelResult | undefined;
    function Messages() {
      latest = useChannel(name);
      return null;
    }
    const tree = (mode: 'visible' | 'hidden') =>
      createElement(
        Activity,
        // ActivityProps types `children` as required, which createElement's third argument fills
        { mode } as ActivityProps,
        createElement(MooringProvider, { options: clientOptions(server.url) }, createElement(Messages)),
      );
    const view = render(tree('visible'));
    t.after(() => view.unmount());
    await waitFor(() => latest?.state === 'attached');
    const before = latest?.channel;
    view.rerender(tree('hidden')); // the provider's effect is cleaned up: it closes its client
    await waitFor(() => before?.state !== 'attached', { message: 'hiding did not close the client' });
    view.rerender(tree('visible')); // a new client: the same hook must use its channel
    await waitFor(() => latest?.state === 'attached', { message: 'the hook stayed on the closed client' });
    assert.notEqual(latest?.channel, before);
    await channel.publish('note', 'after the switch');
    await waitFor(() => latest?.messages.at(-1)?.data === 'after the switch');
  });
});

describe('useChannel on a scripted server', () => {
  const other = 'mz000000000a'; // the log's new epoch (sorts after EPOCH, as a later one does)
  /** `copy` of a message created at `seq` as the new epoch's catch-up brings it: changed at `version`. */
  const changed = (seq: number, data: string, version: number): Message => ({
    ...created(seq, data),
    serial: serial(seq, other),
    version: serial(version, other),
    action: 'update',
  });

  /** A hook on channel `c` of a scripted client, attached at 1, holding `Hel` (2) and `after it` (3). */
  async function attachedHook(t: { after(fn: () => void): void }, options: UseChannelOptions = {}) {
    const fake = fakeClient({ connectionStateTtl: 10_000 });
    t.after(() => fake.client.close());
    const t1 = await fake.connect();
    const renders: string[][] = [];
    const hook = mount(t, fake.client, () => {
      const result = useChannel('c', options);
      renders.push(result.messages.map((m) => `${m.serial} ${String(m.data)}`));
      return result;
    });
    await act(flush);
    await frame(t1, {
      type: 'attached',
      ref: sent(t1, 'attach').at(-1)!.ref,
      channel: 'c',
      resumed: false,
      epoch: EPOCH,
      position: serial(1),
    });
    await frame(t1, {
      type: 'messages',
      channel: 'c',
      messages: [created(2, 'Hel'), created(3, 'after it')],
    });
    assert.deepEqual(texts(hook.current()), ['Hel', 'after it']);
    /** The connection drops; the next one is answered `connected`. */
    const reconnect = async (t: FakeTransport) => {
      await act(async () => {
        t.end({ code: 1006, reason: '' });
        fake.timers.advance(1_000);
      });
      const next = await fake.connect();
      await act(flush);
      return next;
    };
    return { ...fake, t1, hook, renders, reconnect };
  }

  /** One server frame, and the render it leads to. */
  const frame = (t: FakeTransport, f: ServerFrame) =>
    act(async () => {
      t.frame(f);
      await flush();
    });

  /**
   * The `attached` that answers `attach` on `t` in the new epoch: not a resume, kept through 3, at
   * `position` there.
   */
  const attachedInNewEpoch = (t: FakeTransport, attach: { ref: Ref }, position: number) =>
    frame(t, {
      type: 'attached',
      ref: attach.ref,
      channel: 'c',
      resumed: false,
      reason: 'epoch_changed',
      kept: serial(3, other),
      epoch: other,
      position: serial(position, other),
    });

  it("a new epoch's catch-up cut by a lost connection, then by a suspended one, shows no message twice: the list is shown once `kept` renames it", async (t) => {
    const { t1, hook, renders, reconnect, client, connect, timers, transports } = await attachedHook(t);
    const t2 = await reconnect(t1);
    assert.equal(sent(t2, 'attach').at(-1)!.from, serial(3));
    // the log went on in a new epoch (kept through 3) and `Hel` changed there: its copy comes first
    await frame(t2, { type: 'messages', channel: 'c', messages: [changed(2, 'Hello', 4)] });
    // then down past the connection's state TTL: the channel is suspended until it comes back
    await act(async () => {
      t2.end({ code: 1006, reason: '' });
      timers.advance(20_000);
      await flush();
      transports.last().end({ code: 1006, reason: '' });
    });
    assert.equal(hook.current().state, 'suspended');
    await act(async () => {
      client.connection.connect();
      await flush();
    });
    const t3 = await connect();
    await act(flush);
    const attach = sent(t3, 'attach').at(-1)!;
    await frame(t3, { type: 'messages', channel: 'c', messages: [changed(2, 'Hello', 4)] });
    await attachedInNewEpoch(t3, attach, 4);
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
    assert.equal(hook.current().continuityLost, undefined);
    assert.deepEqual(
      renders.filter((list) => list.length > 2),
      [],
      'a render showed a message twice (old serial and new serial)',
    );
  });

  it("a new epoch's catch-up cut by a detach shows what is held; attached again, the list renamed by `kept`, and live messages show as they come", async (t) => {
    const { t1, hook, reconnect } = await attachedHook(t);
    const t2 = await reconnect(t1);
    await frame(t2, { type: 'messages', channel: 'c', messages: [changed(2, 'Hello', 4)] });
    await act(async () => {
      void hook.current().channel!.detach();
      await flush();
    });
    await frame(t2, { type: 'detached', ref: sent(t2, 'detach').at(-1)!.ref, channel: 'c' });
    assert.deepEqual(texts(hook.current()), ['Hel', 'after it', 'Hello'], 'the list held, shown as it is');
    // attached again: from where it left off in the old epoch, so `kept` renames the list then
    await act(async () => {
      void hook
        .current()
        .channel!.attach()
        .catch(() => {});
      await flush();
    });
    const attach = sent(t2, 'attach').at(-1)!;
    assert.equal(attach.from, serial(3));
    await frame(t2, { type: 'messages', channel: 'c', messages: [changed(2, 'Hello', 4)] });
    await attachedInNewEpoch(t2, attach, 4);
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
    await frame(t2, {
      type: 'messages',
      channel: 'c',
      messages: [{ ...created(5, 'live'), serial: serial(5, other), version: serial(5, other) }],
    });
    assert.equal(hook.current().messages.at(-1)?.data, 'live', 'a live message was not shown');
  });

  it('limit holds after a new epoch: the list renamed into it keeps the newest messages only', async (t) => {
    const { t1, hook, reconnect } = await attachedHook(t, { limit: 2 });
    const t2 = await reconnect(t1);
    const attach = sent(t2, 'attach').at(-1)!;
    const next: Message = { ...created(4, 'next'), serial: serial(4, other), version: serial(5, other) };
    await frame(t2, { type: 'messages', channel: 'c', messages: [changed(2, 'Hello', 4), next] });
    await attachedInNewEpoch(t2, attach, 5);
    assert.deepEqual(texts(hook.current()), ['after it', 'next']);
  });

  it('a new epoch whose log lost a change to a message held: continuityLost is shown (the list may be wrong), the list as held', async (t) => {
    const { t1, hook, reconnect } = await attachedHook(t);
    await frame(t1, {
      type: 'messages',
      channel: 'c',
      messages: [{ ...created(2, 'Hello'), version: serial(4), action: 'update' }],
    });
    const t2 = await reconnect(t1);
    const attach = sent(t2, 'attach').at(-1)!;
    await attachedInNewEpoch(t2, attach, 3);
    assert.equal(hook.current().continuityLost?.kept, serial(3, other));
    assert.deepEqual(texts(hook.current()), ['Hello', 'after it']);
  });
});

describe('usePresence', () => {
  it('enters once and leaves once under StrictMode, and lists the members', async (t) => {
    const server = await realServer(t);
    const name = `room:${randomUUID()}`;
    const observer = client(t, server.url, { clientId: 'observer' });
    const events: Array<Pick<PresenceEvent['member'], 'clientId'> & { action: string }> = [];
    await observer.channels.get(name).presence.subscribe(({ action, member }) => {
      if (member.clientId === 'page') events.push({ action, clientId: member.clientId });
    });
    await observer.channels.get(name).presence.enter({ device: 'observer' });

    let latest: UsePresenceResult | undefined;
    function Room() {
      latest = usePresence(name, { data: { device: 'test page' } });
      return createElement(
        'p',
        null,
        `members: ${latest.members
          .map((m) => m.clientId)
          .sort()
          .join(',')}`,
      );
    }
    const view = render(strict(client(t, server.url, { clientId: 'page' }), createElement(Room)));
    await waitFor(() => screen.queryByText('members: observer,page'));
    await waitFor(() => events.length > 0);
    const self = latest?.members.find((m) => m.connectionId === latest?.self);
    assert.deepEqual(self?.data, { device: 'test page' }, 'this page is not "self"');

    view.unmount();
    await waitFor(() => events.some((e) => e.action === 'leave'), { message: 'the page never left' });
    assert.deepEqual(
      events.map((e) => e.action),
      ['enter', 'leave'],
      'StrictMode made the page flap (enter, leave, enter …)',
    );
  });

  it('lists the members of a channel this client had attached and synced before the hook mounted', async (t) => {
    const server = await realServer(t);
    const name = `room:${randomUUID()}`;
    await client(t, server.url, { clientId: 'observer' }).channels.get(name).presence.enter({ here: true });
    const page = client(t, server.url, { clientId: 'page' });
    assert.deepEqual(
      (await page.channels.get(name).presence.get()).map((m) => m.clientId),
      ['observer'],
    );
    let latest: UsePresenceResult | undefined;
    function Room() {
      latest = usePresence(name);
      return null;
    }
    const view = render(strict(page, createElement(Room)));
    t.after(() => view.unmount());
    await waitFor(() => latest?.members.length === 1, {
      message: 'the member present before the hook is missing',
    });
    assert.equal(latest?.members[0]?.clientId, 'observer');
  });

  it('hooks on one channel share one presence subscription', async (t) => {
    const server = await realServer(t);
    const name = `room:${randomUUID()}`;
    const page = client(t, server.url, { clientId: 'page' });
    const presence = page.channels.get(name).presence;
    let subscriptions = 0;
    const subscribe = presence.subscribe.bind(presence);
    presence.subscribe = ((...args: Parameters<typeof subscribe>) => {
      subscriptions++;
      return subscribe(...args);
    }) as typeof presence.subscribe;
    const seen: number[] = [];
    function Room() {
      seen.push(usePresence(name).members.length);
      return null;
    }
    const view = render(strict(page, createElement('div', null, createElement(Room), createElement(Room))));
    t.after(() => view.unmount());
    await client(t, server.url, { clientId: 'observer' }).channels.get(name).presence.enter();
    await waitFor(() => seen.at(-1) === 1);
    assert.equal(subscriptions, 1, 'each hook (or StrictMode pass) subscribed again');
  });
});
