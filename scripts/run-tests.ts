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

/** The longest files, longest first (seconds in a CI run on the 2-core machine, 2026-12-07). */
const LONGEST_FIRST = [
  'tests/consumer.test.ts', // 102–128
  'apps/demo/test/demo.e2e.test.ts', // 67–112
  'apps/demo/test/demo-features.e2e.test.ts', // 47–64
  'packages/server/test/durable-streams/conformance.test.ts', // 95–128 (three stores)
  'tests/use-chat-bundle.test.ts', // 29–41
  'tests/readme-examples.test.ts', // 31–40
  'packages/server/test/cli.test.ts', // 20–36
  'packages/server/test/large-reads.test.ts', // 31–35
  'packages/server/test/inbound-budget.test.ts', // ~22
  'packages/ai/test/operation-queue-chaos.test.ts', // 11–18
  'packages/server/test/crash-durability.test.ts', // 8–18
  'packages/temporal/test/workflow-replay.test.ts', // 14–18
  'packages/client/test/auth.integration.test.ts', // ~18
  'packages/server/test/lease-crash.test.ts', // 13–17
  'packages/ai/test/soak-short.test.ts', // ~17
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
  // a file's top-level tests: their sum is about the file's time
  if (event.nesting !== 0 || event.file === undefined) return;
  durations.set(event.file, (durations.get(event.file) ?? 0) + event.details.duration_ms);
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
