// A Redis restart in the middle of an answer (PROTOCOL.md §15, "A new Redis, a new epoch"): the
// channel goes on in a new epoch, readers re-read it once, and the run being written goes on — its
// agent still names its message by the serial of the old epoch — or, if the agent is gone, its lease
// still ends it `abandoned`. A real server on a real redis-server, killed (SIGKILL) and restarted.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { Channel, ContinuityLost } from '@mooring/client';
import { parseSerial } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { killAgent, spawnAgent } from './helpers/crashing-agent.ts';
import { client, realServer, restartRedis, sessionName, waitFor } from './helpers/fixture.ts';

const skip = redisSkipReason();
const WORDS = Array.from({ length: 20 }, (_, i) => `w${i} `);

/** Counts the history reads made through `channel` from now on. */
function countReads(channel: Channel): { reads: number } {
  const count = { reads: 0 };
  const history = channel.history.bind(channel);
  channel.history = (query) => {
    count.reads++;
    return history(query);
  };
  return count;
}

async function userOn(t: TestContext, url: string, name: string): Promise<UserSession> {
  const user = new UserSession({ channel: client(t, url).channels.get(name, { start: true }) });
  t.after(() => user.close());
  await user.start();
  return user;
}

describe('a Redis restart mid-answer', () => {
  it('the run goes on in the new epoch and ends complete with its whole text, on every reader', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
    const name = sessionName();
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const agent = new AgentSession({
      channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true }),
      agent: 'assistant',
      coalesceMs: 0,
      onInput: async (_input, run) => {
        run.write({ type: 'text-start', id: 't' });
        for (const [i, word] of WORDS.entries()) {
          if (i === WORDS.length / 2) await released;
          run.write({ type: 'text-delta', id: 't', delta: word });
          await run.flush();
        }
        run.write({ type: 'text-end', id: 't' });
      },
    });
    t.after(() => agent.close());
    await agent.start();

    const user = await userOn(t, server.url, name);
    let lost = 0;
    user.channel.on('continuityLost', () => lost++);
    await user.send('go');
    const runId = await waitFor(() => user.tree.runs[0]?.id);
    const half = WORDS.slice(0, WORDS.length / 2).join('');
    await waitFor(async () => {
      await user.ready();
      return textOf(user.run(runId)?.message) === half;
    });

    const userReads = countReads(user.channel);
    const agentReads = countReads(agent.channel);
    let reloaded: ContinuityLost | undefined;
    user.on('reloaded', (lost) => {
      reloaded = lost;
    });
    await restartRedis(redis, server);
    release();
    await waitFor(
      () => {
        const status = user.run(runId)?.status;
        return status !== undefined && status !== 'running';
      },
      { message: 'the run never ended' },
    );
    await user.ready();
    assert.equal(user.run(runId)?.status, 'complete');
    assert.equal(textOf(user.run(runId)?.message), WORDS.join(''));
    assert.equal(lost, 1, 'the reader was told once (epoch_changed)');
    // Nothing it held was lost (AOF `always`): it refolded what it held, under the new epoch, and
    // read no history — nor did the agent. A Redis restart is no herd of history reads.
    const kept = parseSerial(reloaded?.kept ?? '');
    assert.equal(
      kept?.seq,
      parseSerial(reloaded?.previousPosition ?? '')?.seq,
      'everything it held was kept',
    );
    assert.equal(userReads.reads, 0, 'the reader read no history');
    assert.equal(agentReads.reads, 0, 'the agent read no history');
    const later = await userOn(t, server.url, name);
    await later.ready();
    assert.equal(later.run(runId)?.status, 'complete');
    assert.equal(textOf(later.run(runId)?.message), WORDS.join(''));
  });

  it('an agent gone after the restart: its run is still ended abandoned by its lease', async (t) => {
    if (skip) return t.skip(skip);
    const redis = await startRedis({ appendonly: 'always' });
    t.after(() => redis.close());
    const server = await realServer(t, {
      store: { kind: 'redis', url: redis.url },
      sweepInterval: 100,
    });
    const name = sessionName();
    const { child } = await spawnAgent(t, server.url, name, 1_000);
    const user = await userOn(t, server.url, name);
    await user.send('go on forever');
    const runId = await waitFor(() => user.tree.runs[0]?.id, { message: 'no run started' });
    await waitFor(
      async () => {
        await user.ready();
        return textOf(user.run(runId)?.message).length > 20;
      },
      { message: 'the run streamed nothing before the restart' },
    );

    await restartRedis(redis, server);
    // the agent writes again in the new epoch (its lease is held), then dies without a word
    const before = textOf(user.run(runId)?.message).length;
    await waitFor(
      async () => {
        await user.ready();
        return textOf(user.run(runId)?.message).length > before + 20;
      },
      { message: 'the agent wrote nothing after the restart' },
    );
    await killAgent(child);
    await waitFor(() => user.run(runId)?.status === 'abandoned', { message: 'the run was never abandoned' });
  });
});

