/** How the SQLite store encodes message data, and turns SQLite failures into StoreErrors. */
import type { SQLInputValue } from 'node:sqlite';
import type { JsonValue } from '@mooring/protocol';
import type { DataKind } from './operation-rules.ts';
import { StoreError } from './store.ts';

export function encodeData(data: JsonValue | undefined, kind: DataKind): SQLInputValue {
  if (data === undefined || kind === 'none') return null;
  return kind === 'json' ? JSON.stringify(data) : (data as string);
}

export function decodeData(text: string | null, kind: DataKind): JsonValue | undefined {
  if (text === null || kind === 'none') return undefined;
  return kind === 'json' ? (JSON.parse(text) as JsonValue) : text;
}

export function closedError(): StoreError {
  return new StoreError('store_unavailable', 'the SQLite store is closed');
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** SQLite primary result codes that mean "the database cannot be used right now". */
const UNAVAILABLE = new Set([5, 6, 8, 10, 13, 14, 26]); // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, NOTADB

export function toStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const errcode = (err as { errcode?: unknown }).errcode;
  const primary = typeof errcode === 'number' ? errcode & 0xff : -1;
  const code = UNAVAILABLE.has(primary) ? 'store_unavailable' : 'internal';
  return new StoreError(code, `SQLite store: ${messageOf(err)}`);
}
