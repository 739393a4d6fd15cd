/** Markdown of the AI streaming scenario (scenarios/ai-streaming.ts): one table per load, ratios to the floor. */
import type { AiResult, CatchUp } from './scenarios/ai-streaming.ts';
import type { GcPauses } from './servers/server-child.ts';
import { median } from './stats.ts';

const f = (n: number | undefined, digits = 1): string =>
  n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits);
const kb = (n: number): string => (n >= 10_000 ? `${(n / 1024).toFixed(0)} KiB` : `${Math.round(n)} B`);
const catchUp = (c: CatchUp | string | undefined): string =>
  c === undefined ? '–' : typeof c === 'string' ? c : `${kb(c.bytes)} in ${Math.round(c.ms)} ms (${c.users})`;

const LABELS: Record<string, string> = {
  floor: 'floor (AI SDK SSE, no resume)',
  'resumable-stream': '`resumable-stream` + Redis',
  'durable-streams': 'Durable Streams (reference server)',
  socketio: "Socket.IO, a team's own (connection state recovery)",
  'mooring-memory-40': 'Mooring memory, coalesce 40 ms',
  'mooring-memory-0': 'Mooring memory, coalesce 0',
  'mooring-sqlite-40': 'Mooring SQLite, coalesce 40 ms',
  'mooring-sqlite-0': 'Mooring SQLite, coalesce 0',
  'mooring-redis-40': 'Mooring Redis store, coalesce 40 ms',
  'mooring-embedded-40': 'Mooring memory, agent in the server process, coalesce 40 ms',
  'mooring-embedded-0': 'Mooring memory, agent in the server process, coalesce 0',
};

/** A Mooring system's coalescing window in ms (`mooring-memory-40` → 40); undefined for a peer. */
function windowOf(system: string): number | undefined {
  const window = /^mooring-.*-(\d+)$/.exec(system)?.[1];
  return window === undefined ? undefined : Number(window);
}

/** The first half of Mooring's latency target: p99 within 1.2 × the floor's plus the window. */
const boundOf = (window: number, floorP99: number): number => 1.2 * floorP99 + window;

/**
 * Mooring's latency target: p99 within 1.2 × the floor's plus the coalescing window, and below
 * `resumable-stream`'s (when it ran). "≤ 155.6 ✓" / "≤ 155.6 ✗ (> 155.6, ≥ rs 74.2)".
 */
function verdict(p99: number, window: number, floorP99: number, rsP99: number | undefined): string {
  const limit = boundOf(window, floorP99);
  const misses: string[] = [];
  if (p99 > limit) misses.push(`> ${f(limit)}`);
  if (rsP99 !== undefined && p99 >= rsP99) misses.push(`≥ rs ${f(rsP99)}`);
  return misses.length === 0 ? `≤ ${f(limit)} ✓` : `≤ ${f(limit)} ✗ (${misses.join(', ')})`;
}

/** The target of one run, against the floor and `resumable-stream` of the same round. */
function target(r: AiResult, floor: AiResult | undefined, resumable: AiResult | undefined): string {
  const window = windowOf(r.system);
  if (window === undefined || floor?.latency === undefined || r.latency === undefined) return '';
  return verdict(r.latency.p99, window, floor.latency.p99, resumable?.latency?.p99);
}

