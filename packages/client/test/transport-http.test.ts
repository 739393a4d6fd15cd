// The HTTP fallback transports (PROTOCOL.md §12) against a scripted `fetch`: the event-stream parser,
// SSE and long-poll downstream, the one-POST-at-a-time upstream with batching, and how each way of
// ending is reported (what is permanent, what is a blocked transport, what is an unreachable server).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientFrame, ServerFrame } from '@mooring/protocol';
import { classifyClose } from '../src/close-classification.ts';
import { HttpUpstream } from '../src/http-upstream.ts';
import { LongPollTransport } from '../src/long-poll-transport.ts';
import type { FetchLike } from '../src/rest.ts';
import { SseParser } from '../src/sse-parser.ts';
import { SseTransport } from '../src/sse-transport.ts';
import type { TransportCloseInfo } from '../src/transport.ts';
import { FakeTimers } from './helpers/fake-timers.ts';
import { connectedFrame, flush } from './helpers/fake-transport.ts';

interface Call {
  url: string;
  init: RequestInit;
  respond(res: Response): void;
  fail(err: unknown): void;
}

/** A `fetch` whose every request waits until the test answers it. */
function scriptedFetch() {
  const calls: Call[] = [];
  const fetch: FetchLike = (url, init) =>
    new Promise<Response>((resolve, reject) => {
      calls.push({ url, init, respond: resolve, fail: reject });
      init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
    });
  const posts = () => calls.filter((c) => c.init.method === 'POST');
  const body = (c: Call) => JSON.parse(String(c.init.body)) as ClientFrame[];
  const header = (c: Call, name: string) => new Headers(c.init.headers).get(name);
  return { fetch, calls, posts, body, header };
}

