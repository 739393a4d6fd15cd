/**
 * Durable Streams producer state is the requester's own (PROTOCOL.md §16.5; review finding 3): it
 * is kept per (stream, publisher scope, Producer-Id), the scope of channel op ids (§7), so a holder
 * who may append to a shared stream and knows another's Producer-Id can neither make that
 * producer's appends duplicates (acknowledged, never stored) nor fence it. One clientId is one
 * producer whatever its token.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createToken } from '../../src/index.ts';
import { type Fixture, startFixture, TEST_KEY } from '../support/fixture.ts';

let fx: Fixture;

before(async () => {
  fx = await startFixture('memory');
});
after(() => fx.close());

const SHARED = { 'stream:shared/*': ['stream-read', 'stream-append'] };

async function tokenFor(clientId: string): Promise<string> {
  return (await createToken(TEST_KEY, { clientId, capability: SHARED })).token;
}

function url(path: string): string {
  return `${fx.server.url}/v1/stream/${path}`;
}

/** An append by `token` as producer `alice-writer`: its status and the code of its error. */
async function append(
  path: string,
  token: string,
  epoch: number,
  seq: number,
  body: string,
): Promise<string> {
  const res = await fetch(url(path), {
    method: 'POST',
    body,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'text/plain',
      'producer-id': 'alice-writer',
      'producer-epoch': String(epoch),
      'producer-seq': String(seq),
    },
  });
  const text = await res.text();
  return res.status >= 400
    ? `${res.status} ${(JSON.parse(text) as { error: { code: string } }).error.code}`
    : String(res.status);
}

async function create(path: string): Promise<void> {
  const res = await fetch(url(path), {
    method: 'PUT',
    headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'text/plain' },
  });
  assert.equal(res.status, 201);
}

async function content(path: string): Promise<string> {
  return (await fetch(`${url(path)}?offset=-1`, { headers: { authorization: `Bearer ${TEST_KEY}` } })).text();
}

test("another holder using a producer's Producer-Id neither makes its appends duplicates nor fences it", async () => {
  await create('shared/log');
  const [alice, bob] = [await tokenFor('alice'), await tokenFor('bob')];
  assert.equal(await append('shared/log', alice, 0, 0, 'A0|'), '200');
  assert.equal(
    await append('shared/log', bob, 0, 1, 'B-forged|'),
    '409 producer_seq_gap',
    "bob's own state: none",
  );
  assert.equal(await append('shared/log', alice, 0, 1, 'A1|'), '200', 'stored, not a duplicate');
  assert.equal(await append('shared/log', bob, 1, 0, 'B-fence|'), '200', "bob's own epoch");
  assert.equal(await append('shared/log', alice, 0, 2, 'A2|'), '200', 'not fenced');
  assert.equal(await content('shared/log'), 'A0|A1|B-fence|A2|');
});

test('one clientId is one producer whatever its token: a renewed token goes on, its retry is a duplicate', async () => {
  await create('shared/renewed');
  assert.equal(await append('shared/renewed', await tokenFor('carol'), 0, 0, 'C0|'), '200');
  const renewed = await tokenFor('carol');
  assert.equal(await append('shared/renewed', renewed, 0, 0, 'C0|'), '204', 'the retry: a duplicate');
  assert.equal(await append('shared/renewed', renewed, 0, 1, 'C1|'), '200');
  assert.equal(await content('shared/renewed'), 'C0|C1|');
});
