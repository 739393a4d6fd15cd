/**
 * Finds where HTTP/1.1 responses end in a server-to-client byte stream, so that `FaultProxy.buffer()`
 * can behave like a real buffering proxy: hold a response until it is complete, then release it whole.
 * Without this a keep-alive connection (Node's default agent, `fetch`) would hold even short responses
 * until the server closed the idle connection.
 *
 * It only frames; it never changes bytes. It must never report a boundary inside a response. When the
 * stream stops being HTTP it can frame (a `101 Switching Protocols`, a non-HTTP first line, an oversized
 * head line) it goes `opaque` and reports no further boundaries; the proxy then falls back to releasing
 * by byte count or at end of stream. Known gap: a response to `HEAD` that carries `Content-Length` is
 * taken to have a body (the framer does not see requests), which desynchronises it on that connection.
 */

type State =
  | 'status-line'
  | 'header'
  | 'body'
  | 'chunk-size'
  | 'chunk-data'
  | 'chunk-end'
  | 'trailer'
  | 'until-close'
  | 'opaque';

/** Longest status, header, chunk-size or trailer line accepted before giving up on framing. */
const MAX_LINE = 64 * 1024;

export class HttpResponseFramer {
  /** Stream offset just past the last complete response (0 before the first one completes). */
  boundary = 0;
  private state: State = 'status-line';
  private offset = 0;
  private line = '';
  private status = 0;
  private contentLength: number | null = null;
  private chunked = false;
  private remaining = 0;

  /** True once the stream can no longer be framed (upgraded, not HTTP, or read-until-close body). */
  get done(): boolean {
    return this.state === 'opaque' || this.state === 'until-close';
  }

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && !this.done) {
      if (this.state === 'body' || this.state === 'chunk-data') {
        const take = Math.min(this.remaining, chunk.length - i);
        i += take;
        this.remaining -= take;
        if (this.remaining === 0) {
          if (this.state === 'body') this.complete(i);
          else this.state = 'chunk-end';
        }
        continue;
      }
      const nl = chunk.indexOf(0x0a, i);
      const end = nl === -1 ? chunk.length : nl;
      this.line += Buffer.from(chunk.buffer, chunk.byteOffset + i, end - i).toString('latin1');
      if (nl === -1) {
        if (this.line.length > MAX_LINE) this.state = 'opaque';
        i = chunk.length;
        break;
      }
      i = nl + 1;
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      this.onLine(line, i);
    }
    this.offset += chunk.length;
  }

  private onLine(line: string, at: number): void {
    switch (this.state) {
      case 'status-line': {
        if (line === '') return; // tolerate stray CRLF between responses
        const match = /^HTTP\/\d\.\d (\d{3})/.exec(line);
        if (match === null) {
          this.state = 'opaque';
          return;
        }
        this.status = Number(match[1]);
        this.contentLength = null;
        this.chunked = false;
        this.state = 'header';
        return;
      }
      case 'header': {
        if (line === '') {
          this.onHeadEnd(at);
          return;
        }
        const colon = line.indexOf(':');
        if (colon === -1) return;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === 'content-length') this.contentLength = Number(value);
        if (name === 'transfer-encoding' && /\bchunked\b/i.test(value)) this.chunked = true;
        return;
      }
      case 'chunk-size': {
        const size = Number.parseInt(line.split(';')[0]?.trim() ?? '', 16);
        if (Number.isNaN(size)) {
          this.state = 'opaque';
          return;
        }
        if (size === 0) {
          this.state = 'trailer';
        } else {
          this.remaining = size;
          this.state = 'chunk-data';
        }
        return;
      }
      case 'chunk-end':
        this.state = 'chunk-size';
        return;
      case 'trailer':
        if (line === '') this.complete(at);
        return;
      default:
        return;
    }
  }

  private onHeadEnd(at: number): void {
    const status = this.status;
    if (status === 101) {
      this.complete(at);
      this.state = 'opaque';
    } else if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      this.complete(at);
    } else if (this.chunked) {
      this.state = 'chunk-size';
    } else if (this.contentLength !== null && Number.isFinite(this.contentLength)) {
      if (this.contentLength === 0) {
        this.complete(at);
      } else {
        this.remaining = this.contentLength;
        this.state = 'body';
      }
    } else {
      this.state = 'until-close';
    }
  }

  private complete(at: number): void {
    this.boundary = this.offset + at;
    this.state = 'status-line';
  }
}
