/**
 * `POST /api/session` — what the demo's backend does for a browser: pick (or join) a session, start
 * its agent, and mint a token that can do only what a chat participant needs on that one channel.
 *
 *   request  { sessionId?: string, clientId?: string }        both optional; invalid ones are replaced
 *   response { sessionId, channel, clientId, mooringUrl, token, expiresAt, chaos }
 *
 * `mooringUrl` is the page's own FaultProxy in front of Mooring when the chaos panel is on
 * (`chaos: true`, see `chaos-proxies.ts`).
 *
 * The browser calls it again before the token expires to renew it (same session and clientId).
 */
import { randomBytes } from 'node:crypto';
import { createToken } from '@mooring/server';
import type { DemoAgents } from './demo-agents.ts';

export interface SessionGrant {
  sessionId: string;
  channel: string;
  clientId: string;
  /** Where the browser connects. */
  mooringUrl: string;
  token: string;
  /** ms since 1970. */
  expiresAt: number;
  /** The network chaos panel works for this page (`POST /api/chaos`). */
  chaos: boolean;
}

export interface SessionApiOptions {
  /** The API key that signs tokens. */
  key: string;
  agents: DemoAgents;
  /** Token lifetime, ms. Default 1 h. */
  tokenTtl?: number;
  /**
   * Where a page loaded from `host` (the request's Host header) connects, for `clientId`, and
   * whether that is a chaos proxy.
   */
  mooringUrlFor(host: string | undefined, clientId: string): Promise<{ url: string; chaos: boolean }>;
}

/** What a chat participant may do on its session channel (PROTOCOL.md §14). */
export const PARTICIPANT_OPERATIONS = [
  'subscribe',
  'history',
  'publish',
  'presence',
  'append-own',
  'update-own',
] as const;

const ID = /^[A-Za-z0-9_-]{1,64}$/;

export async function grantSession(
  options: SessionApiOptions,
  body: unknown,
  host: string | undefined,
): Promise<SessionGrant> {
  const request = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  const sessionId = validId(request.sessionId) ?? randomId(10);
  const clientId = validId(request.clientId) ?? `guest-${randomId(6)}`;
  const channel = `session:${sessionId}`;
  await options.agents.ensure(channel);
  const minted = await createToken(options.key, {
    clientId,
    capability: { [channel]: PARTICIPANT_OPERATIONS },
    ttl: options.tokenTtl ?? 3_600_000,
  });
  const mooring = await options.mooringUrlFor(host, clientId);
  return {
    sessionId,
    channel,
    clientId,
    mooringUrl: mooring.url,
    token: minted.token,
    expiresAt: minted.expiresAt,
    chaos: mooring.chaos,
  };
}

export function validId(value: unknown): string | undefined {
  return typeof value === 'string' && ID.test(value) ? value : undefined;
}

function randomId(length: number): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  return [...randomBytes(length)].map((b) => alphabet[b % alphabet.length]).join('');
}
