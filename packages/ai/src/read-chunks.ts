/**
 * Reads a chunk source — a `ReadableStream` or any async iterable — one item at a time, with a way to
 * stop it early (cancelling the stream, so a model call behind it stops too).
 */

export interface ChunkReader<T> {
  next(): Promise<IteratorResult<T>>;
  stop(): void;
}

export function readChunks<T>(source: ReadableStream<T> | AsyncIterable<T>): ChunkReader<T> {
  if (source instanceof ReadableStream) {
    const reader = source.getReader();
    return {
      next: async () => {
        const r = await reader.read();
        return r.done ? { done: true, value: undefined } : { done: false, value: r.value };
      },
      stop: () => void reader.cancel().catch(() => {}),
    };
  }
  const iterator = source[Symbol.asyncIterator]();
  return { next: () => iterator.next(), stop: () => void iterator.return?.()?.catch(() => {}) };
}
