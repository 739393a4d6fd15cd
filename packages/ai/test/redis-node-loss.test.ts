/**
 * Node loss on Redis (PROTOCOL.md §15): three `mooring serve --store redis` processes on one real
 * redis-server, behind a round-robin TCP balancer with no stickiness, AI runs streaming through it,
 * and nodes killed with SIGKILL mid-run.
 *
 * - The node holding the users dies: every user reconnects through the balancer to another node with
 *   its recovery key (same connection, `resumed`), catches up and ends with exactly the agent's text,
 *   once, in order. Presence: a member that never comes back leaves after the grace (not at once, not
 *   never); the users, recovered elsewhere, never leave.
 * - The agent and its node die: the run ends `abandoned` one lease later (plus a sweep), expired by
 *   the surviving nodes.
 * - The agent and its node die and the agent restarts on another node before the lease ends: the run
 *   is resumed in place.
 *
 * Timings are printed (kill → every user resumed, bytes caught up, kill → abandoned); nothing asserts
 * on them. Steering which node a client lands on is done by changing the balancer's rotation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PresenceEvent } from '@mooring/client';
import { Balancer, type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { countingRun, killAgent, restartAgent, spawnAgent, tokens } from './helpers/crashing-agent.ts';
import { client, sessionName, waitFor } from './helpers/fixture.ts';
import { type NodeProcess, spawnNode } from './helpers/node-process.ts';

const skip = redisSkipReason();
const LEASE = 1_500;
const NODE_ENV = {
  MOORING_PRESENCE_GRACE: '3s',
  MOORING_SWEEP_INTERVAL: '200ms',
  MOORING_NODE_TTL: '1s',
  MOORING_HEARTBEAT: '2s',
  MOORING_CONNECTION_STATE_TTL: '30s',
};

if (skip) {
  describe('node loss (Redis)', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('node loss (Redis, three node processes behind a balancer)', () => {
    let redis: RedisServer;
    let balancer: Balancer;
    const nodes: NodeProcess[] = [];
    let spawned = 0;
    const spawnOne = async () => {
      const node = await spawnNode(`n${spawned++}`, redis.url, NODE_ENV);
      nodes.push(node);
      return node;
    };
    const base = () => `http://127.0.0.1:${balancer.port}`;
    const isAlive = (n: NodeProcess) => n.child.exitCode === null && n.child.signalCode === null;
    /** Only `node` in the rotation: the next connections land there. */
    const steer = (...to: NodeProcess[]) => {
      for (const n of nodes) balancer.remove({ port: n.port });
      for (const n of to) balancer.add({ port: n.port });
    };

    /** The crashing agent on `agentNode`, a user on `userNode` whose run on it streams already. */
    const agentAndUser = async (t: TestContext, agentNode: NodeProcess, userNode: NodeProcess) => {
      const name = sessionName();
      steer(agentNode);
      const { child: agent } = await spawnAgent(t, base(), name, LEASE, {
        fixedRunId: true,
        readyWithin: 30_000,
      });
      steer(userNode);
      return { agent, name, ...(await countingRun(t, base(), name, 'user')) };
    };

    before(async () => {
      redis = await startRedis();
      await Promise.all([spawnOne(), spawnOne(), spawnOne()]);
      balancer = await Balancer.start(nodes.map((n) => ({ port: n.port })));
    });
    after(async () => {
      await balancer?.close();
      await Promise.all(nodes.map((n) => n.kill()));
      await redis?.close();
    });

    it('kill -9 of the users’ node: every user resumes elsewhere with exactly the agent’s text; its lost member leaves after the grace', async (t) => {
      const [n0, n1, n2] = nodes as [NodeProcess, NodeProcess, NodeProcess];
      const name = sessionName();

      steer(n0);
      const USERS = 3;
      const userClients = Array.from({ length: USERS }, (_, i) =>
        client(t, base(), { clientId: `user${i}` }),
      );
      const users = userClients.map(
        (c) => new UserSession({ channel: c.channels.get(name, { start: true }) }),
      );
      t.after(() => {
        for (const u of users) u.close();
      });
      await Promise.all(users.map((u) => u.start()));
      for (const c of userClients) await c.channels.get(name).presence.enter({ role: 'user' });
      // a member on the same node that never comes back (its client only knows that node)
      const ghost = client(t, n0.url, { clientId: 'ghost' });
      await ghost.channels.get(name).presence.enter();

      steer(n1);
      const TOKENS = 300;
      let produced = 0;
      const agentClient = client(t, base(), { clientId: 'assistant' });
      const agent = new AgentSession({
        channel: agentClient.channels.get(name, { start: true }),
        agent: 'assistant',
        coalesceMs: 0,
        runId: (input) => `run-for-${input.id}`,
        onInput: async (_input, run) => {
          run.write({ type: 'text-start', id: 't' });
          for (let i = 0; i < TOKENS; i++) {
            const delta = `token${i} `;
            run.write({ type: 'text-delta', id: 't', delta });
            produced += delta.length;
            await sleep(10);
          }
          run.write({ type: 'text-end', id: 't' });
        },
      });
      t.after(() => agent.close());
      await agent.start();

      const watcher = client(t, n2.url, { clientId: 'watcher' });
      const events: PresenceEvent[] = [];
      await watcher.channels.get(name).presence.subscribe((e) => events.push(e));
      await waitFor(async () => (await watcher.channels.get(name).presence.get()).length === USERS + 1, {
        message: 'the watcher on n2 never saw the members entered on n0',
      });

      steer(n0, n1, n2); // n0 first: once dead, the balancer skips it
      const inputId = await users[0]!.send('count');
      const runId = `run-for-${inputId}`;
      await waitFor(() => users.every((u) => textOf(u.run(runId)?.message).length > 100), {
        message: 'no text streamed to the users',
      });

      const before = userClients.map((c) => c.connection.id);
      const textAtKill = users.map((u) => textOf(u.run(runId)?.message).length);
      const resumedAt: Array<{ ms: number; produced: number } | undefined> = users.map(() => undefined);
      const caughtUpAt: Array<number | undefined> = users.map(() => undefined);
      const killedAt = performance.now();
      userClients.forEach((c, i) => {
        c.connection.on('connected', () => {
          resumedAt[i] ??= { ms: performance.now() - killedAt, produced };
        });
      });
      await n0.kill();

      await waitFor(() => resumedAt.every((r) => r !== undefined), {
        timeout: 20_000,
        message: 'not every user reconnected',
      });
      await waitFor(
        () => {
          users.forEach((u, i) => {
            if (caughtUpAt[i] === undefined && textOf(u.run(runId)?.message).length >= resumedAt[i]!.produced)
              caughtUpAt[i] = performance.now() - killedAt;
          });
          return caughtUpAt.every((c) => c !== undefined);
        },
        { timeout: 20_000, message: 'not every user caught up' },
      );
      userClients.forEach((c, i) => {
        assert.equal(c.connection.id, before[i], `user${i} recovered its connection on another node`);
        assert.equal(c.connection.details?.resumed, true);
      });
      assert.ok(balancer.stats({ port: n0.port }).refused > 0, 'the balancer skipped the dead node');
      // recovered users kept their membership; the ghost has not left yet (grace)
      const soon = (await watcher.channels.get(name).presence.get()).map((m) => m.clientId).sort();
      assert.deepEqual(soon, ['ghost', 'user0', 'user1', 'user2']);

      await waitFor(() => users.every((u) => u.run(runId)?.status === 'complete'), {
        timeout: 30_000,
        message: 'the run never completed for every user',
      });
      for (const u of users) await u.ready();
      const expected = tokens(TOKENS);
      for (const [i, u] of users.entries())
        assert.equal(textOf(u.run(runId)?.message), expected, `user${i}: the agent's text, once, in order`);

      await waitFor(() => events.some((e) => e.action === 'leave' && e.member.clientId === 'ghost'), {
        timeout: 20_000,
        message: 'the dead node’s member never left',
      });
      const members = (await watcher.channels.get(name).presence.get()).map((m) => m.clientId).sort();
      assert.deepEqual(members, ['user0', 'user1', 'user2']);
      assert.deepEqual(
        events.filter((e) => e.action === 'leave').map((e) => e.member.clientId),
        ['ghost'],
        'only the member that never came back left',
      );
      const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
      console.log(
        `node loss (users' node): kill -9 → every user resumed: ${Math.max(...resumedAt.map((r) => r!.ms)).toFixed(0)} ms; ` +
          `→ every user caught up: ${Math.max(...(caughtUpAt as number[])).toFixed(0)} ms; ` +
          `bytes caught up per user: ${resumedAt.map((r, i) => kb(r!.produced - textAtKill[i]!)).join(', ')}`,
      );
    });

    it('kill -9 of the agent and its node: the run ends abandoned one lease later, expired by the other nodes', async (t) => {
      const [agentNode, userNode] = nodes.filter(isAlive) as [NodeProcess, NodeProcess];
      const { agent, user, runId } = await agentAndUser(t, agentNode, userNode);

      const killedAt = performance.now();
      await Promise.all([killAgent(agent), agentNode.kill()]);
      assert.equal(user.run(runId)?.status, 'running');
      await waitFor(() => user.run(runId)?.status === 'abandoned', {
        timeout: 20_000,
        message: 'the run never ended abandoned',
      });
      console.log(
        `node loss (agent's node): kill -9 → run abandoned: ${(performance.now() - killedAt).toFixed(0)} ms (lease ${LEASE} ms)`,
      );
    });

    it('kill -9 of the agent and its node, agent restarted on another node within the lease: the run resumes in place', async (t) => {
      const agentNode = await spawnOne();
      const alive = nodes.filter((n) => n !== agentNode && isAlive(n));
      const { agent, user, runId, name } = await agentAndUser(t, agentNode, alive[0]!);

      await Promise.all([killAgent(agent), agentNode.kill()]);
      steer(...alive);
      const TOKENS = 40;
      await restartAgent(t, base(), name, TOKENS);
      assert.equal(user.run(runId)?.status, 'running', 'restarted within the lease');
      await waitFor(() => user.run(runId)?.status === 'complete', {
        timeout: 20_000,
        message: 'the run was not resumed: it stays abandoned',
      });
      await user.ready();
      assert.equal(textOf(user.run(runId)?.message), tokens(TOKENS));
      assert.equal(user.tree.runs.length, 1, 'resumed in place, not a second run');
    });
  });
}
