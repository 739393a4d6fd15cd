import { sharedClockMs } from '../clock.ts';
import { tokenEnds } from './model-tokens.ts';

/** The chunks of a web stream (its async iteration is not in every TypeScript lib). */
export async function* chunksOf<T>(stream: ReadableStream<T>): AsyncGenerator<T> {
  const reader = stream.getReader();
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) return;
      yield r.value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * When each token reached this process (wall ms, per response): the app's side of the hop split
 * (model → app, app → user). Asked over IPC: `{ type: 'arrivals' }` → `{ type: 'arrivals', arrivals }`.
 */
const arrivals = new Map<number, number[]>();
process.on('message', (m: { type?: string }) => {
  if (m?.type === 'arrivals') process.send?.({ type: 'arrivals', arrivals: Object.fromEntries(arrivals) });
});

/** Reads the model stub's stream (model-stub.ts) as an app would read an LLM API: text as it arrives. */
export async function* modelText(stubPort: number, response: number, tokens: number, rate: number) {
  const res = await fetch(`http://127.0.0.1:${stubPort}/generate?r=${response}&n=${tokens}&rate=${rate}`);
  if (!res.ok || res.body === null) throw new Error(`model stub answered ${res.status}`);
  const decoder = new TextDecoder();
  const ends = tokenEnds(response, tokens);
  const times: number[] = [];
  arrivals.set(response, times);
  let length = 0;
  for await (const bytes of chunksOf(res.body)) {
    const text = decoder.decode(bytes, { stream: true });
    if (text === '') continue;
    length += text.length;
    const now = sharedClockMs();
    while (times.length < tokens && ends[times.length]! <= length) times.push(now);
    yield text;
  }
}

/** The query of a generation request: which response, how many tokens, how fast. */
export interface Generation {
  response: number;
  tokens: number;
  rate: number;
}

export function generationOf(url: URL): Generation | undefined {
  const response = Number(url.searchParams.get('r'));
  const tokens = Number(url.searchParams.get('n'));
  const rate = Number(url.searchParams.get('rate'));
  if (!Number.isInteger(response) || !(tokens > 0) || !(rate > 0)) return undefined;
  return { response, tokens, rate };
}
