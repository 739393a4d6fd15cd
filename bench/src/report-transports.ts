/**
 * Markdown for the transports scenario: Mooring over WebSocket, SSE and long-polling, a table per
 * part (fan-out, token streaming), the SSE ÷ WS and long-poll ÷ WS ratios, and notes on anything
 * that makes a row less trustworthy.
 */
import { cpuNotes, fixed, int, ms, passNotes, table, times } from './report.ts';
import type { PassResult } from './scenarios/fanout-passes.ts';
import type { TokenStreamResult } from './scenarios/token-stream.ts';
import type { TransportsResult } from './scenarios/transports.ts';

export interface TransportsReportContext {
  subscribers: number;
  rounds: number;
  inFlight: number;
  rate: number;
}

const bytes = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n)
    ? '—'
    : n < 100
      ? n.toFixed(1)
      : Math.round(n).toLocaleString('en-US');

interface Metric<T> {
  label: string;
  get: (r: T) => number | undefined;
  better: 'higher' | 'lower';
}

function ratioRows<T, M extends Metric<T>>(
  metrics: M[],
  of: (id: string, metric: M) => T | undefined,
): string[][] {
  const rows: string[][] = [];
  for (const metric of metrics) {
    const ws = of('ws', metric);
    const base = ws === undefined ? undefined : metric.get(ws);
    const ratio = (id: string): string => {
      const r = of(id, metric);
      const value = r === undefined ? undefined : metric.get(r);
      if (base === 0 && value !== undefined) return value === 0 ? '—' : 'WS: 0';
      return base === undefined || value === undefined ? '—' : times(value / base);
    };
    rows.push([metric.label, `${metric.better} is better`, ratio('sse'), ratio('longpoll')]);
  }
  return rows;
}

