/**
 * The agents of the AI benchmark, in their own process: `connections` Mooring clients, each serving
 * its share of the sessions with an AgentSession. Each input is answered by a "model" that emits
 * `tps` tokens per second for `seconds` seconds; every token carries the time it was emitted
 * (`<seq>:<µs> `), so a user can measure model-token → client latency.
 *
 * argv[2]: JSON { url, prefix, sessions, connections, tps, seconds, coalesceMs }.
 * IPC out: { type: 'ready' }, { type: 'error', error }.
 */
import { Mooring } from '@mooring/client';
import type { UIMessageChunk } from 'ai';
import { AgentSession } from '../src/index.ts';
import { BENCH_KEY, nowMicros } from './bench-key.ts';

interface Config {
  url: string;
  prefix: string;
  sessions: number;
  connections: number;
  tps: number;
  seconds: number;
  coalesceMs: number;
}

if (!process.send) throw new Error('agents-child: start it with fork() (needs IPC)');
process.on('disconnect', () => process.exit(0));
const config = JSON.parse(process.argv[2] ?? '{}') as Config;

function tokens(signal: AbortSignal): ReadableStream<UIMessageChunk> {
  const total = config.tps * config.seconds;
  const every = 1000 / config.tps;
  let timer: ReturnType<typeof setInterval> | undefined;
  let start: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<UIMessageChunk>({
    start(controller) {
      controller.enqueue({ type: 'text-start', id: 't' });
      let seq = 0;
      const stop = () => {
        clearTimeout(start);
        clearInterval(timer);
      };
      signal.addEventListener('abort', stop, { once: true });
      // A random phase, so that the runs do not all emit in the same millisecond.
      start = setTimeout(() => {
        timer = setInterval(() => {
          controller.enqueue({ type: 'text-delta', id: 't', delta: `${seq}:${nowMicros()} ` });
          if (++seq === total) {
            stop();
            controller.enqueue({ type: 'text-end', id: 't' });
            controller.close();
          }
        }, every);
      }, Math.random() * every);
    },
    cancel() {
      clearTimeout(start);
      clearInterval(timer);
    },
  });
}

const agents: AgentSession[] = [];
for (let c = 0; c < config.connections; c++) {
  const client = new Mooring({ url: config.url, key: BENCH_KEY, clientId: `agent-${c}`, environment: null });
  for (let i = c; i < config.sessions; i += config.connections) {
    const agent = new AgentSession({
      channel: client.channels.get(`${config.prefix}${i}`, { start: true }),
      agent: 'assistant',
      coalesceMs: config.coalesceMs,
      onInput: (_input, run) => run.pipe(tokens(run.signal)),
    });
    agent.on('error', (error) => process.send?.({ type: 'error', error: String(error) }));
    agents.push(agent);
  }
}
await Promise.all(agents.map((a) => a.start()));
process.send({ type: 'ready' });
