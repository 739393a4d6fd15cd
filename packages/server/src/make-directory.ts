/**
 * `mkdir -p`, one level at a time. Node's `mkdirSync(path, { recursive: true })` never returns when
 * a level answers ENOENT although its parent is there, as every path under `/proc` does: it makes the
 * parent again and retries for ever, so `mooring serve --data /proc/x` hung at start. Here a level
 * is tried at most twice, the second time after its parent was made, and the second ENOENT is thrown.
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

export function makeDirectory(path: string): void {
  const absolute = resolve(path);
  if (makeOne(absolute)) return;
  const parent = dirname(absolute);
  if (parent !== absolute) makeDirectory(parent);
  if (!makeOne(absolute)) mkdirSync(absolute); // throws the ENOENT with the path in it
}

/** Makes one level; false when its parent is missing. A directory already there is made. */
function makeOne(path: string): boolean {
  try {
    mkdirSync(path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code === 'EEXIST' && statSync(path).isDirectory()) return true;
    throw err;
  }
}
