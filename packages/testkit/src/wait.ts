/**
 * Small waiting helpers for tests that run against real sockets. They wait for *conditions*, never for
 * fixed amounts of time, and every wait has a timeout whose message says what was being waited for, so
 * a hung test fails with a reason instead of at the runner's global timeout.
 */

import type { EventEmitter } from 'node:events';

type Falsy = false | 0 | 0n | '' | null | undefined;

export interface WaitForOptions {
  /** Give up after this many milliseconds. Default 10 000. */
  timeout?: number;
  /** Poll every this many milliseconds. Default 10. */
  interval?: number;
  /** Message of the error thrown on timeout. */
  message?: string;
}

/**
 * Poll `predicate` until it returns a truthy value, and resolve with that value. Rejects with
 * `message` after `timeout`, or at once with the error if `predicate` throws.
 *
 *   const frame = await waitFor(() => frames.find((f) => f.type === 'attached'));
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Exclude<T, Falsy>> {
  const { timeout = 10_000, interval = 10 } = options;
  // the monotonic clock: the wall clock may be stepped (a VM paused by its host is set right after),
  // and a deadline on it then passes at once
  const deadline = performance.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value as Exclude<T, Falsy>;
    if (performance.now() >= deadline) {
      throw new Error(options.message ?? `waitFor: condition not met within ${timeout} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

export interface WithinOptions {
  /** Give up after this many milliseconds. Default 20 000. */
  timeout?: number;
  /** What did not happen: the message of the error thrown on timeout. */
  message: string;
}

/**
 * Resolve or reject as `promise` does, or reject with `message` once `timeout` passes without it
 * settling: a promise that settles only when the product works fails its test with a reason, not
 * at the runner's timeout. Choose a bound far above a passing run's time; nothing asserts on time.
 *
 *   await within(chat.regenerate(), { message: 'regenerate() never returned' });
 */
export async function within<T>(promise: Promise<T>, options: WithinOptions): Promise<T> {
  const { timeout = 20_000, message } = options;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${message} (not settled within ${timeout / 1000} s)`)),
      timeout,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

export interface OnceOptions {
  /** Give up after this many milliseconds. Default 10 000. */
  timeout?: number;
  /** Message of the error thrown on timeout. */
  message?: string;
}

/**
 * Resolve with the arguments of the next `event` on `emitter`. Rejects if `'error'` is emitted first
 * (unless `event` is `'error'`), or after `timeout`. Like `events.once`, with a timeout and a message.
 */
export function once(emitter: EventEmitter, event: string, options: OnceOptions = {}): Promise<unknown[]> {
  const { timeout = 10_000 } = options;
  return new Promise((resolve, reject) => {
    const onEvent = (...args: unknown[]): void => {
      cleanup();
      resolve(args);
    };
    const onError = (error: unknown): void => {
      cleanup();
      reject(error);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(options.message ?? `once: no '${event}' event within ${timeout} ms`));
    }, timeout);
    const cleanup = (): void => {
      clearTimeout(timer);
      emitter.off(event, onEvent);
      if (event !== 'error') emitter.off('error', onError);
    };
    emitter.on(event, onEvent);
    if (event !== 'error') emitter.on('error', onError);
  });
}

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

/** A promise with its `resolve` and `reject` in hand, for signalling between a test and a server. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
