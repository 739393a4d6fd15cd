/** The official Durable Streams conformance suite on the memory store (run-conformance.ts). */
import { test } from 'node:test';
import { runConformance } from './run-conformance.ts';

test('Durable Streams conformance suite passes on the memory store', { timeout: 240_000 }, () =>
  runConformance('memory'),
);