/** An event-stream response the test writes to. */
function eventStream() {
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  const encoder = new TextEncoder();
  return {
    response: new Response(stream, { status: 200, headers: { 'content-type': 'text/event-stream' } }),
    write: (text: string) => controller?.enqueue(encoder.encode(text)),
    bytes: (bytes: Uint8Array) => controller?.enqueue(bytes),
    frame: (frame: ServerFrame) => controller?.enqueue(encoder.encode(`data: ${JSON.stringify(frame)}\n\n`)),
    end: () => controller?.close(),
  };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function recorder() {
  const frames: ServerFrame[] = [];
  const problems: string[] = [];
  const closes: TransportCloseInfo[] = [];
  let activity = 0;
  let opened = 0;
  return {
    frames,
    problems,
    closes,
    activity: () => activity,
    opened: () => opened,
    handlers: {
      onOpen: () => {
        opened += 1;
      },
      onFrame: (f: ServerFrame) => frames.push(f),
      onProtocolError: (m: string) => problems.push(m),
      onActivity: () => {
        activity += 1;
      },
      onClose: (c: TransportCloseInfo) => closes.push(c),
    },
  };
}

const OPEN_SSE = 'http://mooring.test/prefix/v1/connect/sse?v=1&key=app%3Asecret';
const OPEN_POLL = 'http://mooring.test/prefix/v1/connect/poll?v=1&key=app%3Asecret';

describe('SseParser', () => {
  it('parses events split anywhere, CRLF split across chunks, multi-line data; counts comments', () => {
    const events: string[] = [];
    let comments = 0;
    const parser = new SseParser({ onEvent: (d) => events.push(d), onComment: () => comments++ });
    const text = 'data: {"a":1}\r\n\r\n: ping\n\nevent: x\nid: 7\ndata:line1\ndata: line2\r\rdata: last\n\n';
    for (const ch of text) parser.push(ch);
    assert.deepEqual(events, ['{"a":1}', 'line1\nline2', 'last']);
    assert.equal(comments, 1);
    assert.equal(parser.buffered, 0);
  });

  it('dispatches nothing for an event without data, and holds an incomplete line', () => {
    const events: string[] = [];
    const parser = new SseParser({ onEvent: (d) => events.push(d), onComment: () => {} });
    parser.push('id: 1\n\ndata: par');
    assert.deepEqual(events, []);
    parser.push('tial\n\n');
    assert.deepEqual(events, ['partial']);
  });

  it('reads a CRLF as one line ending, inside a chunk and split across two (no blank line that would end the event early)', () => {
    const whole: string[] = [];
    new SseParser({ onEvent: (d) => whole.push(d), onComment: () => {} }).push('data: a\r\ndata: b\r\n\r\n');
    assert.deepEqual(whole, ['a\nb']);

    const split: string[] = [];
    const parser = new SseParser({ onEvent: (d) => split.push(d), onComment: () => {} });
    parser.push('data: a\r');
    parser.push('\ndata: b\r');
    parser.push('\n\r');
    parser.push('\n');
    assert.deepEqual(split, ['a\nb']);
    assert.equal(parser.buffered, 0);
  });
});

describe('SseTransport', () => {
  function open() {
    const f = scriptedFetch();
    const timers = new FakeTimers();
    const r = recorder();
    const transport = new SseTransport({ fetch: f.fetch, timers, requestTimeout: 10_000 });
    transport.open(OPEN_SSE, r.handlers);
    return { f, timers, r, transport };
  }

  it('reads frames from the stream, counts comments as activity, and POSTs upstream one request at a time', async () => {
    const { f, r, transport } = open();
    await flush();
    const [get] = f.calls;
    // every request of the transport names its own id (PROTOCOL.md §12 "Transport ids")
    assert.equal(get?.url, `${OPEN_SSE}&transport=${transport.transportId}`);
    assert.equal(f.header(get as Call, 'accept'), 'text/event-stream');
    const stream = eventStream();
    get?.respond(stream.response);
    await flush();
    assert.equal(r.opened(), 1);
    stream.frame(connectedFrame({ connectionId: 'c_9', connectionKey: 'c_9.secret' }));
    stream.write(': ping\n\n');
    stream.frame({ type: 'heartbeat', serverTime: 1 });
    await flush();
    assert.deepEqual(
      r.frames.map((x) => x.type),
      ['connected', 'heartbeat'],
    );
    assert.equal(r.activity(), 1);
    // nothing sent yet: the heartbeat is answered upstream (PROTOCOL.md §12), a ping without ref
    assert.equal(f.posts().length, 1);
    const first = f.posts()[0] as Call;
    assert.equal(
      first.url,
      `http://mooring.test/prefix/v1/connections/c_9/frames?transport=${transport.transportId}`,
    );
    assert.equal(f.header(first, 'x-mooring-connection-key'), 'c_9.secret');
    assert.deepEqual(f.body(first), [{ type: 'ping' }]);

    transport.send({ type: 'ping', ref: 1 });
    transport.send({ type: 'ping', ref: 2 });
    await flush();
    assert.equal(f.posts().length, 1, 'one POST in flight');
    first.respond(json(202, { accepted: 1 }));
    await flush();
    assert.equal(f.posts().length, 2);
    assert.deepEqual(f.body(f.posts()[1] as Call), [
      { type: 'ping', ref: 1 },
      { type: 'ping', ref: 2 },
    ]);
    (f.posts()[1] as Call).respond(json(202, { accepted: 2 }));
    // frames went up since the last heartbeat: the next one needs no answer; the one after does
    stream.frame({ type: 'heartbeat', serverTime: 2 });
    await flush();
    assert.equal(f.posts().length, 2);
    stream.frame({ type: 'heartbeat', serverTime: 3 });
    await flush();
    assert.equal(f.posts().length, 3);
    assert.deepEqual(f.body(f.posts()[2] as Call), [{ type: 'ping' }]);
    assert.deepEqual(r.closes, []);
  });

  it('decodes a character whose UTF-8 bytes arrive in two chunks', async () => {
    const { f, r } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    await flush();
    const bytes = new TextEncoder().encode(
      `data: ${JSON.stringify({ type: 'disconnect', reason: 'bye 中', reconnect: true })}\n\n`,
    );
    const cut = bytes.indexOf(0xe4) + 1; // inside the three bytes of 中
    stream.bytes(bytes.slice(0, cut));
    await flush();
    stream.bytes(bytes.slice(cut));
    await flush();
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.frames, [{ type: 'disconnect', reason: 'bye 中', reconnect: true }]);
  });

  it('reports a malformed event and stays open', async () => {
    const { f, r } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    await flush();
    stream.write('data: not json\n\n');
    stream.frame({ type: 'heartbeat', serverTime: 1 });
    await flush();
    assert.deepEqual(r.problems, ['frame is not JSON']);
    assert.equal(r.frames.length, 1);
    assert.deepEqual(r.closes, []);
  });

  it('a 401 with a Mooring error body is permanent; a proxy page is a refusal without one', async () => {
    const a = open();
    await flush();
    a.f.calls[0]?.respond(
      json(401, { error: { code: 'unauthorized', status: 401, retryable: false, message: 'bad key' } }),
    );
    await flush();
    assert.equal(a.r.closes[0]?.httpStatus, 401);
    assert.equal(a.r.closes[0]?.error?.code, 'unauthorized');
    assert.equal(classifyClose(a.r.closes[0] as TransportCloseInfo).type, 'fatal');

    const b = open();
    await flush();
    b.f.calls[0]?.respond(new Response('<h1>Bad gateway</h1>', { status: 502 }));
    await flush();
    assert.equal(b.r.closes[0]?.httpStatus, 502);
    assert.equal(b.r.closes[0]?.error, undefined);
  });

  it('a request that gets no answer at all says the server is unreachable', async () => {
    const { f, r } = open();
    await flush();
    f.calls[0]?.fail(new TypeError('fetch failed'));
    await flush();
    assert.equal(r.closes.length, 1);
    assert.equal(r.closes[0]?.unreachable, true);
  });

  it('a 200 that is not an event stream ends the transport (not unreachable)', async () => {
    const { f, r } = open();
    await flush();
    f.calls[0]?.respond(
      new Response('<html>login</html>', { status: 200, headers: { 'content-type': 'text/html' } }),
    );
    await flush();
    assert.match(r.closes[0]?.localError ?? '', /event stream/);
    assert.equal(r.closes[0]?.unreachable, undefined);
  });

  it('404 unknown_connection on an upstream POST ends the transport as a loss to resume from', async () => {
    const { f, r, transport } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    stream.frame(connectedFrame());
    await flush();
    transport.send({ type: 'ping', ref: 1 });
    await flush();
    f.posts()[0]?.respond(
      json(404, { error: { code: 'unknown_connection', status: 404, retryable: false, message: 'gone' } }),
    );
    await flush();
    assert.equal(r.closes.length, 1);
    assert.equal(r.closes[0]?.reason, 'unknown_connection');
    assert.equal(r.closes[0]?.httpStatus, undefined);
    assert.equal(classifyClose(r.closes[0] as TransportCloseInfo).type, 'lost');
    assert.throws(() => transport.send({ type: 'ping', ref: 2 }), /the SSE transport is closed/);
  });

  it('an upstream POST that never returns ends the transport after requestTimeout', async () => {
    const { f, r, transport, timers } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    stream.frame(connectedFrame());
    await flush();
    transport.send({ type: 'ping', ref: 1 });
    await flush();
    timers.advance(10_000);
    await flush();
    assert.match(r.closes[0]?.localError ?? '', /longer than 10000 ms/);
  });

  it('the stream ending ends the transport', async () => {
    const { f, r } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    stream.frame(connectedFrame());
    stream.end();
    await flush();
    assert.equal(r.closes.length, 1);
    assert.equal(r.closes[0]?.code, 1006);
  });

  it('drain: stops sending, resolves once the POST in flight is answered', async () => {
    const { f, r, transport } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    stream.frame(connectedFrame());
    await flush();
    transport.send({ type: 'ping', ref: 1 });
    transport.send({ type: 'ping', ref: 2 });
    await flush();
    let drained = false;
    void transport.drain?.().then(() => {
      drained = true;
    });
    await flush();
    assert.equal(drained, false);
    f.posts()[0]?.respond(json(202, { accepted: 1 }));
    await flush();
    assert.equal(drained, true);
    assert.equal(f.posts().length, 1, 'the queued frame was dropped (the new transport resends)');
    transport.abort();
    assert.deepEqual(r.closes, [], 'abort reports nothing');
  });

  it('close() sends a close frame, once; the server ending the stream then closes with 1000', async () => {
    const { f, r, transport } = open();
    await flush();
    const stream = eventStream();
    f.calls[0]?.respond(stream.response);
    stream.frame(connectedFrame());
    await flush();
    transport.close(1000, 'bye');
    transport.close(1000, 'bye again');
    await flush();
    assert.deepEqual(f.body(f.posts()[0] as Call), [{ type: 'close' }]);
    f.posts()[0]?.respond(json(202, { accepted: 1 }));
    await flush();
    assert.equal(f.posts().length, 1, 'one close frame, however often close() is called');
    stream.end();
    await flush();
    assert.equal(r.closes[0]?.code, 1000);
  });
});

