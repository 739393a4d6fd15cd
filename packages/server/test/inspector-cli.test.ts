/**
 * `mooring inspect` and `mooring tail` as real processes against a real server: the inspector shows
 * health, leases with deadlines, presence, the log and the AI conversation tree; tail streams an AI
 * run as text and, after a FaultProxy reset mid-run, resumes with nothing missed or repeated. The
 * key given on the command line never appears in what they print.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { OperationInput } from '@mooring/protocol';
import { FaultProxy, waitFor } from '@mooring/testkit';
import pino from 'pino';
import { inspectCommand } from '../src/inspect/inspect-command.ts';
import { tailCommand } from '../src/inspect/tail-command.ts';
import { type Fixture, rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const SECRET = 'inspector-secret-77e1';
const KEY = `ops:${SECRET}`;

let fx: Fixture;
/** Everything the server logs (debug level), to check no credential ever lands there. */
let log = '';
before(async () => {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      log += String(chunk);
      done();
    },
  });
  fx = await startFixture('memory', {
    keys: [KEY, { name: 'reader', secret: 'r', capability: { 'session:*': ['subscribe', 'history'] } }],
    logger: pino({ level: 'debug' }, sink),
  });
});
after(() => fx?.close());

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function cli(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, MOORING_KEY: '', MOORING_TOKEN: '', MOORING_URL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

async function publish(channel: string, clientId: string, ops: OperationInput[]): Promise<string[]> {
  const res = await rest(fx.server, `/v1/channels/${encodeURIComponent(channel)}/messages`, {
    key: KEY,
    body: { ops },
    headers: { 'x-mooring-client-id': clientId },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.results as { serial: string }[]).map((r) => r.serial);
}

const input = (id: string, text: string): OperationInput => ({
  id,
  name: 'ai.input',
  data: { message: { id, role: 'user', parts: [{ type: 'text', text }] } },
});
const run = (runId: string, inputId: string, lease?: number): OperationInput => ({
  id: runId,
  name: 'ai.run',
  data: { runId, agent: 'helper', input: inputId, parent: inputId },
  headers: { status: 'running' },
  ...(lease === undefined ? {} : { lease }),
});
const part = (id: string, runId: string, text: string): OperationInput => ({
  id,
  name: 'ai.part',
  data: text,
  headers: { run: runId, kind: 'text', partId: id, state: 'streaming' },
});

describe('mooring inspect', () => {
  it('shows health, leases with deadlines, presence, the log and the conversation tree', async () => {
    const channel = 'session:inspect-1';
    const member = await RawClient.connect(fx.server.url, { key: KEY, clientId: 'user' });
    await member.attach(channel);
    await member.request({ type: 'presence', channel, action: 'enter', data: { typing: true } });
    await publish(channel, 'user', [input('in1', 'Why is the sky blue?')]);
    await publish(channel, 'agent', [run('run1', 'in1', 60_000)]);
    const [p] = await publish(channel, 'agent', [part('p1', 'run1', 'Rayleigh')]);
    await publish(channel, 'agent', [{ action: 'append', serial: p!, id: 'p1:1', data: ' scattering.' }]);

    const r = cli(['inspect', channel, '--url', fx.server.url, '--key', KEY]);
    assert.equal(await r.exited, 0, r.stderr());
    const out = r.stdout();
    assert.match(out, /subscribers \(1\):\n {2}c_\S+ {2}user {2}websocket/);
    assert.match(out, /last 15 min: reconnects 0 · resumed 0 · continuity lost 0/);
    assert.match(
      out,
      /leases \(1\):\n {2}\S+ {2}agent {2}lease 60\.0 s {2}abandoned in \d+\.\d s unless its publisher writes again/,
    );
    assert.match(out, /presence \(1\):\n {2}user {2}c_\S+ {2}\{"typing":true\}/);
    assert.match(out, /log \(3 latest messages, rolled up, oldest first\):/);
    assert.match(
      out,
      /update {2}ai\.part {2}id=p1 {2}client=agent {2}headers=\{[^\n]*"run":"run1"[^\n]*"Rayleigh scattering\."/,
    );
    assert.match(out, /› input in1 from user: "Why is the sky blue\?"/);
    assert.match(out, /◆ run run1 · helper · running/);
    assert.match(out, /text \(streaming\): "Rayleigh scattering\."/);
    assert.ok(!(out + r.stderr()).includes(SECRET), 'the key is never printed');

    const json = cli(['inspect', channel, '--json', '--url', fx.server.url], { MOORING_KEY: KEY });
    assert.equal(await json.exited, 0, json.stderr());
    const doc = JSON.parse(json.stdout()) as { messages: unknown[]; health: { leases: unknown[] } };
    assert.equal(doc.messages.length, 3);
    assert.equal(doc.health.leases.length, 1);
    await member.close();
  });

  it('needs presence as well as history, and says so without printing the key', async () => {
    const r = cli(['inspect', 'session:inspect-1', '--url', fx.server.url, '--key', 'reader:r']);
    assert.equal(await r.exited, 1);
    assert.match(r.stderr(), /forbidden: your credentials do not allow presence on session:inspect-1/);
    assert.ok(!r.stderr().includes('reader:r'));
    const none = cli(['inspect', 'session:x', '--url', fx.server.url]);
    assert.equal(await none.exited, 1);
    assert.match(none.stderr(), /credentials are required/);
  });
});

describe('inspect and tail flags', () => {
  it('refuse a missing channel, a bad integer and an unknown flag, each with a clear message', async () => {
    const env = { MOORING_KEY: KEY };
    const quiet = () => {};
    const output = { write: quiet, status: quiet };
    await assert.rejects(inspectCommand([], env, quiet), /one channel is required\n\nUsage: mooring inspect/);
    await assert.rejects(
      inspectCommand(['session:x', '--limit', '0'], env, quiet),
      /--limit must be an integer from 1 to 10000/,
    );
    await assert.rejects(inspectCommand(['session:x', '--bogus'], env, quiet), /bogus/);
    assert.throws(
      () => tailCommand(['a', 'b'], env, output),
      /one channel is required\n\nUsage: mooring tail/,
    );
    assert.throws(
      () => tailCommand(['session:x', '--rewind', '1.5'], env, output),
      /--rewind must be an integer from 0 to 1000/,
    );
    assert.throws(() => tailCommand(['session:x', '--bogus'], env, output), /bogus/);
    assert.throws(() => tailCommand(['session:x', '--url', 'ftp://x'], env, output), /--url must be http/);
  });
});

describe('mooring tail', () => {
  it('streams an AI run as text and resumes after a connection reset, missing and repeating nothing', async () => {
    const channel = 'session:tail-1';
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: fx.server.port });
    const r = cli(['tail', channel, '--url', proxy.url('/').replace(/\/$/, '')], { MOORING_KEY: KEY });
    try {
      // attached once the channel's health lists it (a CLI process on a loaded machine: generous bounds)
      await waitFor(
        async () => {
          const res = await rest(fx.server, `/v1/channels/${channel}/health`, { key: KEY });
          return (res.body.subscribers as unknown[]).length === 1;
        },
        { message: `tail never attached: ${r.stderr()}`, timeout: 60_000 },
      );
      await publish(channel, 'user', [input('in1', 'Tell me about tides')]);
      await publish(channel, 'agent', [run('run1', 'in1')]);
      const [p] = await publish(channel, 'agent', [part('p1', 'run1', 'Tides')]);
      await publish(channel, 'agent', [{ action: 'append', serial: p!, id: 'p1:1', data: ' rise' }]);
      await waitFor(() => r.stdout().includes('Tides rise'), {
        message: `no stream: ${r.stdout()}`,
        timeout: 60_000,
      });

      await proxy.reset(); // the network drops mid-run
      await publish(channel, 'agent', [{ action: 'append', serial: p!, id: 'p1:2', data: ' and fall' }]);
      await publish(channel, 'agent', [{ action: 'append', serial: p!, id: 'p1:3', data: ' twice a day.' }]);
      await waitFor(() => r.stderr().includes('resumed from'), {
        message: `no resume: ${r.stderr()}`,
        timeout: 60_000,
      });
      await publish(channel, 'agent', [
        {
          action: 'update',
          serial: (await runSerial(channel))!,
          id: 'run1:end',
          headers: { status: 'complete' },
          data: { runId: 'run1', agent: 'helper', input: 'in1', finishReason: 'stop' },
        },
      ]);
      await waitFor(() => r.stdout().includes('■ run run1 complete'), {
        message: `no end: ${r.stdout()}`,
        timeout: 60_000,
      });
      const out = r.stdout();
      assert.match(
        out,
        /› user: Tell me about tides\n◆ run run1 · helper · answering in1\n {2}Tides rise and fall twice a day\.\n■ run run1 complete \(stop\)\n/,
      );
      assert.match(r.stderr(), /disconnected; reconnecting/);
      assert.ok(!(out + r.stderr()).includes(SECRET), 'the key is never printed');
    } finally {
      r.child.kill('SIGINT');
      await r.exited;
      await proxy.close();
    }
  });
});

describe('mooring tail, starting and resuming', () => {
  function collect() {
    const lines = { out: '', status: [] as string[] };
    const output = {
      write: (text: string) => {
        lines.out += text;
      },
      status: (line: string) => {
        lines.status.push(line);
      },
    };
    return { lines, output };
  }

  it('a start with the last messages is not reported as lost continuity; a --from whose log is gone is, with the reason', async () => {
    const channel = 'session:tail-start';
    await publish(channel, 'user', [
      { id: 'm1', name: 'note', data: 'first' },
      { id: 'm2', name: 'note', data: 'second' },
    ]);
    const env = { MOORING_KEY: KEY };
    const started = collect();
    const tail = tailCommand([channel, '--url', fx.server.url], env, started.output);
    assert.notEqual(tail, 'help');
    if (tail === 'help') return;
    try {
      await waitFor(() => started.lines.out.includes('"second"'), { message: started.lines.out });
      await publish(channel, 'user', [{ id: 'm3', name: 'note', data: 'third' }]);
      await waitFor(() => started.lines.out.includes('"third"'), { message: started.lines.out });
      assert.match(started.lines.out, /"first"[\s\S]*"second"[\s\S]*"third"/);
      assert.deepEqual(started.lines.status, [], 'a rewind starts: nothing was lost');
    } finally {
      await tail.stop();
    }

    // A position of another log (the channel was recreated, or the serial is from elsewhere).
    const resumed = collect();
    const lost = tailCommand(
      [channel, '--url', fx.server.url, '--from', '000000000000.0000000000000001'],
      env,
      resumed.output,
    );
    if (lost === 'help') return;
    try {
      await waitFor(() => resumed.lines.status.length > 0, { message: 'nothing said' });
      assert.match(
        resumed.lines.status[0]!,
        /^— continuity lost \(epoch_changed\): .*following live from \S+\.\d+$/,
      );
      await publish(channel, 'user', [{ id: 'm4', name: 'note', data: 'fourth' }]);
      await waitFor(() => resumed.lines.out.includes('"fourth"'), { message: resumed.lines.out });
      assert.ok(!resumed.lines.out.includes('"third"'), 'nothing from before is printed as if new');
    } finally {
      await lost.stop();
    }
  });

  it('inspect and tail say why a server cannot be reached', async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const url = `http://127.0.0.1:${closed}`;
    const env = { MOORING_KEY: KEY };
    await assert.rejects(
      inspectCommand(['session:x', '--url', url], env, () => {}),
      new RegExp(`^Error: cannot reach ${url}: ECONNREFUSED$`),
    );
    const { lines, output } = collect();
    const tail = tailCommand(['session:x', '--url', url], env, output);
    if (tail === 'help') return;
    try {
      await waitFor(() => lines.status.length > 0);
      assert.match(
        lines.status[0]!,
        /^— disconnected \(connect ECONNREFUSED 127\.0\.0\.1:\d+\); reconnecting in \d+ ms/,
      );
    } finally {
      await tail.stop();
    }
  });
});

