/**
 * `npm run test:unit`: every test file of the repository through Node's test runner, two at a time,
 * the longest first.
 *
 * `node --test` runs its files in name order, which put the longest file (tests/consumer.test.ts,
 * packing and installing every package: about two minutes) last, alone on one core while the other
 * sat idle. Started first, the long files overlap the many short ones, and the run ends when the
 * short ones do. The order does not change what runs: every file is still its own process, with the
 * watchdog (scripts/test-watchdog.ts) loaded into it.
 *
 * Usage: node scripts/run-tests.ts [file…]   (no files: every test file of the repository)
 * At the end it prints the slowest files, so this list can follow what a run measured.
 */
import { globSync } from 'node:fs';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';

const PATTERNS = ['packages/*/test/**/*.test.ts', 'apps/*/test/**/*.test.ts', 'tests/**/*.test.ts'];

/**
 * The longest files, longest first: what the runner's closing list said in the CI runs of 2026-12-07
 * (seconds from a file's start to its end on the 2-core machine; the ranges span a quiet and a
 * loaded run). Files not listed follow, in name order.
 */
const LONGEST_FIRST = [
  'packages/server/test/durable-streams/conformance.test.ts', // 127–255 (three stores)
  'apps/demo/test/demo.e2e.test.ts', // 74–144
  'packages/server/test/large-reads.test.ts', // 35–137
  'apps/demo/test/demo-features.e2e.test.ts', // 50–101
  'packages/server/test/redis-nodes.test.ts', // 47–96
  'tests/consumer.test.ts', // 38–77
  'packages/react/test/session-chat.test.ts', // ~64
  'packages/server/test/cli.test.ts', // 16–52
  'packages/server/test/inbound-budget.test.ts', // 22–48
  'packages/server/test/sqlite-store.test.ts', // ~41
  'packages/ai/test/redis-node-loss.test.ts', // ~36
  'packages/server/test/lease-expiry-race.test.ts', // ~24
  'packages/server/test/durable-streams/stream-store.test.ts', // ~18
  'packages/client/test/auth.integration.test.ts', // ~18
  'packages/server/test/redis-trouble.test.ts', // ~16
  'packages/ai/test/soak-short.test.ts', // ~14
  'packages/ai/test/agent-connection-faults.test.ts', // ~14
  'packages/ai/test/operation-queue-chaos.test.ts', // ~13
];

const FILE_TIMEOUT_MS = 180_000; // per test, as `--test-timeout`
const CONCURRENCY = 2; // the CI machine's cores

function testFiles(args: string[]): string[] {
  if (args.length > 0) return args;
  const all = [...new Set(PATTERNS.flatMap((pattern) => globSync(pattern)))]
    .filter((file) => !file.includes('/node_modules/'))
    .sort();
  const known = new Set(all);
  const first = LONGEST_FIRST.filter((file) => known.has(file));
  const rest = all.filter((file) => !first.includes(file));
  return [...first, ...rest];
}

const files = testFiles(process.argv.slice(2));
const durations = new Map<string, number>();
let failed = false;

const stream = run({
  files,
  concurrency: CONCURRENCY,
  timeout: FILE_TIMEOUT_MS,
  execArgv: ['--import', './scripts/test-watchdog.ts'],
});
stream.on('test:summary', (event) => {
  // the run's own summary (not a file's): what `node --test` exits non-zero on
  if (event.file === undefined && !event.success) failed = true;
});
stream.on('test:complete', (event) => {
  // the file itself: the runner's test named by the file's path, from its process's start to its end
  if (event.nesting !== 0 || event.file === undefined || !event.file.endsWith(event.name)) return;
  durations.set(event.file, event.details.duration_ms);
});
stream.compose(spec).pipe(process.stdout);
stream.on('end', () => {
  const slowest = [...durations]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(
      ([file, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${file.replace(`${process.cwd()}/`, '')}`,
    );
  process.stdout.write(`\nslowest test files:\n${slowest.join('\n')}\n`);
  if (failed) process.exitCode = 1;
});
