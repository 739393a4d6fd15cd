/**
 * The soak's verifier: the agents' transcripts against what every user ended up with.
 *
 * For each run an agent started (its transcript), the expected outcome is
 *   - the model finished (`done`):                       status complete, the whole text, once, in order
 *                                                        (or abandoned with it, when its agent was killed
 *                                                        for good right after: the run's end not stored)
 *   - its agent was killed for good before that:         status abandoned, a prefix of the text that holds
 *                                                        at least every token acknowledged as stored
 * and each user's final folded message must be exactly that. Every live chunk stream a user read
 * (one per run per client instance) must be a prefix of the text, with no token twice or out of
 * order; a stream of the last client instance must have reached the run's end (`finish`, or `abort`
 * for an abandoned run). A run not in its final state when the soak settles, an input nobody
 * answered, or a stream that never ended is *stuck*.
 */
import { readFileSync } from 'node:fs';
import type { SessionReport, TranscriptLine } from './messages.ts';
import { addCounts, checkTokens, emptyCounts, type TokenCounts, violations } from './token-check.ts';

interface RunTranscript {
  session: number;
  n: number;
  attempts: number;
  acked: number;
  done: boolean;
}

export interface VerifyResult {
  runs: number;
  runsComplete: number;
  runsAbandoned: number;
  /** Agent restarts that resumed a run (attempts beyond the first). */
  runsResumed: number;
  tokensPublished: number;
  final: TokenCounts;
  streams: TokenCounts;
  streamCount: number;
  /** Streams that ended `abort` (abandoned) while the run later completed: the run was resumed. */
  streamsEndedEarly: number;
  stuck: number;
  missingRuns: number;
  phantomRuns: number;
  extraParts: number;
  /** Sessions whose last client, entered in presence, was not in the set at the end. */
  presenceMissing: number;
  /** Live-stream holes the users' clients detected and repaired (continuity check). */
  gapsRepaired: number;
  /** Sessions whose clients used each transport. */
  transports: Record<string, number>;
  /** A few concrete violations, for the replay. */
  examples: string[];
}

export function readTranscripts(files: string[]): Map<string, RunTranscript> {
  const runs = new Map<string, RunTranscript>();
  for (const file of files) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const raw of text.split('\n')) {
      if (raw === '') continue;
      let line: TranscriptLine;
      try {
        line = JSON.parse(raw) as TranscriptLine;
      } catch {
        continue; // a line torn by a SIGKILL mid-write
      }
      let run = runs.get(line.run);
      if (line.t === 'start') {
        run ??= { session: line.session, n: line.n, attempts: 0, acked: 0, done: false };
        run.attempts++;
        runs.set(line.run, run);
      } else if (run && line.t === 'acked') run.acked = Math.max(run.acked, line.k);
      else if (run && line.t === 'done') run.done = true;
    }
  }
  return runs;
}

