/**
 * Writing a long answer a piece at a time (`writeWithin`): a response that is gone stops the answer,
 * so the rest of a page is neither made nor written for a reader that left.
 */
import assert from 'node:assert/strict';
import { createServer, request, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { it } from 'node:test';
import { writeWithin } from '../src/write-within.ts';

/**
 * A real response on 127.0.0.1, handed to `use` once its request arrived. `reads: false`: its client
 * is a raw socket that never reads.
 */
async function withResponse(
  use: (res: ServerResponse) => Promise<void>,
  { reads = true } = {},
): Promise<void> {
  const server = createServer();
  let used!: Promise<void>;
  const arrived = new Promise<void>((resolve) => {
    server.once('request', (_req, res: ServerResponse) => {
      used = use(res);
      resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const req = reads ? request(`http://127.0.0.1:${port}/`).end() : connect(port, '127.0.0.1').pause();
  req.on('error', () => {});
  if (!reads) req.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  try {
    await arrived;
    await used;
  } finally {
    req.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

it('a response that is gone: false, and nothing is written to it', async () => {
  await withResponse(async (res) => {
    res.writeHead(200);
    assert.equal(await writeWithin(res, 'first', 1_000), true, 'a live response takes a piece');
    res.destroy();
    let wrote = false;
    const write = res.write.bind(res);
    res.write = ((...args: Parameters<typeof write>) => {
      wrote = true;
      return write(...args);
    }) as typeof res.write;
    assert.equal(await writeWithin(res, 'second', 1_000), false, 'the caller must stop its answer');
    assert.equal(wrote, false, 'written to a destroyed response');
  });
});

it('a reader that takes nothing for stallMs is cut: false, and the response is destroyed', async () => {
  await withResponse(
    async (res) => {
      res.writeHead(200);
      // far more than the socket's buffers take from a reader that does not read
      const piece = Buffer.alloc(32 * 1024 * 1024, 'x');
      assert.equal(await writeWithin(res, piece, 200), false, 'the caller must stop its answer');
      assert.equal(res.destroyed, true, 'the stalled response is let go');
    },
    { reads: false },
  );
});
