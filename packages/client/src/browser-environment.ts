/**
 * What the client uses from a browser page, behind a small interface so that Node (where none of it
 * exists) and tests (which fake it) need no special cases:
 *   - `online` / `offline` and the page becoming visible: retry at once, or probe a live connection;
 *   - `pagehide` and `sessionStorage`: save a recovery key when the page goes away (opt-in).
 */

export type EnvironmentEvent = 'online' | 'offline' | 'visible' | 'pagehide';

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface BrowserEnvironment {
  /** Subscribes to an environment event; returns the unsubscribe function. */
  on(event: EnvironmentEvent, listener: () => void): () => void;
  /** Per-tab storage that survives a reload (`sessionStorage`). */
  storage: StorageLike | undefined;
}

interface EventTargetLike {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** The page's environment, or undefined outside a browser (Node, workers without a document). */
export function detectBrowserEnvironment(): BrowserEnvironment | undefined {
  const g = globalThis as {
    window?: EventTargetLike;
    document?: EventTargetLike & { visibilityState?: string };
    sessionStorage?: StorageLike;
  };
  const win = g.window;
  const doc = g.document;
  if (win === undefined || doc === undefined || typeof win.addEventListener !== 'function') return undefined;
  let storage: StorageLike | undefined;
  try {
    storage = g.sessionStorage; // throws in some privacy modes
  } catch {
    storage = undefined;
  }
  return {
    storage,
    on(event, listener) {
      if (event === 'visible') {
        const onVisibility = () => {
          if (doc.visibilityState === 'visible') listener();
        };
        doc.addEventListener('visibilitychange', onVisibility);
        return () => doc.removeEventListener('visibilitychange', onVisibility);
      }
      win.addEventListener(event, listener);
      return () => win.removeEventListener(event, listener);
    },
  };
}
