/**
 * Durable Streams on SQLite survive `kill -9`: every acknowledged append is there after a restart,
 * with the producer state that acknowledged it, so the producer's retry of an acknowledged batch is a
 * duplicate (204) and nothing is stored twice; the closed flag survives too (PROTOCOL.md §16.5).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TEST_KEY } from '../support/fixture.ts';
import { spawnServer } from '../support/server-process.ts';

const auth = { authorization: `Bearer ${TEST_KEY}` };

function append(url: string, n: number, seq: number) {
  return fetch(`${url}/v1/stream/jobs/log`, {
    method: 'POST',
    headers: {
      ...auth,
      'content-type': 'application/json',
      'producer-id': 'worker',
      'producer-epoch': '0',
      'producer-seq': String(seq),
    },
    body: JSON.stringify({ n }),
  });
}

test('kill -9 during producer appends: acknowledged appends and producer state survive; retries are duplicates', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-ds-crash-'));
  try {
    let server = await spawnServer(['--store', 'sqlite', '--data', dir]);
    const created = await fetch(`${server.url}/v1/stream/jobs/log`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
    });
    assert.equal(created.status, 201);
    let acked = 0;
    for (; acked < 300; acked++) assert.equal((await append(server.url, acked, acked)).status, 200);
    // one more in flight while the process is killed: stored or not, never half
    const inFlight = append(server.url, acked, acked).catch(() => undefined);
    server.child.kill('SIGKILL');
    await server.exited;
    await inFlight;

    server = await spawnServer(['--store', 'sqlite', '--data', dir]);
    try {
      // the last acknowledged batch, retried: a duplicate, not a gap (the producer state survived)
      const retry = await append(server.url, acked - 1, acked - 1);
      assert.equal(retry.status, 204, 'an acknowledged batch retried after the crash is a duplicate');
      // Producer-Seq: the highest stored (the in-flight batch may or may not have been committed)
      assert.ok([String(acked - 1), String(acked)].includes(retry.headers.get('producer-seq') ?? ''));
      // the in-flight batch, retried: stored now (200) or already (204); once either way
      const again = await append(server.url, acked, acked);
      assert.ok(
        again.status === 200 || again.status === 204,
        `retry of the in-flight batch: ${again.status}`,
      );
      const read = await fetch(`${server.url}/v1/stream/jobs/log?offset=-1`, { headers: auth });
      const items = (await read.json()) as { n: number }[];
      assert.deepEqual(
        items.map((i) => i.n),
        Array.from({ length: acked + 1 }, (_, i) => i),
      );
      // closure is durable too
      const close = await fetch(`${server.url}/v1/stream/jobs/log`, {
        method: 'POST',
        headers: { ...auth, 'stream-closed': 'true' },
      });
      assert.equal(close.status, 204);
      server.child.kill('SIGKILL');
      await server.exited;
      server = await spawnServer(['--store', 'sqlite', '--data', dir]);
      const head = await fetch(`${server.url}/v1/stream/jobs/log`, { method: 'HEAD', headers: auth });
      assert.equal(head.headers.get('stream-closed'), 'true');
    } finally {
      server.child.kill('SIGKILL');
      await server.exited;
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
