/** The Durable Streams reference server (`@durable-streams/server`, in memory), in its own process. */
import { DurableStreamTestServer } from '@durable-streams/server';
import { serveChild } from '../servers/server-child.ts';

await serveChild(async () => {
  const server = new DurableStreamTestServer({ port: 0, host: '127.0.0.1' });
  const url = await server.start();
  return { port: Number(new URL(url).port), close: () => server.stop() };
});
