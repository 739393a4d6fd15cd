/**
 * The demo page as a React app: `<MooringProvider>` with a client that gets its tokens from the demo
 * backend, and a chat built on `useMooringChat` — `useChat` from `@ai-sdk/react`, unchanged apart
 * from its transport — plus `useSession` data (run status, alternatives, handover), presence, the
 * delivery panel and the network chaos panel.
 */
import type { MooringOptions } from '@mooring/client';
import { MooringProvider, useConnectionState } from '@mooring/react';
import { useMooringChat } from '@mooring/react/chat';
import type { ReactNode } from 'react';
import { createElement as h, useCallback, useEffect, useState } from 'react';
import { Conversation } from './conversation.ts';
import { ConnectionBadge, DeliveryPanel } from './delivery-panel.ts';
import { PresencePanel } from './presence-panel.ts';
import type { SessionGrant } from './session-grant.ts';
import { requestSession } from './session-grant.ts';
import { ChaosPanel, OperatorPanel } from './side-panels.ts';

const SUGGESTIONS = [
  "What's the weather in Lisbon today?",
  'How does Mooring keep this answer when I reload?',
  'Tell me a story about harbours.',
  'Book a table for two tonight.',
];

export function App({ grant }: { grant: SessionGrant }): ReactNode {
  // read once by the provider: the client asks for tokens when it connects and renews them before
  // they expire; asking the demo backend also makes sure the session's agent listens
  const [holder] = useState(() => ({ current: grant }));
  const [options] = useState<MooringOptions>(() => ({
    url: grant.mooringUrl,
    idleGrace: 3_000, // with the demo's 5 s heartbeats: a blackholed connection is noticed in ~8 s
    authCallback: async ({ reason }) => {
      const fresh =
        reason === 'connect' && holder.current.expiresAt - Date.now() > 30_000
          ? holder.current
          : await requestSession({ sessionId: grant.sessionId, clientId: grant.clientId });
      holder.current = fresh;
      return { token: fresh.token, expiresAt: fresh.expiresAt };
    },
  }));
  return h(MooringProvider, { options }, h(Chat, { grant }));
}

