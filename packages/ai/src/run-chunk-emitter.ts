/**
 * Rebuilds a run's `UIMessageChunk` stream from its folded state (PROTOCOL.md §13.2, "Rebuilding the
 * chunk stream of a run"). It reconciles: each `sync` compares the run's current parts with what it
 * has already emitted and returns the chunks that close the difference. So the same code gives
 *
 *   - a full replay (one `sync` on a fresh emitter):  start, each part whole, the terminal chunks;
 *   - a live stream (a `sync` after each change):      start, then deltas as the text grows;
 *   - a resume after a gap (rolled-up catch-up):       the missing text as one delta.
 *
 *   part kind    first seen                       grows                      done
 *   text         text-start {id, meta.start}      text-delta (the new text)  text-end {meta.end, citations}
 *   reasoning    reasoning-start                  reasoning-delta            reasoning-end
 *   tool-input   tool-input-start {…meta}         tool-input-delta           —
 *   chunk        the chunk itself (once complete)
 *   run ended    complete: finish {finishReason} · cancelled: abort · error: error + finish ·
 *                abandoned: abort {reason: "abandoned"}
 *
 * Parts are emitted in serial order. The caller must only `sync` while the channel is live (not in
 * the middle of a catch-up), when the parts it knows are a prefix of the run in serial order.
 */
import type { FinishReason, UIMessageChunk } from 'ai';
import type { RunNode } from './conversation-tree.ts';
import type { PartRecord } from './wire.ts';
import { readMeta } from './wire.ts';

interface Emitted {
  length: number;
  ended: boolean;
}

export class RunChunkEmitter {
  readonly #emitted = new Map<string, Emitted>();
  #started = false;
  #finished = false;

  /** True once the terminal chunks were emitted. */
  get finished(): boolean {
    return this.#finished;
  }

  /**
   * Counts the parts as already emitted, and the `start` too, without emitting them: a consumer that
   * already holds the message up to here gets only what comes next.
   */
  skip(parts: readonly PartRecord[]): void {
    this.#started = true;
    for (const part of parts) {
      if (part.kind === 'chunk' && !part.chunk) break;
      this.#emitted.set(part.serial, { length: part.text.length, ended: part.state === 'done' });
    }
  }

  /** The chunks that bring a consumer from what this emitter gave it so far to the run's state. */
  sync(run: RunNode, parts: readonly PartRecord[]): UIMessageChunk[] {
    const out: UIMessageChunk[] = [];
    if (this.#finished) return out;
    if (!this.#started) {
      this.#started = true;
      const start: UIMessageChunk = { type: 'start', messageId: run.id };
      if (run.metadata !== undefined) start.messageMetadata = run.metadata;
      out.push(start);
    }
    for (const part of parts) {
      if (!this.#part(part, out)) break;
    }
    if (run.status !== 'running') {
      this.#finished = true;
      switch (run.status) {
        case 'complete': {
          const finish: UIMessageChunk = { type: 'finish' };
          if (run.finishReason !== undefined) finish.finishReason = run.finishReason as FinishReason;
          out.push(finish);
          break;
        }
        case 'cancelled':
          out.push(run.reason !== undefined ? { type: 'abort', reason: run.reason } : { type: 'abort' });
          break;
        case 'error':
          out.push({ type: 'error', errorText: run.reason ?? 'the run failed' }, { type: 'finish' });
          break;
        case 'abandoned':
          out.push({ type: 'abort', reason: 'abandoned' });
          break;
      }
    }
    return out;
  }

  /** Emits what is new in one part; false when the part cannot be emitted yet (keep order). */
  #part(part: PartRecord, out: UIMessageChunk[]): boolean {
    let e = this.#emitted.get(part.serial);
    switch (part.kind) {
      case 'text':
      case 'reasoning': {
        const id = part.partId ?? part.serial;
        const meta = readMeta(part.headers);
        if (!e) {
          e = { length: 0, ended: false };
          this.#emitted.set(part.serial, e);
          const start = { type: `${part.kind}-start`, id } as UIMessageChunk & { providerMetadata?: unknown };
          if (meta.start !== undefined) start.providerMetadata = meta.start;
          out.push(start);
        }
        if (part.text.length > e.length) {
          out.push({ type: `${part.kind}-delta`, id, delta: part.text.slice(e.length) } as UIMessageChunk);
          e.length = part.text.length;
        }
        if (part.state === 'done' && !e.ended) {
          e.ended = true;
          const end = { type: `${part.kind}-end`, id } as UIMessageChunk & {
            providerMetadata?: unknown;
            citations?: unknown;
          };
          if (meta.end !== undefined) end.providerMetadata = meta.end;
          if (part.kind === 'text' && meta.citations !== undefined) end.citations = meta.citations;
          out.push(end);
        }
        return true;
      }
      case 'tool-input': {
        const toolCallId = part.partId ?? part.serial;
        if (!e) {
          e = { length: 0, ended: false };
          this.#emitted.set(part.serial, e);
          const toolName = typeof part.headers.toolName === 'string' ? part.headers.toolName : 'unknown';
          out.push({
            ...readMeta(part.headers),
            type: 'tool-input-start',
            toolCallId,
            toolName,
          } as UIMessageChunk);
        }
        if (part.text.length > e.length) {
          out.push({ type: 'tool-input-delta', toolCallId, inputTextDelta: part.text.slice(e.length) });
          e.length = part.text.length;
        }
        return true;
      }
      case 'chunk': {
        if (e) return true;
        if (!part.chunk) return false; // a large chunk still arriving as JSON text: later parts wait
        this.#emitted.set(part.serial, { length: 0, ended: true });
        const type = part.chunk.type;
        if (type !== 'start' && type !== 'finish' && type !== 'abort') out.push(part.chunk);
        return true;
      }
    }
  }
}
