/** The REST API (PROTOCOL.md §11) against a real server. */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import { BrokenStore } from './support/broken-store.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { captureLog } from './support/log-capture.ts';
import { RawClient } from './support/raw-client.ts';

describe('REST API', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('sqlite', { limits: { maxHttpBody: 10_000 } });
  });
  after(() => fx.close());

  it('publishes one operation, an array, or {ops}, and live subscribers receive them', async () => {
    const sub = await RawClient.connect(fx.server.url);
    await sub.attach('session:rest');
    const one = await rest(fx.server, '/v1/channels/session:rest/messages?clientId=svc', {
      body: { data: 'a' },
    });
    assert.equal(one.status, 200);
    const many = await rest(fx.server, '/v1/channels/session:rest/messages', {
      body: [{ data: 'b' }, { data: 'c' }],
    });
    assert.equal((many.body.results as unknown[]).length, 2);
    const wrapped = await rest(fx.server, '/v1/channels/session:rest/messages', {
      body: { ops: [{ data: 'd' }] },
    });
    assert.equal(wrapped.status, 200);
    await sub.next(() => sub.messages('session:rest').length === 4);
    assert.deepEqual(
      sub.messages('session:rest').map((m) => m.data),
      ['a', 'b', 'c', 'd'],
    );
    assert.equal(sub.messages('session:rest')[0]?.clientId, 'svc');
    await sub.close();
  });

  it('pages through history both ways with next links', async () => {
    const channel = 'session:pages';
    for (let i = 0; i < 25; i++)
      await rest(fx.server, `/v1/channels/${channel}/messages`, { body: { data: i } });
    const seen: number[] = [];
    let path: string | undefined = `/v1/channels/${channel}/messages?limit=10`;
    while (path) {
      const page = await rest(fx.server, path);
      assert.equal(page.status, 200);
      seen.push(...(page.body.items as Message[]).map((m) => m.data as number));
      path = page.body.next as string | undefined;
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 25 }, (_, i) => 24 - i),
    );
    const forwards: number[] = [];
    path = `/v1/channels/${channel}/messages?limit=7&direction=forwards`;
    while (path) {
      const page = await rest(fx.server, path);
      forwards.push(...(page.body.items as Message[]).map((m) => m.data as number));
      path = page.body.next as string | undefined;
    }
    assert.deepEqual(
      forwards,
      Array.from({ length: 25 }, (_, i) => i),
    );
    const status = await rest(fx.server, `/v1/channels/${channel}`);
    assert.equal(status.status, 200);
    assert.equal(status.body.messages, 25);
  });

  it('answers every bad request with a typed error and the right status', async () => {
    const cases: Array<[Promise<{ status: number; body: Record<string, unknown> }>, number, string]> = [
      [rest(fx.server, '/v1/channels/x/messages', { key: null }), 401, 'unauthorized'],
      [rest(fx.server, '/v1/channels/x/messages', { key: 'test:wrong' }), 401, 'unauthorized'],
      [rest(fx.server, '/v1/channels/x/messages', { raw: '{"data":' }), 400, 'bad_request'],
      [
        rest(fx.server, '/v1/channels/x/messages', { body: { data: 'x', clientId: 'forged' } }),
        400,
        'bad_request',
      ],
      [
        rest(fx.server, '/v1/channels/x/messages', { body: { data: 'x'.repeat(20_000) } }),
        413,
        'body_too_large',
      ],
      [rest(fx.server, '/v1/channels/x/messages?limit=0'), 400, 'bad_request'],
      [rest(fx.server, '/v1/channels/x/messages?direction=up'), 400, 'bad_request'],
      [rest(fx.server, '/v1/channels/x/messages?direction='), 400, 'bad_request'], // empty is not "the default"
      [rest(fx.server, '/v1/channels/x/messages?from=nope'), 400, 'invalid_serial'],
      [rest(fx.server, '/v1/channels/%E0%A4%A/messages'), 400, 'invalid_channel'],
      [rest(fx.server, '/v1/channels/a%20b/messages'), 400, 'invalid_channel'],
      [rest(fx.server, '/v1/channels/never-written'), 404, 'channel_not_found'],
      [rest(fx.server, '/v1/nothing'), 404, 'not_found'],
      [rest(fx.server, '/v1/channels/x', { method: 'DELETE' }), 405, 'method_not_allowed'],
    ];
    for (const [pending, status, code] of cases) {
      const res = await pending;
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.equal((res.body.error as { code: string }).code, code);
    }
  });

  it('a refused publish says where: the field of a bad body by its path, the op of a batch by its index', async () => {
    const bad = await rest(fx.server, '/v1/channels/session:where/messages', {
      body: [{ data: 'ok' }, { action: 'append', serial: 'nope', data: 'x' }],
    });
    assert.equal(bad.status, 400);
    assert.match((bad.body.error as { message: string }).message, /^1\.serial: /);
    // one operation, or a wrapped list: the field at fault too, not the union ("Invalid input")
    for (const [body, where] of [
      [{ data: 'x', name: 5 }, /^name: /],
      [{ ops: [{ data: 'y', id: 7 }] }, /^ops\.0\.id: /],
      [{ ops: [{ data: 'y' }], extra: 1 }, /Unrecognized key.*extra/],
    ] as const) {
      const refused = await rest(fx.server, '/v1/channels/session:where/messages', { body });
      assert.equal(refused.status, 400);
      assert.match((refused.body.error as { message: string }).message, where, JSON.stringify(body));
    }
    const created = await rest(fx.server, '/v1/channels/session:where/messages', { body: { data: 'a' } });
    const serial = (created.body.results as { serial: string }[])[0]!.serial;
    const missing = `${serial.slice(0, -3)}999`;
    const refused = await rest(fx.server, '/v1/channels/session:where/messages', {
      body: [{ data: 'b' }, { action: 'append', serial: missing, data: 'x' }],
    });
    assert.equal((refused.body.error as { code: string }).code, 'message_not_found');
    assert.match((refused.body.error as { message: string }).message, /^op 1: /);
  });

  it('refuses a list of more than maxOpsPerPublish operations by its length, before validating any of them', async () => {
    // invalid operations: validated first, the refusal would name the first one's unknown key
    const ops = Array.from({ length: 101 }, () => ({ bogus: 1 }));
    for (const body of [ops, { ops }]) {
      const refused = await rest(fx.server, '/v1/channels/session:many/messages', { body });
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
      const error = refused.body.error as { code: string; message: string };
      assert.equal(error.code, 'bad_request');
      assert.equal(error.message, '101 operations in one publish; at most 100 are allowed');
    }
    // at the limit, the operations are validated as before
    const atLimit = await rest(fx.server, '/v1/channels/session:many/messages', { body: ops.slice(0, 100) });
    assert.equal(atLimit.status, 400);
    assert.match((atLimit.body.error as { message: string }).message, /^0: .*bogus/);
  });

  it('answers CORS preflight and health checks', async () => {
    const pre = await fetch(`${fx.server.url}/v1/channels/x/messages`, { method: 'OPTIONS' });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(await (await fetch(`${fx.server.url}/health`)).json(), { status: 'ok' });
    assert.equal((await fetch(`${fx.server.url}/ready`)).status, 200);
  });

  it("keeps an idle keep-alive connection open past Node's default 5 s (balancers reuse theirs for 60 s)", async () => {
    const socket = connect(fx.server.port, '127.0.0.1');
    socket.setEncoding('utf8');
    let received = '';
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const answers = () => received.split('HTTP/1.1 200').length - 1;
    const until = async (test: () => boolean, what: string) => {
      for (let i = 0; i < 600 && !test(); i++) await new Promise((r) => setTimeout(r, 25));
      assert.ok(test(), what);
    };
    const ask = () => socket.write('GET /health HTTP/1.1\r\nhost: mooring\r\nconnection: keep-alive\r\n\r\n');
    ask();
    await until(() => answers() === 1, 'the first request was answered');
    assert.match(received, /keep-alive: timeout=65/i);
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(socket.destroyed, false, 'the server kept the idle connection');
    ask();
    await until(() => answers() === 2, 'the second request on the same connection was answered');
    socket.end();
    await closed;
  });

  it('refuses a WebSocket upgrade with bad credentials with HTTP 401 and a JSON error', async () => {
    await assert.rejects(RawClient.connect(fx.server.url, { key: 'test:nope' }), /401/);
  });
});

