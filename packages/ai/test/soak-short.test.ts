/**
 * The chaos soak (`npm run soak`, bench/src/soak) in a short version with a fixed seed: a few AI
 * sessions through fault proxies, agents SIGKILLed and restarted with the same run ids (one killed
 * for good), the SQLite server SIGKILLed and restarted, tabs reloaded from recovery keys and from
 * the start. The soak's verifier must find every run whole in every user's conversation and every
 * chunk stream: nothing lost, duplicated, reordered or stuck.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SOAK = fileURLToPath(new URL('../../../bench/src/soak/soak.ts', import.meta.url));

interface SoakJson {
  seed: number;
  result: {
    runs: number;
    runsComplete: number;
    final: { received: number };
    streams: { received: number };
  };
  faults: Record<string, number>;
  stats: { serverKills: number; agentKills: number; reloadsRecover: number; reloadsStart: number };
}

it('the short soak loses, duplicates, reorders and strands nothing', async () => {
  const args = [
    SOAK,
    ...['--sessions', '4', '--seconds', '8', '--seed', '7', '--tokens', '30-90', '--agents', '2'],
    ...['--agent-kill-every', '3', '--server-kill-every', '5', '--reload-every', '700'],
    ...['--fault-every', '300', '--lease', '1500', '--settle', '60', '--user-proxies', '2', '--json'],
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 0, `the soak failed:\n${stdout}\n${stderr.slice(-4000)}`);
  const line = stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line, `no JSON result:\n${stdout}`);
  const json = JSON.parse(line) as SoakJson;
  assert.equal(json.seed, 7);
  // The chaos happened, and the verifier had something to check.
  assert.ok(json.stats.serverKills >= 1, 'the server was killed');
  assert.ok(json.stats.agentKills >= 2, 'agents were killed (one for good)');
  assert.ok(json.stats.reloadsRecover + json.stats.reloadsStart >= 1, 'tabs were reloaded');
  assert.ok(Object.values(json.faults).reduce((a, b) => a + b, 0) >= 10, 'network faults were injected');
  assert.ok(json.result.runsComplete >= 4, 'runs completed');
  assert.ok(json.result.final.received > 0 && json.result.streams.received > 0, 'tokens were verified');
});
