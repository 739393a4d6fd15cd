/**
 * What the new-Redis check (`runId()`) costs Redis per publish, by FCALL (the function library keeps
 * the run_id: one `INFO server` per Redis process) against EVALSHA (the fallback where Redis refuses
 * functions, and every publish before the library: one `INFO server` per call). The fallback is made
 * by renaming FCALL away on a Redis of its own (not by an ACL, whose per-command check would weigh on
 * one side only), so both run the same Mooring code.
 *
 *   node bench/src/redis-run-id-cost.ts [--appends 20000] [--pairs 2] [--paths evalsha,fcall]
 *
 * Per run: a fresh redis-server (no persistence), one channel, a create, then N one-op appends to
 * that message through `RedisStore`, each awaited before the next. Reported per run: `usec_per_call`
 * of the script command and of INFO (`INFO commandstats`: a script's own calls are counted too) and
 * Redis CPU (`INFO cpu` user + sys) per append.
 * Runs alternate EVAL, FCALL, EVAL, FCALL, … so a machine getting busier or quieter meets both.
 */
import type { NewOperation } from '@mooring/server';
import { createStore } from '@mooring/server';
import { startRedis } from '@mooring/testkit';
import { readRedis } from './redis-stats.ts';

type Path = 'evalsha' | 'fcall';

/** No FCALL command: Mooring falls back to EVALSHA at its first publish. */
const NO_FUNCTIONS = ['--rename-command', 'FCALL', ''];

function option(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at < 0 ? fallback : Number(process.argv[at + 1]);
}

/** usec and calls of one command in an `INFO commandstats` text. */
function usec(stats: string, command: string): { calls: number; usec: number } {
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+),usec=(\\d+)`).exec(stats);
  return { calls: Number(m?.[1] ?? 0), usec: Number(m?.[2] ?? 0) };
}

interface Run {
  usecPerCall: number;
  infoPerAppend: number;
  infoUsecPerCall: number;
  cpuUsPerAppend: number;
}

async function run(path: Path, appends: number): Promise<Run> {
  const redis = await startRedis(path === 'evalsha' ? { args: NO_FUNCTIONS } : {});
  const warnings: string[] = [];
  try {
    const store = await createStore({ kind: 'redis', url: redis.url }, () => Number.POSITIVE_INFINITY, {
      warn: (_detail, message) => warnings.push(message),
      error: () => {},
    });
    const opts = { maxMessageSize: 1 << 20 };
    const created = await store.append(
      'bench',
      [{ action: 'create', publisher: '', id: 'm', data: '' }],
      opts,
    );
    const serial = created.results[0]!.serial;
    const op = (i: number): NewOperation => ({
      action: 'append',
      publisher: '',
      id: `a${i}`,
      serial,
      data: 'tok ',
    });
    for (let i = 0; i < 500; i++) await store.append('bench', [op(-i - 1)], opts); // warm-up
    const statsBefore = await redis.command('INFO', 'commandstats');
    const before = await readRedis(redis);
    for (let i = 0; i < appends; i++) await store.append('bench', [op(i)], opts);
    const after = await readRedis(redis);
    const statsAfter = await redis.command('INFO', 'commandstats');
    await store.close();
    const a = usec(statsAfter, path);
    const b = usec(statsBefore, path);
    // INFO from the scripts, without the five of the readings between the two texts (each INFO is
    // counted once answered: the first text's own, then two per readRedis)
    const infoAfter = usec(statsAfter, 'info');
    const infoBefore = usec(statsBefore, 'info');
    const infoCalls = infoAfter.calls - infoBefore.calls - 5;
    if (a.calls - b.calls !== appends)
      throw new Error(`${path}: ${a.calls - b.calls} calls for ${appends} appends`);
    if ((path === 'evalsha') !== (warnings.length === 1))
      throw new Error(`${path}: warnings ${warnings.join(' | ')}`);
    return {
      usecPerCall: (a.usec - b.usec) / (a.calls - b.calls),
      infoPerAppend: infoCalls / appends,
      // (the five readings are a rounding error beside one INFO server per append)
      infoUsecPerCall: infoCalls > 0 ? (infoAfter.usec - infoBefore.usec) / (infoCalls + 5) : 0,
      cpuUsPerAppend: ((after.cpu - before.cpu) / appends) * 1e6,
    };
  } finally {
    await redis.close();
  }
}

const appends = option('appends', 20_000);
const pairs = option('pairs', 2);
console.log(`${appends} one-op appends per run, one channel; Redis µs per script call and CPU µs per append`);
console.log(
  '| run | path | usec_per_call | INFO per append | INFO usec_per_call | Redis CPU µs per append |',
);
console.log('|---|---|---:|---:|---:|---:|');
const at = process.argv.indexOf('--paths');
const paths = (at < 0 ? 'evalsha,fcall' : process.argv[at + 1]!).split(',') as Path[];
for (let pair = 1; pair <= pairs; pair++)
  for (const path of paths) {
    const r = await run(path, appends);
    console.log(
      `| ${pair} | ${path} | ${r.usecPerCall.toFixed(2)} | ${r.infoPerAppend.toFixed(2)} | ${r.infoUsecPerCall.toFixed(2)} | ${r.cpuUsPerAppend.toFixed(2)} |`,
    );
  }
