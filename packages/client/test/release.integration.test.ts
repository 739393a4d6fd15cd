// `channels.release(name)` then `channels.get(name)` against a real server while the channel is busy
// (review-client finding 1): frames name only their channel, and the released attachment's live
// frames are still on their way when a fresh channel of the same name attaches. Each fresh channel
// must see only its own attachment's frames: its catch-up whole, then live, each operation once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { applyMessage } from '../src/apply-message.ts';
import type { TransportKind } from '../src/transport.ts';
import { client, connected, realServer, waitFor } from './helpers/real-server.ts';

const CHANNEL = 'room:release';

/** The channel as a reader holds it: serial → name and data, folded from what was delivered. */
function fold(messages: Iterable<Message>): Map<string, string> {
  const held = new Map<string, Message>();
  for (const m of messages) held.set(m.serial, applyMessage(held.get(m.serial), m));
  return new Map([...held].map(([serial, m]) => [serial, `${m.name}=${JSON.stringify(m.data)}`]));
}

describe('release then get', () => {
  for (const transport of ['websocket', 'longpoll'] as TransportKind[]) {
    it(`a channel got again right after its release sees only its own attachment: its catch-up whole, then live, each once, in order, through cycles back to back (${transport})`, async (t) => {
      const server = await realServer(t);
      const writer = client(t, server.url, { clientId: 'writer' });
      // never released: every operation live, in order — the reference a fresh channel is held to
      const witness = client(t, server.url, { clientId: 'witness' });
      const reader = client(t, server.url, { clientId: 'reader', transports: [transport] });
      const all: Message[] = [];
      await witness.channels.get(CHANNEL).subscribe((m) => all.push(m));
      await connected(reader);

      // live traffic: one message growing by appends, and new messages beside it
      const out = writer.channels.get(CHANNEL);
      const growing = await out.publish('text', 'x');
      let pumping = true;
      const pump = (async () => {
        for (let i = 0; pumping; i++) await Promise.all([out.append(growing, 'y'), out.publish('n', i)]);
      })();

      const lives: Message[][] = [];
      const CYCLES = 12;
      for (let i = 0; i < CYCLES; i++) {
        const got: Message[] = [];
        lives.push(got);
        const channel = reader.channels.get(CHANNEL, { start: true });
        void channel.subscribe((m) => got.push(m));
        // every third one is released at once, before its attach is answered: cycles back to back
        if (i % 3 === 2 && i < CYCLES - 1) {
          void reader.channels.release(CHANNEL);
          continue;
        }
        const before = all.length;
        await waitFor(() => channel.state === 'attached' && all.length > before + 6, {
          message: `cycle ${i}: never attached with live traffic`,
        });
        if (i < CYCLES - 1) void reader.channels.release(CHANNEL);
      }
      pumping = false;
      await pump;
      const last = reader.channels.get(CHANNEL);
      const head = all.at(-1)!.version;
      await waitFor(() => last.position === head, { message: 'the last channel never caught up' });

      for (const [i, got] of lives.entries()) {
        const versions = got.map((m) => m.version);
        for (let k = 1; k < versions.length; k++)
          assert.ok(versions[k]! > versions[k - 1]!, `cycle ${i}: versions not increasing at ${k}`);
        if (got.length === 0) continue; // released before anything came
        // what it holds is the channel as it was at the last version it got: nothing lost, nothing
        // replaced by a live delta taken for a whole message
        const at = versions.at(-1)!;
        assert.deepEqual(
          fold(got),
          fold(all.filter((m) => m.version <= at)),
          `cycle ${i}: the channel held at ${at} is not the channel's state there`,
        );
      }
      assert.equal(lives.at(-1)!.at(-1)?.version, head);
    });
  }
});
