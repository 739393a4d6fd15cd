/**
 * Optional OpenTelemetry spans: off by default (a registered provider sees nothing), and when on, a
 * publish makes publish → store.append + fanout, and a resume makes attach → catchup. Spans are
 * collected with the SDK's in-memory exporter (a devDependency; the server needs only the API).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { trace } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
trace.setGlobalTracerProvider(provider);
after(() => provider.shutdown());

const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

describe('tracing', () => {
  it('is off by default: a registered provider receives no spans', async () => {
    exporter.reset();
    const fx = await startFixture('memory');
    try {
      const res = await rest(fx.server, '/v1/channels/session:t0/messages', { body: { data: 'x' } });
      assert.equal(res.status, 200);
      assert.deepEqual(exporter.getFinishedSpans(), []);
    } finally {
      await fx.close();
    }
  });

  it('when on, a publish makes publish → store.append and fanout, and a resume attach → catchup', async () => {
    exporter.reset();
    const fx = await startFixture('memory', { tracing: true });
    const channel = 'session:traced';
    try {
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'a', data: 'x' },
        { id: 'b', data: 'y' },
      ]);
      let spans = exporter.getFinishedSpans();
      const [publish] = named(spans, 'mooring.publish');
      assert.ok(publish, `spans: ${spans.map((s) => s.name).join(', ')}`);
      assert.equal(publish.attributes['mooring.channel'], channel);
      assert.equal(publish.attributes['mooring.ops'], 2);
      const id = publish.spanContext().spanId;
      for (const child of ['mooring.store.append', 'mooring.fanout']) {
        const [span] = named(spans, child);
        assert.ok(span, `${child} missing`);
        assert.equal(span.parentSpanContext?.spanId, id, `${child} is a child of the publish`);
        assert.equal(span.spanContext().traceId, publish.spanContext().traceId);
      }
      assert.equal(named(spans, 'mooring.store.append')[0]!.attributes['mooring.store'], 'memory');

      exporter.reset();
      const reader = await RawClient.connect(fx.server.url);
      await reader.attach(channel, { from: ack.results[0]!.serial });
      spans = exporter.getFinishedSpans();
      const [attach] = named(spans, 'mooring.attach');
      assert.ok(attach, `spans: ${spans.map((s) => s.name).join(', ')}`);
      assert.equal(attach.attributes['mooring.mode'], 'resume');
      assert.equal(attach.attributes['mooring.resumed'], true);
      assert.equal(attach.attributes['mooring.resume_failure'], undefined);
      const [catchup] = named(spans, 'mooring.catchup');
      assert.equal(catchup?.parentSpanContext?.spanId, attach.spanContext().spanId);

      // a resume that cannot be honoured says why on its span
      exporter.reset();
      const epoch = ack.results[0]!.serial.split('.')[0]!;
      const ahead = `${epoch}.${'9'.repeat(16)}`;
      const late = await RawClient.connect(fx.server.url);
      await late.attach(channel, { from: ahead });
      const [failed] = named(exporter.getFinishedSpans(), 'mooring.attach');
      assert.equal(failed?.attributes['mooring.resumed'], false);
      assert.equal(failed?.attributes['mooring.resume_failure'], 'position_ahead');
      await late.close();
      await agent.close();
      await reader.close();
    } finally {
      await fx.close();
    }
  });
});
