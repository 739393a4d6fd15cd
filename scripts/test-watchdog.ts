/**
 * Loaded into every test process by `npm run test:unit` (`--import`): a test file whose tests have all
 * ended must end too. A leaked handle, or a main thread spinning in a loop that never yields, would
 * otherwise hold the whole run (and CI) for ever — the test runner waits for each file's process.
 * Armed only in a test file's own process, which the runner marks with NODE_TEST_CONTEXT: not in the
 * runner itself, nor in the servers and agents a test spawns.
 */
import { after } from 'node:test';
import { Worker } from 'node:worker_threads';

const main = process.argv[1] ?? '';
// Once in a while a test file finished every test and its process kept running at full CPU; an
// ordinary timer did not fire then (the main thread was starved). So the watchdog is a worker thread,
// with its own event loop: 60 s after the last test (or 20 minutes after the file started:
// MOORING_TEST_FILE_CAP_MS) it prints what is open and where the main thread is (a few samples of its JavaScript stack, paused through the inspector) to stderr, then kills the
// process, so that the file fails with the evidence instead of hanging. The worker is unref'd: it
// never keeps a clean process alive.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const inspector = require('node:inspector');
const { parentPort } = require('node:worker_threads');
const { pid, after, cap } = workerData;
// Written with fs.writeSync: a worker's process.stderr goes through the main thread, which is stuck.
const say = (text) => fs.writeSync(2, text + '\\n');
const frames = (list) => list.map((f) => '    at ' + (f.functionName || '<anonymous>') + ' (' + f.url + ':' + (f.lineNumber ?? f.location?.lineNumber ?? 0) + ')').join('\\n');
let fired = false;
// the file's tests ended: it has \`after\` ms to exit; and whatever happens, \`cap\` ms in all
parentPort.once('message', () => setTimeout(() => inspectAndKill('the test process outlived its tests by ' + after / 1000 + ' s'), after));
setTimeout(() => inspectAndKill('the test file ran ' + cap / 60000 + ' minutes, its hard cap (its last test may never have ended)'), cap);
function inspectAndKill(why) {
  if (fired) return;
  fired = true;
  say(why);
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
}
`;

/** A test file may run this long in all, whatever it does (the consumer test's install may take 10). */
const FILE_CAP_MS = Number(process.env.MOORING_TEST_FILE_CAP_MS) || 20 * 60_000;

if (process.env.NODE_TEST_CONTEXT && /\.test\.[cm]?[jt]s$/.test(main)) {
  // Started with the file, not in its last `after`: a main thread that never yields never reaches
  // that hook (a helper saw a file print ✔ for every test, then spin for 24 minutes). So the worker
  // also has a hard cap from the file's start; `after` only brings the deadline forward.
  const worker = new Worker(WATCHDOG, {
    eval: true,
    workerData: { pid: process.pid, after: 60_000, cap: FILE_CAP_MS },
  });
  worker.unref();
  after(() => {
    worker.postMessage('tests ended');
    // Once its tests have ended, the file's process leaves through process.exit() from its last
    // 'exit' listener (this one, added after the test runner's and the file's own): Node's teardown
    // after a natural exit (FreeEnvironment → CleanupHandles) was caught spinning for ever at full
    // CPU, with libuv's loop empty and this watchdog's worker already stopped (gdb, in a file that
    // had printed ✔ for every test; cf. nodejs/node#47748). process.exit skips that teardown.
    process.once('exit', () => process.exit());
  });
}
