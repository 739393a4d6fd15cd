/**
 * Loaded with `node --import` into a spawned `mooring serve` (the README's way of registering an
 * OpenTelemetry SDK): appends the name of every span the process ends to the file `SPAN_NAMES`.
 */
import { appendFileSync } from 'node:fs';
import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';

const file = process.env.SPAN_NAMES;
if (file === undefined) throw new Error('SPAN_NAMES names the file the span names go to');
const exporter = {
  export(spans: ReadableSpan[], done: (result: { code: number }) => void): void {
    appendFileSync(file, spans.map((s) => `${s.name}\n`).join(''));
    done({ code: 0 });
  },
  shutdown: async () => {},
};
trace.setGlobalTracerProvider(
  new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
);
