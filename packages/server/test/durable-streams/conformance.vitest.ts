/**
 * The official Durable Streams conformance suite, run by vitest (its own test runner) against the
 * server named by CONFORMANCE_TEST_URL; started by conformance.test.ts, which holds the server.
 * Fork tests are excluded by name there (forks are not implemented yet, PROTOCOL.md §16.9).
 */
import { runConformanceTests } from '@durable-streams/server-conformance-tests';

const baseUrl = process.env.CONFORMANCE_TEST_URL;
if (!baseUrl) throw new Error('CONFORMANCE_TEST_URL is required (run conformance.test.ts)');
runConformanceTests({ baseUrl, longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? 20_000) });
