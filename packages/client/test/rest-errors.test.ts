/**
 * What a failed REST request throws: the server's error body as it is (code, status, retryable), the
 * protocol's defaults for what the body leaves out, and — for an answer without a readable error body
 * (a proxy's page, a JSON `null` or string) — the code matching the HTTP status. A real HTTP server on
 * 127.0.0.1 port 0 answers each request with the response the test gives it.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { Mooring, MooringError } from '../src/index.ts';

interface Answer {
  status: number;
  body: string;
  type?: string;
}

/** A server answering every request with `answer.next`, and a client of it. */
async function answering(t: TestContext) {
  const answer: { next: Answer } = { next: { status: 200, body: '{}' } };
  const server = createServer((req, res) => {
    req.resume();
    const { status, body, type = 'application/json' } = answer.next;
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as { port: number };
  const client = new Mooring({ url: `http://127.0.0.1:${port}`, key: 'test:secret', autoConnect: false });
  t.after(() => client.close());
  /** The error `history()` rejects with when the server answers `next`. */
  const failure = async (next: Answer): Promise<MooringError> => {
    answer.next = next;
    const outcome = await client.rest.history('c').then(
      () => 'answered',
      (err: unknown) => err,
    );
    assert.ok(outcome instanceof MooringError, `HTTP ${next.status} ${next.body}: got ${String(outcome)}`);
    return outcome;
  };
  return failure;
}

const summary = (e: MooringError) => `${e.code} ${e.status} ${e.retryable}`;

describe('REST errors', () => {
  it('an error body is taken as it is; what it leaves out comes from the protocol’s table', async (t) => {
    const failure = await answering(t);
    const given = await failure({
      status: 500,
      body: '{"error":{"code":"forbidden","status":418,"retryable":true,"message":"not today"}}',
    });
    assert.equal(summary(given), 'forbidden 418 true');
    assert.equal(given.message, 'not today');
    const bare = await failure({ status: 403, body: '{"error":{"code":"forbidden","message":"no"}}' });
    assert.equal(summary(bare), 'forbidden 403 false');
    const retryable = await failure({
      status: 503,
      body: '{"error":{"code":"store_unavailable","message":"down"}}',
    });
    assert.equal(summary(retryable), 'store_unavailable 503 true');
  });

  it('an answer without a readable error body fails with the code of its HTTP status', async (t) => {
    const failure = await answering(t);
    const codes: string[] = [];
    for (const status of [400, 401, 403, 404, 405, 413, 418, 429, 500, 502, 503, 504])
      codes.push(
        `${status} ${(await failure({ status, body: '<html>proxy page</html>', type: 'text/html' })).code}`,
      );
    assert.deepEqual(codes, [
      '400 bad_request',
      '401 unauthorized',
      '403 forbidden',
      '404 not_found',
      '405 method_not_allowed',
      '413 body_too_large',
      '418 bad_request',
      '429 too_many_connections',
      '500 internal',
      '502 internal',
      '503 store_unavailable',
      '504 internal',
    ]);
  });

  it('a JSON body that is no error object (null, a string, an error without code or message) counts as none', async (t) => {
    const failure = await answering(t);
    const seen: string[] = [];
    for (const body of [
      'null',
      '"bad gateway"',
      '42',
      '{"message":"no error field"}',
      '{"error":null}',
      '{"error":"overloaded"}',
      '{"error":{"code":"no_such_code","message":"x"}}',
      '{"error":{"code":"forbidden"}}',
    ])
      seen.push(summary(await failure({ status: 502, body })));
    assert.deepEqual(seen, Array(8).fill('internal 502 true'));
  });
});
