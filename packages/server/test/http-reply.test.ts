/**
 * A `Reply` written to a local HTTP response (`httpReply`): it answers once, later answers are
 * ignored, and it says when nobody can receive the answer any more (answered, or the client gone).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { errorBody, httpReply } from '../src/http-reply.ts';

/** A real request on 127.0.0.1: `use` gets its response; resolves with what the client received. */
async function exchange(
  use: (res: ServerResponse) => void,
): Promise<{ status: number; body: string } | 'no answer'> {
  const server = createServer((_req, res) => use(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await new Promise((resolve) => {
      const req = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      req.on('error', () => resolve('no answer'));
      req.on('response', (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.end();
    });
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

it('answers once: a later answer is ignored, and the reply is gone once answered', async () => {
  const seen: { goneBefore?: boolean; goneAfter?: boolean; second?: unknown } = {};
  const received = await exchange((res) => {
    const reply = httpReply(res);
    seen.goneBefore = reply.gone;
    reply.json(200, Buffer.from('{"first":true}'));
    try {
      reply.json(503, errorBody({ code: 'store_unavailable' }));
    } catch (err) {
      seen.second = err;
    }
    seen.goneAfter = reply.gone;
  });
  assert.deepEqual(received, { status: 200, body: '{"first":true}' });
  assert.equal(seen.second, undefined, 'the second answer threw');
  assert.equal(seen.goneBefore, false);
  assert.equal(seen.goneAfter, true, 'an answered reply can receive nothing more');
});

it('is gone once the answer was dropped, and answering it then does nothing', async () => {
  const seen: { gone?: boolean; late?: unknown } = {};
  const received = await exchange((res) => {
    const reply = httpReply(res);
    reply.destroy();
    seen.gone = reply.gone;
    try {
      reply.json(200, Buffer.from('{}'));
    } catch (err) {
      seen.late = err;
    }
  });
  assert.equal(received, 'no answer');
  assert.equal(seen.gone, true, 'a dropped reply can receive nothing');
  assert.equal(seen.late, undefined, 'answering a dropped reply threw');
});
