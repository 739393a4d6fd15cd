/**
 * Optional OpenTelemetry spans, off by default (`startServer({ tracing: true })`, or
 * `MOORING_TRACING=1` for `mooring serve`): a publish makes `mooring.publish` with the children
 * `mooring.store.append` and `mooring.fanout`; an attach makes `mooring.attach` with a
 * `mooring.catchup` child when it sends history. Only `@opentelemetry/api` is used: spans go to
 * whatever tracer provider the application registered (none registered = no-op), so no SDK is forced
 * on anyone. Off, the hot path pays one `undefined` check.
 */
import { type Attributes, context, type Span, SpanStatusCode, type Tracer, trace } from '@opentelemetry/api';

export type { Span, Tracer } from '@opentelemetry/api';

export class Tracing {
  readonly #tracer: Tracer;

  constructor(tracer: Tracer = trace.getTracer('@mooring/server')) {
    this.#tracer = tracer;
  }

  /** Starts a span, as a child of `parent` when given (else of the active context). */
  start(name: string, attributes: Attributes, parent?: Span): Span {
    const ctx = parent ? trace.setSpan(context.active(), parent) : context.active();
    return this.#tracer.startSpan(name, { attributes }, ctx);
  }

  /** Ends a span as failed. */
  fail(span: Span | undefined, err: unknown): void {
    if (!span) return;
    span.recordException(err instanceof Error ? err : String(err));
    const code = (err as { code?: unknown })?.code;
    if (typeof code === 'string') span.setAttribute('mooring.error_code', code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    span.end();
  }
}