describe('LongPollTransport', () => {
  function open() {
    const f = scriptedFetch();
    const r = recorder();
    const transport = new LongPollTransport({
      fetch: f.fetch,
      timers: new FakeTimers(),
      requestTimeout: 10_000,
    });
    transport.open(OPEN_POLL, r.handlers);
    return { f, r, transport };
  }

  it('connects, then polls in a loop with the connection key; every answer is activity', async () => {
    const { f, r, transport } = open();
    await flush();
    f.calls[0]?.respond(json(200, [connectedFrame({ connectionId: 'c_5', connectionKey: 'c_5.k' })]));
    await flush();
    assert.equal(r.frames[0]?.type, 'connected');
    assert.equal(f.calls.length, 2);
    const poll = f.calls[1] as Call;
    assert.equal(f.calls[0]?.url, `${OPEN_POLL}&transport=${transport.transportId}`);
    assert.equal(
      poll.url,
      `http://mooring.test/prefix/v1/connections/c_5/poll?transport=${transport.transportId}`,
    );
    assert.equal(f.header(poll, 'x-mooring-connection-key'), 'c_5.k');
    poll.respond(json(200, []));
    await flush();
    assert.equal(r.activity(), 1);
    assert.equal(f.calls.length, 3, 'exactly one poll pending at a time');
    f.calls[2]?.respond(
      json(200, [
        { type: 'heartbeat', serverTime: 1 },
        { type: 'pong', ref: 4, serverTime: 2 },
        { type: 'mystery' },
      ]),
    );
    await flush();
    assert.deepEqual(
      r.frames.map((x) => x.type),
      ['connected', 'heartbeat', 'pong'],
    );
    assert.deepEqual(r.problems, ['unknown frame type "mystery"']);
    assert.equal(f.calls.length, 4);
  });

  it('a first answer without a connected frame ends the transport; no poll follows', async () => {
    const { f, r } = open();
    await flush();
    f.calls[0]?.respond(json(200, [{ type: 'heartbeat', serverTime: 1 }]));
    await flush();
    assert.deepEqual(
      r.frames.map((x) => x.type),
      ['heartbeat'],
    );
    assert.equal(r.closes.length, 1);
    assert.equal(r.closes[0]?.code, 1006);
    assert.match(r.closes[0]?.localError ?? '', /no connected frame/);
    assert.equal(f.calls.length, 1);
  });

  it('a poll answer that is not JSON, or not an array, is reported and polling goes on', async () => {
    const { f, r } = open();
    await flush();
    f.calls[0]?.respond(json(200, [connectedFrame()]));
    await flush();
    f.calls[1]?.respond(new Response('<html>gateway</html>', { status: 200 }));
    await flush();
    assert.deepEqual(r.problems, ['a long-poll answer is not JSON']);
    assert.equal(f.calls.length, 3, 'polled again');
    f.calls[2]?.respond(json(200, { type: 'heartbeat', serverTime: 1 }));
    await flush();
    assert.deepEqual(r.problems, [
      'a long-poll answer is not JSON',
      'a long-poll answer is not an array of frames',
    ]);
    assert.equal(f.calls.length, 4, 'polled again');
    assert.deepEqual(r.closes, []);
  });

  it('404 unknown_connection on a poll ends the transport as a loss', async () => {
    const { f, r, transport } = open();
    await flush();
    f.calls[0]?.respond(json(200, [connectedFrame()]));
    await flush();
    f.calls[1]?.respond(
      json(404, { error: { code: 'unknown_connection', status: 404, retryable: false, message: 'gone' } }),
    );
    await flush();
    assert.equal(r.closes[0]?.reason, 'unknown_connection');
    assert.equal(classifyClose(r.closes[0] as TransportCloseInfo).type, 'lost');
    assert.throws(() => transport.send({ type: 'ping', ref: 1 }), /the long-polling transport is closed/);
  });

  it('a disconnect frame is the last of the transport: handed over, then the transport ends and polls no more', async () => {
    // a replaced transport's late polls are all answered so: polling on would loop while the
    // connection waits for the upgrade candidate that took it over
    const { f, r } = open();
    await flush();
    f.calls[0]?.respond(json(200, [connectedFrame()]));
    await flush();
    f.calls[1]?.respond(json(200, [{ type: 'disconnect', reason: 'replaced', reconnect: true }]));
    await flush();
    assert.deepEqual(
      r.frames.map((x) => x.type),
      ['connected', 'disconnect'],
    );
    assert.equal(r.closes.length, 1);
    assert.equal(r.closes[0]?.code, 1001);
    assert.equal(r.closes[0]?.reason, 'replaced');
    assert.equal(f.calls.length, 2, 'it polled again after the disconnect');
  });

  it('an opening request that gets no answer at all says the server is unreachable; a failed poll does not', async () => {
    const a = open();
    await flush();
    a.f.calls[0]?.fail(new TypeError('fetch failed'));
    await flush();
    assert.equal(a.r.closes.length, 1);
    assert.equal(a.r.closes[0]?.unreachable, true);

    const b = open();
    await flush();
    b.f.calls[0]?.respond(json(200, [connectedFrame()]));
    await flush();
    b.f.calls[1]?.fail(new TypeError('fetch failed'));
    await flush();
    assert.equal(b.r.closes.length, 1);
    assert.equal(b.r.closes[0]?.unreachable, undefined);
    assert.match(b.r.closes[0]?.localError ?? '', /a poll failed/);
  });

  it('a refused opening request reports its status and error body', async () => {
    const { f, r } = open();
    await flush();
    f.calls[0]?.respond(
      json(403, { error: { code: 'forbidden', status: 403, retryable: false, message: 'no' } }),
    );
    await flush();
    assert.equal(r.closes[0]?.httpStatus, 403);
    assert.equal(r.closes[0]?.error?.code, 'forbidden');
  });

  it('a close frame (close() or sent as is) goes upstream; once accepted the transport ends with 1000', async () => {
    const { f, r, transport } = open();
    await flush();
    f.calls[0]?.respond(json(200, [connectedFrame({ connectionId: 'c_6' })]));
    await flush();
    const pendingPoll = f.calls[1] as Call;
    // The server does not answer a pending poll when it closes a connection on request, so the
    // transport must not wait for the poll to learn that it is over.
    transport.send({ type: 'close' });
    await flush();
    const post = f.posts()[0] as Call;
    assert.equal(
      post.url,
      `http://mooring.test/prefix/v1/connections/c_6/frames?transport=${transport.transportId}`,
    );
    assert.deepEqual(f.body(post), [{ type: 'close' }]);
    post.respond(json(202, { accepted: 1 }));
    await flush();
    assert.equal(r.closes[0]?.code, 1000);
    assert.equal(pendingPoll.init.signal?.aborted, true, 'the pending poll is cancelled');
  });
});

