/**
 * A DOM for React Testing Library in Node: happy-dom's window, with the globals React DOM and the
 * testing library read. Import it before `@testing-library/react`. Mooring clients in these tests
 * pass `environment: null`, so they use Node's sockets and ignore this window.
 */
import { Window } from 'happy-dom';

const window = new Window({ url: 'http://127.0.0.1/' });
const g = globalThis as Record<string, unknown>;
const names = [
  'window',
  'document',
  'HTMLElement',
  'HTMLButtonElement',
  'HTMLInputElement',
  'HTMLTextAreaElement',
  'Element',
  'Node',
  'Text',
  'DocumentFragment',
  'MutationObserver',
  'getComputedStyle',
  'requestAnimationFrame',
  'cancelAnimationFrame',
  'MouseEvent',
  'KeyboardEvent',
  'FocusEvent',
  'InputEvent',
  'UIEvent',
] as const;
for (const name of names) {
  const value = (window as unknown as Record<string, unknown>)[name];
  g[name] = typeof value === 'function' && name.match(/^[a-z]/) ? value.bind(window) : value;
}
// updates come from sockets, not from act() scopes: no "not wrapped in act" noise for them
g.IS_REACT_ACT_ENVIRONMENT = false;

export function closeDom(): Promise<void> {
  return window.happyDOM.close();
}
