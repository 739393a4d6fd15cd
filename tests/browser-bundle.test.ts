/**
 * The browser bundles a user ships: `@mooring/client` alone, and `@mooring/client` + `@mooring/ai`
 * (with the user's own `ai` left out), bundled from the built packages through their `exports` as a
 * user's bundler resolves them, minified by esbuild. Holds the size budgets (min+gzip) and proves no
 * schema library (zod) reaches the browser: validation of what the server receives stays on the
 * server, in `@mooring/protocol/schemas`.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { buildStale } from '../scripts/build.ts';
import { type Bundle, bundle, KB } from './support/bundle.ts';

function report(name: string, b: Bundle, budget: number): void {
  process.stderr.write(
    `  ${name}: ${(b.minified / KB).toFixed(1)} KB min, ${(b.gzipped / KB).toFixed(1)} KB min+gz (budget ${budget / KB} KB)\n`,
  );
}

before(() => {
  buildStale();
});

describe('browser bundles', () => {
  test('@mooring/client: ≤ 30 KB min+gz, no zod, built code only', async () => {
    const b = await bundle("export * from '@mooring/client';", []);
    report('@mooring/client', b, 30 * KB);
    assert.ok(!b.inputs.some((i) => i.includes('node_modules/zod/')), 'zod is not in the client bundle');
    assert.ok(!b.inputs.some((i) => /\/src\//.test(i)), 'bundled from dist, as users get it');
    assert.ok(b.gzipped <= 30 * KB, `client bundle is ${b.gzipped} bytes min+gz`);
  });

  test('@mooring/client + @mooring/ai (without `ai`): ≤ 60 KB min+gz, no zod', async () => {
    const b = await bundle("export * from '@mooring/client'; export * from '@mooring/ai';", ['ai']);
    report('@mooring/client + @mooring/ai', b, 60 * KB);
    assert.ok(!b.inputs.some((i) => i.includes('node_modules/zod/')), 'zod is not in the bundle');
    assert.ok(b.gzipped <= 60 * KB, `client + ai bundle is ${b.gzipped} bytes min+gz`);
  });
});

describe('a React page', () => {
  // The AI SDK (`ai`, `@ai-sdk/provider-utils`) brings zod itself: what is checked is that none of
  // it comes through Mooring, and that the page holds a single `ai` (a peer dependency).
  test('a page using @mooring/react (+ /chat, react, react-dom, @ai-sdk/react): no zod from Mooring, one copy of `ai`', async () => {
    const page = `
      import { createElement } from 'react';
      import { createRoot } from 'react-dom/client';
      import { ConnectionStatus, MooringProvider, usePresence } from '@mooring/react';
      import { useMooringChat } from '@mooring/react/chat';
      function Chat() {
        const { messages, sendMessage, session } = useMooringChat({ channel: 'session:x' });
        usePresence('session:x', { data: { device: 'page' } });
        return createElement('main', { onClick: () => sendMessage({ text: 'hi' }) }, messages.length, session.view.length);
      }
      createRoot(document.body).render(
        createElement(MooringProvider, { options: { url: location.origin, authUrl: '/token' } },
          createElement(ConnectionStatus), createElement(Chat)));
    `;
    const whole = await bundle(page, []);
    const ours = await bundle(page, ['react', 'react-dom', 'react-dom/client', 'ai', '@ai-sdk/react']);
    report('React page, everything', whole, 200 * KB);
    report('React page, Mooring part (react, react-dom, ai, @ai-sdk/react external)', ours, 70 * KB);
    assert.ok(!ours.inputs.some((i) => i.includes('node_modules/zod/')), 'zod comes through Mooring');
    const aiCopies = new Set(
      whole.inputs
        .filter((i) => /node_modules\/(.*\/)?ai\/dist\//.test(i))
        .map((i) => i.replace(/\/dist\/.*/, '')),
    );
    assert.deepEqual([...aiCopies], ['node_modules/ai'], 'one copy of `ai` in the page');
    assert.ok(!ours.inputs.some((i) => /\/src\//.test(i)), 'bundled from dist, as users get it');
    assert.ok(whole.gzipped <= 200 * KB, `the whole page is ${whole.gzipped} bytes min+gz`);
    assert.ok(ours.gzipped <= 70 * KB, `the Mooring part is ${ours.gzipped} bytes min+gz`);
  });
});