function Chat({ grant }: { grant: SessionGrant }): ReactNode {
  const chat = useMooringChat({
    channel: grant.channel,
    session: { sharedSelection: true, clientId: grant.clientId },
  });
  const { session } = chat;
  const [input, setInput] = useState('');
  const [error, setError] = useState<string | undefined>();
  const report = useCallback(
    (err: unknown) => setError(err instanceof Error ? err.message : String(err)),
    [],
  );
  const act = (action: () => Promise<unknown>) => () => {
    setError(undefined);
    action().catch(report);
  };
  useWakeAgentOnReconnect(grant);

  const running = session.running.length > 0;
  const hasAnswer = chat.messages.some((m) => m.role === 'assistant');
  useEffect(() => {
    document.body.dataset.running = String(running);
  }, [running]);
  useEffect(() => {
    if (session.settled) document.body.dataset.ready = 'true';
  }, [session.settled]);

  const submit = (text: string) => {
    const prompt = text.trim();
    if (prompt === '' || running) return;
    setInput('');
    setError(undefined);
    chat.sendMessage({ text: prompt }).catch(report);
  };
  const shownError = error ?? chat.error?.message ?? session.error?.message;

  return h(
    'div',
    { className: 'page' },
    h(
      'header',
      { className: 'top' },
      h(
        'div',
        { className: 'brand' },
        h('strong', null, 'Mooring'),
        ' demo ',
        h(
          'span',
          { className: 'tagline' },
          'a chat whose answers survive reloads, network drops and device switches',
        ),
      ),
      h(ConnectionBadge),
    ),
    h(
      'main',
      { className: 'layout' },
      h(
        'section',
        { className: 'chat' },
        session.holder.holder === 'human'
          ? h(
              'p',
              { id: 'handover-banner', className: 'banner' },
              `A human operator (${session.holder.operator ?? 'someone'}) is answering.`,
            )
          : null,
        h(Conversation, {
          messages: chat.messages,
          view: session.view,
          settled: session.settled,
          select: (id) => act(() => session.select(id))(),
          approve: (id, approved) => act(async () => chat.addToolApprovalResponse({ id, approved }))(),
        }),
        h(
          'div',
          { id: 'empty', className: 'empty', hidden: chat.messages.length > 0 },
          h(
            'p',
            null,
            'Ask something. Every answer streams for about 15 seconds — time to reload, go offline or open a second tab.',
          ),
          h(
            'div',
            { className: 'suggestions' },
            SUGGESTIONS.map((prompt) =>
              h(
                'button',
                { key: prompt, type: 'button', 'data-prompt': prompt, onClick: () => submit(prompt) },
                prompt,
              ),
            ),
          ),
        ),
        h('p', { id: 'errors', className: 'errors', hidden: shownError === undefined }, shownError ?? ''),
        h(
          'form',
          {
            id: 'composer',
            className: 'composer',
            onSubmit: (event: { preventDefault(): void }) => {
              event.preventDefault();
              submit(input);
            },
          },
          h('textarea', {
            id: 'input',
            rows: 2,
            value: input,
            placeholder: 'Ask something… (Enter sends, Shift+Enter for a new line)',
            onChange: (e: { target: { value: string } }) => setInput(e.target.value),
            onKeyDown: (e: { key: string; shiftKey: boolean; preventDefault(): void }) => {
              if (e.key === 'Enter' && !e.shiftKey) {
                e.preventDefault();
                submit(input);
              }
            },
          }),
          h(
            'div',
            { className: 'actions' },
            h(
              'button',
              {
                id: 'regenerate',
                type: 'button',
                disabled: running || !hasAnswer,
                onClick: act(async () => chat.regenerate()),
              },
              'Regenerate',
            ),
            h(
              'button',
              { id: 'stop', type: 'button', disabled: !running, onClick: act(() => chat.stop()) },
              'Stop',
            ),
            h(
              'button',
              { id: 'send', type: 'submit', className: 'primary', disabled: running || input.trim() === '' },
              'Send',
            ),
          ),
        ),
      ),
      h(
        'aside',
        { className: 'side' },
        h(
          'section',
          null,
          h('h2', null, 'Session'),
          h(
            'dl',
            null,
            h('dt', null, 'id'),
            h(
              'dd',
              null,
              h(
                'a',
                { id: 'session-link', href: location.href, target: '_blank', rel: 'noopener' },
                h('code', { id: 'session-id' }, grant.sessionId),
              ),
            ),
            h('dt', null, 'you'),
            h('dd', null, h('code', { id: 'client-id' }, grant.clientId)),
          ),
          h(
            'button',
            {
              id: 'new-session',
              type: 'button',
              className: 'small',
              onClick: () => {
                location.hash = '';
              },
            },
            'New session',
          ),
        ),
        h(
          'section',
          null,
          h('h2', null, 'Operator'),
          h(OperatorPanel, {
            clientId: grant.clientId,
            holder: session.holder,
            handover: (to) => session.handover(to),
            reply: (text) => session.reply(text),
            report,
          }),
        ),
        h('section', null, h('h2', null, "Who's here"), h(PresencePanel, { channel: grant.channel })),
        h('section', null, h('h2', null, 'Delivery'), h(DeliveryPanel, { channel: grant.channel })),
        grant.chaos
          ? h(
              'section',
              null,
              h('h2', null, 'Network chaos'),
              h(ChaosPanel, { clientId: grant.clientId, report }),
            )
          : null,
        h(
          'section',
          { className: 'try' },
          h('h2', null, 'Try this'),
          h(
            'ol',
            null,
            h(
              'li',
              null,
              'Open the session link in a ',
              h('b', null, 'second tab'),
              ' (or another device): both stream the same answer.',
            ),
            h(
              'li',
              null,
              h('b', null, 'Reload'),
              ' in the middle of an answer: it comes back where it was and carries on.',
            ),
            h(
              'li',
              null,
              'Break the connection with the ',
              h('b', null, 'Network chaos'),
              ' buttons (or devtools → Offline) and watch it recover.',
            ),
            h(
              'li',
              null,
              'Press ',
              h('b', null, 'Stop'),
              ' on any tab: the agent stops, every tab shows ',
              h('i', null, 'cancelled'),
              '.',
            ),
            h('li', null, h('b', null, 'Regenerate'), ', then flip between answers with ‹ ›.'),
            h(
              'li',
              null,
              'Ask to ',
              h('b', null, 'book a table'),
              ': the tool asks first; approve it on any tab.',
            ),
            h(
              'li',
              null,
              h('b', null, 'Take over'),
              ' as an operator in one tab and answer the other as a human.',
            ),
          ),
        ),
      ),
    ),
  );
}

/** After a reconnect, ask the demo backend again: the demo may have restarted, and this wakes the agent. */
function useWakeAgentOnReconnect(grant: SessionGrant): void {
  const { reconnects } = useConnectionState();
  useEffect(() => {
    if (reconnects === 0) return;
    requestSession({ sessionId: grant.sessionId, clientId: grant.clientId }).catch(() => {});
  }, [reconnects, grant]);
}
