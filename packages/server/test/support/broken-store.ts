/** A memory store whose appends to the channel `broken` fail as a store that is down would. */
import { MemoryStore } from '../../src/index.ts';

export class BrokenStore extends MemoryStore {
  override async append(...args: Parameters<MemoryStore['append']>) {
    if (args[0] === 'broken') throw new Error('disk on fire');
    return super.append(...args);
  }
}
