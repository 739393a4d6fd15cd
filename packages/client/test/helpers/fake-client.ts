/**
 * A `Mooring` client wired to fake timers and fake transports: the test plays the server.
 */
import type { ClientFrame, Message, Ref } from '@mooring/protocol';
import type { BrowserEnvironment, EnvironmentEvent, StorageLike } from '../../src/browser-environment.ts';
import type { MooringOptions } from '../../src/mooring.ts';
import { Mooring } from '../../src/mooring.ts';
import { FakeTimers } from './fake-timers.ts';
import type { FakeTransport } from './fake-transport.ts';
import { fakeTransports, flush } from './fake-transport.ts';

export function fakeClient(options: Partial<MooringOptions> = {}) {
  const timers = new FakeTimers();
  const transports = fakeTransports();
  let seed = 0;
  const client = new Mooring({
    url: 'http://mooring.test',
    key: 'app:secret',
    timers,
    random: () => {
      seed = (seed * 9301 + 49297) % 233280;
      return seed / 233280;
    },
    transport: transports.factory,
    environment: null,
    ...options,
  });
  /** Lets the pending transport open, then answers `connected`. */
  const connect = async (): Promise<FakeTransport> => {
    await flush();
    const t = transports.last();
    t.connected();
    return t;
  };
  return { client, timers, transports, connect };
}

type Sent<T extends ClientFrame['type']> = Extract<ClientFrame, { type: T }> & { ref: Ref };

/** Frames of one type the client sent on a transport (the client always sets `ref`). */
export function sent<T extends ClientFrame['type']>(t: FakeTransport, type: T): Sent<T>[] {
  return t.sent.filter((f): f is Sent<T> => f.type === type);
}

export const EPOCH = 'mi9x2k0a7q3f';
export const serial = (n: number, epoch = EPOCH) => `${epoch}.${String(n).padStart(16, '0')}`;

/** A live `create` at sequence n. */
export function created(n: number, data: string, name = 'text'): Message {
  return { serial: serial(n), version: serial(n), action: 'create', id: `m${n}`, name, data, timestamp: n };
}

/** A live `append` of `delta` to message `target`, at sequence n. */
export function appended(n: number, target: number, delta: string): Message {
  return {
    serial: serial(target),
    version: serial(n),
    action: 'append',
    id: `m${target}:${n}`,
    name: 'text',
    data: delta,
    timestamp: n,
  };
}

export class MemoryStorage implements StorageLike {
  readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

export function fakeEnvironment(storage: StorageLike = new MemoryStorage()) {
  const listeners = new Map<EnvironmentEvent, Set<() => void>>();
  const environment: BrowserEnvironment = {
    storage,
    on(event, listener) {
      let set = listeners.get(event);
      if (!set) {
        set = new Set();
        listeners.set(event, set);
      }
      set.add(listener);
      return () => set.delete(listener);
    },
  };
  const fire = (event: EnvironmentEvent) => {
    for (const listener of listeners.get(event) ?? []) listener();
  };
  return { environment, fire, storage };
}
