/**
 * `promise`, or a rejection with `message` once `timeout` ms (default 20 s) pass without it settling:
 * a promise that settles only when the product works fails its test with a reason, not at the runner's
 * timeout. The bound is far above a passing run's time; nothing asserts on time.
 */
export async function within<T>(
  promise: Promise<T>,
  options: { timeout?: number; message: string },
): Promise<T> {
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
