/**
 * Catch-up cost vs gap length (`npm run bench -- catchup`): a user who saw a response start and
 * then lost the connection for G seconds of a 30 tokens/s answer comes back from its position.
 * For each G (1 s, 10 s, 60 s, 10 min by default) the agent's G × 30 appends are stored first (as
 * fast as the server takes them: the cost of a catch-up depends on what is stored, not on how fast
 * it came), then a WebSocket subscriber attaches `from` the create's serial. Measured: the bytes it
 * receives until `attached` (the catch-up comes before it, rolled up: PROTOCOL.md §7) and the time,
 * against what an op-by-op replay would send (the live bytes per token of a subscriber that was
 * attached while the appends were stored, × tokens).
 */
import { fileURLToPath } from 'node:url';
import { tokenText } from '../ai/model-tokens.ts';
import { ByteMeter } from '../clients/byte-meter.ts';
import { withTimeout } from '../clients/fanout-target.ts';
import { connect } from '../clients/mooring-client.ts';
import { spawnServer } from '../spawn-server.ts';

export interface CatchupOptions {
  gaps: number[];
  tokenRate: number;
  store: 'memory' | 'sqlite';
}

export interface CatchupResult {
  gapSeconds: number;
  tokens: number;
  textBytes: number;
  /** Bytes received from the attach until `attached` (catch-up included). */
  bytes: number;
  ms: number;
  /** Live bytes per token × tokens: what replaying every op would cost. */
  replayBytes: number;
  error?: string;
}

async function one(port: number, gap: number, rate: number): Promise<CatchupResult> {
  const tokens = Math.round(gap * rate);
  const channel = `bench:catchup:${gap}`;
  const publisher = await connect(port);
  const liveMeter = new ByteMeter();
  const live = await connect(port, liveMeter);
  const acks = new Map<number, (frame: { results?: { serial: string }[] }) => void>();
  publisher.on('message', (data) => {
    const frame = JSON.parse(data.toString()) as {
      type: string;
      ref?: number;
      results?: { serial: string }[];
    };
    if ((frame.type === 'ack' || frame.type === 'error') && frame.ref !== undefined)
      acks.get(frame.ref)?.(frame);
  });
  let ref = 0;
  const publish = (ops: unknown[]): Promise<{ results?: { serial: string }[] }> => {
    const r = ++ref;
    return new Promise((resolve) => {
      acks.set(r, resolve);
      publisher.send(JSON.stringify({ type: 'publish', ref: r, channel, ops }));
    });
  };
  const created = await publish([{ action: 'create', id: 'answer', name: 'response', data: '' }]);
  const serial = created.results?.[0]?.serial;
  if (serial === undefined) throw new Error(`create refused: ${JSON.stringify(created)}`);
  // The live subscriber, attached from the create on: its bytes per token are the op-by-op cost.
  let liveAppends = 0;
  live.on('message', (data) => {
    const text = data.toString();
    for (let at = text.indexOf('"append"'); at >= 0; at = text.indexOf('"append"', at + 8)) liveAppends++;
  });
  live.send(JSON.stringify({ type: 'attach', ref: 1, channel, from: serial }));
  const liveStart = liveMeter.totals().read;
  let textBytes = 0;
  const pending: Promise<unknown>[] = [];
  for (let k = 0; k < tokens; k += 100) {
    const ops = [];
    for (let i = k; i < Math.min(tokens, k + 100); i++) {
      const data = tokenText(0, i);
      textBytes += data.length;
      ops.push({ action: 'append', id: `answer:${i}`, serial, data });
    }
    pending.push(publish(ops));
    if (pending.length >= 8) await pending.shift();
  }
  await Promise.all(pending);
  await withTimeout(
    (async () => {
      while (liveAppends < tokens) await new Promise((resolve) => setTimeout(resolve, 20));
    })(),
    60_000,
    'live subscriber',
  );
  const replayBytes = ((liveMeter.totals().read - liveStart) / liveAppends) * tokens;
  // The user back after the gap: attach from the create's serial.
  const meter = new ByteMeter();
  const user = await connect(port, meter);
  const before = meter.totals().read;
  const started = performance.now();
  const attached = new Promise<void>((resolve) => {
    user.on('message', (data) => {
      if (data.toString().startsWith('{"type":"attached"')) resolve();
    });
  });
  user.send(JSON.stringify({ type: 'attach', ref: 1, channel, from: serial }));
  await withTimeout(attached, 60_000, 'catch-up attach');
  const ms = performance.now() - started;
  const bytes = meter.totals().read - before;
  for (const s of [publisher, live, user]) s.terminate();
  return { gapSeconds: gap, tokens, textBytes, bytes, ms, replayBytes };
}

export async function runCatchup(options: CatchupOptions): Promise<CatchupResult[]> {
  const server = await spawnServer(fileURLToPath(new URL('../servers/mooring-server.ts', import.meta.url)), {
    args: [options.store, 'no-publish-limit'],
    label: `mooring ${options.store}`,
  });
  const results: CatchupResult[] = [];
  try {
    for (const gap of options.gaps) {
      process.stderr.write(`catchup: gap ${gap} s\n`);
      try {
        results.push(await one(server.port, gap, options.tokenRate));
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        results.push({
          gapSeconds: gap,
          tokens: 0,
          textBytes: 0,
          bytes: 0,
          ms: 0,
          replayBytes: 0,
          error: message,
        });
      }
    }
  } finally {
    await server.stop();
  }
  return results;
}

export function catchupMarkdown(results: CatchupResult[], store: string, rate: number): string {
  const rows = results.map((r) =>
    r.error !== undefined
      ? `| ${r.gapSeconds} s | failed: ${r.error} | | | | |`
      : `| ${r.gapSeconds >= 60 ? `${r.gapSeconds / 60} min` : `${r.gapSeconds} s`} | ${r.tokens.toLocaleString('en-US')} | ${r.textBytes.toLocaleString('en-US')} | ${r.bytes.toLocaleString('en-US')} (${(r.bytes / r.textBytes).toFixed(2)}× text) | ${Math.round(r.replayBytes).toLocaleString('en-US')} (${(r.replayBytes / r.bytes).toFixed(1)}× more) | ${r.ms.toFixed(1)} |`,
  );
  return [
    `### Catch-up after a gap (Mooring, ${store} store, one response at ${rate} tokens/s)`,
    '',
    "A user who saw the response start comes back after the gap from its position (WebSocket attach `from`); the catch-up is the rolled-up message. *op-by-op replay* is what resending every append would cost (a live subscriber's bytes per token × tokens).",
    '',
    '| gap | tokens missed | text bytes | catch-up bytes | op-by-op replay bytes | catch-up ms (attach → attached) |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
}