export function aiMarkdown(
  results: AiResult[],
  options: { rate: number; seconds: number; gapSeconds: number; appRttMs?: number; userRttMs?: number },
): string {
  const out: string[] = [];
  const loads = [...new Set(results.map((r) => r.responses))];
  for (const n of loads) {
    const atLoad = results.filter((r) => r.responses === n);
    const rounds = [...new Set(atLoad.map((r) => r.round))];
    out.push(
      `### AI token streaming: ${n} concurrent responses × ${options.rate} tokens/s, ${options.seconds} s each`,
      '',
      `Token → client is the model stub's write → the user's read. CPU is the system's own processes (app or agent + relay; Redis from INFO cpu), not the model stub's or the users'. Gap: a user closes 3 s into the answer and comes back from its position ${options.gapSeconds} s later; reload: a fresh tab joins the answer at that moment. Both: median bytes and ms until the user has every token the model had written when it reconnected (users measured).`,
    );
    if ((options.appRttMs ?? 0) > 0)
      out.push(
        '',
        `Each app is ${options.appRttMs} ms (round trip) from its store or relay — Mooring's agents from the Mooring server, \`resumable-stream\`'s app from Redis, the Durable Streams app from its server — through a delaying proxy in the load generator's process (its CPU is in the load-gen column). The floor and the agents in the server's process have no such link.`,
      );
    if ((options.userRttMs ?? 0) > 0)
      out.push(
        '',
        `Each user is ${options.userRttMs} ms (round trip) from the server it reads from, through a delaying proxy in the load generator's process (its CPU is in the load-gen column): every system's tokens pay the one-way ${(options.userRttMs ?? 0) / 2} ms, and a resume or a reload pays one such round trip per request it needs.`,
      );
    for (const round of rounds) {
      const rows = atLoad.filter((r) => r.round === round);
      if (rounds.length > 1) out.push('', `Round ${round} of ${rounds.length} (in this order):`);
      out.push('', ...roundTable(rows));
    }
    if (rounds.length > 1) out.push('', ...acrossRounds(atLoad, rounds.length));
    out.push('');
  }
  return out.join('\n');
}

/** Seconds the app's and the relay's main threads waited for a core, per 1,000 tokens, as ms. */
function waitColumn(r: AiResult): string {
  const ms = (s: number | undefined) => (s === undefined ? '–' : f(s * 1000, 0));
  return `${ms(r.coreWaitPer1000?.app)} / ${ms(r.coreWaitPer1000?.relay)}`;
}

/** Read and write system calls of the app (or agent) and of the relay, per token delivered. */
function callsColumn(r: AiResult): string {
  return `${f(r.ioCallsPerToken?.app, 2)} / ${f(r.ioCallsPerToken?.relay, 2)}`;
}

/** One run of each system: the full table, ratios and targets against the floor of the same round. */
function roundTable(rows: AiResult[]): string[] {
  const floor = rows.find((r) => r.system === 'floor' && r.latency !== undefined);
  const resumable = rows.find((r) => r.system === 'resumable-stream' && r.latency !== undefined);
  const out = [
    '| system | p50 / p99 / max ms | p99 ÷ floor | p99 target | first token p50 / p99 | model → app p99 | app → user p50 / p99 | loop delay p99 app / relay / users | GC pause ms / 1k tokens app / relay (longest) | waited for a core ms / 1k tokens app / relay | read + write system calls / token app / relay | missing | CPU-s / 1k tokens (relay) | wire bytes / token | after a 10 s gap | reload mid-answer | load-gen / other CPU (steal) |',
    '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|',
  ];
  const columns = out[1]!.split('|').length - 2;
  for (const r of rows) {
    if (r.error !== undefined || r.latency === undefined) {
      // the name, the error, then an empty cell for each column left
      out.push(`| ${LABELS[r.system] ?? r.system} | failed: ${r.error ?? '?'} |${' |'.repeat(columns - 2)}`);
      continue;
    }
    const l = r.latency;
    const ratio = floor?.latency ? l.p99 / floor.latency.p99 : Number.NaN;
    out.push(
      `| ${LABELS[r.system] ?? r.system} | ${f(l.p50)} / ${f(l.p99)} / ${f(l.max, 0)} | ${f(ratio, 2)} | ${target(r, floor, resumable)} | ${f(r.firstToken?.p50)} / ${f(r.firstToken?.p99)} | ${f(r.modelToApp?.p99)} | ${f(r.appToUser?.p50)} / ${f(r.appToUser?.p99)} | ${f(r.loopP99?.app)} / ${f(r.loopP99?.relay)} / ${f(r.loopP99?.users)} | ${gcColumn(r)} | ${waitColumn(r)} | ${callsColumn(r)} | ${r.missing} | ${f(r.cpuPer1000, 3)} (${f(r.relayCpuPer1000, 3)}) | ${f(r.bytesPerToken, 1)} | ${catchUp(r.gap)} | ${catchUp(r.reload)} | ${f(r.loadCpu, 2)} / ${r.otherCpu === null || r.otherCpu === undefined ? '–' : f(r.otherCpu, 2)}${r.stealCpu ? ` (${f(r.stealCpu, 2)})` : ''} |`,
    );
  }
  return out;
}

