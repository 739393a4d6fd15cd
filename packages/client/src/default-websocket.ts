/**
 * Which WebSocket to use when none is given: the `ws` package in Node (it reports refused handshakes
 * with their HTTP status, which Node's built-in WebSocket does not), the global one elsewhere.
 * `ws` is imported lazily, so browser bundles never pull it in at runtime.
 */
import { MooringError } from './errors.ts';
import type { WebSocketConstructor } from './websocket-transport.ts';

let loaded: Promise<WebSocketConstructor> | undefined;

export function defaultWebSocket(): Promise<WebSocketConstructor> {
  loaded ??= load();
  return loaded;
}

async function load(): Promise<WebSocketConstructor> {
  const g = globalThis as { WebSocket?: WebSocketConstructor; process?: { versions?: { node?: string } } };
  if (g.process?.versions?.node !== undefined) {
    const mod = await import('ws');
    return mod.WebSocket as unknown as WebSocketConstructor;
  }
  if (g.WebSocket !== undefined) return g.WebSocket;
  throw new MooringError('unsupported', 'no WebSocket implementation found; pass one as options.WebSocket');
}
