/**
 * `mooring tail <channel>`: follows a channel live, operation by operation, and survives the
 * network: when the connection drops (or goes silent past the server's idle interval) it reconnects
 * with backoff and resumes from the last version it printed — nothing missed, nothing printed twice
 * — saying so on stderr; if continuity is lost (the position is gone) it says that too. AI session
 * events are pretty-printed: inputs, run starts and ends, and text/reasoning parts as text streams
 * (the deltas of appends written as they come). Everything else is one line per operation.
 *
 * A plain WebSocket client of the wire protocol (PROTOCOL.md §5–6), so the server package needs no
 * client SDK. Credentials go in the upgrade's `authorization` header, never in the URL.
 */

import { parseArgs } from 'node:util';
import type { Message, ServerFrame } from '@mooring/protocol';
import { PROTOCOL_VERSION } from '@mooring/protocol';
import { EVENT_CONTROL, EVENT_INPUT, EVENT_PART, EVENT_RUN } from '@mooring/protocol/ai';
import WebSocket from 'ws';
import { formatMessage, preview } from './format-message.ts';
import {
  CONNECTION_HELP,
  CONNECTION_OPTIONS,
  type InspectTarget,
  inspectTarget,
  integerOption,
  oneChannel,
} from './inspect-options.ts';

export const TAIL_HELP = `Usage: mooring tail <channel> [--rewind <n> | --from <serial>] [--raw] [--url <url>] (--key <key> | --token <jwt>)

  Follows the channel live and resumes after a disconnect. AI runs print as text streams; other
  messages one line per operation. Ctrl-C to stop.

${CONNECTION_HELP}
  --rewind    start with the last <n> messages (default 10)
  --from      start after this serial (a position printed earlier)
  --raw       one line per operation for AI events too`;

export interface TailOutput {
  /** Text of the channel (stdout). */
  write(text: string): void;
  /** What happened to the connection (stderr). */
  status(line: string): void;
}

export interface TailHandle {
  /** Stops following; resolves once the socket is closed. */
  stop(): Promise<void>;
  /** Resolves when tail ends by itself with an error (bad credentials, forbidden). */
  readonly failed: Promise<Error>;
}

export function tailCommand(argv: string[], env: NodeJS.ProcessEnv, output: TailOutput): TailHandle | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...CONNECTION_OPTIONS,
      rewind: { type: 'string' },
      from: { type: 'string' },
      raw: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    output.write(`${TAIL_HELP}\n`);
    return 'help';
  }
  const channel = oneChannel(positionals, TAIL_HELP);
  const rewind = integerOption('rewind', values.rewind, 10, 0, 1000);
  return follow(
    inspectTarget(values, env),
    channel,
    { rewind, from: values.from, raw: values.raw ?? false },
    output,
  );
}

interface Part {
  runId: string;
  kind: string;
  /** Characters of its text written so far. */
  printed: number;
}

