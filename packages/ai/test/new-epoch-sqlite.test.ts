// A SQLite file that goes on in new epochs (`--new-epochs` after a restored backup; also what a
// power loss under `synchronous=NORMAL` does) while sessions are connected: the server restarts on
// the same file and port, every session is told `continuityLost` with `kept` at its own position
// (nothing was lost), and folds again what it holds — no history read — then carries on live.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import type { ContinuityLost } from '@mooring/client';
import { type MooringServer, startServer } from '@mooring/server';
import { UserSession } from '../src/user-session.ts';
import { client, KEY, sessionName, waitFor } from './helpers/fixture.ts';

it('a SQLite file opened with new epochs: sessions refold what they hold, read no history, and go on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-new-epochs-'));
  const path = join(dir, 'mooring.db');
  const start = (port: number, newEpochs: boolean): Promise<MooringServer> =>
    startServer({ port, host: '127.0.0.1', keys: [KEY], store: { kind: 'sqlite', path, newEpochs } });
  let server = await start(0, false);
  t.after(() => server.close());
  const { port } = server;
  const name = sessionName();
  const user = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  // after hooks run in the order they were added: the folder goes once the server has closed its files
  t.after(() => rm(dir, { recursive: true, force: true }));
  await user.start();
  for (const text of ['one', 'two', 'three']) await user.send(text);
  let reads = 0;
  const history = user.channel.history.bind(user.channel);
  user.channel.history = (query) => {
    reads++;
    return history(query);
  };
  let reloaded: ContinuityLost | undefined;
  user.on('reloaded', (lost) => {
    reloaded = lost;
  });

  await server.close();
  server = await start(port, true);
  await waitFor(() => reloaded !== undefined, { message: 'the session was never told' });
  await waitFor(() => user.live);
  assert.equal(reloaded?.reason, 'epoch_changed');
  assert.equal(reloaded?.kept?.slice(13), reloaded?.previousPosition.slice(13), 'kept at its position');
  assert.equal(reads, 0, 'no history read');
  const texts = () => user.tree.inputs.map((i) => (i.message.parts[0] as { text: string }).text);
  assert.deepEqual(texts(), ['one', 'two', 'three']);
  assert.ok(user.tree.inputs.every((i) => i.serial.startsWith(reloaded!.position.slice(0, 12))));
  await user.send('four');
  await waitFor(() => texts().length === 4);
  assert.deepEqual(texts(), ['one', 'two', 'three', 'four']);
});
