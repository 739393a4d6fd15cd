/**
 * The official Durable Streams conformance suite on the memory, the SQLite and the Redis store (run-conformance.ts),
 * one after the other: two suites at once on a loaded machine made its 10 MB upload test fail with a
 * network error (not understood yet; each passes alone).
 */
import { test } from 'node:test';
import { redisSkipReason } from '@mooring/testkit';
import { runConformance } from './run-conformance.ts';

test('Durable Streams conformance suite passes on the memory store', { timeout: 240_000 }, () =>
  runConformance('memory'),
);

test('Durable Streams conformance suite passes on the sqlite store', { timeout: 240_000 }, () =>
  runConformance('sqlite'),
);

test(
  'Durable Streams conformance suite passes on the redis store',
  { timeout: 240_000, skip: redisSkipReason() || false },
  () => runConformance('redis'),
);
