/**
 * Renders results as markdown for stdout (to paste into a closing note): one table per scenario,
 * the Mooring ÷ peer ratios next to their targets, and notes on anything that makes a row less
 * trustworthy (a saturated load generator, CPU taken by other processes, missing deliveries).
 */
import type { AppendsResult } from './scenarios/appends.ts';
import type { FanoutServerResult } from './scenarios/fanout.ts';
import type { PassResult } from './scenarios/fanout-passes.ts';

/** Targets from the brief; shown beside the numbers, never enforced. */
export const TARGETS = {
  vsRawWs: 0.7,
  vsSocketIo: 1.5,
  sqliteAppendsPerSec: 50000,
  longMessageRatio: 1.2,
} as const;

/** Load-generator CPU (cores) above which its throughput is likely the bottleneck. */
export const LOAD_SATURATED = 0.9;
/** CPU (cores) used by other processes above which a row is flagged. */
export const OTHER_BUSY = 0.2;

export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
export const fixed = (n: number | null, digits: number): string =>
  n !== null && Number.isFinite(n) ? n.toFixed(digits) : '—';
export const ms = (n: number): string => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
export const times = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : '—');

/** Notes on what makes a fan-out pass less trustworthy: a busy machine, losses, refusals, stalls. */
export function passNotes(notes: string[], where: string, pass: PassResult): void {
  cpuNotes(notes, where, pass.loadCpu, pass.otherCpu);
  if (pass.missing > 0) notes.push(`${where}: ${int(pass.missing)} deliveries missing after the drain`);
  if (pass.disconnects > 0) notes.push(`${where}: ${pass.disconnects} subscribers disconnected`);
  if (pass.publisher.errors > 0) notes.push(`${where}: ${pass.publisher.errors} publishes refused`);
  if (pass.stalled) notes.push(`${where}: stalled (no message completed for 5 s), cut short`);
}

/** Notes when the load generator was near a full core, or other processes took CPU in the window. */
export function cpuNotes(notes: string[], where: string, loadCpu: number, otherCpu: number | null): void {
  if (loadCpu >= LOAD_SATURATED)
    notes.push(`${where}: load generator at ${loadCpu.toFixed(2)} cores: throughput may be capped by it`);
  if (otherCpu !== null && otherCpu >= OTHER_BUSY)
    notes.push(`${where}: other processes used ${otherCpu.toFixed(2)} cores during the window`);
}

function modeLabel(pass: PassResult, ctx: FanoutReportContext): string {
  const mode = pass.mode === 'rate' ? `rate ${pass.offeredPerSec}/s` : `saturate (${ctx.inFlight} in flight)`;
  return ctx.rounds > 1 && pass.round !== undefined ? `${mode}, round ${pass.round}` : mode;
}

