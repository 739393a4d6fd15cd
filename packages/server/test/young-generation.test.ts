/**
 * `mooring serve` caps V8's young generation (bin/mooring.js): the command re-executes itself with
 * --max-semi-space-size=16, in the same process (same pid, so a supervisor's signals still reach
 * the server), unless the user chose a size of their own or MOORING_NODE_DEFAULTS=0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/mooring.js', import.meta.url));

interface Started {
  /** What the server printed about its young generation. */
  young: string;
  /** The pid the server logged, and the pid this test spawned. */
  loggedPid: number;
  spawnedPid: number;
  /** How it ended after a SIGTERM to the spawned pid: its exit code and whether it said "stopped". */
  code: number | null;
  stopped: boolean;
}

/** Starts `mooring serve` on port 0 with the given environment, reads its banner, stops it. */
function serve(env: Record<string, string>): Promise<Started> {
  const data = mkdtempSync(join(tmpdir(), 'mooring-young-'));
  const { NODE_OPTIONS: _, MOORING_NODE_DEFAULTS: __, ...inherited } = process.env;
  const child = spawn(
    process.execPath,
    [
      '--conditions=@mooring/source',
      BIN,
      'serve',
      '--port',
      '0',
      '--store',
      'memory',
      '--data',
      data,
      '--log-level',
      'info',
    ],
    { env: { ...inherited, MOORING_KEY: 'test:secret', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  return new Promise((resolve, reject) => {
    let young: string | undefined;
    let loggedPid: number | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no banner within 20 s:\n${output}`));
    }, 20_000);
    const seen = (chunk: Buffer): void => {
      output += chunk;
      young ??= /V8 young generation: (.+)/.exec(output)?.[1]?.trim();
      const pid = /"pid":(\d+)[^\n]*"msg":"listening"/.exec(output)?.[1];
      if (pid !== undefined) loggedPid ??= Number(pid);
      if (young !== undefined && loggedPid !== undefined && child.exitCode === null && !child.killed)
        child.kill('SIGTERM');
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (young === undefined || loggedPid === undefined) {
        reject(new Error(`exited (${code}) before its banner:\n${output}`));
        return;
      }
      resolve({
        young,
        loggedPid,
        spawnedPid: child.pid ?? -1,
        code,
        stopped: /"msg":"stopped"/.test(output),
      });
    });
  });
}

describe('mooring serve and V8 young generation', { timeout: 60_000 }, () => {
  it('runs with --max-semi-space-size=16 in the process that was started, and stops on its SIGTERM', async () => {
    const started = await serve({});
    assert.equal(started.young, '--max-semi-space-size=16');
    assert.equal(started.loggedPid, started.spawnedPid, 'the server runs in the spawned process itself');
    assert.equal(started.stopped, true, 'the SIGTERM sent to the spawned pid reached the server');
    assert.equal(started.code, 0);
  });

  it('keeps a size the user chose in NODE_OPTIONS', async () => {
    const started = await serve({ NODE_OPTIONS: '--max-semi-space-size=8' });
    assert.equal(started.young, '--max-semi-space-size=8');
  });

  it("keeps Node's default with MOORING_NODE_DEFAULTS=0", async () => {
    const started = await serve({ MOORING_NODE_DEFAULTS: '0' });
    assert.equal(started.young, "Node's default");
    assert.equal(started.loggedPid, started.spawnedPid);
  });
});
