// The model-free reply: a well-formed UIMessageChunk stream (what the AI SDK's processor accepts),
// whose deltas rebuild the script's text exactly, and which stops when its run is cancelled.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { UIMessage, UIMessageChunk } from 'ai';
import { readUIMessageStream } from 'ai';
import { scriptFor } from '../src/reply-scripts.ts';
import { scriptedReply, tokens } from '../src/scripted-reply.ts';

async function collect(
  stream: ReadableStream<UIMessageChunk>,
  onChunk: (chunk: UIMessageChunk) => void = () => {},
): Promise<UIMessageChunk[]> {
  const chunks: UIMessageChunk[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
    onChunk(value);
  }
}

function textsOf(script: ReturnType<typeof scriptFor>): string[] {
  return script.segments.flatMap((s) => ('text' in s ? [s.text] : []));
}

describe('scriptedReply', () => {
  it('tokens join back to the text exactly', () => {
    for (const script of [scriptFor('weather in Oslo'), scriptFor('how?'), scriptFor('hello')]) {
      for (const text of [script.reasoning, ...textsOf(script)]) {
        const split = tokens(text);
        assert.equal(split.join(''), text);
        assert.ok(split.length > 1);
      }
    }
  });

  it('picks a script by prompt: weather calls getWeather, how-questions searchDocs, others no tool', () => {
    const tools = (prompt: string) =>
      scriptFor(prompt).segments.flatMap((s) => ('tool' in s ? [s.tool.name] : []));
    assert.deepEqual(tools("What's the weather in Lisbon?"), ['getWeather']);
    assert.deepEqual(tools('How does Mooring resume?'), ['searchDocs']);
    assert.deepEqual(tools('Tell me a story.'), []);
    assert.match(textsOf(scriptFor('Is it sunny in New York?'))[0] ?? '', /New York/);
  });

  it('streams start … finish, and the AI SDK rebuilds the scripted message from it', async () => {
    const script = scriptFor("What's the weather in Lisbon?");
    const seen: UIMessageChunk[] = [];
    const chunks = await collect(scriptedReply(script, { pace: 0, onChunk: (c) => seen.push(c) }));
    assert.deepEqual(seen, chunks);
    assert.equal(chunks[0]?.type, 'start');
    assert.equal(chunks.at(-1)?.type, 'finish');

    let message: UIMessage | undefined;
    const replay = new ReadableStream<UIMessageChunk>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    });
    for await (const m of readUIMessageStream({ stream: replay })) message = m;
    assert.ok(message);
    const texts = message.parts.flatMap((p) => (p.type === 'text' ? [p.text] : []));
    assert.deepEqual(texts, textsOf(script));
    const reasoning = message.parts.find((p) => p.type === 'reasoning');
    assert.equal(reasoning?.type === 'reasoning' ? reasoning.text : undefined, script.reasoning);
    const tool = message.parts.find((p) => p.type === 'tool-getWeather');
    assert.ok(tool && 'state' in tool);
    assert.equal(tool.state, 'output-available');
  });

  it('stops when the signal aborts: no finish, nothing after the abort', async () => {
    const abort = new AbortController();
    const stream = scriptedReply(scriptFor('Tell me a story.'), { pace: 0.01, signal: abort.signal });
    const chunks = await collect(stream, (chunk) => {
      if (chunk.type === 'text-delta') abort.abort();
    });
    assert.equal(chunks.at(-1)?.type, 'text-delta');
    assert.ok(!chunks.some((c) => c.type === 'finish'));
  });
});
