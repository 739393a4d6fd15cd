/**
 * The page's side of `POST /api/session`: join (or create) a session and get a token for it. The
 * client SDK calls it again (through `authCallback`) to renew the token before it expires.
 */

export interface SessionGrant {
  sessionId: string;
  channel: string;
  clientId: string;
  mooringUrl: string;
  token: string;
  expiresAt: number;
}

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