describe('mooring tail refused', () => {
  it('exits 1 with the reason when the channel is forbidden, without printing the key', async () => {
    const r = cli(['tail', 'other:x', '--url', fx.server.url, '--key', 'reader:r']);
    assert.equal(await r.exited, 1);
    assert.match(r.stderr(), /mooring tail: forbidden: your credentials do not allow subscribe on other:x/);
    assert.ok(!(r.stdout() + r.stderr()).includes('reader:r'));
  });
});

describe('server log', () => {
  it('holds no credential after inspect, tail and refused requests', async () => {
    // a refused key and a credential in the query string (?key=) are logged without it too
    await rest(fx.server, '/v1/channels/session:inspect-1/health', { key: `ops:wrong-${SECRET}` });
    await fetch(`${fx.server.url}/v1/channels/session:inspect-1/health?key=${encodeURIComponent(KEY)}`);
    assert.ok(log.length > 0, 'the server logged at debug level');
    assert.ok(!log.includes(SECRET), 'no key in the server log');
  });
});

async function runSerial(channel: string): Promise<string | undefined> {
  const res = await rest(fx.server, `/v1/channels/${channel}/messages?direction=forwards`, { key: KEY });
  return (res.body.items as { serial: string; name?: string }[]).find((m) => m.name === 'ai.run')?.serial;
}
