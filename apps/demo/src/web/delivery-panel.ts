/**
 * The connection badge and the delivery panel, from `useConnectionState()` and the session
 * channel's own events:
 *
 *   badge      connected · reconnecting… (retry in N s) · offline — retry (suspended, failed, or
 *              disconnected while the browser is offline; the button retries now)
 *   transport  websocket · sse · longpoll
 *   delivery   reconnects so far, time spent offline, and the last attach of the session channel:
 *              the history it loaded, or whether it resumed and how many messages it caught up
 *              (catch-up arrives before `attached`, rolled up: a whole answer is one message).
 */
import type { AttachResult } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import { useConnectionState, useMooring } from '@mooring/react';
import type { ReactNode } from 'react';
import { createElement as h, useEffect, useRef, useState } from 'react';

export function ConnectionBadge(): ReactNode {
  const connection = useConnectionState();
  const online = useOnline();
  const seconds = useSecondsUntil(connection.retryAt);
  const state = connection.state;
  let kind: 'connected' | 'reconnecting' | 'offline';
  let text: string;
  if (state === 'connected') {
    kind = 'connected';
    text = 'connected';
  } else if (state === 'suspended' || state === 'failed' || state === 'closed' || !online) {
    kind = 'offline';
    text = state === 'failed' ? 'failed' : 'offline';
  } else {
    kind = 'reconnecting';
    const wait =
      state === 'disconnected' && seconds !== undefined && seconds > 1 ? ` (retry in ${seconds} s)` : '';
    text =
      connection.reconnects > 0 ||
      (connection.previous !== undefined && connection.previous !== 'initialized')
        ? `reconnecting…${wait}`
        : 'connecting…';
  }
  return h(
    'div',
    { className: 'connection' },
    h(
      'span',
      {
        id: 'badge',
        className: 'badge',
        'data-state': kind,
        'data-connection': state,
        title: connection.error?.message ?? '',
      },
      text,
    ),
    h(
      'button',
      {
        id: 'retry',
        type: 'button',
        className: 'small',
        hidden: kind !== 'offline',
        onClick: () => connection.connect(),
      },
      'retry',
    ),
  );
}

export function DeliveryPanel({ channel: name }: { channel: string }): ReactNode {
  const client = useMooring();
  const connection = useConnectionState();
  const [attach, setAttach] = useState<{ text: string; resumed: boolean; caughtUp: number } | undefined>();
  const [position, setPosition] = useState('');
  const offline = useOfflineTime(connection.state);

  useEffect(() => {
    if (!client) return;
    const channel = client.channels.get(name);
    let attaches = 0;
    let caughtUp = 0;
    const offs = [
      // catch-up is delivered while the channel is attaching, before `attached`
      channel.on('statechange', ({ current }) => {
        if (current === 'attaching') caughtUp = 0;
      }),
      channel.on('attached', (result: AttachResult) => {
        attaches++;
        const messages = `${caughtUp} message${caughtUp === 1 ? '' : 's'}`;
        const text =
          attaches === 1
            ? caughtUp === 0
              ? 'new session: nothing to load'
              : `loaded the session: ${messages} (rolled up)`
            : result.resumed
              ? `resumed ✓ — caught up ${messages}`
              : `not resumed (${result.reason ?? 'no position'}) — reloaded from history`;
        setAttach({ text, resumed: result.resumed, caughtUp });
        setPosition(channel.position);
      }),
    ];
    const onMessage = (_message: Message) => {
      if (channel.state === 'attaching') caughtUp++;
      setPosition(channel.position);
    };
    channel.subscribe(onMessage).catch(() => {});
    return () => {
      for (const off of offs) off();
      channel.unsubscribe(onMessage);
    };
  }, [client, name]);

  return h(
    'dl',
    null,
    h('dt', null, 'transport'),
    h('dd', { id: 'transport' }, connection.transport ?? '—'),
    h('dt', null, 'reconnects'),
    h('dd', { id: 'reconnects' }, String(connection.reconnects)),
    h('dt', null, 'time offline'),
    h('dd', { id: 'offline-time' }, `${(offline / 1000).toFixed(1)} s`),
    h('dt', null, 'last attach'),
    h(
      'dd',
      {
        id: 'last-attach',
        'data-resumed': attach ? String(attach.resumed) : undefined,
        'data-caught-up': attach ? String(attach.caughtUp) : undefined,
      },
      attach?.text ?? '—',
    ),
    h('dt', null, 'position'),
    h('dd', null, h('code', { id: 'position' }, shortSerial(position))),
  );
}

/** Time spent not connected after the first connection, ticking while down. */
function useOfflineTime(state: string): number {
  const total = useRef(0);
  const since = useRef<number | undefined>(undefined);
  const everConnected = useRef(false);
  const [, tick] = useState(0);
  if (state === 'connected') {
    everConnected.current = true;
    if (since.current !== undefined) total.current += Date.now() - since.current;
    since.current = undefined;
  } else if (everConnected.current && since.current === undefined) since.current = Date.now();
  const down = since.current !== undefined;
  useEffect(() => {
    if (!down) return;
    const timer = setInterval(() => tick((n) => n + 1), 500);
    return () => clearInterval(timer);
  }, [down]);
  return total.current + (since.current === undefined ? 0 : Date.now() - since.current);
}

function useOnline(): boolean {
  const [online, setOnline] = useState(() => navigator.onLine !== false);
  useEffect(() => {
    const update = () => setOnline(navigator.onLine !== false);
    window.addEventListener('online', update);
    window.addEventListener('offline', update);
    return () => {
      window.removeEventListener('online', update);
      window.removeEventListener('offline', update);
    };
  }, []);
  return online;
}

function useSecondsUntil(at: number | undefined): number | undefined {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (at === undefined) return;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [at]);
  return at === undefined ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** `<epoch>.<sequence>` → `<epoch>.<sequence without leading zeros>` */
function shortSerial(serial: string): string {
  if (serial === '') return '—';
  const [epoch, sequence] = serial.split('.');
  return `${epoch}.${String(Number(sequence ?? '0'))}`;
}
