/**
 * The soak's summary table (markdown, on stdout): what ran, what broke on purpose, and the verdict.
 */
import type { FaultKind } from './chaos.ts';
import { FAULT_KINDS } from './chaos.ts';
import type { SoakOptions } from './options.ts';
import type { VerifyResult } from './verify.ts';

export interface Summary {
  options: SoakOptions;
  result: VerifyResult;
  chaosSeconds: number;
  settleSeconds: number;
  faults: Record<FaultKind, number>;
  stats: {
    modelTokens: number;
    userTokens: number;
    inputs: number;
    agentKills: number;
    agentRestarts: number;
    serverKills: number;
    redisKills: number;
    redisFreezes: number;
    reloadsRecover: number;
    reloadsStart: number;
    agentErrors: number;
    userErrors: number;
  };
  rss: { min: number; max: number };
  serverStarts: number;
}

export function summaryTable(s: Summary): string {
  const r = s.result;
  const o = s.options;
  const rows: Array<[string, string | number]> = [
    ['seed', o.seed],
    ['store', o.store === 'redis' ? `redis, ${o.nodes} nodes on one port` : 'sqlite'],
    ['sessions', o.sessions],
    ['chaos / settle (s)', `${s.chaosSeconds.toFixed(0)} / ${s.settleSeconds.toFixed(0)}`],
    [
      'runs (complete / abandoned / resumed by a restarted agent)',
      `${r.runs} (${r.runsComplete} / ${r.runsAbandoned} / ${r.runsResumed})`,
    ],
    ['user inputs sent', s.stats.inputs],
    ['tokens emitted by the models (replays after restarts included)', s.stats.modelTokens],
    ['tokens published (stored, per transcripts)', r.tokensPublished],
    ['tokens verified in final conversations', r.final.received],
    ['tokens verified in live chunk streams', `${r.streams.received} (${r.streamCount} streams)`],
    ['**lost** (final / streams)', `${r.final.lost} / ${r.streams.lost}`],
    ['**duplicated** (final / streams)', `${r.final.duplicated} / ${r.streams.duplicated}`],
    ['**reordered** (final / streams)', `${r.final.reordered} / ${r.streams.reordered}`],
    ['**corrupt** (final / streams)', `${r.final.corrupt} / ${r.streams.corrupt}`],
    ['**stuck** (runs, inputs, streams)', r.stuck],
    [
      'runs missing / without transcript / extra text parts',
      `${r.missingRuns} / ${r.phantomRuns} / ${r.extraParts}`,
    ],
    ['**own presence missing at the end** (sessions)', r.presenceMissing],
    ['streams ended `abandoned`, run resumed later', r.streamsEndedEarly],
    ['network faults', FAULT_KINDS.map((k) => `${k} ${s.faults[k]}`).join(', ')],
    [
      o.nodes > 1 ? 'server node SIGKILLs (starts)' : 'server SIGKILLs (starts)',
      `${s.stats.serverKills} (${s.serverStarts})`,
    ],
    ...(o.store === 'redis'
      ? ([
          ['redis-server SIGKILLs (each back on its AOF, every channel in a new epoch)', s.stats.redisKills],
          ['redis-server freezes (SIGSTOP 1–8 s, then SIGCONT)', s.stats.redisFreezes],
        ] as Array<[string, number]>)
      : []),
    [
      'agent SIGKILLs (restarts; killed for good)',
      `${s.stats.agentKills} (${s.stats.agentRestarts}; ${Math.min(o.killForGood, o.agentProcesses - 1)})`,
    ],
    [
      'user reloads (recovery key / from start)',
      `${s.stats.reloadsRecover + s.stats.reloadsStart} (${s.stats.reloadsRecover} / ${s.stats.reloadsStart})`,
    ],
    ['server RSS min / max (MiB)', `${s.rss.min.toFixed(0)} / ${s.rss.max.toFixed(0)}`],
    ["live-stream holes repaired by the users' clients (continuity check)", r.gapsRepaired],
    [
      'user transports (sessions that used each)',
      Object.entries(r.transports)
        .map(([k, n]) => `${k} ${n}`)
        .join(', '),
    ],
    ['agent / user errors reported', `${s.stats.agentErrors} / ${s.stats.userErrors}`],
  ];
  return ['| soak | |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n');
}
