import { MemoryStore } from '../src/store/memory-store.ts';
import { storeConformance } from './store-conformance.ts';

storeConformance('memory', async (options) => {
  const store = new MemoryStore(options);
  return { store, cleanup: () => store.close() };
});