describe('retention per namespace', () => {
  it("trims a channel by its namespace's retention, '*' for the others; 0 keeps nothing, Infinity everything", async () => {
    const fx = await startFixture('memory', {
      namespaces: { '*': { retention: 0 }, keep: { retention: Number.POSITIVE_INFINITY } },
      trimInterval: 50,
    });
    try {
      for (const channel of ['keep:a', 'other:a'])
        assert.equal(
          (await rest(fx.server, `/v1/channels/${channel}/messages`, { body: { data: channel } })).status,
          200,
        );
      const items = async (channel: string) =>
        ((await rest(fx.server, `/v1/channels/${channel}/messages`)).body.items as unknown[]).length;
      await waitFor(async () => (await items('other:a')) === 0, {
        timeout: 5_000,
        message: "the '*' retention of 0 was not applied",
      });
      assert.equal(await items('keep:a'), 1, 'the keep namespace is kept');
    } finally {
      await fx.close();
    }
  });
});

describe('REST failures', () => {
  it('a request that fails unexpectedly is answered 500 internal and logged with its error; refusals are not logged as errors', async () => {
    const { logger, errors } = captureLog();
    const fx = await startFixture('memory', { logger, store: new BrokenStore() });
    try {
      const failed = await rest(fx.server, '/v1/channels/broken/messages', { body: { data: 1 } });
      assert.equal(failed.status, 500);
      assert.equal((failed.body.error as { code: string }).code, 'internal');
      assert.equal((await rest(fx.server, '/v1/nowhere')).status, 404);
      assert.equal((await rest(fx.server, '/v1/channels/x/messages', { raw: '{"data":' })).status, 400);
      assert.deepEqual(
        errors().map((l) => [l.msg, l.err?.message, l.path]),
        [['request failed', 'disk on fire', '/v1/channels/broken/messages']],
        'the failure once, with its cause; the refusals not at all',
      );
    } finally {
      await fx.close();
    }
  });
});

