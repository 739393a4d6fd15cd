/**
 * The Durable Streams metrics of `/metrics` (PROTOCOL.md §16, README "Metrics"): requests by method
 * and status, data bytes appended (in) and read (out), and the streams and bytes the store holds.
 * (Live readers waiting: stream-reads.test.ts, budgets.test.ts.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { metricsText, metricValue, startFixture } from '../support/fixture.ts';

test('/metrics counts requests by method and status, bytes appended and read, and the streams and bytes held', async () => {
  const fx = await startFixture('memory', { durableStreams: { open: '*' } });
  try {
    const url = (path: string) => `${fx.server.url}/v1/stream/${path}`;
    const text = { 'content-type': 'text/plain' };
    const statuses: number[] = [];
    const call = async (path: string, init: RequestInit = {}) => {
      const res = await fetch(url(path), init);
      statuses.push(res.status);
      return res.text();
    };
    await call('m1', { method: 'PUT', headers: text, body: 'hello' });
    await call('m1', { method: 'POST', headers: text, body: 'world!' });
    await call('m2', { method: 'PUT', headers: text });
    assert.equal(await call('m1?offset=-1'), 'helloworld!');
    await call('missing?offset=-1');
    assert.deepEqual(statuses, [201, 204, 201, 200, 404]);

    const metrics = await metricsText(fx.server);
    const value = (series: string) => metricValue(metrics, `${series} `);
    assert.equal(value('mooring_stream_requests_total{method="PUT",status="201"}'), 2);
    assert.equal(value('mooring_stream_requests_total{method="POST",status="204"}'), 1);
    assert.equal(value('mooring_stream_requests_total{method="GET",status="200"}'), 1);
    assert.equal(value('mooring_stream_requests_total{method="GET",status="404"}'), 1);
    assert.equal(value('mooring_stream_bytes_total{direction="in"}'), 11);
    assert.equal(value('mooring_stream_bytes_total{direction="out"}'), 11);
    assert.equal(value('mooring_streams'), 2);
    assert.equal(value('mooring_stream_bytes'), 11);
  } finally {
    await fx.close();
  }
});