/**
 * Every round side by side: each system's p99 per round and the median, the target against the
 * medians (1.2 × the floor's median p99 + the window, below `resumable-stream`'s median), and in
 * how many rounds each half of it held against that round's own floor and `resumable-stream`.
 */
function acrossRounds(results: AiResult[], rounds: number): string[] {
  const out = [
    `Across the ${rounds} rounds (p99 ms per round; the medians judged against the floor's and \`resumable-stream\`'s medians, each round against its own):`,
    '',
    '| system | p99 per round | median p99 | target on the medians | rounds within 1.2 × floor + window | rounds below `resumable-stream` | median CPU-s / 1k tokens |',
    '|---|---|---:|---|---:|---:|---:|',
  ];
  const p99Of = (system: string, round?: number): number[] =>
    results
      .filter(
        (r) => r.system === system && r.latency !== undefined && (round === undefined || r.round === round),
      )
      .map((r) => r.latency!.p99);
  const floorMedian = median(p99Of('floor'));
  const rsMedian = median(p99Of('resumable-stream'));
  for (const system of new Set(results.map((r) => r.system))) {
    const runs = results.filter((r) => r.system === system && r.latency !== undefined);
    const p99s = runs.map((r) => r.latency!.p99);
    const window = windowOf(system);
    let onMedians = '';
    let within = '';
    let below = '';
    if (window !== undefined) {
      if (p99s.length > 0 && Number.isFinite(floorMedian))
        onMedians = verdict(
          median(p99s),
          window,
          floorMedian,
          Number.isFinite(rsMedian) ? rsMedian : undefined,
        );
      const count = (test: (r: AiResult) => boolean | undefined): string => {
        const judged = runs.filter((r) => test(r) !== undefined);
        return judged.length === 0 ? '–' : `${judged.filter((r) => test(r)).length} of ${judged.length}`;
      };
      within = count((r) => {
        const floor = p99Of('floor', r.round)[0];
        return floor === undefined ? undefined : r.latency!.p99 <= boundOf(window, floor);
      });
      below = count((r) => {
        const rs = p99Of('resumable-stream', r.round)[0];
        return rs === undefined ? undefined : r.latency!.p99 < rs;
      });
    }
    const cpu = median(runs.map((r) => r.cpuPer1000 ?? Number.NaN).filter(Number.isFinite));
    out.push(
      `| ${LABELS[system] ?? system} | ${p99s.map((p) => f(p)).join(', ') || 'failed'} | ${f(median(p99s))} | ${onMedians} | ${within} | ${below} | ${f(cpu, 3)} |`,
    );
  }
  return out;
}

/** GC pause time per 1,000 tokens delivered, app / relay, and the longest single pause of either. */
function gcColumn(r: AiResult): string {
  if (r.gc === undefined || !r.delivered) return '–';
  const per1000 = (pauses: GcPauses | undefined): string =>
    pauses === undefined ? '–' : f((pauses.totalMs / r.delivered!) * 1000, 2);
  const longest = Math.max(r.gc.app.maxMs, r.gc.relay?.maxMs ?? 0);
  return `${per1000(r.gc.app)} / ${per1000(r.gc.relay)} (${f(longest)})`;
}