export function verify(
  seed: number,
  transcripts: Map<string, RunTranscript>,
  reports: SessionReport[],
  orphaned: Set<number>,
): VerifyResult {
  const result: VerifyResult = {
    runs: transcripts.size,
    runsComplete: 0,
    runsAbandoned: 0,
    runsResumed: 0,
    tokensPublished: 0,
    final: emptyCounts(),
    streams: emptyCounts(),
    streamCount: 0,
    streamsEndedEarly: 0,
    stuck: 0,
    missingRuns: 0,
    phantomRuns: 0,
    extraParts: 0,
    presenceMissing: 0,
    gapsRepaired: 0,
    transports: {},
    examples: [],
  };
  const exampleOf = (text: string) => {
    if (result.examples.length < 12) result.examples.push(text);
  };
  const example = exampleOf;
  for (const t of transcripts.values()) {
    result.tokensPublished += t.done ? t.n : t.acked;
    if (t.attempts > 1) result.runsResumed++;
  }
  const bySession = new Map(reports.map((r) => [r.index, r]));

  for (const [runId, t] of transcripts) {
    const report = bySession.get(t.session);
    const seen = report?.runs.find((r) => r.run === runId);
    if (!seen) {
      // A run whose create never got stored (its agent died at once, for good) is not a loss.
      if (!orphaned.has(t.session) || t.acked > 0 || t.done) {
        result.missingRuns++;
        example(`session ${t.session}: run ${runId} (transcript) is not in the user's conversation`);
      }
    }
  }

  for (const report of reports) {
    for (const t of report.transports) result.transports[t] = (result.transports[t] ?? 0) + 1;
    result.gapsRepaired += report.gapsRepaired;
    const via = ` [${report.transports.join(', ')}; at the end ${report.client}]`;
    const example = (text: string) => exampleOf(`${text}${via}`);
    if (report.present === false) {
      result.presenceMissing++;
      example(`session ${report.index}: the user's own presence is missing from the set at the end`);
    }
    if (report.last.startsWith('input:') && !orphaned.has(report.index)) {
      result.stuck++;
      example(`session ${report.index}: ${report.last} never answered`);
    }
    if (report.last.startsWith('not-ready:')) {
      result.stuck++;
      example(`session ${report.index}: the user's tab never got ready (${report.last})`);
    }
    const finalStatus = new Map<string, string>();
    for (const run of report.runs) {
      finalStatus.set(run.run, run.status);
      const t = transcripts.get(run.run);
      if (!t) {
        result.phantomRuns++;
        example(`session ${report.index}: run ${run.run} has no transcript`);
        continue;
      }
      const expectComplete = t.done || !orphaned.has(report.index);
      const expected = expectComplete ? 'complete' : 'abandoned';
      // An agent killed for good just after its model finished (`done`: the whole text acknowledged)
      // may not have stored the run's end yet: abandoned, its whole text, is right too.
      const endLost = t.done && orphaned.has(report.index) && run.status === 'abandoned';
      if (run.status === 'complete') result.runsComplete++;
      if (run.status === 'abandoned') result.runsAbandoned++;
      if (run.status !== expected && !endLost) {
        result.stuck++;
        example(`session ${report.index}: run ${run.run} is ${run.status}, expected ${expected}`);
      }
      if (run.textParts > 1) {
        result.extraParts++;
        example(`session ${report.index}: run ${run.run} has ${run.textParts} text parts`);
      }
      const counts = checkTokens(run.text, {
        seed,
        runId: run.run,
        length: t.n,
        required: expectComplete ? t.n : t.acked,
      });
      addCounts(result.final, counts);
      if (violations(counts) > 0)
        example(`session ${report.index}: run ${run.run} final text: ${JSON.stringify(counts)}`);
    }

    for (const stream of report.streams) {
      result.streamCount++;
      const t = transcripts.get(stream.run);
      if (!t) continue;
      const status = finalStatus.get(stream.run) ?? '';
      const last = stream.generation === report.generations - 1 && !stream.cut;
      const endedEarly = stream.terminal === 'abort' && status === 'complete';
      if (endedEarly) result.streamsEndedEarly++;
      // A stream ends at the first `abandoned` it sees (abort), even if the run is resumed later, so
      // only a stream that saw `finish` must hold the whole text; the rest must be gap-free prefixes.
      const whole = last && status === 'complete' && !endedEarly;
      const counts = checkTokens(stream.text, {
        seed,
        runId: stream.run,
        length: t.n,
        required: whole ? t.n : 0,
      });
      addCounts(result.streams, counts);
      if (violations(counts) > 0)
        example(
          `session ${report.index}: stream of ${stream.run} (client #${stream.generation}): ${JSON.stringify(counts)}`,
        );
      if (stream.textStarts > 1) {
        result.extraParts++;
        example(
          `session ${report.index}: stream of ${stream.run} started its text ${stream.textStarts} times`,
        );
      }
      if (last && stream.terminal === '') {
        result.stuck++;
        example(`session ${report.index}: stream of ${stream.run} never ended (run ${status})`);
      } else if (whole && stream.terminal !== 'finish') {
        result.stuck++;
        example(`session ${report.index}: stream of complete run ${stream.run} ended '${stream.terminal}'`);
      }
    }
  }
  return result;
}

export function totalViolations(r: VerifyResult): number {
  return (
    violations(r.final) +
    violations(r.streams) +
    r.stuck +
    r.missingRuns +
    r.phantomRuns +
    r.extraParts +
    r.presenceMissing
  );
}
