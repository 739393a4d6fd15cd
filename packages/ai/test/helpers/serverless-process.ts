/**
 * A "serverless function" in its own process, for the crash test: it publishes a run over REST whose
 * stream never ends. MOORING_URL, MOORING_CHANNEL, MOORING_INPUT, MOORING_LEASE (ms). Prints
 * "streaming" once the first text is stored.
 */
import { Mooring } from '@mooring/client';
import type { UIMessageChunk } from 'ai';
import { publishUIMessageStream } from '../../src/publish-ui-message-stream.ts';
import { KEY } from './fixture.ts';

const rest = new Mooring({
  url: process.env.MOORING_URL ?? '',
  key: KEY,
  autoConnect: false,
  environment: null,
}).rest;
const stream = new ReadableStream<UIMessageChunk>({
  start(c) {
    c.enqueue({ type: 'text-start', id: 't' });
    c.enqueue({ type: 'text-delta', id: 't', delta: 'partial' });
    setTimeout(() => process.stdout.write('streaming\n'), 200);
  },
});
await publishUIMessageStream({
  rest,
  channel: process.env.MOORING_CHANNEL ?? '',
  input: process.env.MOORING_INPUT ?? '',
  runId: 'run-dies',
  lease: Number(process.env.MOORING_LEASE ?? '300'),
  coalesceMs: 0,
  stream,
});