export function transportsMarkdown(results: TransportsResult, ctx: TransportsReportContext): string {
  const out: string[] = [];
  const notes: string[] = [];
  const modeOf = (pass: PassResult): string => {
    const mode =
      pass.mode === 'rate' ? `rate ${pass.offeredPerSec}/s` : `saturate (${ctx.inFlight} in flight)`;
    return ctx.rounds > 1 && pass.round !== undefined ? `${mode}, round ${pass.round}` : mode;
  };

  out.push(
    `### Transports, fan-out: 1 WebSocket publisher → ${int(ctx.subscribers)} subscribers on each transport, one channel, 100-byte payloads\n`,
  );
  const rows: string[][] = [];
  for (const result of results.fanout) {
    if (result.error !== undefined) notes.push(`${result.label}: **failed**: ${result.error}`);
    if (result.subscribers !== ctx.subscribers && result.error === undefined)
      notes.push(`${result.label}: only ${result.subscribers} subscribers connected`);
    for (const pass of result.passes) {
      const mode = modeOf(pass);
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
        bytes(pass.wire?.readPerDelivery),
        bytes(pass.wire?.writtenPerDelivery),
      ]);
      const where = `${result.label}, ${mode}`;
      passNotes(notes, where, pass);
    }
  }
  out.push(
    table(
      [
        'transport',
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
        'bytes recv / delivery',
        'bytes sent / delivery',
      ],
      rows,
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );

  const token = results.tokens.find((t) => t.result !== undefined)?.result;
  out.push(
    `\n### Transports, token streaming: ${token?.streams ?? '?'} concurrent responses × ${token?.tokenRate ?? '?'} tokens/s, one channel and one subscriber each\n`,
  );
  const tokenRows: string[][] = [];
  for (const t of results.tokens) {
    if (t.error !== undefined) notes.push(`${t.label}, tokens: **failed**: ${t.error}`);
    const r = t.result;
    if (r === undefined) continue;
    const label = ctx.rounds > 1 && r.round !== undefined ? `${t.label}, round ${r.round}` : t.label;
    tokenRows.push([
      label,
      int(r.sentPerSec),
      int(r.deliveredPerSec),
      ms(r.latency.p50),
      ms(r.latency.p99),
      ms(r.latency.max),
      int(r.missing),
      fixed(r.tokenChars, 1),
      bytes(r.readPerToken),
      bytes(r.writtenPerToken),
      fixed(r.serverCpu, 2),
      fixed(r.loadCpu, 2),
      fixed(r.otherCpu, 2),
    ]);
    const where = `${label}, tokens`;
    cpuNotes(notes, where, r.loadCpu, r.otherCpu);
    if (r.missing > 0) notes.push(`${where}: ${int(r.missing)} tokens missing after the drain`);
    if (r.disconnects > 0) notes.push(`${where}: ${r.disconnects} subscribers disconnected`);
    if (r.publishErrors > 0) notes.push(`${where}: ${r.publishErrors} appends refused`);
  }
  out.push(
    table(
      [
        'transport',
        'tokens sent/s',
        'tokens recv/s',
        'p50 ms',
        'p99 ms',
        'max ms',
        'missing',
        'token chars',
        'bytes recv / token',
        'bytes sent / token',
        'server CPU',
        'load-gen CPU',
        'other CPU',
      ],
      tokenRows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );

  const passOf = (id: string, mode: PassResult['mode']): PassResult | undefined =>
    results.fanout.find((r) => r.id === id)?.passes.find((p) => p.mode === mode);
  const fanoutMetrics: (Metric<PassResult> & { mode: PassResult['mode'] })[] = [
    {
      label: `fan-out: delivered msg/s at ${ctx.rate}/s`,
      mode: 'rate',
      get: (p) => p.deliveredPerSec,
      better: 'higher',
    },
    { label: `fan-out: p50 at ${ctx.rate}/s`, mode: 'rate', get: (p) => p.latency.p50, better: 'lower' },
    { label: `fan-out: p99 at ${ctx.rate}/s`, mode: 'rate', get: (p) => p.latency.p99, better: 'lower' },
    { label: `fan-out: server CPU at ${ctx.rate}/s`, mode: 'rate', get: (p) => p.serverCpu, better: 'lower' },
    {
      label: `fan-out: bytes recv / delivery at ${ctx.rate}/s`,
      mode: 'rate',
      get: (p) => p.wire?.readPerDelivery,
      better: 'lower',
    },
    {
      label: 'fan-out: delivered msg/s, saturated',
      mode: 'saturate',
      get: (p) => p.deliveredPerSec,
      better: 'higher',
    },
    {
      label: 'fan-out: deliveries / server core-s, saturated',
      mode: 'saturate',
      get: (p) => p.deliveriesPerServerCore,
      better: 'higher',
    },
    { label: 'fan-out: p50, saturated', mode: 'saturate', get: (p) => p.latency.p50, better: 'lower' },
  ];
  const tokenMetrics: Metric<TokenStreamResult>[] = [
    { label: 'tokens: p50 token → client', get: (r) => r.latency.p50, better: 'lower' },
    { label: 'tokens: p99 token → client', get: (r) => r.latency.p99, better: 'lower' },
    { label: 'tokens: bytes recv / token', get: (r) => r.readPerToken, better: 'lower' },
    {
      label: 'tokens: bytes sent / token (subscriber → server)',
      get: (r) => r.writtenPerToken,
      better: 'lower',
    },
    { label: 'tokens: server CPU', get: (r) => r.serverCpu, better: 'lower' },
  ];
  const ratios = [
    ...ratioRows<PassResult, (typeof fanoutMetrics)[number]>(fanoutMetrics, (id, metric) =>
      passOf(id, metric.mode),
    ),
    ...ratioRows<TokenStreamResult, Metric<TokenStreamResult>>(
      tokenMetrics,
      (id) => results.tokens.find((t) => t.id === id)?.result,
    ),
  ];
  out.push(
    `\nRatios (transport ÷ WebSocket):\n\n${table(['metric', '', 'SSE ÷ WS', 'long-poll ÷ WS'], ratios, ['l', 'l', 'r', 'r'])}`,
  );
  if (notes.length > 0) out.push(`\nNotes:\n${notes.map((n) => `- ${n}`).join('\n')}`);
  return out.join('\n');
}
