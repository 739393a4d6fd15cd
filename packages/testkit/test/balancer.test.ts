/**
 * Balancer against real TCP servers on loopback: each server greets a connection with its name and then
 * echoes, so a client learns which target it reached and that bytes pass both ways.
 */

import assert from 'node:assert/strict';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { Balancer } from '../src/balancer.ts';
import { once, waitFor } from '../src/wait.ts';

interface NamedServer {
  readonly name: string;
  readonly port: number;
  readonly sockets: Set<Socket>;
  close(): Promise<void>;
}

async function startNamed(name: string): Promise<NamedServer> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(`${name}\n`);
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    name,
    port: (server.address() as AddressInfo).port,
    sockets,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: bind one, learn it, close it. */
async function deadPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface Client {
  readonly socket: Socket;
  text: string;
  closed: boolean;
}

async function dial(balancer: Balancer): Promise<Client> {
  const socket = connect({ host: '127.0.0.1', port: balancer.port });
  const client: Client = { socket, text: '', closed: false };
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    client.text += chunk;
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    client.closed = true;
  });
  await once(socket, 'connect');
  return client;
}

async function greeting(client: Client): Promise<string> {
  await waitFor(() => client.text.includes('\n') || client.closed, { message: 'no greeting' });
  return client.text.split('\n')[0] ?? '';
}

async function setup(t: { after: (fn: () => Promise<void>) => void }, names: string[]) {
  const servers = await Promise.all(names.map(startNamed));
  const balancer = await Balancer.start(servers.map((s) => ({ port: s.port })));
  t.after(async () => {
    await balancer.close();
    await Promise.all(servers.map((s) => s.close()));
  });
  return { servers, balancer };
}

test('each new connection goes to the next target in turn, bytes pass both ways', async (t) => {
  const { balancer } = await setup(t, ['a', 'b', 'c']);
  const seen: string[] = [];
  for (let i = 0; i < 6; i += 1) {
    const client = await dial(balancer);
    seen.push(await greeting(client));
    client.socket.write('ping\n');
    await waitFor(() => client.text.endsWith('ping\n'), { message: 'no echo' });
    client.socket.destroy();
  }
  assert.deepEqual(seen, ['a', 'b', 'c', 'a', 'b', 'c']);
});

test('a target that refuses is skipped; the client reaches the next live one', async (t) => {
  const { servers, balancer } = await setup(t, ['a', 'b']);
  const port = await deadPort();
  balancer.add({ port });
  const seen: string[] = [];
  for (let i = 0; i < 6; i += 1) {
    const client = await dial(balancer);
    seen.push(await greeting(client));
    client.socket.destroy();
  }
  assert.ok(!seen.includes(''), `every client reached a live target: ${seen.join(',')}`);
  assert.deepEqual(new Set(seen), new Set(['a', 'b']));
  assert.equal(balancer.stats({ port }).refused, 2);
  await servers[0]?.close();
  const after = await dial(balancer);
  assert.equal(await greeting(after), 'b');
});

test('remove() steers new connections away; open ones stay; add() brings the target back', async (t) => {
  const { servers, balancer } = await setup(t, ['a', 'b', 'c']);
  const [a, b, c] = servers as [NamedServer, NamedServer, NamedServer];
  const first = await dial(balancer);
  assert.equal(await greeting(first), 'a');
  balancer.remove({ port: b.port }).remove({ port: c.port });
  for (let i = 0; i < 3; i += 1) assert.equal(await greeting(await dial(balancer)), 'a');
  balancer.remove({ port: a.port }).add({ port: b.port });
  first.socket.write('still\n');
  await waitFor(() => first.text.endsWith('still\n'), { message: 'open connection broken by remove' });
  assert.equal(await greeting(await dial(balancer)), 'b');
  assert.equal(balancer.stats({ port: a.port }).forwarded, 4);
});

test('a target that dies closes its clients; when all refuse, a new client is closed', async (t) => {
  const { servers, balancer } = await setup(t, ['a']);
  const client = await dial(balancer);
  assert.equal(await greeting(client), 'a');
  await servers[0]?.close();
  await waitFor(() => client.closed, { message: 'client kept a connection to a dead target' });
  const orphan = await dial(balancer);
  await waitFor(() => orphan.closed, { message: 'client held open with no live target' });
  assert.equal(orphan.text, '');
  await waitFor(() => balancer.connections === 0, { message: 'balancer leaked connections' });
});
