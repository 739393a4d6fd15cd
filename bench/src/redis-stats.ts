/**
 * What a redis-server did, from `INFO commandstats` and `INFO cpu`: calls per command and CPU
 * seconds (user + sys, main thread and children). Two readings subtracted give the cost of what ran
 * between them — per publish or per append once divided by the number of script calls (the Redis
 * store runs one script per publish batch: FCALL, or EVALSHA where Redis refuses functions).
 */
import type { RedisServer } from '@mooring/testkit';

export interface RedisReading {
  calls: Map<string, number>;
  cpu: number;
}

export async function readRedis(redis: RedisServer): Promise<RedisReading> {
  const text = `${await redis.command('INFO', 'commandstats')}\n${await redis.command('INFO', 'cpu')}`;
  const calls = new Map<string, number>();
  for (const m of text.matchAll(/cmdstat_([a-z|_-]+):calls=(\d+)/g)) calls.set(m[1]!, Number(m[2]));
  const field = (name: string): number => Number(new RegExp(`${name}:([0-9.]+)`).exec(text)?.[1] ?? 0);
  return { calls, cpu: field('used_cpu_sys') + field('used_cpu_user') };
}

export interface RedisCost {
  /** FCALL and EVALSHA calls between the readings (one per publish batch of the Redis store). */
  scripts: number;
  /** Every command per script call (the script's own calls inside it are counted by Redis too). */
  commandsPerScript: number;
  /** Redis CPU µs per script call. */
  cpuUsPerScript: number;
  /** Calls per script call by command, the largest first. */
  perScript: Record<string, number>;
  /** Script calls per second one fully busy Redis core would run at this cost. */
  scriptsPerCore: number;
}

export function redisCost(before: RedisReading, after: RedisReading): RedisCost {
  const delta = new Map<string, number>();
  for (const [name, n] of after.calls) {
    const d = n - (before.calls.get(name) ?? 0);
    if (d > 0 && name !== 'info') delta.set(name, d);
  }
  const scripts = (delta.get('fcall') ?? 0) + (delta.get('evalsha') ?? 0);
  const total = [...delta.values()].reduce((a, b) => a + b, 0);
  const cpu = after.cpu - before.cpu;
  const perScript: Record<string, number> = {};
  for (const [name, n] of [...delta].sort((a, b) => b[1] - a[1]))
    perScript[name] = scripts > 0 ? n / scripts : n;
  return {
    scripts,
    commandsPerScript: scripts > 0 ? total / scripts : Number.NaN,
    cpuUsPerScript: scripts > 0 ? (cpu / scripts) * 1e6 : Number.NaN,
    perScript,
    scriptsPerCore: cpu > 0 ? scripts / cpu : Number.NaN,
  };
}
