/**
 * Tries a transport end to end without touching the live connection: opens it as a throwaway
 * connection (no `recover`), waits for the server's `connected` frame, and closes it at once with
 * 1000 so that the server discards it.
 *
 * The background upgrade probes before it moves the connection: opening the new transport with
 * `recover` makes the server drop the old one at once, so a WebSocket whose upgrade succeeds but
 * whose frames a buffering proxy holds would cost the working fallback. A probe that fails costs
 * nothing.
 */
import type { Timers } from './timers.ts';
import type { Transport } from './transport.ts';

export interface Probe {
  /** True when the transport delivered `connected` within the timeout. Never rejects. */
  result: Promise<boolean>;
  /** Gives up at once (the result is then false). */
  cancel(): void;
}

export function probeTransport(transport: Transport, url: string, timers: Timers, timeout: number): Probe {
  let finish: (ok: boolean) => void = () => {};
  const result = new Promise<boolean>((resolve) => {
    let settled = false;
    finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      timers.clearTimeout(timer);
      if (ok) transport.close(1000, 'probe done');
      else transport.abort();
      resolve(ok);
    };
    const timer = timers.setTimeout(() => finish(false), timeout);
    try {
      transport.open(url, {
        onOpen: () => {},
        onFrame: (frame) => {
          if (frame.type === 'connected') finish(true);
        },
        onProtocolError: () => {},
        onClose: () => finish(false),
      });
    } catch {
      finish(false);
    }
  });
  return { result, cancel: () => finish(false) };
}
