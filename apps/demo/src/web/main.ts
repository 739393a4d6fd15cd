/**
 * The demo page's entry: joins the session named in the URL (`#s=<id>`, or a new one), then renders
 * the React app (`app.ts`) under StrictMode. Every tab and device folds the same session, so all of
 * them show the same conversation, live; a reload or a dropped network just carries on.
 */
import { createElement, StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './app.ts';
import { requestSession } from './session-grant.ts';

const CLIENT_ID_KEY = 'mooring-demo:clientId';

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
  const root = document.getElementById('root');
  if (!root) throw new Error('#root is missing from the page');
  createRoot(root).render(createElement(StrictMode, null, createElement(App, { grant })));
}

main().catch((err: unknown) => {
  const errors = document.getElementById('boot-error');
  if (errors) {
    errors.textContent = `The demo could not start: ${err instanceof Error ? err.message : String(err)}`;
    errors.hidden = false;
  }
});