/** A server on a redis-server without AOF (what is written after the last SAVE is lost), and a reader. */
async function snapshotted(t: TestContext) {
  const redis = await startRedis();
  t.after(() => redis.close());
  const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
  const name = sessionName();
  const user = await userOn(t, server.url, name);
  return { redis, server, name, user };
}

/** The texts of a session's inputs, in order. */
const texts = (session: UserSession) =>
  session.tree.inputs.map((input) => textOf(input.message as Parameters<typeof textOf>[0]));

describe('a Redis restored from an older snapshot', () => {
  it('a reader that held an input the new Redis lost drops it from its view, the rest renamed, with no history read', async (t) => {
    if (skip) return t.skip(skip);
    const { redis, server, name, user } = await snapshotted(t);
    await user.send('kept');
    await redis.command('SAVE');
    await user.send('lost');
    await waitFor(() => texts(user).length === 2);
    const reads = countReads(user.channel);
    let reloaded: ContinuityLost | undefined;
    user.on('reloaded', (lost) => {
      reloaded = lost;
    });

    await restartRedis(redis, server);
    await user.send('after');
    await waitFor(() => reloaded !== undefined && texts(user).includes('after'), {
      message: 'the reader never reloaded',
    });
    assert.ok(
      (parseSerial(reloaded?.kept ?? '')?.seq ?? 0) <
        (parseSerial(reloaded?.previousPosition ?? '')?.seq ?? 0),
      'it held more than the new Redis kept',
    );
    assert.equal(reads.reads, 0, 'nothing it held is in another state in the new log: nothing to read');
    assert.deepEqual(texts(user), ['kept', 'after']);
    const later = await userOn(t, server.url, name);
    assert.deepEqual(texts(later), ['kept', 'after']);
  });

  it('a reader that held a message in a state the new Redis lost (its delete) reads just that again: the same view as a fresh reader', async (t) => {
    if (skip) return t.skip(skip);
    const { redis, server, name, user } = await snapshotted(t);
    await user.send('a');
    await user.send('b');
    await waitFor(() => texts(user).length === 2);
    await redis.command('SAVE');
    await user.channel.delete(user.tree.inputs[1]!.serial); // lost with the restart
    await waitFor(() => texts(user).length === 1);
    const reads = countReads(user.channel);
    let reloaded = false;
    user.on('reloaded', () => {
      reloaded = true;
    });

    await restartRedis(redis, server);
    await user.send('c');
    await waitFor(() => reloaded && texts(user).includes('c'), { message: 'the reader never reloaded' });
    await waitFor(() => texts(user).length === 3, {
      message: 'the input whose delete was lost never came back',
    });
    assert.equal(reads.reads, 1, 'one read: from that message up to kept');
    assert.deepEqual(texts(user), ['a', 'b', 'c']);
    const later = await userOn(t, server.url, name);
    assert.deepEqual(texts(later), texts(user));
  });
});
