// The page's listeners (review-client finding 6): a client listens to `window`/`document` (network,
// visibility, pagehide) only while it may connect. `close()` removes them all — otherwise the page
// keeps every closed client reachable, with its channels and presence — and `connect()` adds them
// back. Played with fake `window`/`document` objects, as in a browser, and with a fake environment.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BrowserEnvironment, detectBrowserEnvironment } from '../src/browser-environment.ts';
import { fakeClient, fakeEnvironment, MemoryStorage } from './helpers/fake-client.ts';
import { flush } from './helpers/fake-transport.ts';

/** An EventTarget that counts its listeners by event type. */
function countingTarget<T extends object>(extra: T) {
  const target = new EventTarget();
  const counts = new Map<string, number>();
  const add = target.addEventListener.bind(target);
  const remove = target.removeEventListener.bind(target);
  return Object.assign(target, extra, {
    counts,
    addEventListener(type: string, listener: () => void) {
      counts.set(type, (counts.get(type) ?? 0) + 1);
      add(type, listener);
    },
    removeEventListener(type: string, listener: () => void) {
      counts.set(type, (counts.get(type) ?? 0) - 1);
      remove(type, listener);
    },
  });
}

const total = (counts: Map<string, number>) => [...counts.values()].reduce((a, b) => a + b, 0);

describe('browser environment listeners', () => {
  it("close() removes the window and document listeners; connect() adds them back (a page's real globals)", async () => {
    const g = globalThis as { window?: unknown; document?: unknown; sessionStorage?: unknown };
    const win = countingTarget({});
    const doc = countingTarget({ visibilityState: 'visible' });
    g.window = win;
    g.document = doc;
    g.sessionStorage = new MemoryStorage();
    try {
      // what a client finds when `environment` is left out: the globals above
      const environment = detectBrowserEnvironment();
      assert.ok(environment);
      const { client, connect, transports } = fakeClient({ environment, recoverOnReload: true });
      const t = await connect();
      assert.deepEqual(Object.fromEntries(win.counts), { online: 1, offline: 1, pagehide: 1 });
      assert.deepEqual(Object.fromEntries(doc.counts), { visibilitychange: 1 });

      client.close();
      t.end({ code: 1000, reason: '' });
      assert.equal(client.connection.state, 'closed');
      assert.equal(total(win.counts) + total(doc.counts), 0, 'nothing left on window or document');

      client.connect();
      assert.deepEqual(Object.fromEntries(win.counts), { online: 1, offline: 1, pagehide: 1 });
      assert.deepEqual(Object.fromEntries(doc.counts), { visibilitychange: 1 });
      await flush();
      transports.last().end({ code: 1006, reason: '' });
      assert.equal(client.connection.state, 'disconnected');
      win.dispatchEvent(new Event('online'));
      assert.equal(client.connection.state, 'connecting', 'the listeners added back work');
    } finally {
      delete g.window;
      delete g.document;
      delete g.sessionStorage;
    }
  });

  it('a client closed before it ever connected listens to nothing either, and closing twice removes nothing twice', async () => {
    let listening = 0;
    const { environment } = fakeEnvironment();
    const counting: BrowserEnvironment = {
      storage: environment.storage,
      on(event, listener) {
        listening++;
        const off = environment.on(event, listener);
        return () => {
          listening--;
          off();
        };
      },
    };
    const { client } = fakeClient({ environment: counting, autoConnect: false });
    assert.equal(listening, 3);
    client.close();
    assert.equal(client.connection.state, 'closed');
    assert.equal(listening, 0);
    client.close();
    assert.equal(listening, 0);
  });
});
