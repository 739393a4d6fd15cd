/**
 * An agent process of the soak: AgentSessions for its share of the sessions, answering each input with
 * the scripted model (`model-text.ts`) at `tokensPerSecond`. The orchestrator SIGKILLs it and starts
 * it again with the same config: same clientIds, same run ids (`run-<inputId>`), `answerMissed`, so
 * the AI layer resumes each interrupted run in place.
 *
 * The transcript (JSON lines, `appendFileSync`: a line written survives the SIGKILL that follows it)
 * records, per attempt of a run, its length, every second how many tokens are stored (after a
 * `flush()`), and when the model finished. The verifier checks every user's copy against it.
 *
 * argv[2]: AgentConfig (JSON). IPC out: AgentReport.
 */
import { appendFileSync } from 'node:fs';
import { type AgentRun, AgentSession } from '@mooring/ai';
import { Mooring } from '@mooring/client';
import type { AgentConfig, AgentReport, TranscriptLine } from './messages.ts';
import { runLength, tokenAt } from './model-text.ts';

if (!process.send) throw new Error('agent-child: start it with fork() (needs IPC)');
process.on('disconnect', () => process.exit(0));
const config = JSON.parse(process.argv[2] ?? '{}') as AgentConfig;
const send = (report: AgentReport) => process.send?.(report);
const note = (line: TranscriptLine) => appendFileSync(config.transcript, `${JSON.stringify(line)}\n`);

let emitted = 0;
setInterval(() => {
  if (emitted === 0) return;
  send({ type: 'progress', tokens: emitted });
  emitted = 0;
}, 1000).unref();

/** The model: `n` tokens at the configured rate, each written as a text delta of part `t`. */
async function answer(run: AgentRun, session: number): Promise<void> {
  const n = runLength(config.seed, run.runId, config.minTokens, config.maxTokens);
  note({ t: 'start', run: run.runId, session, n, pid: process.pid, at: Date.now() });
  run.write({ type: 'text-start', id: 't' });
  const every = 1000 / config.tokensPerSecond;
  const acks: Promise<void>[] = [];
  await new Promise<void>((resolve) => {
    let i = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    const stop = () => {
      clearInterval(timer);
      resolve();
    };
    run.signal.addEventListener('abort', stop, { once: true });
    // A random phase, so that the runs do not all emit in the same millisecond.
    setTimeout(() => {
      timer = setInterval(() => {
        if (run.signal.aborted) return stop();
        run.write({ type: 'text-delta', id: 't', delta: tokenAt(config.seed, run.runId, i) });
        emitted++;
        i++;
        if (i % config.tokensPerSecond === 0 || i === n) {
          const k = i;
          acks.push(run.flush().then(() => note({ t: 'acked', run: run.runId, k, at: Date.now() })));
        }
        if (i === n) stop();
      }, every);
    }, Math.random() * every);
  });
  run.write({ type: 'text-end', id: 't' });
  await run.flush();
  await Promise.all(acks);
  if (!run.signal.aborted) note({ t: 'done', run: run.runId, n, at: Date.now() });
}

const agents: AgentSession[] = [];
for (let c = 0; c * config.sessionsPerConnection < config.sessions.length; c++) {
  const client = new Mooring({
    url: config.url,
    key: config.key,
    clientId: `${config.name}-c${c}`,
    environment: null,
    idleGrace: config.idleGraceMs,
    upgradeInterval: config.upgradeIntervalMs,
  });
  const share = config.sessions.slice(
    c * config.sessionsPerConnection,
    (c + 1) * config.sessionsPerConnection,
  );
  for (const session of share) {
    const agent = new AgentSession({
      channel: client.channels.get(`${config.prefix}${session}`, { start: true }),
      agent: 'assistant',
      lease: config.leaseMs,
      coalesceMs: config.coalesceMs,
      answerMissed: true,
      runId: (input) => `run-${input.id}`,
      onInput: (_input, run) => answer(run, session),
    });
    agent.on('error', (error) => send({ type: 'error', error: `${config.name}: ${String(error)}` }));
    agents.push(agent);
  }
}
await Promise.all(agents.map((a) => a.start()));
send({ type: 'ready' });
