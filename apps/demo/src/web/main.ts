/**
 * The demo page: joins the session named in the URL (`#s=<id>`, or a new one), connects to Mooring
 * with a token from the demo backend, and folds the session channel with `UserSession` — the same
 * fold on every tab and device, so all of them show the same conversation, live.
 *
 * A reload starts a fresh client that loads the session from its start (rolled up: an answer in
 * progress arrives as one message per part) and continues live; a dropped network resumes the
 * channel from its position. Either way the answer in progress just carries on.
 */
import type { ViewRun } from '@mooring/ai';
import { UserSession } from '@mooring/ai';
import { Mooring } from '@mooring/client';
import { renderConversation } from './conversation-view.ts';
import { watchDelivery } from './delivery-panel.ts';
import { watchPresence } from './presence-panel.ts';
import { requestSession } from './session-grant.ts';

const CLIENT_ID_KEY = 'mooring-demo:clientId';

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node as T;
}

async function main(): Promise<void> {
  const requested = new URLSearchParams(location.hash.slice(1)).get('s') ?? undefined;
  const savedClientId = sessionStorage.getItem(CLIENT_ID_KEY) ?? undefined;
  const grant = await requestSession({
    ...(requested === undefined ? {} : { sessionId: requested }),
    ...(savedClientId === undefined ? {} : { clientId: savedClientId }),
  });
  sessionStorage.setItem(CLIENT_ID_KEY, grant.clientId);
  history.replaceState(null, '', `#s=${grant.sessionId}`);
  window.addEventListener('hashchange', () => location.reload());
  // the client asks for tokens when it connects and renews them before they expire; asking the demo
  // backend also makes sure the session's agent is listening (it may have been restarted)
  let current = grant;
  const refresh = async () => {
    current = await requestSession({ sessionId: current.sessionId, clientId: current.clientId });
    return current;
  };
  const client = new Mooring({
    url: grant.mooringUrl,
    authCallback: async ({ reason }) => {
      const fresh =
        reason === 'connect' && current.expiresAt - Date.now() > 30_000 ? current : await refresh();
      return { token: fresh.token, expiresAt: fresh.expiresAt };
    },
  });
  let connectedBefore = false;
  client.connection.on('connected', () => {
    if (connectedBefore) refresh().catch(() => {}); // the demo may have restarted: wake the agent
    connectedBefore = true;
  });
  const channel = client.channels.get(grant.channel, { start: true });
  const session = new UserSession({ channel, sharedSelection: true, clientId: grant.clientId });

  $('session-id').textContent = grant.sessionId;
  $('client-id').textContent = grant.clientId;
  $<HTMLAnchorElement>('session-link').href = location.href;
  watchDelivery(client, channel, {
    badge: $('badge'),
    retry: $<HTMLButtonElement>('retry'),
    transport: $('transport'),
    reconnects: $('reconnects'),
    offline: $('offline-time'),
    attach: $('last-attach'),
    position: $('position'),
  });

  watchPresence(client, channel, $('presence'));

  const conversation = $('conversation');
  const input = $<HTMLTextAreaElement>('input');
  const send = $<HTMLButtonElement>('send');
  const stop = $<HTMLButtonElement>('stop');
  const regenerate = $<HTMLButtonElement>('regenerate');
  const empty = $('empty');
  const errors = $('errors');

  const report = (err: unknown) => {
    errors.textContent = err instanceof Error ? err.message : String(err);
    errors.hidden = false;
  };
  const act = (action: () => Promise<unknown>) => () => {
    errors.hidden = true;
    action().catch(report);
  };

  const render = () => {
    const view = session.view();
    const nearBottom = conversation.scrollHeight - conversation.scrollTop - conversation.clientHeight < 80;
    renderConversation(conversation, view, { select: (id) => act(() => session.select(id))() });
    if (nearBottom) conversation.scrollTop = conversation.scrollHeight;
    const running = session.running().length > 0;
    const lastRun = [...view].reverse().find((n): n is ViewRun => n.kind === 'run');
    empty.hidden = view.length > 0;
    stop.disabled = !running;
    send.disabled = running || input.value.trim() === '';
    regenerate.disabled = running || lastRun === undefined;
    document.body.dataset.running = String(running);
  };
  session.on('change', render);
  session.on('error', report);
  input.addEventListener('input', render);

  const submit = act(async () => {
    const text = input.value.trim();
    if (text === '' || session.running().length > 0) return;
    input.value = '';
    render();
    await session.send(text);
  });
  $('composer').addEventListener('submit', (event) => {
    event.preventDefault();
    submit();
  });
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      submit();
    }
  });
  stop.addEventListener(
    'click',
    act(() => session.cancel()),
  );
  regenerate.addEventListener(
    'click',
    act(async () => {
      const lastRun = [...session.view()].reverse().find((n) => n.kind === 'run');
      if (lastRun) await session.regenerate(lastRun.id);
    }),
  );
  for (const suggestion of document.querySelectorAll<HTMLButtonElement>('button[data-prompt]')) {
    suggestion.addEventListener('click', () => {
      input.value = suggestion.dataset.prompt ?? '';
      submit();
    });
  }
  $('new-session').addEventListener('click', () => {
    location.hash = '';
  });

  await session.start();
  render();
  document.body.dataset.ready = 'true';
}

main().catch((err: unknown) => {
  const errors = document.getElementById('errors');
  if (errors) {
    errors.textContent = `The demo could not start: ${err instanceof Error ? err.message : String(err)}`;
    errors.hidden = false;
  }
});
