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
 *
 * After a new epoch (PROTOCOL.md §15) a kept part is the same message under the same sequence in
 * the new epoch: the stream goes on from what it emitted of it. A part seen again in another epoch
 * must still hold what was emitted of it (same kind, its text a continuation); when one does not, or
 * is gone (the new log lost it), the consumer holds text the log no longer has and no chunk can take
 * it back: the stream ends with `abort {reason: "continuity lost"}`, as when the whole run is gone.
 */
import { parseSerial, serialSeq } from '@mooring/protocol';
import type { FinishReason, UIMessageChunk } from 'ai';
import type { RunNode } from './conversation-tree.ts';
import type { PartRecord } from './wire.ts';
import { readMeta } from './wire.ts';

interface Emitted {
  kind: PartRecord['kind'];
  /** What was emitted of the part's text (its length is where the next delta starts). */
  text: string;
  ended: boolean;
  /** The chunk, for a chunk part. */
  chunk?: unknown;
}

export class RunChunkEmitter {
  /** By the part's serial (in the epoch the parts were last seen in: see `#follow`). */
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
      this.#emitted.set(part.serial, emitted(part, part.state === 'done'));
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
    if (!this.#follow(run, parts)) {
      out.push({ type: 'abort', reason: 'continuity lost' });
      this.#finished = true;
      return out;
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

  /**
   * Finds the parts emitted so far again after the log went on in a new epoch (PROTOCOL.md §15: a
   * kept part is the same message under the same sequence) and keys them by their new serials. False
   * when one is gone (the new log lost it) or no longer holds what was emitted of it. Parts emitted
   * are a prefix of the run: while the first part is one of them under the same serial, nothing
   * moved (one look-up per sync). With no part left, the run's own serial tells the log's epoch:
   * every part deleted in it, or lost with the old one.
   */
  #follow(run: RunNode, parts: readonly PartRecord[]): boolean {
    const first = parts[0];
    if (this.#emitted.size === 0 || (first !== undefined && this.#emitted.has(first.serial))) return true;
    const epoch = epochOf(parts[parts.length - 1]?.serial ?? run.serial);
    const bySeq = new Map<number, PartRecord>();
    for (const part of parts) bySeq.set(serialSeq(part.serial), part);
    for (const [serial, e] of [...this.#emitted]) {
      const seq = serialSeq(serial);
      const part = bySeq.get(seq);
      if (seq < 0 || part?.serial === serial) continue;
      if (part === undefined) {
        if (epochOf(serial) === epoch) continue; // deleted in this epoch: left as it was
        return false;
      }
      if (
        part.kind !== e.kind ||
        !part.text.startsWith(e.text) ||
        (e.ended && e.kind !== 'chunk' && part.state !== 'done') ||
        (e.kind === 'chunk' && JSON.stringify(part.chunk) !== JSON.stringify(e.chunk))
      )
        return false;
      this.#emitted.delete(serial);
      this.#emitted.set(part.serial, e);
    }
    return true;
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
          e = emitted({ ...part, text: '' }, false);
          this.#emitted.set(part.serial, e);
          const start = { type: `${part.kind}-start`, id } as UIMessageChunk & { providerMetadata?: unknown };
          if (meta.start !== undefined) start.providerMetadata = meta.start;
          out.push(start);
        }
        if (part.text.length > e.text.length) {
          out.push({
            type: `${part.kind}-delta`,
            id,
            delta: part.text.slice(e.text.length),
          } as UIMessageChunk);
          e.text = part.text;
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
          e = emitted({ ...part, text: '' }, false);
          this.#emitted.set(part.serial, e);
          const toolName = typeof part.headers.toolName === 'string' ? part.headers.toolName : 'unknown';
          out.push({
            ...readMeta(part.headers),
            type: 'tool-input-start',
            toolCallId,
            toolName,
          } as UIMessageChunk);
        }
        if (part.text.length > e.text.length) {
          out.push({ type: 'tool-input-delta', toolCallId, inputTextDelta: part.text.slice(e.text.length) });
          e.text = part.text;
        }
        return true;
      }
      case 'chunk': {
        if (e) return true;
        if (!part.chunk) return false; // a large chunk still arriving as JSON text: later parts wait
        this.#emitted.set(part.serial, emitted(part, true));
        const type = part.chunk.type;
        if (type !== 'start' && type !== 'finish' && type !== 'abort') out.push(part.chunk);
        return true;
      }
    }
  }
}

function epochOf(serial: string): string {
  return parseSerial(serial)?.epoch ?? '';
}

function emitted(part: PartRecord, ended: boolean): Emitted {
  const e: Emitted = { kind: part.kind, text: part.text, ended };
  if (part.kind === 'chunk') e.chunk = part.chunk;
  return e;
}
