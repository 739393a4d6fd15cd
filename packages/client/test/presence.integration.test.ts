// Presence (ARCHITECTURE.md §8, PROTOCOL.md §6.4) between real clients through a real server and FaultProxy:
// the set and its events, no flap on a quick reconnect, a leave after the grace on an abrupt loss,
// and the membership put back after a reconnect that lost it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MooringError } from '../src/errors.ts';
import type { Mooring } from '../src/mooring.ts';
import type { PresenceEvent } from '../src/presence-members.ts';
import { client, connected, KEY, proxyTo, realServer, waitFor } from './helpers/real-server.ts';
import { sleep } from './helpers/streams.ts';

const CHANNEL = 'room:1';

/** Every presence event the client hears on CHANNEL, as `action:clientId`, plus the raw events. */
async function watch(c: Mooring) {
  const events: PresenceEvent[] = [];
  await c.channels.get(CHANNEL).presence.subscribe((e) => events.push(e));
  const seen = () => events.map((e) => `${e.action}:${e.member.clientId}`);
  return { events, seen };
}

/** How many times the client reached `connected`. */
function connects(c: Mooring): () => number {
  let n = c.connection.state === 'connected' ? 1 : 0;
  c.connection.on('connected', () => {
    n += 1;
  });
  return () => n;
}

describe('presence with a real server', () => {
  it('enter / update / leave reach other clients; get() and REST agree', async (t) => {
    const server = await realServer(t);
    const agent = client(t, server.url, { clientId: 'agent' });
    const watcher = client(t, server.url, { clientId: 'watcher' });
    const { seen } = await watch(watcher);
    const presence = agent.channels.get(CHANNEL).presence;
    await presence.enter({ typing: false });
    await waitFor(() => seen().includes('enter:agent'));
    const members = await watcher.channels.get(CHANNEL).presence.get();
    assert.deepEqual(
      members.map((m) => [m.clientId, m.connectionId, m.data]),
      [['agent', agent.connection.id, { typing: false }]],
    );
    const rest = await fetch(`${server.url}/v1/channels/${CHANNEL}/presence`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    assert.equal(((await rest.json()) as { members: unknown[] }).members.length, 1);

    await presence.update({ typing: true });
    await presence.leave();
    await waitFor(() => seen().length === 3);
    assert.deepEqual(seen(), ['enter:agent', 'update:agent', 'leave:agent']);
    assert.deepEqual(await watcher.channels.get(CHANNEL).presence.get(), []);

    const anonymous = client(t, server.url);
    await assert.rejects(
      anonymous.channels.get(CHANNEL).presence.enter(),
      (e: MooringError) => e.code === 'bad_request',
    );
  });

  it('a quick reconnect does not make the member leave and enter at another client', async (t) => {
    const server = await realServer(t, { presenceGrace: 500 });
    const proxy = await proxyTo(t, server);
    const phone = client(t, proxy.url('/'), { clientId: 'phone' });
    const watcher = client(t, server.url, { clientId: 'watcher' });
    const { seen } = await watch(watcher);
    await phone.channels.get(CHANNEL).presence.enter({ on: true });
    await waitFor(() => seen().includes('enter:phone'));
    const id = phone.connection.id;
    const phoneConnects = connects(phone);

    await proxy.reset(); // abrupt (1006 at the server), and the way back is open
    await waitFor(() => phoneConnects() === 2, { message: 'the phone did not reconnect' });
    assert.equal(phone.connection.details?.resumed, true);
    assert.equal(phone.connection.id, id);
    await sleep(1_000); // twice the grace: a leave that was going to happen has happened
    await phone.channels.get(CHANNEL).presence.update({ on: 'still' });
    await waitFor(() => seen().length === 2);
    assert.deepEqual(seen(), ['enter:phone', 'update:phone']);
  });

  it('an abrupt loss makes the member leave after the grace', async (t) => {
    const server = await realServer(t, { presenceGrace: 500 });
    const proxy = await proxyTo(t, server);
    const phone = client(t, proxy.url('/'), { clientId: 'phone' });
    const watcher = client(t, server.url, { clientId: 'watcher' });
    const { seen, events } = await watch(watcher);
    await phone.channels.get(CHANNEL).presence.enter();
    await waitFor(() => seen().includes('enter:phone'));
    const id = phone.connection.id;

    proxy.refuse(); // gone for good
    await proxy.reset();
    await waitFor(() => seen().includes('leave:phone'), { message: 'the member never left' });
    assert.equal(events.at(-1)?.member.connectionId, id);
    assert.deepEqual(await watcher.channels.get(CHANNEL).presence.get(), []);
  });

  it('after a reconnect with a new identity (server restarted) the client enters again by itself', async (t) => {
    const first = await realServer(t);
    const phone = client(t, first.url, { clientId: 'phone' });
    await phone.channels.get(CHANNEL).presence.enter({ battery: 80 });
    const oldId = phone.connection.id;
    const phoneConnects = connects(phone);

    await first.close(); // memory store and connection registry gone
    const second = await realServer(t, { port: first.port });
    await waitFor(() => phoneConnects() === 2, { message: 'the phone did not reconnect' });
    assert.equal(phone.connection.details?.resumed, false);
    const watcher = client(t, second.url, { clientId: 'watcher' });
    const members = await waitFor(async () => {
      const list = await watcher.channels.get(CHANNEL).presence.get();
      return list.length === 1 ? list : undefined;
    });
    assert.deepEqual(
      members.map((m) => [m.clientId, m.connectionId, m.data]),
      [['phone', phone.connection.id, { battery: 80 }]],
    );
    assert.notEqual(phone.connection.id, oldId);
  });

  it('when the grace ran out before the identity was recovered, the client notices in the snapshot and enters again', async (t) => {
    // presenceGrace (300 ms) is far shorter than connectionStateTtl (120 s): the connection comes back
    // with its identity (resumed: true) but without its membership.
    const server = await realServer(t, { presenceGrace: 300 });
    const proxy = await proxyTo(t, server);
    const phone = client(t, proxy.url('/'), { clientId: 'phone' });
    const watcher = client(t, server.url, { clientId: 'watcher' });
    const { seen, events } = await watch(watcher);
    const presence = phone.channels.get(CHANNEL).presence;
    await presence.subscribe(() => {}); // attached: the snapshot after a re-attach shows the loss
    await presence.enter('here');
    await waitFor(() => seen().includes('enter:phone'));
    const id = phone.connection.id;

    proxy.refuse();
    await proxy.reset();
    await waitFor(() => seen().includes('leave:phone'), { message: 'the grace never ran out' });
    proxy.pass();
    await connected(phone);
    await waitFor(() => seen().length === 3, { message: 'the phone never entered again' });
    assert.equal(phone.connection.details?.resumed, true);
    assert.deepEqual(seen(), ['enter:phone', 'leave:phone', 'enter:phone']);
    assert.equal(events.at(-1)?.member.connectionId, id);
    assert.equal(events.at(-1)?.member.data, 'here');
  });
});
