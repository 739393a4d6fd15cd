/**
 * "Who's here": this page enters the session channel's presence with a short device label, and the
 * side panel lists the members, kept current from presence events: this page (marked "(you)": its
 * member has the page's own `connectionId`), the same session's other tabs and devices, and the
 * assistant (the agent enters as `{ role: 'assistant' }`).
 */
import type { Channel, Mooring, PresenceEvent } from '@mooring/client';

type Member = PresenceEvent['member'];

export function watchPresence(client: Mooring, channel: Channel, list: HTMLElement): void {
  const members = new Map<string, Member>();
  const render = () => {
    const own = client.connection.id;
    const sorted = [...members.values()].sort(
      (a, b) => rank(a, own) - rank(b, own) || a.timestamp - b.timestamp,
    );
    list.replaceChildren(
      ...sorted.map((m) => {
        const li = document.createElement('li');
        const data = (m.data ?? {}) as { device?: unknown; role?: unknown; since?: unknown };
        const assistant = data.role === 'assistant';
        li.dataset.kind = assistant ? 'assistant' : 'user';
        li.dataset.connectionId = m.connectionId;
        if (m.connectionId === own) li.dataset.you = 'true';
        const label = document.createElement('span');
        label.className = 'who';
        label.textContent = assistant
          ? 'assistant'
          : typeof data.device === 'string'
            ? data.device
            : m.clientId;
        li.append(label);
        if (m.connectionId === own)
          li.append(' ', Object.assign(document.createElement('b'), { textContent: '(you)' }));
        const since = typeof data.since === 'number' ? data.since : m.timestamp;
        const detail = document.createElement('small');
        detail.textContent = `${assistant ? 'agent' : m.clientId} · since ${new Date(since).toLocaleTimeString()}`;
        li.append(detail);
        return li;
      }),
    );
    list.dataset.count = String(members.size);
  };
  channel.presence
    .subscribe(({ action, member }) => {
      if (action === 'leave') members.delete(member.connectionId);
      else members.set(member.connectionId, member);
      render();
    })
    .catch(() => {});
  client.connection.on('connected', render); // a new connection identity changes which member is "you"
  channel.presence.enter({ device: deviceLabel(navigator.userAgent), since: Date.now() }).catch(() => {});
  // a closing or reloading tab leaves at once (best effort), instead of after the server's grace
  window.addEventListener('pagehide', () => {
    channel.presence.leave().catch(() => {});
  });
}

function rank(m: Member, own: string | undefined): number {
  if (m.connectionId === own) return 0;
  return (m.data as { role?: unknown } | undefined)?.role === 'assistant' ? 2 : 1;
}

/** "Chrome on Linux", "Safari on iOS", … */
export function deviceLabel(ua: string): string {
  const browser = /Edg\//.test(ua)
    ? 'Edge'
    : /Firefox\//.test(ua)
      ? 'Firefox'
      : /Chrom(e|ium)\//.test(ua)
        ? 'Chrome'
        : /Safari\//.test(ua)
          ? 'Safari'
          : 'Browser';
  const os = /Android/.test(ua)
    ? 'Android'
    : /iPhone|iPad|iPod/.test(ua)
      ? 'iOS'
      : /Mac OS X/.test(ua)
        ? 'macOS'
        : /Windows/.test(ua)
          ? 'Windows'
          : /Linux|X11/.test(ua)
            ? 'Linux'
            : 'unknown OS';
  return `${browser} on ${os}`;
}