describe('HttpUpstream', () => {
  const FRAMES_URL = 'http://mooring.test/v1/connections/c_1/frames';

  function upstream(options: { maxBatchBytes?: number; maxHttpBody?: number; connect?: boolean } = {}) {
    const f = scriptedFetch();
    const failures: TransportCloseInfo[] = [];
    const u = new HttpUpstream({
      fetch: f.fetch,
      timers: new FakeTimers(),
      requestTimeout: 10_000,
      ...(options.maxBatchBytes === undefined ? {} : { maxBatchBytes: options.maxBatchBytes }),
      onFailure: (info) => failures.push(info),
    });
    if (options.connect !== false) u.connect(FRAMES_URL, 'c_1.k', options.maxHttpBody);
    return { f, u, failures };
  }

  it('frames sent before the connection is known wait for it, then go up together, in order', async () => {
    const { f, u } = upstream({ connect: false });
    u.send({ type: 'ping', ref: 1 });
    u.send({ type: 'ping', ref: 2 });
    await flush();
    assert.equal(u.connected, false);
    assert.equal(f.posts().length, 0);
    u.connect(FRAMES_URL, 'c_1.k');
    await flush();
    assert.equal(f.posts().length, 1);
    const post = f.posts()[0] as Call;
    assert.equal(post.url, FRAMES_URL);
    assert.equal(f.header(post, 'x-mooring-connection-key'), 'c_1.k');
    assert.deepEqual(f.body(post), [
      { type: 'ping', ref: 1 },
      { type: 'ping', ref: 2 },
    ]);
  });

  it('a POST that fails on its way ends the upstream once, saying why; the frames queued behind it are dropped', async () => {
    const { f, u, failures } = upstream();
    u.send({ type: 'ping', ref: 1 });
    u.send({ type: 'ping', ref: 2 });
    await flush();
    (f.posts()[0] as Call).fail(new TypeError('fetch failed'));
    await flush();
    assert.deepEqual(failures, [
      { code: 1006, reason: '', localError: 'an upstream POST failed: TypeError: fetch failed' },
    ]);
    assert.equal(f.posts().length, 1, 'the connection resends what was not acknowledged');
    assert.throws(() => u.send({ type: 'ping', ref: 3 }), /closed/);
    await u.idle();
  });

  /** A frame's JSON of exactly `bytes` bytes in UTF-8, mostly three-byte characters (one per 3 bytes). */
  function frameOf(bytes: number, ref: number): { frame: ClientFrame; json: string } {
    const head = `{"type":"ping","ref":${ref},"pad":"`;
    const room = bytes - head.length - 2;
    const json = `${head}${'中'.repeat(Math.floor(room / 3))}${'x'.repeat(room % 3)}"}`;
    return { frame: { type: 'ping', ref }, json };
  }

  const bodyBytes = (c: Call) => new TextEncoder().encode(String(c.init.body)).length;
  const refs = (f: ReturnType<typeof scriptedFetch>, c: Call) =>
    f.body(c).map((frame) => (frame as { ref?: number }).ref);

  /** Sends frames of these sizes behind a first one in flight; the refs of each POST that follows. */
  async function batches(u: HttpUpstream, f: ReturnType<typeof scriptedFetch>, sizes: number[]) {
    u.send({ type: 'ping', ref: 0 });
    sizes.forEach((size, i) => {
      const { frame, json } = frameOf(size, i + 1);
      u.send(frame, json);
    });
    await flush();
    const posts: { refs: (number | undefined)[]; bytes: number }[] = [];
    for (let i = 0; i < f.posts().length; i++) {
      const post = f.posts()[i] as Call;
      if (i > 0) posts.push({ refs: refs(f, post), bytes: bodyBytes(post) });
      post.respond(json(202, { accepted: f.body(post).length }));
      await flush();
    }
    return posts;
  }

  it('batches queued frames in POST bodies of at most maxBatchBytes, counted in UTF-8 bytes with brackets and commas; a bigger frame goes alone', async () => {
    const { f, u, failures } = upstream({ maxBatchBytes: 400 });
    // 3 × 132 bytes (about 70 characters each): a body of exactly 400; the next 132, 132, 133 would
    // be 401; 500 is above the bound
    const posts = await batches(u, f, [132, 132, 132, 132, 132, 133, 500, 140]);
    assert.deepEqual(posts, [
      { refs: [1, 2, 3], bytes: 400 },
      { refs: [4, 5], bytes: 267 },
      { refs: [6], bytes: 135 },
      { refs: [7], bytes: 502 },
      { refs: [8], bytes: 142 },
    ]);
    assert.deepEqual(failures, []);
  });

  it("the server's announced maxHttpBody bounds a batch where it is below maxBatchBytes", async () => {
    const lower = upstream({ maxHttpBody: 400 });
    assert.deepEqual(
      (await batches(lower.u, lower.f, [132, 132, 132, 132])).map((p) => p.refs),
      [[1, 2, 3], [4]],
    );
    const higher = upstream({ maxBatchBytes: 400, maxHttpBody: 4_000 });
    assert.deepEqual(
      (await batches(higher.u, higher.f, [132, 132, 132, 132])).map((p) => p.refs),
      [[1, 2, 3], [4]],
    );
  });
});
