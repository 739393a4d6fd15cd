/**
 * Where `ControlBridge` keeps each session's position (the serial of the last message it handled), so
 * that a restarted bridge resumes after it: a control handled before the crash is not delivered again,
 * one that arrived while the bridge was down is. The file store writes a temporary file and renames
 * it over the old one, so a crash mid-write leaves the previous positions, never a torn file.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface PositionStore {
  load(channel: string): Promise<string | undefined> | string | undefined;
  save(channel: string, position: string): Promise<void> | void;
}

/** Positions in memory: for tests, or a bridge that needs no restart safety. */
export function memoryPositions(initial: Record<string, string> = {}): PositionStore & {
  readonly positions: Map<string, string>;
} {
  const positions = new Map(Object.entries(initial));
  return {
    positions,
    load: (channel) => positions.get(channel),
    save: (channel, position) => {
      positions.set(channel, position);
    },
  };
}

/** Positions in one JSON file (`{ "<channel>": "<serial>" }`), rewritten atomically on each save. */
export function filePositions(path: string): PositionStore {
  let positions: Record<string, string> | undefined;
  const read = (): Record<string, string> => {
    if (positions) return positions;
    try {
      const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
      positions = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, string>) : {};
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      positions = {};
    }
    return positions;
  };
  return {
    load: (channel) => {
      const value = read()[channel];
      return typeof value === 'string' ? value : undefined;
    },
    save: (channel, position) => {
      const next = { ...read(), [channel]: position };
      mkdirSync(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(next));
      renameSync(tmp, path);
      positions = next;
    },
  };
}
