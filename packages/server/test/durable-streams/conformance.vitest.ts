/**
 * The official Durable Streams conformance suite, run by vitest (its own test runner) against the
 * server named by CONFORMANCE_TEST_URL; started by run-conformance.ts, which holds the server.
 * Nothing is excluded (PROTOCOL.md §16).
 */
import { runConformanceTests } from '@durable-streams/server-conformance-tests';

const baseUrl = process.env.CONFORMANCE_TEST_URL;
if (!baseUrl) throw new Error('CONFORMANCE_TEST_URL is required (run conformance.test.ts)');
runConformanceTests({ baseUrl, longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? 20_000) });
