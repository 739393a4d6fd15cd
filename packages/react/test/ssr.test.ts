// Server rendering: importing @mooring/react (and /chat) on the server touches no browser global,
// and rendering a tree that uses every hook gives the server snapshots and connects nothing.
// Runs in its own process with no DOM (no helpers/dom.ts here).
import assert from 'node:assert/strict';
import { test } from 'node:test';

const BROWSER_GLOBALS = [
  'window',
  'document',
  'navigator',
  'location',
  'localStorage',
  'sessionStorage',
  'WebSocket',
  'EventSource',
  'XMLHttpRequest',
  'addEventListener',
  'self',
] as const;

test('importing @mooring/react on the server touches no browser global', async () => {
  // React and the AI SDK are the application's; what is measured is what our modules do on import
  await import('react');
  await import('@ai-sdk/react');
  await import('@mooring/ai');
  await import('@mooring/client');
  const touched: string[] = [];
  const g = globalThis as Record<string, unknown>;
  const saved = new Map<string, PropertyDescriptor | undefined>();
  for (const name of BROWSER_GLOBALS) {
    saved.set(name, Object.getOwnPropertyDescriptor(globalThis, name));
    Object.defineProperty(globalThis, name, {
      configurable: true,
      get() {
        touched.push(name);
        return undefined;
      },
    });
  }
  try {
    const index = await import('../src/index.ts');
    const chat = await import('../src/chat.ts');
    assert.equal(typeof index.MooringProvider, 'function');
    assert.equal(typeof chat.useMooringChat, 'function');
  } finally {
    for (const [name, descriptor] of saved) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete g[name];
    }
  }
  assert.deepEqual(touched, [], `importing touched ${touched.join(', ')}`);
});

test('renderToString with every hook: server snapshots, no client made', async () => {
  const { createElement } = await import('react');
  const { renderToString } = await import('react-dom/server');
  const { ConnectionStatus, MooringProvider, useChannel, useConnectionState, usePresence, useSession } =
    await import('../src/index.ts');
  const { useMooringChat } = await import('../src/chat.ts');
  function Page() {
    const connection = useConnectionState();
    const channel = useChannel('chat:lobby');
    const presence = usePresence('chat:lobby', { data: { device: 'server' } });
    const session = useSession('session:ssr');
    const chat = useMooringChat({ channel: 'session:ssr' });
    return createElement(
      'p',
      null,
      `${connection.state}|${channel.messages.length}|${presence.members.length}|${session.view.length}|${session.settled}|${chat.messages.length}|${chat.status}`,
    );
  }
  const html = renderToString(
    createElement(
      MooringProvider,
      {
        // no credentials: making a client from these throws, so rendering proves none was made
        options: { url: 'http://127.0.0.1:9' },
      },
      createElement(ConnectionStatus),
      createElement(Page),
    ),
  );
  assert.match(html, /initialized\|0\|0\|0\|false\|0\|ready/);
  assert.match(html, /data-state="initialized"/);
});
