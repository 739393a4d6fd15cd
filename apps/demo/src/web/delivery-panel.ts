/**
 * The connection badge and the delivery panel, driven only by the client's own events:
 *
 *   badge      connected · reconnecting… (connecting / disconnected) · offline — retry (suspended,
 *              failed, or disconnected while the browser is offline; the button retries now)
 *   transport  websocket · sse · longpoll (`connection.transport`, `transport` events)
 *   delivery   reconnects so far, time spent offline, and the last attach of the session channel:
 *              the history it loaded, or whether it resumed and how many messages it caught up
 *              (catch-up arrives before `attached`, rolled up: a whole answer is one message).
 */
import type { AttachResult, Channel, ConnectionState, Mooring } from '@mooring/client';

export interface DeliveryElements {
  badge: HTMLElement;
  retry: HTMLButtonElement;
  transport: HTMLElement;
  reconnects: HTMLElement;
  offline: HTMLElement;
  attach: HTMLElement;
  position: HTMLElement;
}

export function watchDelivery(client: Mooring, channel: Channel, ui: DeliveryElements): void {
  let everConnected = false;
  let reconnects = 0;
  let downSince: number | undefined;
  let offlineMs = 0;
  let attaches = 0;
  let caughtUp = 0;

  const showBadge = (state: ConnectionState, retryIn: number | undefined) => {
    const browserOffline = typeof navigator !== 'undefined' && navigator.onLine === false;
    let kind: 'connected' | 'reconnecting' | 'offline';
    let text: string;
    if (state === 'connected') {
      kind = 'connected';
      text = 'connected';
    } else if (state === 'suspended' || state === 'failed' || state === 'closed' || browserOffline) {
      kind = 'offline';
      text = state === 'failed' ? 'failed' : 'offline'; // next to the retry button
    } else {
      kind = 'reconnecting';
      const seconds =
        retryIn !== undefined && retryIn > 1000 ? ` (retry in ${Math.round(retryIn / 1000)} s)` : '';
      text = everConnected ? `reconnecting…${seconds}` : 'connecting…';
    }
    ui.badge.dataset.state = kind;
    ui.badge.dataset.connection = state;
    ui.badge.textContent = text;
    ui.badge.title = client.connection.errorReason?.message ?? '';
    ui.retry.hidden = kind !== 'offline';
  };

  const showOffline = () => {
    const total = offlineMs + (downSince === undefined ? 0 : Date.now() - downSince);
    ui.offline.textContent = `${(total / 1000).toFixed(1)} s`;
  };

  showBadge(client.connection.state, client.connection.retryIn);
  client.connection.on('statechange', ({ current, retryIn }) => {
    if (current === 'connected') {
      if (everConnected) reconnects++;
      everConnected = true;
      if (downSince !== undefined) offlineMs += Date.now() - downSince;
      downSince = undefined;
    } else if (everConnected && downSince === undefined) downSince = Date.now();
    ui.reconnects.textContent = String(reconnects);
    showBadge(current, retryIn);
    showOffline();
    ui.transport.textContent = client.connection.transport ?? '—';
  });
  client.connection.on('transport', ({ current }) => {
    ui.transport.textContent = current;
  });
  for (const event of ['online', 'offline'] as const)
    window.addEventListener(event, () => showBadge(client.connection.state, client.connection.retryIn));
  ui.retry.addEventListener('click', () => client.connection.connect());
  setInterval(() => {
    if (downSince !== undefined) showOffline();
  }, 500);

  // Catch-up is delivered while the channel is attaching, before `attached`.
  channel.on('statechange', ({ current }) => {
    if (current === 'attaching') caughtUp = 0;
  });
  channel.subscribe(() => {
    if (channel.state === 'attaching') caughtUp++;
    ui.position.textContent = shortSerial(channel.position);
  });
  channel.on('attached', (result: AttachResult) => {
    attaches++;
    ui.attach.dataset.resumed = String(result.resumed);
    ui.attach.dataset.caughtUp = String(caughtUp);
    const messages = `${caughtUp} message${caughtUp === 1 ? '' : 's'}`;
    if (attaches === 1)
      ui.attach.textContent =
        caughtUp === 0 ? 'new session: nothing to load' : `loaded the session: ${messages} (rolled up)`;
    else if (result.resumed) ui.attach.textContent = `resumed ✓ — caught up ${messages}`;
    else ui.attach.textContent = `not resumed (${result.reason ?? 'no position'}) — reloaded from history`;
    ui.position.textContent = shortSerial(channel.position);
  });
}

/** `<epoch>.<sequence>` → `<epoch>.<sequence without leading zeros>` */
function shortSerial(serial: string): string {
  if (serial === '') return '—';
  const [epoch, sequence] = serial.split('.');
  return `${epoch}.${String(Number(sequence ?? '0'))}`;
}
