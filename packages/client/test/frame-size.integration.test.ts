// A frame above the server's maxFrameSize (PROTOCOL.md §8 close 1009, §9 frame_too_large, §10): the
// server closes the socket with 1009 and sends no error, so a client that sent it would reconnect and
// resend it for ever. The client refuses it locally instead, against the limits `connected` announced.
// And the frames the HTTP transports batch into one POST stay within `maxHttpBody` (§12).
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { it } from 'node:test';
import { within } from '@mooring/testkit';
import { MooringError } from '../src/errors.ts';
import type { Mooring } from '../src/mooring.ts';
import { client, connected, realServer } from './helpers/real-server.ts';

/** Small enough that a batch of a few operations, each well within maxOperationSize, passes it. */
const limits = { maxFrameSize: 4096, maxOperationSize: 2048 };

/**
 * The error `p` ends with, within `timeout` ms: one that never settles fails the test (saying how
 * often the connection dropped meanwhile) instead of holding it.
 */
async function failure(p: Promise<unknown>, what: string, drops: () => number): Promise<unknown> {
  try {
    return await within(
      p.then(
        () => assert.fail(`${what} was accepted`),
        (err: unknown) => err,
      ),
      { timeout: 5_000, message: `${what} never settled` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; the connection dropped ${drops()} times meanwhile`);
  }
}

/** Counts the times the connection of `c` leaves `connected` from now on. */
function dropCounter(c: Mooring): () => number {
  let drops = 0;
  c.connection.on('statechange', ({ previous }) => {
    if (previous === 'connected') drops++;
  });
  return () => drops;
}

it('refuses a publish whose frame is above maxFrameSize with frame_too_large, never sends it, and stays connected', async (t) => {
  const server = await realServer(t, { limits });
  const c = client(t, server.url);
  await connected(c);
  assert.equal(c.connection.details?.limits.maxFrameSize, 4096);
  const id = c.connection.id;
  const drops = dropCounter(c);
  const channel = c.channels.get('session:frames');
  // three operations of 1,500 characters: each within maxOperationSize, together above maxFrameSize
  const ops = ['a', 'b', 'c'].map((name) => ({ name, data: name.repeat(1_500) }));
  const err = await failure(channel.publishBatch(ops), 'the oversized publish', drops);
  assert.ok(err instanceof MooringError, `a MooringError, got ${String(err)}`);
  assert.equal(err.code, 'frame_too_large');
  assert.equal(err.status, 413);
  assert.equal(err.retryable, false);
  assert.match(err.message, /4096/);

  // the connection is the same one: the frame never reached the server
  const serial = await within(channel.publish('small', 'fits'), {
    timeout: 5_000,
    message: 'a publish after the refused one',
  });
  assert.equal(typeof serial, 'string');
  assert.equal(drops(), 0, 'the connection never dropped');
  assert.equal(c.connection.id, id);
  const page = await channel.history();
  assert.deepEqual(
    page.items.map((m) => m.name),
    ['small'],
    'nothing of the refused publish was stored',
  );
});

it('refuses a presence request whose frame is above maxFrameSize with frame_too_large, and stays connected', async (t) => {
  const server = await realServer(t, { limits });
  const c = client(t, server.url, { clientId: 'agent-1' });
  await connected(c);
  const drops = dropCounter(c);
  const presence = c.channels.get('session:presence-frames').presence;
  const err = await failure(
    presence.enter({ note: 'x'.repeat(5_000) }),
    'the oversized presence enter',
    drops,
  );
  assert.ok(err instanceof MooringError, `a MooringError, got ${String(err)}`);
  assert.equal(err.code, 'frame_too_large');
  assert.equal(err.retryable, false);
  await within(presence.enter({ note: 'small' }), { timeout: 5_000, message: 'a small presence enter' });
  assert.equal(drops(), 0, 'the connection never dropped');
});

// On the HTTP transports the frames queued while an upstream POST is on its way go together in the
// next one (PROTOCOL.md §12), whose body the server refuses whole above `maxHttpBody` (413
// `body_too_large`): the transport would end, and the resent frames be batched and refused again.
for (const kind of ['sse', 'longpoll'] as const) {
  const burst = async (t: TestContext, serverLimits: Record<string, number>, data: string, count: number) => {
    const server = await realServer(t, { limits: serverLimits });
    const c = client(t, server.url, { transports: [kind] });
    await connected(c);
    assert.equal(c.connection.transport, kind);
    const id = c.connection.id;
    const drops = dropCounter(c);
    const channel = c.channels.get('session:http-batches');
    // the first goes up alone; the others queue behind it and go up in the next POSTs
    const serials = await within(
      Promise.all(Array.from({ length: count }, (_, i) => channel.publish(`m${i}`, data))),
      { timeout: 10_000, message: `the publishes never all settled (${drops()} drops)` },
    );
    assert.equal(serials.length, count);
    assert.equal(drops(), 0, 'the connection never dropped (no POST was refused)');
    assert.equal(c.connection.id, id);
  };

  it(`${kind}: a publish whose frame cannot fit one POST of the announced maxHttpBody is refused unsent, and the connection stays`, async (t) => {
    const server = await realServer(t, { limits: { maxHttpBody: 16 * 1024 } }); // maxFrameSize stays 1 MiB
    const c = client(t, server.url, { transports: [kind] });
    await connected(c);
    const drops = dropCounter(c);
    const channel = c.channels.get('session:http-body');
    await assert.rejects(
      within(channel.publish('big', 'x'.repeat(20_000)), {
        timeout: 10_000,
        message: 'the publish was sent and resent after every reconnect',
      }),
      (e: MooringError) => e.code === 'frame_too_large' && /maxHttpBody/.test(e.message),
    );
    assert.ok(
      await channel.publish('fits', 'x'.repeat(16 * 1024 - 400)),
      'a publish within the body refused',
    );
    assert.equal(drops(), 0, 'the connection dropped');
  });

  it(`${kind}: a burst of non-ASCII publishes goes up in POSTs within maxHttpBody, counted in UTF-8 bytes`, async (t) => {
    // 20 publishes of 20,000 three-byte characters: 400,000 characters (within 512 Ki), 1.2 MB (above 1 MiB)
    await burst(t, {}, '中'.repeat(20_000), 21);
  });

  it(`${kind}: a burst of publishes goes up in POSTs within the maxHttpBody the server announced`, async (t) => {
    // 10 publishes of 20,000 bytes: together above the server's 64 KiB, each within it
    await burst(t, { maxHttpBody: 64 * 1024 }, 'x'.repeat(20_000), 11);
  });
}