describe('REST body size', () => {
  it('answers a body too large with 413 and closes the connection, instead of reading the body to its end', async () => {
    const fx = await startFixture('memory', { limits: { maxHttpBody: 1000 } });
    try {
      for (const declared of [true, false]) {
        const socket = connect(fx.server.port, '127.0.0.1');
        socket.on('error', () => {});
        let answer = '';
        socket.on('data', (d: Buffer) => {
          answer += d.toString('latin1');
        });
        const closed = new Promise<true>((resolve) => socket.once('close', () => resolve(true)));
        socket.write(
          `POST /v1/channels/sized/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TEST_KEY}\r\n` +
            'Content-Type: application/json\r\n' +
            (declared ? 'Content-Length: 1000000000\r\n\r\n' : 'Transfer-Encoding: chunked\r\n\r\n'),
        );
        // 64 × maxHttpBody, in pieces, for as long as the server reads it (a body that never ends)
        const piece = Buffer.alloc(4096, 'x');
        const chunk = declared ? piece : Buffer.concat([Buffer.from('1000\r\n'), piece, Buffer.from('\r\n')]);
        let sent = 0;
        let open = true;
        void closed.then(() => {
          open = false;
        });
        while (open && sent < 64 * 1000) {
          if (!socket.write(chunk))
            await Promise.race([
              new Promise((r) => socket.once('drain', r)),
              closed,
              new Promise((r) => setTimeout(r, 200)),
            ]);
          sent += piece.length;
        }
        const gone = await Promise.race([
          closed,
          new Promise<string>((r) => setTimeout(() => r('still open after 5 s'), 5_000)),
        ]);
        socket.destroy();
        assert.equal(
          gone,
          true,
          `${declared ? 'declared' : 'chunked'}: the server read on (${sent} bytes sent)`,
        );
        assert.match(answer, /^HTTP\/1\.1 413 /, declared ? 'declared' : 'chunked');
        assert.match(answer, /\r\nconnection: close\r\n/i);
      }
    } finally {
      await fx.close();
    }
  });

  it('takes a body of exactly maxHttpBody bytes and refuses one byte more, declared or streamed', async () => {
    const fx = await startFixture('memory', { limits: { maxHttpBody: 1000 } });
    try {
      const body = (bytes: number) => `{"data":"${'x'.repeat(bytes - 11)}"}`;
      assert.equal(body(1000).length, 1000);
      const url = new URL('/v1/channels/sized/messages', fx.server.url);
      /** POSTs `text` with a content-length, or chunked in two pieces (its length unknown upfront). */
      const post = (text: string, chunked: boolean) =>
        new Promise<number>((resolve, reject) => {
          const req = request(url, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${TEST_KEY}`,
              'content-type': 'application/json',
              ...(chunked ? {} : { 'content-length': String(Buffer.byteLength(text)) }),
            },
          });
          req.on('error', reject);
          req.on('response', (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          });
          req.write(text.slice(0, 500));
          req.end(text.slice(500));
        });
      for (const chunked of [false, true]) {
        assert.equal(
          await post(body(1000), chunked),
          200,
          `${chunked ? 'streamed' : 'declared'}: at the limit`,
        );
        assert.equal(
          await post(body(1001), chunked),
          413,
          `${chunked ? 'streamed' : 'declared'}: one byte over`,
        );
      }
    } finally {
      await fx.close();
    }
  });
});
