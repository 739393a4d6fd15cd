/**
 * Checks one copy of a run's text (a user's folded message, or what one live chunk stream yielded)
 * against the scripted model, token by token:
 *
 *   duplicated  a token seen again                     (the same sequence number twice)
 *   reordered   a token after one it should precede    (first sight of i while a later j was seen)
 *   corrupt     not a token of this run at this place  (bad syntax, wrong word, beyond the run's end)
 *   lost        a token of [0, required) never seen    (required: the whole run when it must be whole,
 *                                                        else everything below the last token seen)
 *
 * Counting by sequence number keeps one fault from being reported as hundreds: a swapped pair is
 * one reordered token, not a diverging suffix.
 */
import { tokenAt } from './model-text.ts';

export interface TokenCounts {
  /** Tokens in the copy. */
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  corrupt: number;
}

export function emptyCounts(): TokenCounts {
  return { received: 0, lost: 0, duplicated: 0, reordered: 0, corrupt: 0 };
}

export function addCounts(into: TokenCounts, from: TokenCounts): void {
  into.received += from.received;
  into.lost += from.lost;
  into.duplicated += from.duplicated;
  into.reordered += from.reordered;
  into.corrupt += from.corrupt;
}

export function violations(c: TokenCounts): number {
  return c.lost + c.duplicated + c.reordered + c.corrupt;
}

export interface CheckOptions {
  seed: number;
  runId: string;
  /** Tokens the run has in all. */
  length: number;
  /** Tokens [0, required) must all be present; below the last token seen they always must. */
  required: number;
}

export function checkTokens(text: string, o: CheckOptions): TokenCounts {
  const counts = emptyCounts();
  const seen = new Set<number>();
  let max = -1;
  for (const raw of text.split(' ')) {
    if (raw === '') continue;
    counts.received++;
    const dot = raw.indexOf('.');
    const seq = dot > 0 ? Number(raw.slice(0, dot)) : Number.NaN;
    if (!Number.isInteger(seq) || seq < 0 || seq >= o.length || tokenAt(o.seed, o.runId, seq) !== `${raw} `) {
      counts.corrupt++;
      continue;
    }
    if (seen.has(seq)) counts.duplicated++;
    else if (seq < max) counts.reordered++;
    seen.add(seq);
    if (seq > max) max = seq;
  }
  const required = Math.min(o.length, Math.max(o.required, max + 1));
  for (let i = 0; i < required; i++) if (!seen.has(i)) counts.lost++;
  return counts;
}