export function table(header: string[], rows: string[][], align: ('l' | 'r')[]): string {
  const lines = [
    `| ${header.join(' | ')} |`,
    `|${align.map((a) => (a === 'r' ? '---:' : '---')).join('|')}|`,
  ];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

export interface FanoutReportContext {
  subscribers: number;
  rounds: number;
  inFlight: number;
  rate: number;
}

export function fanoutMarkdown(results: FanoutServerResult[], ctx: FanoutReportContext): string {
  const out: string[] = [];
  out.push(
    `### Fan-out: 1 publisher → ${int(ctx.subscribers)} subscribers, one channel, 100-byte payloads\n`,
  );
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const result of results) {
    if (result.error !== undefined) notes.push(`${result.label}: **failed**: ${result.error}`);
    if (result.subscribers !== ctx.subscribers && result.error === undefined) {
      notes.push(`${result.label}: only ${result.subscribers} subscribers connected`);
    }
    for (const pass of result.passes) {
      const mode = modeLabel(pass, ctx);
      rows.push([
        result.label,
        mode,
        int(pass.publishedPerSec),
        int(pass.deliveredPerSec),
        ms(pass.latency.p50),
        ms(pass.latency.p99),
        int(pass.missing),
        fixed(pass.serverCpu, 2),
        fixed(pass.loadCpu, 2),
        fixed(pass.otherCpu, 2),
        int(pass.deliveriesPerServerCore),
      ]);
      const where = `${result.label}, ${mode}`;
      passNotes(notes, where, pass);
    }
  }
  out.push(
    table(
      [
        'server',
        'mode',
        'published msg/s',
        'delivered msg/s',
        'p50 ms',
        'p99 ms',
        'missing',
        'server CPU',
        'load-gen CPU',
        'other CPU',
        'deliveries / server core-s',
      ],
      rows,
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );
  out.push('');
  out.push(ratiosMarkdown(results, ctx));
  for (const result of results) {
    const r = result.redis;
    if (r === undefined || r.scripts === 0) continue;
    const calls = Object.entries(r.perScript)
      .map(([name, n]) => `${name} ${n.toFixed(2)}`)
      .join(', ');
    out.push(
      `\nRedis, ${result.label} (both passes, ${int(r.scripts)} scripts: publishes, and the registry's refreshes): ${r.commandsPerScript.toFixed(2)} commands and ${r.cpuUsPerScript.toFixed(0)} µs of Redis CPU per publish (${calls}); one Redis core at this cost: ≈ ${int(r.scriptsPerCore)} publishes/s.`,
    );
  }
  if (notes.length > 0) out.push(`\nNotes:\n${notes.map((n) => `- ${n}`).join('\n')}`);
  return out.join('\n');
}

function pass(results: FanoutServerResult[], id: string, mode: PassResult['mode']): PassResult | undefined {
  return results.find((r) => r.id === id)?.passes.find((p) => p.mode === mode);
}

function ratiosMarkdown(results: FanoutServerResult[], ctx: FanoutReportContext): string {
  const metrics: {
    label: string;
    mode: PassResult['mode'];
    get: (p: PassResult) => number;
    target: boolean;
  }[] = [
    {
      label: `delivered msg/s at ${ctx.rate}/s offered`,
      mode: 'rate',
      get: (p) => p.deliveredPerSec,
      target: false,
    },
    { label: 'delivered msg/s, saturated', mode: 'saturate', get: (p) => p.deliveredPerSec, target: true },
    {
      label: 'deliveries / server core-s, saturated',
      mode: 'saturate',
      get: (p) => p.deliveriesPerServerCore,
      target: true,
    },
    {
      label: `p50 latency at ${ctx.rate}/s (lower is better)`,
      mode: 'rate',
      get: (p) => p.latency.p50,
      target: false,
    },
    {
      label: `p99 latency at ${ctx.rate}/s (lower is better)`,
      mode: 'rate',
      get: (p) => p.latency.p99,
      target: false,
    },
  ];
  const rows: string[][] = [];
  for (const mooring of ['mooring', 'mooring-sqlite']) {
    const label = mooring === 'mooring' ? 'memory' : 'SQLite';
    for (const metric of metrics) {
      const mine = pass(results, mooring, metric.mode);
      if (mine === undefined) continue;
      const ratio = (peerId: string): number => {
        const peer = pass(results, peerId, metric.mode);
        return peer === undefined ? Number.NaN : metric.get(mine) / metric.get(peer);
      };
      const vsRaw = ratio('raw-ws');
      const vsSio = ratio('socketio');
      const mark = (r: number, target: number): string =>
        !metric.target || !Number.isFinite(r) ? '' : r >= target ? ' ✓' : ' ✗';
      rows.push([
        `Mooring (${label}): ${metric.label}`,
        `${times(vsRaw)}${mark(vsRaw, TARGETS.vsRawWs)}`,
        metric.target ? `≥ ${TARGETS.vsRawWs}×` : '',
        `${times(vsSio)}${mark(vsSio, TARGETS.vsSocketIo)}`,
        metric.target ? `≥ ${TARGETS.vsSocketIo}×` : '',
      ]);
    }
  }
  if (rows.length === 0) return '_No Mooring rows: no ratios._';
  return `Ratios (Mooring ÷ peer):\n\n${table(
    ['metric', '÷ raw ws', 'target', '÷ Socket.IO', 'target'],
    rows,
    ['l', 'r', 'r', 'r', 'r'],
  )}`;
}

export function appendsMarkdown(results: AppendsResult[]): string {
  const rows: string[][] = [];
  const notes: string[] = [];
  let shape = '';
  for (const result of results) {
    if (result.error !== undefined) notes.push(`${result.store}: **failed**: ${result.error}`);
    const c = result.concurrent;
    const l = result.longMessage;
    if (c !== undefined) shape = `${c.responses} concurrent responses × ${int(c.appendsPerResponse)} appends`;
    const sqlite = result.store === 'sqlite';
    rows.push([
      result.store,
      c === undefined
        ? '—'
        : `${int(c.appendsPerSec)}${sqlite ? (c.appendsPerSec >= TARGETS.sqliteAppendsPerSec ? ' ✓' : ' ✗') : ''}`,
      c === undefined ? '—' : `${ms(c.latency.p50)} / ${ms(c.latency.p99)}`,
      l === undefined ? '—' : `${ms(l.first100Ms)} / ${ms(l.last100Ms)}`,
      l === undefined ? '—' : `${fixed(l.ratio, 2)}${l.ratio <= TARGETS.longMessageRatio ? ' ✓' : ' ✗'}`,
      l === undefined ? '—' : fixed(l.medianRatio, 2),
      l === undefined ? '—' : int(l.appendsPerSec),
      c === undefined || l === undefined ? '—' : c.verified && l.verified ? 'yes' : '**no**',
    ]);
    if (c !== undefined && !c.verified) notes.push(`${result.store}: concurrent responses read back wrong`);
    if (l !== undefined && !l.verified) notes.push(`${result.store}: long message read back wrong`);
  }
  const longAppends = results.find((r) => r.longMessage !== undefined)?.longMessage?.appends ?? 0;
  const out = [
    `### Store appends (in process, no network): ${shape}; one message of ${int(longAppends)} appends\n`,
    table(
      [
        'store',
        `appends/s (target SQLite ≥ ${int(TARGETS.sqliteAppendsPerSec)})`,
        'ack p50 / p99 ms',
        'long msg: first 100 / last 100 ms',
        `last ÷ first (≤ ${TARGETS.longMessageRatio})`,
        'median last ÷ first tenth',
        'long msg appends/s',
        'data verified',
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
    ),
  ];
  for (const result of results) {
    const r = result.redis;
    if (r === undefined || r.scripts === 0) continue;
    const calls = Object.entries(r.perScript)
      .map(([name, n]) => `${name} ${n.toFixed(2)}`)
      .join(', ');
    out.push(
      `\nRedis, concurrent appends (${int(r.scripts)} scripts): ${r.commandsPerScript.toFixed(2)} commands and ${r.cpuUsPerScript.toFixed(0)} µs of Redis CPU per append (${calls}); one Redis core at this cost: ≈ ${int(r.scriptsPerCore)} appends/s.`,
    );
  }
  if (notes.length > 0) out.push(`\nNotes:\n${notes.map((n) => `- ${n}`).join('\n')}`);
  return out.join('\n');
}
