/**
 * A browser page that uses the AI SDK's `useChat` with a chat made by `@mooring/ai`'s `mooringChat`
 * (React, react-dom, `@ai-sdk/react`, `ai`, `@mooring/client`, `@mooring/ai`), bundled from the built
 * packages and minified as a user's bundler would: the Mooring part brings no zod (the AI SDK brings
 * its own; what is checked is that none comes through Mooring), and the page holds ONE copy of `ai`
 * (`ai` is a peer dependency of `@mooring/ai`).
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { buildStale } from '../scripts/build.ts';
import { bundle, KB } from './support/bundle.ts';

const PAGE = `
  import { createElement, useMemo } from 'react';
  import { createRoot } from 'react-dom/client';
  import { Chat, useChat } from '@ai-sdk/react';
  import { lastAssistantMessageIsCompleteWithToolCalls } from 'ai';
  import { Mooring } from '@mooring/client';
  import { mooringChat, UserSession } from '@mooring/ai';
  const client = new Mooring({ url: location.origin, authUrl: '/token' });
  const session = new UserSession({ channel: client.channels.get('session:x', { start: true }) });
  function Page() {
    const chat = useMemo(() => mooringChat(Chat, { session, sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithToolCalls }), []);
    const { messages, sendMessage, stop, status } = useChat({ chat, resume: true });
    return createElement('main', { onClick: () => (status === 'streaming' ? stop() : sendMessage({ text: 'hi' })) }, messages.length);
  }
  createRoot(document.body).render(createElement(Page));
`;

describe('a useChat page', () => {
  before(() => {
    buildStale();
  });

  test('useChat + mooringChat: no zod through Mooring, one copy of `ai`, bundled from dist', async () => {
    const whole = await bundle(PAGE, []);
    const ours = await bundle(PAGE, ['react', 'react-dom', 'react-dom/client', 'ai', '@ai-sdk/react']);
    process.stderr.write(
      `  useChat page: ${(whole.minified / KB).toFixed(1)} KB min, ${(whole.gzipped / KB).toFixed(1)} KB min+gz; ` +
        `Mooring part ${(ours.minified / KB).toFixed(1)} KB min, ${(ours.gzipped / KB).toFixed(1)} KB min+gz\n`,
    );
    assert.ok(!ours.inputs.some((i) => i.includes('node_modules/zod/')), 'zod comes through Mooring');
    assert.ok(!ours.inputs.some((i) => /\/src\//.test(i)), 'bundled from dist, as users get it');
    const aiCopies = new Set(
      whole.inputs
        .filter((i) => /node_modules\/(.*\/)?ai\/dist\//.test(i))
        .map((i) => i.replace(/\/dist\/.*/, '')),
    );
    assert.deepEqual([...aiCopies], ['node_modules/ai'], 'one copy of `ai` in the page');
    assert.ok(ours.gzipped <= 60 * KB, `the Mooring part is ${ours.gzipped} bytes min+gz`);
  });
});
