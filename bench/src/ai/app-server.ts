/**
 * The app server of the systems Mooring is compared with: the route handler a team writes around
 * the model (here: the stub of model-stub.ts), in its own process so its CPU is its own.
 *
 *   node app-server.ts floor <stubPort>
 *       GET /chat?r&n&rate → the AI SDK's UI message stream as SSE (`pipeUIMessageStreamToResponse`):
 *       no durability, no resume. The floor.
 *   node app-server.ts resumable <stubPort> <redisUrl>
 *       GET /chat → the same SSE wrapped by `resumable-stream` (its documented AI SDK setup, Redis
 *       pub/sub); GET /resume?r&skip → `resumeExistingStream` (replays from the start, minus `skip`
 *       characters the client already has).
 *   node app-server.ts durable <stubPort> <durableStreamsUrl>
 *       POST /chat → creates one Durable Stream per generation (`PUT <ds>/ai/<r>`, JSON), answers
 *       its path, then POSTs each chunk to it as it comes from the model (one POST per chunk, in
 *       order), and closes it at the end: the pattern of the Durable Streams AI SDK transport.
 *   node app-server.ts socketio <stubPort>
 *       A team's own Socket.IO setup: the user's socket emits `chat` (the generation) and joins the
 *       response's room; each piece of the model's text is emitted to the room (`t`), then `end`.
 *       A dropped connection is resumed by Socket.IO's connection state recovery (the server keeps
 *       the room's packets in memory for 2 minutes); a reload emits `join` and is answered the text
 *       so far, kept in this process's memory. One process, one node: nothing survives its restart.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createUIMessageStream, JsonToSseTransformStream, pipeUIMessageStreamToResponse } from 'ai';
import { Server as SocketIoServer } from 'socket.io';
import { serveChild } from '../servers/server-child.ts';
import { chunksOf, type Generation, generationOf, modelText } from './model-client.ts';

const mode = process.argv[2];
const stubPort = Number(process.argv[3]);
const target = process.argv[4] ?? '';

/** The model's text as an AI SDK UI message stream: start, text-start, a text-delta per read, end. */
function uiStream(g: Generation) {
  return createUIMessageStream({
    execute: async ({ writer }) => {
      writer.write({ type: 'text-start', id: 't' });
      for await (const delta of modelText(stubPort, g.response, g.tokens, g.rate)) {
        writer.write({ type: 'text-delta', id: 't', delta });
      }
      writer.write({ type: 'text-end', id: 't' });
    },
  });
}

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
};

async function pipeText(stream: ReadableStream<string>, res: ServerResponse): Promise<void> {
  res.writeHead(200, SSE_HEADERS);
  for await (const text of chunksOf(stream)) res.write(text);
  res.end();
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

async function handlerFor(): Promise<Handler> {
  if (mode === 'floor') {
    return async (_req, res, url) => {
      const g = generationOf(url);
      if (url.pathname !== '/chat' || g === undefined) return void res.writeHead(404).end();
      pipeUIMessageStreamToResponse({ response: res, stream: uiStream(g) });
    };
  }
  if (mode === 'resumable') {
    process.env.REDIS_URL = target;
    const { createResumableStreamContext } = await import('resumable-stream');
    const context = createResumableStreamContext({ waitUntil: null });
    return async (_req, res, url) => {
      const r = url.searchParams.get('r') ?? '';
      if (url.pathname === '/chat') {
        const g = generationOf(url);
        if (g === undefined) return void res.writeHead(400).end();
        const stream = await context.resumableStream(`ai-${r}`, () =>
          uiStream(g).pipeThrough(new JsonToSseTransformStream()),
        );
        if (stream === null) return void res.writeHead(422).end();
        await pipeText(stream, res);
      } else if (url.pathname === '/resume') {
        const skip = Number(url.searchParams.get('skip') ?? 0);
        const stream = await context.resumeExistingStream(`ai-${r}`, skip > 0 ? skip : undefined);
        if (!stream) return void res.writeHead(204).end();
        await pipeText(stream, res);
      } else res.writeHead(404).end();
    };
  }
  if (mode === 'durable') {
    const post = async (path: string, body: string | undefined, close = false): Promise<void> => {
      const answer = await fetch(`${target}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(close ? { 'stream-closed': 'true' } : {}) },
        ...(body === undefined ? {} : { body }),
      });
      await answer.arrayBuffer();
      if (!answer.ok) throw new Error(`durable streams answered ${answer.status} to a POST`);
    };
    return async (_req, res, url) => {
      const g = generationOf(url);
      if (url.pathname !== '/chat' || g === undefined) return void res.writeHead(404).end();
      const path = `/ai/${g.response}`;
      const created = await fetch(`${target}${path}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
      });
      await created.arrayBuffer();
      if (!created.ok) return void res.writeHead(502).end(`create: ${created.status}`);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path }));
      // One POST per chunk, in order (the next waits for the previous), as the transport does.
      for await (const chunk of chunksOf(uiStream(g))) await post(path, JSON.stringify(chunk));
      await post(path, undefined, true);
    };
  }
  if (mode === 'socketio') return async (_req, res) => void res.writeHead(404).end();
  throw new Error(`app-server: unknown mode '${mode}'`);
}

/**
 * What a team writes with Socket.IO: a room per response, one emit per piece of text, the
 * documented connection state recovery for dropped connections, and the text so far in memory for a
 * tab that joins without a connection to recover (a reload).
 */
function socketIoApp(server: Server): void {
  const io = new SocketIoServer(server, {
    transports: ['websocket'],
    serveClient: false,
    connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 },
  });
  const texts = new Map<number, string>();
  const room = (r: number): string => `ai:${r}`;
  const generate = async (g: Generation): Promise<void> => {
    const to = io.to(room(g.response));
    let text = '';
    for await (const delta of modelText(stubPort, g.response, g.tokens, g.rate)) {
      text += delta;
      texts.set(g.response, text);
      to.emit('t', delta);
    }
    to.emit('end');
  };
  io.on('connection', (socket) => {
    socket.on('chat', (g: unknown, ack: unknown) => {
      const generation = g as Generation;
      const valid =
        typeof g === 'object' &&
        g !== null &&
        Number.isInteger(generation.response) &&
        generation.tokens > 0 &&
        generation.rate > 0;
      if (!valid || typeof ack !== 'function') return;
      socket.join(room(generation.response));
      ack();
      generate(generation).catch((error: unknown) =>
        process.stdout.write(`app-server socketio: ${String(error)}\n`),
      );
    });
    // A tab with nothing to recover: the text so far, then the room (one tick: no piece in between).
    socket.on('join', (r: unknown, ack: unknown) => {
      if (typeof r !== 'number' || typeof ack !== 'function') return;
      ack(texts.get(r) ?? '');
      socket.join(room(r));
    });
  });
}

await serveChild(async () => {
  const handle = await handlerFor();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://app');
    handle(req, res, url).catch((error: unknown) => {
      process.stdout.write(`app-server ${mode}: ${String(error)}\n`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  if (mode === 'socketio') socketIoApp(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
});
