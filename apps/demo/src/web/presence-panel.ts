/**
 * "Who's here": this page enters the session channel's presence with a short device label
 * (`usePresence` with `data`: entered once while mounted, even under StrictMode), and the list shows
 * the members — this page (marked "(you)": its member has the page's own connection id), the
 * session's other tabs and devices, and the assistant (the agent enters as `{ role: 'assistant' }`).
 */
import type { PresenceMember } from '@mooring/protocol';
import { usePresence } from '@mooring/react';
import type { ReactNode } from 'react';
import { createElement as h, useEffect, useState } from 'react';

export function PresencePanel({ channel }: { channel: string }): ReactNode {
  const [since] = useState(() => Date.now());
  const presence = usePresence(channel, { data: { device: deviceLabel(navigator.userAgent), since } });
  // a closing or reloading tab leaves at once (best effort), instead of after the server's grace
  const { leave } = presence;
  useEffect(() => {
    const onPageHide = () => {
      leave().catch(() => {});
    };
    window.addEventListener('pagehide', onPageHide);
    return () => window.removeEventListener('pagehide', onPageHide);
  }, [leave]);
  const own = presence.self;
  const sorted = [...presence.members].sort(
    (a, b) => rank(a, own) - rank(b, own) || a.timestamp - b.timestamp,
  );
  return h(
    'ul',
    { id: 'presence', className: 'presence', 'data-count': sorted.length },
    sorted.map((m) => {
      const data = (m.data ?? {}) as { device?: unknown; role?: unknown; since?: unknown };
      const assistant = data.role === 'assistant';
      const you = m.connectionId === own;
      const joined = typeof data.since === 'number' ? data.since : m.timestamp;
      return h(
        'li',
        {
          key: m.connectionId,
          'data-kind': assistant ? 'assistant' : 'user',
          'data-connection-id': m.connectionId,
          'data-you': you ? 'true' : undefined,
        },
        h(
          'span',
          { className: 'who' },
          assistant ? 'assistant' : typeof data.device === 'string' ? data.device : m.clientId,
        ),
        you ? [' ', h('b', { key: 'you' }, '(you)')] : null,
        h(
          'small',
          null,
          `${assistant ? 'agent' : m.clientId} · since ${new Date(joined).toLocaleTimeString()}`,
        ),
      );
    }),
  );
}

function rank(m: PresenceMember, own: string | undefined): number {
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
