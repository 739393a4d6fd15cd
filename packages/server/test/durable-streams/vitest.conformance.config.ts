// vitest settings for conformance.vitest.ts only (the rest of the repository runs on node:test)
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export default {
  test: {
    root: dirname(fileURLToPath(import.meta.url)),
    include: ['conformance.vitest.ts'],
    testTimeout: 30_000,
    fileParallelism: false,
  },
};
