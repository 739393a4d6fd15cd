/**
 * How often a REST request is sent (PROTOCOL.md §11, `client/src/rest.ts`): a network failure or a
 * retryable error is retried twice, with the same body, then fails; a refusal that is not retryable is
 * sent once; only `token_expired` makes a token client fetch a new token. Fake timers and a fake
 * `fetch` that counts the requests.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ErrorCode, ErrorInfo } from '@mooring/protocol';
import { MooringError } from '../src/errors.ts';
import type { MooringOptions } from '../src/mooring.ts';
import type { FetchLike } from '../src/rest.ts';
import { fakeClient } from './helpers/fake-client.ts';
import { flush } from './helpers/fake-transport.ts';

const refusal = (code: ErrorCode, status: number, retryable: boolean) =>
  Response.json(
    { error: { code, status, retryable, message: `${code} (test)` } satisfies ErrorInfo },
    { status },
  );

const STATUS = { channel: 'c', epoch: 'e', position: '', messages: 0 };

/** A key client whose REST requests `answer` answers (given the request's number, from 0). */
function counting(
  answer: (n: number, init: RequestInit) => Response | Promise<Response>,
  options: Partial<MooringOptions> = {},
) {
  const bodies: string[] = [];
  const fetch: FetchLike = async (_url, init) => {
    bodies.push(String(init.body));
    return answer(bodies.length - 1, init);
  };
  const c = fakeClient({ autoConnect: false, fetch, ...options });
  /** Runs `request` to its end, moving the fake clock well past every backoff; its outcome. */
  const settle = async <T>(request: Promise<T>): Promise<T | MooringError | 'pending'> => {
    let outcome: T | MooringError | 'pending' = 'pending';
    request.then(
      (value) => {
        outcome = value;
      },
      (err: MooringError) => {
        outcome = err;
      },
    );
    for (let i = 0; i < 40 && outcome === 'pending'; i++) {
      await flush();
      c.timers.advance(250);
    }
    await flush();
    return outcome;
  };
  return { ...c, bodies, settle };
}

describe('REST retries', () => {
  it('retries a retryable error twice with the same body, then fails with it', async () => {
    const c = counting(() => refusal('store_unavailable', 503, true));
    const outcome = await c.settle(c.client.rest.publish('c', { name: 't', data: 'x' }));
    assert.ok(outcome instanceof MooringError, String(outcome));
    assert.equal(outcome.code, 'store_unavailable');
    assert.equal(c.bodies.length, 3, 'one request and two retries');
    assert.equal(new Set(c.bodies).size, 1, 'the same body (the same operation id) each time');
  });

  it('a retry that succeeds answers the request', async () => {
    const c = counting((n) => (n < 2 ? refusal('rate_limited', 429, true) : Response.json(STATUS)));
    const outcome = await c.settle(c.client.rest.status('c'));
    assert.deepEqual(outcome, STATUS);
    assert.equal(c.bodies.length, 3);
  });

  it('sends a refusal that is not retryable once', async () => {
    const c = counting(() => refusal('forbidden', 403, false));
    const outcome = await c.settle(c.client.rest.publish('c', { name: 't', data: 'x' }));
    assert.ok(outcome instanceof MooringError, String(outcome));
    assert.equal(outcome.code, 'forbidden');
    assert.equal(c.bodies.length, 1, 'not retried');
  });

  it('a token client keeps its token after a retryable error other than token_expired', async () => {
    let minted = 0;
    const c = counting((n) => (n === 0 ? refusal('store_unavailable', 503, true) : Response.json(STATUS)), {
      key: undefined,
      authCallback: () => {
        minted += 1;
        return `tok${minted}.x.y`;
      },
    });
    const outcome = await c.settle(c.client.rest.status('c'));
    assert.deepEqual(outcome, STATUS);
    assert.equal(c.bodies.length, 2);
    assert.equal(minted, 1, 'the token was not thrown away');
  });
});

describe('REST request timeout', () => {
  it('gives each request realtimeRequestTimeout, 0 included: on a dead link it fails with network_error', async () => {
    // a dead link: no answer until the request is aborted
    const c = counting(
      (_n, init) =>
        new Promise<Response>((_resolve, reject) =>
          init.signal?.addEventListener('abort', () => reject(new Error('aborted'))),
        ),
      { realtimeRequestTimeout: 0 },
    );
    const outcome = await c.settle(c.client.rest.status('c'));
    assert.ok(outcome instanceof MooringError, String(outcome));
    assert.equal(outcome.code, 'network_error');
    assert.match(outcome.message, /within 0 ms/);
    assert.equal(c.bodies.length, 3);
  });
});