function follow(
  target: InspectTarget,
  channel: string,
  start: { rewind: number; from: string | undefined; raw: boolean },
  output: TailOutput,
): TailHandle {
  let position = start.from ?? '';
  /** The position the current attach resumes from (`''`: it rewinds, or starts live). */
  let asked = '';
  /** Why the last connection attempt failed, for the status line. */
  let lastError = '';
  let socket: WebSocket | undefined;
  let stopped = false;
  let attempt = 0;
  let retry: NodeJS.Timeout | undefined;
  let idle: NodeJS.Timeout | undefined;
  let fail!: (err: Error) => void;
  const failed = new Promise<Error>((resolve) => {
    fail = resolve;
  });
  const printer = new Printer(output, start.raw);
  const wsUrl = `${target.url.replace(/^http/, 'ws')}/v1/connect?v=${PROTOCOL_VERSION}`;

  const connect = () => {
    if (stopped) return;
    const ws = new WebSocket(wsUrl, { headers: { authorization: target.authorization } });
    socket = ws;
    let maxIdle = 60_000;
    const alive = () => {
      clearTimeout(idle);
      // the server sends something at least every maxIdleInterval; silence past it + 10 s is a dead link
      idle = setTimeout(() => ws.terminate(), maxIdle + 10_000);
      idle.unref();
    };
    ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      if (status === 401 || status === 403) {
        stopped = true;
        fail(new Error(`the server refused the credentials (HTTP ${status})`));
      }
      ws.terminate();
    });
    ws.on('error', (err) => {
      lastError = err.message; // followed by close: reconnect there
    });
    ws.on('open', () => {
      lastError = '';
    });
    ws.on('message', (data) => {
      alive();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(String(data)) as ServerFrame;
      } catch {
        return;
      }
      switch (frame.type) {
        case 'connected': {
          maxIdle = frame.maxIdleInterval;
          alive();
          asked = position;
          const mode = position ? { from: position } : start.rewind > 0 ? { rewind: start.rewind } : {};
          ws.send(JSON.stringify({ type: 'attach', ref: 'tail', channel, ...mode }));
          return;
        }
        case 'attached': {
          if (frame.channel !== channel) return;
          // Only an attach `from` a position resumes: a rewind (or none) is a start, never a loss,
          // though its catch-up already moved `position` before this frame came.
          if (asked && frame.resumed) {
            if (attempt > 0) output.status(`— resumed from ${asked}: nothing missed`);
          } else if (asked) {
            output.status(
              `— continuity lost (${frame.reason ?? 'unknown'}): what was published meanwhile is not shown; following live from ${frame.position || 'the start'}`,
            );
            position = frame.position;
          } else if (!position) position = frame.position;
          attempt = 0;
          return;
        }
        case 'messages':
          if (frame.channel !== channel) return;
          for (const m of frame.messages) {
            if (position && m.version <= position) continue; // a resend: already printed
            printer.print(m);
            position = m.version;
          }
          return;
        case 'presence':
          if (frame.channel === channel && frame.action !== 'sync')
            output.status(
              `presence: ${frame.action} ${frame.member.clientId} (${frame.member.connectionId})`,
            );
          return;
        case 'error':
          // the attach failed: for good (forbidden, a bad channel or serial), or for now (retry)
          if (frame.ref === 'tail' || (frame.channel === channel && frame.ref === undefined)) {
            if (!frame.error.retryable) {
              stopped = true;
              fail(new Error(`${frame.error.code}: ${frame.error.message}`));
            }
            ws.close();
          }
          return;
        case 'disconnect':
          output.status(`— the server closed the connection (${frame.reason})`);
          return;
        default:
          return;
      }
    });
    ws.on('close', () => {
      clearTimeout(idle);
      if (stopped) return;
      attempt++;
      const wait = Math.min(5_000, 250 * 2 ** Math.min(attempt - 1, 5)) * (0.5 + Math.random() / 2);
      output.status(
        `— disconnected${lastError ? ` (${lastError})` : ''}; reconnecting in ${Math.round(wait)} ms (resuming after ${position || 'the start'})`,
      );
      retry = setTimeout(connect, wait);
    });
  };
  connect();
  return {
    failed,
    stop() {
      stopped = true;
      clearTimeout(retry);
      clearTimeout(idle);
      const ws = socket;
      if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
      return new Promise((resolve) => {
        ws.once('close', () => resolve());
        ws.close();
      });
    },
  };
}

/** Prints operations; AI events as a readable stream (unless raw). */
class Printer {
  readonly #out: TailOutput;
  readonly #raw: boolean;
  /** AI parts by message serial (appends carry the serial only), bounded. */
  readonly #parts = new Map<string, Part>();
  readonly #runs = new Map<string, string>();
  /** The part whose text was written last, without a newline yet. */
  #open: string | undefined;

  constructor(out: TailOutput, raw: boolean) {
    this.#out = out;
    this.#raw = raw;
  }

