/**
 * Real parts for integration tests: a Mooring server on 127.0.0.1 port 0 (optionally behind a
 * FaultProxy) and clients that are closed when the test ends.
 */
import { after, type TestContext } from 'node:test';
import { Worker } from 'node:worker_threads';
import type { MooringServer, ServerOptions } from '@mooring/server';
import { startServer } from '@mooring/server';
import { FaultProxy, waitFor } from '@mooring/testkit';
import type { MooringOptions } from '../../src/mooring.ts';
import { Mooring } from '../../src/mooring.ts';

export const KEY = 'test:s3cret';

// A test file whose tests have all ended must end too. Once in a while the resilience file finished
// every test and its process kept running at full CPU, holding a CI run for ever; an ordinary timer
// set here did not fire then (the main thread was starved). So the watchdog is a worker thread, which
// has its own event loop: 20 s after the last test it pauses the main thread through the inspector,
// prints what is open and where it is (a few samples of its JavaScript stack) to stderr, then kills the process, so that the file fails
// with the evidence instead of hanging. The worker is unref'd: it never keeps a clean process alive.
after(() => {
  new Worker(WATCHDOG, { eval: true, workerData: { pid: process.pid, after: 20_000 } }).unref();
});

const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const inspector = require('node:inspector');
const { pid, after } = workerData;
// Written with fs.writeSync: a worker's process.stderr goes through the main thread, which is stuck.
const say = (text) => fs.writeSync(2, text + '\\n');
const frames = (list) => list.map((f) => '    at ' + (f.functionName || '<anonymous>') + ' (' + f.url + ':' + (f.lineNumber ?? f.location?.lineNumber ?? 0) + ')').join('\\n');
setTimeout(() => {
  say('the test process outlived its tests by ' + after / 1000 + ' s');
  setTimeout(() => process.kill(pid, 'SIGKILL'), 8000);
  let samples = 0;
  try {
    const session = new inspector.Session();
    session.connectToMainThread();
    session.on('Debugger.paused', ({ params }) => {
      say('sample ' + ++samples + ' of where its main thread is:\\n' + frames(params.callFrames.map((f) => ({ ...f, lineNumber: f.location.lineNumber + 1 }))));
      for (let t = params.asyncStackTrace; t; t = t.parent) say('  -- ' + (t.description || 'async') + '\\n' + frames(t.callFrames));
      if (samples >= 3) return process.kill(pid, 'SIGKILL');
      session.post('Debugger.resume', () => setTimeout(() => session.post('Debugger.pause'), 100));
    });
    session.post('Runtime.evaluate', { expression: "process.getActiveResourcesInfo().join(', ')" }, (err, res) => {
      say('still open: ' + (err ? String(err) : res.result.value));
      session.post('Debugger.enable', () =>
        session.post('Debugger.setAsyncCallStackDepth', { maxDepth: 16 }, () => session.post('Debugger.pause')),
      );
    });
  } catch (err) {
    say('could not inspect it: ' + err);
    process.kill(pid, 'SIGKILL');
  }
}, after);
`;

export async function realServer(t: TestContext, options: ServerOptions = {}): Promise<MooringServer> {
  const server = await startServer({ port: 0, host: '127.0.0.1', keys: [KEY], ...options });
  t.after(() => within(server.close(), 'server.close()'));
  return server;
}

export async function proxyTo(t: TestContext, server: { port: number }): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(() => within(proxy.close(), `FaultProxy.close() (${proxy.url('/')})`));
  return proxy;
}

/** Cleanup that cannot hang a test run: a close that does not finish in 15 s fails the test, saying which. */
async function within(closing: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within 15 s`)), 15_000);
  });
  try {
    await Promise.race([closing, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Timings that keep retries quick on a real clock; the assertions never depend on them. */
export const FAST = { initialRetryDelay: 20, disconnectedRetryTimeout: 200 } as const;

export function client(t: TestContext, url: string, options: Partial<MooringOptions> = {}): Mooring {
  const c = new Mooring({ url, key: KEY, environment: null, ...FAST, ...options });
  t.after(() => c.close());
  return c;
}

export function connected(c: Mooring, message = 'client never connected'): Promise<true> {
  return waitFor(() => c.connection.state === 'connected', { message });
}

export { waitFor };
