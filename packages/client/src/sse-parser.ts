/**
 * An incremental `text/event-stream` parser (the WHATWG "server-sent events" format), fed with
 * decoded text as it arrives from a streamed fetch body, in chunks that may split lines anywhere —
 * even between the `\r` and `\n` of one line ending.
 *
 *   data: {"type":"heartbeat",…}     one event per server frame (PROTOCOL.md §12); several `data:`
 *                                    lines in one event are joined with "\n"
 *   <blank line>                     dispatches the event
 *   : ping                           a comment: no event, but traffic (dead-connection detection)
 *
 * Other fields (`event:`, `id:`, `retry:`) are ignored: Mooring frames carry their own type.
 */

export interface SseHandlers {
  /** One complete event's data. */
  onEvent(data: string): void;
  /** A comment line (`:` …). */
  onComment(): void;
}

export class SseParser {
  readonly #handlers: SseHandlers;
  #buffer = '';
  #data: string[] = [];
  /** The previous chunk ended with `\r`: a `\n` at the start of the next one belongs to it. */
  #pendingCr = false;

  constructor(handlers: SseHandlers) {
    this.#handlers = handlers;
  }

  /** Feeds decoded text; dispatches every event completed by it. */
  push(text: string): void {
    let chunk = text;
    if (this.#pendingCr && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.#pendingCr = false;
    this.#buffer += chunk;
    for (;;) {
      const end = this.#buffer.search(/[\r\n]/);
      if (end < 0) return;
      const line = this.#buffer.slice(0, end);
      let next = end + 1;
      if (this.#buffer[end] === '\r') {
        if (next === this.#buffer.length) this.#pendingCr = true;
        else if (this.#buffer[next] === '\n') next += 1;
      }
      this.#buffer = this.#buffer.slice(next);
      this.#line(line);
    }
  }

  /** Bytes held that do not yet form a complete line. */
  get buffered(): number {
    return this.#buffer.length;
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#data.length === 0) return;
      const data = this.#data.join('\n');
      this.#data = [];
      this.#handlers.onEvent(data);
      return;
    }
    if (line.startsWith(':')) {
      this.#handlers.onComment();
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    if (field !== 'data') return;
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    this.#data.push(value);
  }
}
