/** `publishResults` reports duplicates (a retried id) as the server answered them (PROTOCOL.md §7). */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startServer } from '@mooring/server';
import { Mooring } from '../src/index.ts';

it('publishResults resolves with each serial, and duplicate: true for an id already stored', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  const client = new Mooring({ url: server.url, key: 'test:secret' });
  t.after(() => client.close());
  const channel = client.channels.get('session:dup');
  const [first] = await channel.publishResults([{ id: 'once', data: 'x' }]);
  assert.equal(first?.duplicate, undefined);
  const [again] = await channel.publishResults([{ id: 'once', data: 'x' }]);
  assert.equal(again?.serial, first?.serial);
  assert.equal(again?.duplicate, true);
});

it('client.clientId is the identity the server stamped', async (t) => {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: ['test:secret'] });
  t.after(() => server.close());
  const client = new Mooring({ url: server.url, key: 'test:secret', clientId: 'agent-7' });
  t.after(() => client.close());
  assert.equal(client.clientId, 'agent-7');
  await new Promise<void>((resolve) => client.connection.once('connected', () => resolve()));
  assert.equal(client.connection.details?.clientId, 'agent-7');
  assert.equal(client.clientId, 'agent-7');
});
