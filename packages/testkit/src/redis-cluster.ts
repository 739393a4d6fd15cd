/**
 * A real Redis Cluster for tests: `masters` redis-server processes with `cluster-enabled yes`, joined
 * with `redis-cli --cluster create` (no replicas), ready when every node reports `cluster_state:ok`.
 * The URL is Mooring's cluster form, `redis+cluster://host:port,host:port,…`.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { type RedisServer, redisServerPath, startRedis } from './redis-server.ts';

const run = promisify(execFile);

export interface RedisCluster {
  /** `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,…` */
  readonly url: string;
  readonly nodes: RedisServer[];
  /** Kills every node and removes their directories. */
  close(): Promise<void>;
}

/** The redis-cli binary next to redis-server, or undefined. */
export function redisCliPath(): string | undefined {
  const server = redisServerPath();
  if (!server) return undefined;
  const cli = join(dirname(server), 'redis-cli');
  return existsSync(cli) ? cli : undefined;
}

export async function startRedisCluster(options: { masters?: number } = {}): Promise<RedisCluster> {
  const cli = redisCliPath();
  if (!cli) throw new Error('redis-cli is not installed (it comes with redis-server)');
  const count = options.masters ?? 3;
  const nodes: RedisServer[] = [];
  const close = async () => {
    await Promise.all(nodes.map((n) => n.close()));
  };
  try {
    for (let i = 0; i < count; i++) {
      nodes.push(
        await startRedis({
          maxPort: 55_535,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            '5000',
          ],
        }),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run(cli, ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
      timeout: 30_000,
    });
    const deadline = performance.now() + 30_000;
    for (const node of nodes) {
      while (!(await node.command('CLUSTER', 'INFO')).includes('cluster_state:ok')) {
        if (performance.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return { url: `redis+cluster://${addresses.join(',')}`, nodes, close };
  } catch (err) {
    await close();
    throw err;
  }
}
