/**
 * The model: a process of its own that streams each response's tokens on a timer, like an LLM API
 * would, over plain chunked HTTP (`GET /generate?r=<response>&n=<tokens>&rate=<tokens/s>`, one
 * chunk per token). It records when it wrote each token (the machine's monotonic clock, `sharedClockMs`) so the orchestrator
 * can time token → client without putting timestamps on the wire of the systems compared.
 *
 * IPC in: `{ type: 'emits' }` → out: `{ type: 'emits', emits: { [response]: number[] } }`.
 */
import { createServer } from 'node:http';
import { sharedClockMs } from '../clock.ts';
import { serveChild } from '../servers/server-child.ts';
import { tokenText } from './model-tokens.ts';

const emits = new Map<number, number[]>();

await serveChild(async () => {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stub');
    const r = Number(url.searchParams.get('r'));
    const n = Number(url.searchParams.get('n'));
    const rate = Number(url.searchParams.get('rate') ?? 30);
    if (url.pathname !== '/generate' || !Number.isInteger(r) || !(n > 0) || !(rate > 0)) {
      res.writeHead(400).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    const times: number[] = [];
    emits.set(r, times);
    const interval = 1000 / rate;
    const started = performance.now();
    let k = 0;
    // A drift-free schedule: token k is due at started + k × interval, however late a timer fires.
    const tick = (): void => {
      const now = performance.now();
      while (k < n && started + k * interval <= now) {
        times[k] = sharedClockMs();
        res.write(tokenText(r, k));
        k++;
      }
      if (k >= n) res.end();
      else setTimeout(tick, Math.max(0, started + k * interval - performance.now()));
    };
    res.on('close', () => {
      k = n;
    });
    tick();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (m: { type: string }) => {
    if (m.type === 'emits') process.send?.({ type: 'emits', emits: Object.fromEntries(emits) });
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
});
