// The refold after a Redis restart (session-feed.ts `#refold`, PROTOCOL.md §15) on real parts: a
// real server on a real redis-server (AOF `always`: nothing lost), SIGKILLed and restarted, and what
// happens on the new Redis before a reader resumes.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ContinuityLost } from '@mooring/client';
import { parseSerial } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { UIMessage } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, restartRedis, sessionName, waitFor } from './helpers/fixture.ts';

const skip = redisSkipReason();

async function userOn(t: TestContext, url: string, name: string): Promise<UserSession> {
  const user = new UserSession({ channel: client(t, url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  await user.start();
  return user;
}

const texts = (session: UserSession) =>
  session.tree.inputs.map((input) => textOf(input.message as Parameters<typeof textOf>[0]));

describe('the refold after a lossless Redis restart', () => {
  it('a message deleted on the new Redis before a reader resumed stays deleted on that reader (the catch-up brought its tombstone)', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const reader = await userOn(t, server.url, name);
    const writer = await userOn(t, server.url, name);
    await writer.send('kept');
    await writer.send('deleted');
    await waitFor(() => texts(reader).length === 2 && texts(writer).length === 2);
    const doomed = writer.tree.inputs.find((input) => textOf(input.message) === 'deleted')!;
    let reads = 0;
    const history = reader.channel.history.bind(reader.channel);
    reader.channel.history = (query) => {
      reads++;
      return history(query);
    };
    let lost: ContinuityLost | undefined;
    reader.on('reloaded', (l) => {
      lost = l;
    });

    await restartRedis(redis, server);
    // the first operation on the new Redis: the delete (it starts the new epoch, §15)
    await writer.channel.delete(doomed.serial);
    await waitFor(() => lost !== undefined, { message: 'the reader never saw the new epoch' });
    await reader.ready();
    const fresh = await userOn(t, server.url, name);
    await fresh.ready();
    assert.deepEqual(texts(fresh), ['kept'], 'the new Redis has the delete');
    assert.deepEqual(texts(reader), ['kept'], 'the deleted input is not back on the reader');
    // nothing it held was lost: it refolded (no history read), it did not reload
    assert.equal(parseSerial(lost?.kept ?? '')?.seq, parseSerial(lost?.previousPosition ?? '')?.seq);
    assert.equal(reads, 0);
  });

  it('an agent with echo: false whose own appends after the restart were folded with applyOwn (old serial, new version) ends with its whole answer, as its reader does', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    const words = Array.from({ length: 40 }, (_, i) => `w${i} `);
    const histories: UIMessage[][] = [];
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true, echo: false }),
      agent: 'assistant',
      coalesceMs: 0,
      onInput: async (input, run) => {
        histories.push(await input.history());
        run.write({ type: 'text-start', id: 't' });
        for (const [i, word] of words.entries()) {
          if (i === 10) await released;
          run.write({ type: 'text-delta', id: 't', delta: word });
          await run.flush();
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    t.after(() => {
      release();
      return agent.close();
    });
    await agent.start();
    let agentReads = 0;
    const history = agent.channel.history.bind(agent.channel);
    agent.channel.history = (query) => {
      agentReads++;
      return history(query);
    };
    const agentLost: ContinuityLost[] = [];
    agent.channel.on('continuityLost', (l) => agentLost.push(l));
    const user = await userOn(t, server.url, name);
    await user.send('go');
    const runId = await waitFor(() => user.tree.runs[0]?.id);
    await waitFor(() => agent.tree.parts(runId).some((p) => p.text === words.slice(0, 10).join('')));

    await restartRedis(redis, server);
    release();
    await waitFor(() => user.run(runId)?.status === 'complete', { message: 'the run never ended' });
    await user.ready();
    assert.equal(textOf(user.run(runId)?.message), words.join(''));
    await waitFor(() => agent.tree.run(runId)?.status === 'complete', {
      message: 'the agent never saw its run end',
    });
    assert.deepEqual(
      agent.tree.parts(runId).map((p) => p.text),
      [words.join('')],
      'the agent holds its whole answer, once',
    );
    // what its next turn gives the model: the whole first answer
    await user.send('again');
    await waitFor(() => histories.length === 2, { message: 'the second input was never answered' });
    assert.deepEqual(
      histories[1]!.map((m) => [m.role, textOf(m)]),
      [
        ['user', 'go'],
        ['assistant', words.join('')],
        ['user', 'again'],
      ],
    );
    assert.equal(agentLost.length, 1, 'the agent saw the new epoch once');
    assert.ok(agentReads <= 1, 'at most one history read (the reload its own operations past kept ask for)');
  });
});
