/**
 * The page's side of the demo backend: `POST /api/session` (join or create a session, get a token
 * for it — the client's `authCallback` calls it again to renew) and `POST /api/chaos` (break this
 * page's own connection on purpose). The shapes are the backend's own (type-only imports: nothing
 * of the server is bundled into the page).
 */
import type { Fault } from '../chaos-proxies.ts';
import type { SessionGrant } from '../session-api.ts';

export type { Fault, SessionGrant };

export async function requestSession(request: {
  sessionId?: string;
  clientId?: string;
}): Promise<SessionGrant> {
  const response = await fetch('/api/session', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request),
  });
  if (!response.ok)
    throw new Error(`POST /api/session answered ${response.status}: ${await response.text()}`);
  return (await response.json()) as SessionGrant;
}

export async function requestFault(clientId: string, fault: Fault, seconds?: number): Promise<void> {
  const response = await fetch('/api/chaos', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(seconds === undefined ? { clientId, fault } : { clientId, fault, seconds }),
  });
  if (!response.ok) throw new Error(`POST /api/chaos answered ${response.status}: ${await response.text()}`);
}
