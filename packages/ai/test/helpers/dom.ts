/**
 * A browser-like global for React tests (happy-dom's window and document), installed on import:
 * import this module before `@testing-library/react`. Node's own fetch, WebSocket and timers stay,
 * so the Mooring client talks to the real server exactly as in the other tests.
 */
import { Window } from 'happy-dom';

const window = new Window({ url: 'http://127.0.0.1/' });
Object.assign(globalThis, { window, document: window.document, HTMLElement: window.HTMLElement });
