// useChannel and usePresence against a real server, under StrictMode: a message grown by appends is
// one message with the whole text (nothing lost or doubled by StrictMode's resubscribe), and a
// component's presence is entered once and left once.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { PresenceEvent } from '@mooring/client';
import { act, cleanup, render, screen } from '@testing-library/react';
import type { ReactNode } from 'react';
import { createElement, StrictMode } from 'react';
import type { UseChannelResult, UsePresenceResult } from '../src/index.ts';
import { MooringProvider, useChannel, usePresence } from '../src/index.ts';
import { closeDom } from './helpers/dom.ts';
import { client, realServer, waitFor } from './helpers/fixture.ts';

after(async () => {
  cleanup();
  await closeDom();
});

function strict(mooring: ReturnType<typeof client>, child: ReactNode) {
  return createElement(StrictMode, null, createElement(MooringProvider, { client: mooring }, child));
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
});
