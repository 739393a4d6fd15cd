/** `/metrics` (ARCHITECTURE.md §13): Prometheus text, authenticated by default, counting what happened. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { metricValue, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

function value(text: string, metric: string): number {
  return metricValue(text, metric) ?? 0;
}

describe('metrics', () => {
  it('counts connections, attaches, resumes, operations and errors', async () => {
    const fx = await startFixture('memory');
    try {
      assert.equal((await fetch(`${fx.server.url}/metrics`)).status, 401, 'not public by default');
      assert.equal((await fetch(`${fx.server.url}/metrics/history`)).status, 401, 'nor is its history');
      const history = await fetch(`${fx.server.url}/metrics/history`, {
        headers: { authorization: `Bearer ${TEST_KEY}` },
      });
      assert.equal(history.status, 200);
      const a = await RawClient.connect(fx.server.url);
      const ack = await a.publish('session:m', [{ data: 'x' }]);
      await a.attach('session:m', { from: ack.results[0]!.serial });
      await a.attach('session:m', { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` });
      await a.attach('session:m-live');
      await a.attach('session:m-start', { start: true });
      await a.attach('session:m-rewind', { rewind: 2 });
      await a.request({ type: 'nope' });
      const res = await fetch(`${fx.server.url}/metrics`, {
        headers: { authorization: `Bearer ${TEST_KEY}` },
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
      const text = await res.text();
      assert.equal(value(text, 'mooring_connections{transport="websocket"}'), 1);
      assert.equal(value(text, 'mooring_attaches_total{mode="resume",resumed="true"}'), 1);
      assert.equal(value(text, 'mooring_attaches_total{mode="live",resumed="false"}'), 1);
      assert.equal(value(text, 'mooring_attaches_total{mode="start",resumed="false"}'), 1);
      assert.equal(value(text, 'mooring_attaches_total{mode="rewind",resumed="false"}'), 1);
      assert.equal(value(text, 'mooring_resume_failures_total{reason="epoch_changed"}'), 1);
      assert.equal(value(text, 'mooring_operations_total{action="create"}'), 1);
      assert.equal(value(text, 'mooring_errors_total{code="invalid_frame"}'), 1);
      assert.ok(value(text, 'mooring_publish_seconds_count') >= 1);
      assert.match(text, /mooring_process_resident_memory_bytes/);
      // a refused connection request counts too (WebSocket and long-poll handshakes)
      const unauthorized = async () =>
        value(
          await (await fetch(`${fx.server.url}/metrics?key=${TEST_KEY}`)).text(),
          'mooring_errors_total{code="unauthorized"}',
        );
      const before = await unauthorized();
      await assert.rejects(RawClient.connect(fx.server.url, { key: 'test:wrong' }), /HTTP 401/);
      const poll = await fetch(`${fx.server.url}/v1/connect/poll?key=test:wrong`);
      assert.equal(poll.status, 401);
      await poll.arrayBuffer();
      assert.equal((await unauthorized()) - before, 2);
      a.kill();
      await new Promise((r) => setTimeout(r, 50));
      const after = await (await fetch(`${fx.server.url}/metrics?key=${TEST_KEY}`)).text();
      assert.equal(value(after, 'mooring_connections{transport="websocket"}'), 0);
      assert.equal(value(after, 'mooring_connections_closed_total{transport="websocket",reason="lost"}'), 1);
    } finally {
      await fx.close();
    }
  });

  it('tells a connection the client closed (WebSocket 1000, or a close frame) from one lost', async () => {
    const fx = await startFixture('memory');
    try {
      const closed = async (reason: string) =>
        value(
          await (await fetch(`${fx.server.url}/metrics?key=${TEST_KEY}`)).text(),
          `mooring_connections_closed_total{transport="websocket",reason="${reason}"}`,
        );
      const byCode = await RawClient.connect(fx.server.url);
      byCode.ws.close(1000); // a WebSocket close, no close frame of the protocol
      await byCode.closed();
      const byFrame = await RawClient.connect(fx.server.url);
      byFrame.send({ type: 'close' });
      await new Promise<void>((resolve) => byFrame.ws.once('close', () => resolve()));
      const lost = await RawClient.connect(fx.server.url);
      lost.kill();
      for (let i = 0; i < 100 && (await closed('closed')) + (await closed('lost')) < 3; i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(await closed('closed'), 2);
      assert.equal(await closed('lost'), 1);
    } finally {
      await fx.close();
    }
  });

  it('serves the dashboard page, which reads /metrics/history and /v1/health', async () => {
    const fx = await startFixture('memory');
    try {
      const res = await fetch(`${fx.server.url}/dashboard`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      const html = await res.text();
      assert.match(html, /<script src="\/dashboard.js"><\/script>/);
      const script = await (await fetch(`${fx.server.url}/dashboard.js`)).text();
      assert.match(script, /get\('\/metrics\/history'\)/);
      assert.match(script, /get\('\/v1\/health\?limit=20'\)/);
      assert.doesNotMatch(html + script, /test:secret/, 'the page holds no secret');
    } finally {
      await fx.close();
    }
  });

  it("the README's Metrics section names exactly the metrics a server serves (its process metrics apart)", async () => {
    const fx = await startFixture('memory');
    try {
      const res = await fetch(`${fx.server.url}/metrics`, {
        headers: { authorization: `Bearer ${TEST_KEY}` },
      });
      const served = [...(await res.text()).matchAll(/^# TYPE (mooring_\w+)/gm)]
        .map((m) => m[1]!)
        .filter((name) => !/^mooring_(process|nodejs)_/.test(name));
      const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
      const section = readme.slice(
        readme.indexOf('\n## Metrics'),
        readme.indexOf('\n## ', readme.indexOf('\n## Metrics') + 1),
      );
      // `name{labels}` or `name`; `mooring_process_*` stands for a family
      const documented = [...section.matchAll(/`(mooring_\w+?)(?:\{[^`]*)?`/g)]
        .map((m) => m[1]!)
        .filter((name) => !name.endsWith('_'));
      assert.ok(served.length >= 20, `only ${served.length} metrics served`);
      assert.deepEqual([...new Set(documented)].sort(), [...new Set(served)].sort());
    } finally {
      await fx.close();
    }
  });
});
