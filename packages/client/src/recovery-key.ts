/**
 * Recovery keys (ARCHITECTURE.md §5 "Recovery across reload"): what a new client instance needs to continue
 * where an old one stopped — the old `connectionKey` (to keep the connection's identity within
 * `connectionStateTtl`) and each channel's position (to resume the logs, for as long as they are
 * retained). Encoded as base64url JSON so it fits in a URL, `sessionStorage` or a cookie.
 */
import { isSerial } from '@mooring/protocol';
import { MooringError } from './errors.ts';

export interface RecoveryState {
  /** The previous connection's key, '' when it never connected. */
  connectionKey: string;
  /** Channel name → position ('' for a channel attached while it had no log yet). */
  channels: Record<string, string>;
  /** When the key was made, ms since 1970. */
  savedAt: number;
}

const VERSION = 1;

export function encodeRecoveryKey(state: RecoveryState): string {
  const json = JSON.stringify({ v: VERSION, k: state.connectionKey, c: state.channels, t: state.savedAt });
  return toBase64Url(json);
}

/** Decodes a recovery key; throws a `bad_request` MooringError when it is not one. */
export function decodeRecoveryKey(key: string): RecoveryState {
  let value: unknown;
  try {
    value = JSON.parse(fromBase64Url(key));
  } catch {
    throw invalid('it is not base64url JSON');
  }
  if (typeof value !== 'object' || value === null) throw invalid('it is not an object');
  const { v, k, c, t } = value as Record<string, unknown>;
  if (v !== VERSION) throw invalid(`unknown version ${JSON.stringify(v)}`);
  if (typeof k !== 'string' || typeof t !== 'number' || typeof c !== 'object' || c === null) {
    throw invalid('fields are missing');
  }
  const channels: Record<string, string> = {};
  for (const [name, position] of Object.entries(c)) {
    if (typeof position !== 'string' || (position !== '' && !isSerial(position))) {
      throw invalid(`channel ${name} has no valid position`);
    }
    channels[name] = position;
  }
  return { connectionKey: k, channels, savedAt: t };
}

function invalid(why: string): MooringError {
  return new MooringError(
    'bad_request',
    `invalid recovery key (${why}); pass the string returned by client.recoveryKey(), or start without one`,
  );
}

function toBase64Url(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): string {
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
  return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
}