  print(m: Message): void {
    if (!this.#raw && this.#ai(m)) return;
    this.#line(formatMessage(m));
  }

  #line(text: string): void {
    if (this.#open !== undefined) this.#out.write('\n');
    this.#open = undefined;
    this.#out.write(`${text}\n`);
  }

  #remember<V>(map: Map<string, V>, key: string, value: V): void {
    if (map.size >= 10_000) {
      const oldest = map.keys().next().value;
      if (oldest !== undefined) map.delete(oldest);
    }
    map.set(key, value);
  }

  /** True when printed as an AI event. */
  #ai(m: Message): boolean {
    if (m.action === 'delete') return false;
    const knownPart = this.#parts.get(m.serial);
    const knownRun = this.#runs.get(m.serial);
    // live appends and updates carry no name: known by their message's serial
    const name = m.name ?? (knownPart ? EVENT_PART : knownRun !== undefined ? EVENT_RUN : undefined);
    const h = m.headers ?? {};
    const data = (typeof m.data === 'object' && m.data !== null ? m.data : {}) as Record<string, unknown>;
    switch (name) {
      case EVENT_INPUT: {
        const message = data.message as { parts?: unknown } | undefined;
        // a malformed input (parts not a list) prints as an empty one, never ends tail
        const text = (Array.isArray(message?.parts) ? message.parts : [])
          .map((p) =>
            typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text'
              ? String((p as { text?: unknown }).text)
              : '',
          )
          .join('');
        this.#line(`› ${m.clientId ?? '?'}: ${text}`);
        return true;
      }
      case EVENT_RUN: {
        const runId = typeof data.runId === 'string' ? data.runId : knownRun;
        if (runId === undefined) return false;
        const status = typeof h.status === 'string' ? h.status : undefined;
        if (knownRun === undefined) {
          this.#remember(this.#runs, m.serial, runId);
          this.#line(
            `◆ run ${runId} · ${String(data.agent ?? '?')} · answering ${String(data.input ?? '?')}${status && status !== 'running' ? ` · ${status}` : ''}`,
          );
        } else if (status !== undefined && status !== 'running') {
          const why =
            typeof data.reason === 'string'
              ? data.reason
              : typeof data.finishReason === 'string'
                ? data.finishReason
                : '';
          this.#line(`■ run ${runId} ${status}${why ? ` (${why})` : ''}`);
        }
        return true;
      }
      case EVENT_PART: {
        let part = knownPart;
        if (!part) {
          if (typeof h.run !== 'string' || typeof h.kind !== 'string') return false;
          part = { runId: h.run, kind: h.kind, printed: 0 };
          this.#remember(this.#parts, m.serial, part);
        } else if (!(part.kind === 'text' || part.kind === 'reasoning')) return true;
        if (part.kind === 'text' || part.kind === 'reasoning') {
          // a live append carries the delta; a create, a rolled-up copy (catch-up) or an update the
          // whole text: print only what was not printed yet
          const text = typeof m.data === 'string' ? m.data : '';
          if (m.action === 'append') this.#stream(m.serial, part, text);
          else if (text.length > part.printed) this.#stream(m.serial, part, text.slice(part.printed));
          return true;
        }
        const tool = typeof h.toolName === 'string' ? ` ${h.toolName}` : '';
        this.#line(`  [${part.kind}${tool}] ${preview(m.data, 120)}`);
        return true;
      }
      case EVENT_CONTROL:
        this.#line(`↯ control ${preview(m.data, 160)} from ${m.clientId ?? '?'}`);
        return true;
      default:
        return false;
    }
  }

  #stream(serial: string, part: Part, text: string): void {
    part.printed += text.length;
    if (this.#open !== serial) {
      if (this.#open !== undefined) this.#out.write('\n');
      this.#out.write(`  ${part.kind === 'reasoning' ? '(reasoning) ' : ''}`);
      this.#open = serial;
    }
    this.#out.write(text);
  }
}
