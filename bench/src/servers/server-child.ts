/**
 * The child side of a benchmark server process: starts one server, tells the parent its port over
 * IPC, answers CPU-usage queries, and exits when asked, when the parent goes away, or on a signal.
 *
 * IPC messages (parent → child): `{ type: 'cpu', id }`, `{ type: 'stop' }`.
 * IPC messages (child → parent): `{ type: 'ready', port }`, `{ type: 'cpu', id, usage }`,
 * `{ type: 'failed', error }`.
 */

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export type ChildRequest = { type: 'cpu'; id: number } | { type: 'stop' };
export type ChildReport =
  | { type: 'ready'; port: number }
  | { type: 'cpu'; id: number; usage: NodeJS.CpuUsage }
  | { type: 'failed'; error: string };

function send(report: ChildReport): void {
  if (process.connected) process.send?.(report);
}

export async function serveChild(start: () => Promise<RunningServer>): Promise<void> {
  if (!process.send) throw new Error('server-child: run this module through spawnServer (needs IPC)');
  // Parent gone (crash, SIGKILL): nothing left to serve.
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));

  let server: RunningServer;
  try {
    server = await start();
  } catch (error) {
    send({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  }

  process.on('message', (raw: ChildRequest) => {
    if (raw.type === 'cpu') send({ type: 'cpu', id: raw.id, usage: process.cpuUsage() });
    else if (raw.type === 'stop') {
      // Bounded: a server that does not close in 3 s is left to process.exit.
      const timer = setTimeout(() => process.exit(0), 3000);
      server.close().finally(() => {
        clearTimeout(timer);
        process.exit(0);
      });
    }
  });
  send({ type: 'ready', port: server.port });
}
