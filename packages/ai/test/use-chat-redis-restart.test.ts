// The REAL `useChat` of @ai-sdk/react over `mooringChat()` (what `useMooringChat` renders; its sync
// with the session is `syncChat`) across a Redis restart without loss (AOF `always`, SIGKILL):
// the device that asked and another that follows the answer end with the same messages as a fresh
// reader — same ids, same text, none twice — and never show a word twice on the way.
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { UIMessage } from 'ai';
import { UserSession } from '../src/user-session.ts';
import { gatedAgent, HALF, textOf, WORDS } from './helpers/agents.ts';
import { client, realServer, restartRedis, sessionName, waitFor, within } from './helpers/fixture.ts';
import { type Device, device } from './helpers/use-chat-device.ts';

const skip = redisSkipReason();

const shown = (messages: readonly UIMessage[]) => messages.map((m) => [m.id, m.role, textOf(m)]);

/** Every text the chat shows while it runs: none may hold a word twice. */
function watchForRepeats(chats: Device[]): { repeats: string[]; stop(): void } {
  const repeats: string[] = [];
  const timer = setInterval(() => {
    for (const { chat } of chats)
      for (const m of chat.messages) {
        const words = textOf(m).split(' ').filter(Boolean);
        if (new Set(words).size !== words.length) repeats.push(textOf(m));
      }
  }, 5);
  return { repeats, stop: () => clearInterval(timer) };
}

describe('useChat over Mooring across a Redis restart', () => {
  it('lossless: the asking chat and a following chat hold the messages of a fresh reader (ids, text), none twice, no word twice on the way', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const { release } = await gatedAgent(t, server.url, name, undefined, 'assistant');
    const asking = device(t, server.url, name);
    const following = device(t, server.url, name);
    await asking.session.ready();
    await following.session.ready();
    const watch = watchForRepeats([asking, following]);
    t.after(() => watch.stop());

    void asking.chat.sendMessage({ text: 'first' });
    const half = WORDS.slice(0, HALF).join('');
    await waitFor(() => [asking, following].every((d) => textOf(d.chat.messages[1]) === half), {
      message: 'both chats never showed the first half',
    });
    let lost = 0;
    asking.session.channel.on('continuityLost', () => lost++);
    following.session.channel.on('continuityLost', () => lost++);
    await restartRedis(redis, server);
    release();
    await waitFor(() => asking.chat.status === 'ready' && asking.chat.messages.length === 2, {
      message: 'the first answer never ended on the asking chat',
    });
    await within(asking.chat.sendMessage({ text: 'second' }), { message: 'the second answer never came' });

    const fresh = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => fresh.close());
    await fresh.ready();
    const expected = shown(fresh.messages);
    assert.deepEqual(
      expected.map(([, role, text]) => [role, text]),
      [
        ['user', 'first'],
        ['assistant', WORDS.join('')],
        ['user', 'second'],
        ['assistant', WORDS.join('')],
      ],
    );
    for (const d of [asking, following]) {
      await waitFor(() => d.chat.status === 'ready' && d.chat.messages.length === 4, {
        message: `a chat never showed the four messages: ${JSON.stringify(shown(d.chat.messages))}`,
      });
      assert.deepEqual(shown(d.chat.messages), expected);
      const texts = d.chat.messages[1]!.parts.filter((p) => p.type === 'text');
      assert.equal(texts.length, 1, 'one text part, not the text again beside it');
    }
    assert.equal(lost, 2, 'each chat saw the new epoch once');
    watch.stop();
    assert.deepEqual(watch.repeats, [], 'no chat showed a word twice');
  });

  it('lossy (RDB snapshot mid-answer, more words, SIGKILL): the chat ends with what the new Redis has, as a fresh reader, no word twice', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis(); // RDB only: what was written after the SAVE is lost
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const { release } = await gatedAgent(t, server.url, name, HALF / 2, 'assistant');
    const asking = device(t, server.url, name);
    await asking.session.ready();
    const watch = watchForRepeats([asking]);
    t.after(() => watch.stop());

    void asking.chat.sendMessage({ text: 'first' });
    const quarter = WORDS.slice(0, HALF / 2).join('');
    await waitFor(() => textOf(asking.chat.messages[1]) === quarter, {
      message: 'the chat never showed the first quarter',
    });
    await redis.command('SAVE');
    release();
    await waitFor(() => textOf(asking.chat.messages[1]) === WORDS.slice(0, HALF).join(''), {
      message: 'the chat never showed the first half',
    });
    await restartRedis(redis, server);
    release();
    const fresh = new UserSession({ channel: client(t, server.url).channels.get(name, { start: true }) });
    t.after(() => fresh.close());
    await waitFor(
      async () => {
        await fresh.ready();
        return fresh.tree.runs[0]?.status === 'complete';
      },
      { message: 'the answer never ended' },
    );
    const expected = shown(fresh.messages);
    await waitFor(
      () =>
        asking.chat.status === 'ready' &&
        JSON.stringify(shown(asking.chat.messages)) === JSON.stringify(expected),
      {
        message: `the chat never showed what a fresh reader has: ${JSON.stringify(shown(asking.chat.messages))} / ${JSON.stringify(expected)}`,
      },
    );
    watch.stop();
    assert.deepEqual(watch.repeats, [], 'the chat never showed a word twice');
  });
});
