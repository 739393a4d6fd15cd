/**
 * Markdown for the streams scenario (scenarios/streams.ts): Mooring's Durable Streams endpoint beside
 * the Durable Streams reference server, with Mooring ÷ reference ratios (same store kind: memory ÷
 * memory, SQLite ÷ file-backed).
 */
import { fixed, int, ms, table, times } from './report.ts';
import type { StreamsOptions, StreamsResult } from './scenarios/streams.ts';

const PEER: Record<string, string> = { mooring: 'ds-reference', 'mooring-sqlite': 'ds-reference-file' };

export function streamsMarkdown(results: StreamsResult[], o: StreamsOptions): string {
  const byId = new Map(results.map((r) => [r.id, r]));
  const rows = results.map((r) => {
    if (r.error !== undefined) return [r.label, `failed: ${r.error}`, '', '', '', '', '', '', '', '', '', ''];
    const a = r.appends;
    const p = r.producerAppends;
    const reads = r.reads;
    return [
      r.label,
      int(a?.perSecond ?? Number.NaN),
      `${ms(a?.p50Ms ?? Number.NaN)} / ${ms(a?.p99Ms ?? Number.NaN)}`,
      fixed(a?.serverCpu ?? null, 2),
      int(p?.perSecond ?? Number.NaN),
      int(reads?.perSecond ?? Number.NaN),
      fixed(reads?.mbPerSecond ?? null, 1),
      int(reads?.bodyBytesPerCatchUp ?? Number.NaN),
      int(reads?.headerBytesPerCatchUp ?? Number.NaN),
      fixed(reads?.responsesPerCatchUp ?? null, 1),
      r.live ? `${ms(r.live.p50Ms)} / ${ms(r.live.p99Ms)} (${int(r.live.deliveries)})` : '—',
      r.watchers
        ? `${ms(r.watchers.p50Ms)} / ${ms(r.watchers.p99Ms)} (${int(r.watchers.deliveries)} of ${int(r.watchers.appends * r.watchers.watchers)}), ${fixed(r.watchers.cpuMsPerAppend, 1)}`
        : '—',
    ];
  });
  const ratios: string[] = [];
  for (const [id, peerId] of Object.entries(PEER)) {
    const m = byId.get(id);
    const peer = byId.get(peerId);
    if (!m || !peer || m.error || peer.error) continue;
    ratios.push(
      `- ${m.label} ÷ ${peer.label}: appends ${times((m.appends?.perSecond ?? 0) / (peer.appends?.perSecond ?? 0))}, ` +
        `producer appends ${times((m.producerAppends?.perSecond ?? 0) / (peer.producerAppends?.perSecond ?? 0))}, ` +
        `catch-up reads ${times((m.reads?.perSecond ?? 0) / (peer.reads?.perSecond ?? 0))}`,
    );
  }
  const data = results.find((r) => r.reads)?.reads?.dataBytesPerStream ?? o.streams * o.payloadBytes;
  return [
    `### Durable Streams: Mooring vs the reference server (${o.streams} streams × ${o.appends} appends of ${o.payloadBytes} B; ${o.readRounds} catch-up rounds; live ${o.liveSeconds} s)`,
    table(
      [
        'server',
        'appends/s',
        'append p50 / p99 (ms)',
        'server CPU (cores)',
        'producer appends/s',
        'catch-ups/s',
        'read MB/s',
        'body bytes / catch-up',
        'header bytes / catch-up',
        'responses / catch-up',
        'live p50 / p99 ms (deliveries)',
        `${o.watchers} watchers of one stream: p50 / p99 ms (deliveries), server CPU-ms per append`,
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    `A catch-up reads one stream (${int(data)} bytes of data) from -1 to its tail. One writer per stream, each waiting for its answer before the next append (so appends/s is bounded by round trips); Mooring is called with an API key, the reference without credentials.`,
    ...ratios,
  ].join('\n\n');
}
