/**
 * The page's side of `POST /api/session`: join (or create) a session, and keep its token fresh by
 * asking again before it expires.
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

/**
 * Holds the current grant and renews it a few minutes before its token expires (and on request, e.g.
 * after a reconnect: if the demo was restarted, asking again also restarts the session's agent).
 */
export class GrantKeeper {
  #grant: SessionGrant;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(grant: SessionGrant) {
    this.#grant = grant;
    this.#schedule();
  }

  get grant(): SessionGrant {
    return this.#grant;
  }

  get token(): string {
    return this.#grant.token;
  }

  /** Asks again now: a fresh token, and the backend makes sure the session's agent runs. */
  renewNow(): void {
    clearTimeout(this.#timer);
    void this.#renew();
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  #schedule(delay?: number): void {
    const lifetime = this.#grant.expiresAt - Date.now();
    const wait = delay ?? Math.max(1_000, lifetime - Math.min(5 * 60_000, lifetime / 5));
    this.#timer = setTimeout(() => void this.#renew(), wait);
  }

  async #renew(): Promise<void> {
    try {
      const { sessionId, clientId } = this.#grant;
      this.#grant = await requestSession({ sessionId, clientId });
      this.#schedule();
    } catch {
      this.#schedule(10_000);
    }
  }
}
