/**
 * `mooring inspect` and `mooring tail` as real processes against a real server: the inspector shows
 * health, leases with deadlines, presence, the log and the AI conversation tree; tail streams an AI
 * run as text and, after a FaultProxy reset mid-run, resumes with nothing missed or repeated. The
 * key given on the command line never appears in what they print.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { OperationInput } from '@mooring/protocol';
import { FaultProxy, waitFor } from '@mooring/testkit';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import { bytes, duration, formatMessage, preview } from '../src/inspect/format-message.ts';
import { inspectCommand } from '../src/inspect/inspect-command.ts';
import { inspectTarget, integerOption } from '../src/inspect/inspect-options.ts';
import { tailCommand } from '../src/inspect/tail-command.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { AppendOptions, AppendResult, NewOperation } from '../src/store/store.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
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

const input = (id: string, text: string, parent?: string): OperationInput => ({
  id,
  name: 'ai.input',
  data: {
    message: { id, role: 'user', parts: [{ type: 'text', text }] },
    ...(parent === undefined ? {} : { parent }),
  },
});
const run = (runId: string, inputId: string, lease?: number): OperationInput => ({
  id: `run:${runId}`, // a run's message id names its run (PROTOCOL §13.2)
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

  it('--limit past one history page (1,000) reads the pages it needs: exactly the latest N, oldest first', async () => {
    const channel = 'session:inspect-many';
    for (let batch = 0; batch < 13; batch++)
      await publish(
        channel,
        'agent',
        Array.from({ length: 100 }, (_, i) => ({ id: `m${batch * 100 + i}`, data: batch * 100 + i })),
      );
    const r = cli(['inspect', channel, '--json', '--limit', '1234', '--url', fx.server.url, '--key', KEY]);
    assert.equal(await r.exited, 0, r.stderr());
    const doc = JSON.parse(r.stdout()) as { messages: { data: number }[] };
    const expected = Array.from({ length: 1234 }, (_, i) => 1300 - 1234 + i);
    assert.deepEqual(
      doc.messages.map((m) => m.data),
      expected,
    );
  });

  it('shows a publish awaiting its ack with its age, and no age once none waits', async () => {
    /** A memory store whose appends wait for `gate`: a publish received but not yet acknowledged. */
    class GatedStore extends MemoryStore {
      gate: Promise<void> | undefined;
      override async append(
        channel: string,
        ops: NewOperation[],
        options: AppendOptions,
      ): Promise<AppendResult> {
        await this.gate;
        return super.append(channel, ops, options);
      }
    }
    const store = new GatedStore();
    let open!: () => void;
    store.gate = new Promise((resolve) => {
      open = resolve;
    });
    const gated = await startFixture('memory', { store });
    const channel = 'session:inspect-unacked';
    const inspect = async () => {
      const lines: string[] = [];
      await inspectCommand([channel, '--url', gated.server.url], { MOORING_KEY: TEST_KEY }, (line) =>
        lines.push(line),
      );
      return lines.join('\n');
    };
    try {
      const agent = await RawClient.connect(gated.server.url, { clientId: 'agent' });
      const pending = agent.publish(channel, [{ id: 'slow', data: 'x' }]);
      const waiting = await waitFor(async () => {
        const out = await inspect();
        return out.includes('publishes awaiting ack 1') && out;
      });
      assert.match(waiting, / · publishes awaiting ack 1 \(oldest \d+(\.\d)? (ms|s|min)\)$/m);
      open();
      await pending;
      assert.match(await inspect(), / · publishes awaiting ack 0$/m);
      await agent.close();
    } finally {
      open();
      await gated.close();
    }
  });

  it('draws the conversation tree: nested inputs, regenerations with their reason, chunk parts, a handover, malformed events; only the text of inputs', async () => {
    const channel = 'session:inspect-tree';
    await publish(channel, 'user', [
      {
        id: 'in1',
        name: 'ai.input',
        data: {
          message: {
            id: 'in1',
            role: 'user',
            // only text parts are the input's text, not another part's
            parts: [
              { type: 'text', text: 'First' },
              { type: 'reasoning', text: 'hidden' },
              { type: 'text', text: ' question' },
            ],
          },
        },
      },
      // sent before in1 had an answer: it follows in1 itself
      input('in2', 'Also this', 'in1'),
    ]);
    await publish(channel, 'agent', [
      run('run1', 'in1'),
      {
        id: 'run:run2',
        name: 'ai.run',
        data: { runId: 'run2', agent: 'helper', input: 'in1', replaces: 'run1', reason: 'model overloaded' },
        headers: { status: 'error' },
      },
      {
        id: 'c1',
        name: 'ai.part',
        data: { type: 'data-weather', data: {} },
        headers: { run: 'run1', kind: 'chunk' },
      },
      { id: 'bad', name: 'ai.run', data: { runId: 'run3' }, headers: { status: 'running' } },
    ]);
    await publish(channel, 'user', [input('in3', 'Thanks', 'run1')]);
    await publish(channel, 'ops', [
      { id: 'h1', name: 'ai.control', data: { type: 'handover', to: 'human', operator: 'olga' } },
    ]);
    const lines: string[] = [];
    await inspectCommand([channel, '--url', fx.server.url], { MOORING_KEY: KEY }, (line) => lines.push(line));
    const tree = lines.slice(lines.indexOf('conversation:'));
    assert.deepEqual(tree.slice(0, -1), [
      'conversation:',
      '  handed over to a human: olga',
      '  › input in1 from user: "First question"',
      '    › input in2 from user: "Also this"',
      '    ◆ run run1 · helper · running',
      '        chunk: data-weather',
      '      › input in3 from user: "Thanks"',
      '    ◆ run run2 · helper · error (model overloaded) (regenerates run1)',
    ]);
    assert.match(tree.at(-1)!, /^ {2}! malformed: ai\.run \S+: runId, agent and input must be strings$/);

    // a channel without AI session events has no conversation section, nor a handover line
    const plain = 'session:inspect-plain';
    await publish(plain, 'user', [{ id: 'n1', name: 'note', data: 'hello' }]);
    const plainLines: string[] = [];
    await inspectCommand([plain, '--url', fx.server.url], { MOORING_KEY: KEY }, (line) =>
      plainLines.push(line),
    );
    assert.match(plainLines.at(-1)!, /^ {2}\S+ {2}create {2}note {2}id=n1 {2}client=user {2}"hello"$/);
    assert.ok(!plainLines.includes('conversation:'), plainLines.join('\n'));
  });

  it('says how many leases a channel has when the report lists only the first ones', async () => {
    const channel = 'session:inspect-many-leases';
    for (let i = 0; i < 250; i += 50)
      await publish(
        channel,
        'agent',
        Array.from({ length: 50 }, (_, j) => ({ id: `r${i + j}`, data: '', lease: 60_000 })),
      );
    const lines: string[] = [];
    await inspectCommand([channel, '--url', fx.server.url], { MOORING_KEY: KEY }, (line) => lines.push(line));
    const at = lines.indexOf('leases (250, the first 200 listed):');
    assert.ok(at >= 0, lines.join('\n'));
    assert.equal(lines.indexOf('presence (0):') - at - 1, 200, 'the 200 listed');
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

describe('how inspect prints', () => {
  it('prints durations and sizes in the unit their size calls for, switching exactly at 1 s, 2 min, 1 KiB and 1 MiB', () => {
    assert.equal(duration(null), '–');
    assert.equal(duration(undefined), '–');
    assert.equal(duration(999.4), '999 ms');
    assert.equal(duration(1000), '1.0 s');
    assert.equal(duration(119_999), '120.0 s');
    assert.equal(duration(120_000), '2.0 min');
    assert.equal(bytes(1023), '1023 B');
    assert.equal(bytes(1024), '1.0 KiB');
    assert.equal(bytes(1024 * 1024 - 1), '1024.0 KiB');
    assert.equal(bytes(1024 * 1024), '1.0 MiB');
  });

  it('shows data as JSON cut past its limit with its full length, a version only when it differs, headers only when there are some', () => {
    const fits = 'x'.repeat(158); // 160 characters as JSON: the limit
    assert.equal(preview(fits), JSON.stringify(fits));
    const over = 'x'.repeat(159);
    assert.equal(preview(over), `"${over}…(161 chars)`);
    assert.equal(preview({ a: 1 }, 7), '{"a":1}');
    assert.equal(preview({ a: 12 }, 7), '{"a":12…(8 chars)');
    const created = { serial: 's1', version: 's1', action: 'create', id: 'm1', timestamp: 0 } as const;
    assert.equal(formatMessage({ ...created, headers: {} }), 's1  create  id=m1');
    assert.equal(
      formatMessage({
        ...created,
        version: 's2',
        action: 'update',
        name: 'note',
        clientId: 'c',
        headers: { k: 'v' },
        data: 'd',
      }),
      's1  v=s2  update  note  id=m1  client=c  headers={"k":"v"}  "d"',
    );
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

describe('where inspect and tail connect, and with what', () => {
  it('take --url, else MOORING_URL, else the default, without credentials or a query in it', () => {
    const key = { key: 'a:b' };
    assert.deepEqual(inspectTarget(key, {}), { url: 'http://127.0.0.1:8080', authorization: 'Bearer a:b' });
    assert.equal(
      inspectTarget(key, { MOORING_URL: 'https://h.example/base/' }).url,
      'https://h.example/base',
    );
    assert.equal(
      inspectTarget({ ...key, url: 'http://x:1' }, { MOORING_URL: 'https://h' }).url,
      'http://x:1',
    );
    for (const url of ['http://u:p@h', 'http://u@h', 'http://:p@h', 'http://h/?key=k'])
      assert.throws(
        () => inspectTarget({ ...key, url }, {}),
        /--url must not carry credentials or a query/,
        url,
      );
    assert.throws(() => inspectTarget({ ...key, url: 'nope' }, {}), /--url must be a URL like/);
  });

  it('take a --key or --token flag before MOORING_KEY, and MOORING_KEY before MOORING_TOKEN', () => {
    const auth = (values: { key?: string; token?: string }, env: NodeJS.ProcessEnv) =>
      inspectTarget(values, env).authorization;
    assert.equal(auth({ token: 'jwt' }, { MOORING_KEY: 'a:b' }), 'Bearer jwt', 'the flag wins');
    assert.equal(auth({ key: 'c:d' }, { MOORING_TOKEN: 'jwt' }), 'Bearer c:d');
    assert.equal(auth({}, { MOORING_TOKEN: 'jwt' }), 'Bearer jwt');
    assert.equal(auth({}, { MOORING_KEY: 'a:b', MOORING_TOKEN: 'jwt' }), 'Bearer a:b');
    assert.throws(() => auth({}, {}), /credentials are required/);
    // an empty variable is unset: it neither hides the next one nor stands as a value
    assert.equal(auth({}, { MOORING_KEY: '', MOORING_TOKEN: 'jwt' }), 'Bearer jwt');
    assert.equal(inspectTarget({ key: 'a:b' }, { MOORING_URL: '' }).url, 'http://127.0.0.1:8080');
    // an empty flag is refused, never replaced by the environment or the other flag
    assert.throws(() => auth({ key: '' }, { MOORING_KEY: 'a:b' }), /credentials are required/);
    assert.throws(() => auth({ token: '' }, { MOORING_TOKEN: 'jwt' }), /credentials are required/);
    assert.throws(() => auth({ key: '', token: 'jwt' }, {}), /credentials are required/);
  });

  it('take an integer flag at its bounds, and the default without it', () => {
    assert.equal(integerOption('limit', undefined, 200, 1, 10_000), 200);
    assert.equal(integerOption('limit', '1', 200, 1, 10_000), 1);
    assert.equal(integerOption('limit', '10000', 200, 1, 10_000), 10_000);
    assert.throws(
      () => integerOption('limit', '10001', 200, 1, 10_000),
      /--limit must be an integer from 1 to 10000/,
    );
    // `--rewind ""` is not 0 (Number('') is): digits only
    for (const raw of ['', ' 5', '0x5', '1e2', '-0'])
      assert.throws(() => integerOption('rewind', raw, 10, 0, 1000), /--rewind must be an integer/, raw);
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

  /** Resolves once `channel` has `count` subscribers on the server (tail attached, or gone). */
  const subscribers = (channel: string, count: number) =>
    waitFor(
      async () => {
        const res = await rest(fx.server, `/v1/channels/${encodeURIComponent(channel)}/health`, { key: KEY });
        return (res.body.subscribers as unknown[]).length === count;
      },
      { message: `${channel} never had ${count} subscribers` },
    );

  it('prints AI events as text streams and each tool part once, everything else as lines; --raw prints AI events as lines', async () => {
    const channel = 'session:tail-print';
    const env = { MOORING_KEY: KEY };
    const { lines, output } = collect();
    const tail = tailCommand([channel, '--url', fx.server.url], env, output);
    if (tail === 'help') return;
    const peer = await RawClient.connect(fx.server.url, { key: KEY, clientId: 'peer' });
    try {
      await subscribers(channel, 1);
      // malformed AI events: an input without data or with parts that are no list, a run without its id
      await publish(channel, 'user', [{ id: 'in0', name: 'ai.input', data: null }]);
      await publish(channel, 'user', [
        { id: 'in00', name: 'ai.input', data: { message: { parts: 'oops' } } },
      ]);
      const [noRun] = await publish(channel, 'agent', [{ id: 'r0', name: 'ai.run', data: { agent: 'x' } }]);
      await publish(channel, 'user', [
        {
          id: 'in1',
          name: 'ai.input',
          data: {
            message: {
              id: 'in1',
              role: 'user',
              parts: [
                { type: 'text', text: 'Tell me ' },
                { type: 'file', url: 'x' },
                { type: 'text', text: 'more' },
              ],
            },
          },
        },
      ]);
      const [runSerial] = await publish(channel, 'agent', [run('r1', 'in1')]);
      const [p1] = await publish(channel, 'agent', [part('p1', 'r1', 'Hello')]);
      await publish(channel, 'agent', [{ action: 'append', serial: p1!, id: 'p1:1', data: ' world' }]);
      await publish(channel, 'agent', [
        { id: 'p2', name: 'ai.part', data: 'hmm', headers: { run: 'r1', kind: 'reasoning', partId: 'p2' } },
      ]);
      const toolHeaders = { run: 'r1', kind: 'tool-call', toolName: 'search', partId: 't1' };
      const [t1] = await publish(channel, 'agent', [
        { id: 't1', name: 'ai.part', data: { q: 'tides' }, headers: toolHeaders },
      ]);
      // a tool part's update (its result) and a finished text part's whole text add nothing
      await publish(channel, 'agent', [
        { action: 'update', serial: t1!, id: 't1:done', data: { q: 'tides', hits: 3 }, headers: toolHeaders },
      ]);
      await publish(channel, 'agent', [
        {
          action: 'update',
          serial: p1!,
          id: 'p1:done',
          data: 'Hello world',
          headers: { run: 'r1', kind: 'text', partId: 'p1', state: 'done' },
        },
      ]);
      // a part without a kind is no AI part: a line
      const [p3] = await publish(channel, 'agent', [
        { id: 'p3', name: 'ai.part', data: 'loose', headers: { run: 'r1' } },
      ]);
      const end = (status: string, id: string) =>
        publish(channel, 'agent', [
          {
            action: 'update',
            serial: runSerial!,
            id,
            headers: { status },
            data: { runId: 'r1', agent: 'helper', input: 'in1', finishReason: 'stop' },
          },
        ]);
      await end('running', 'r1:renewed'); // still running: nothing to say
      await end('complete', 'r1:end');
      const [deleted] = await publish(channel, 'agent', [{ action: 'delete', serial: p1!, id: 'p1:del' }]);
      // a control is one line of its own, not also printed as an operation
      await publish(channel, 'user', [
        { id: 'c1', name: 'ai.control', data: { type: 'cancel', runId: 'r1' } },
      ]);
      const [note] = await publish(channel, 'user', [{ id: 'n1', name: 'note', data: 'bye' }]);
      assert.equal(
        (await peer.request({ type: 'presence', channel, action: 'enter', data: {} })).type,
        'ack',
      );
      await waitFor(() => lines.status.some((l) => l.startsWith('presence: enter peer (')), {
        message: lines.status.join('\n'),
      });
      await waitFor(() => lines.out.includes('"bye"'), { message: lines.out });
      assert.equal(
        lines.out,
        [
          '› user: ',
          '› user: ',
          `${noRun}  create  ai.run  id=r0  client=agent  {"agent":"x"}`,
          '› user: Tell me more',
          '◆ run r1 · helper · answering in1',
          '  Hello world',
          '  (reasoning) hmm',
          '  [tool-call search] {"q":"tides"}',
          `${p3}  create  ai.part  id=p3  client=agent  headers={"run":"r1"}  "loose"`,
          '■ run r1 complete (stop)',
          `${p1}  v=${deleted}  delete  id=p1:del  client=agent`,
          '↯ control {"type":"cancel","runId":"r1"} from user',
          `${note}  create  note  id=n1  client=user  "bye"`,
          '',
        ].join('\n'),
      );
      assert.deepEqual(
        lines.status.filter((l) => l.startsWith('presence')),
        [`presence: enter peer (${peer.connected.connectionId})`],
        'changes only, not the sync',
      );
    } finally {
      await tail.stop();
      await peer.close();
    }

    const raw = collect();
    const rawTail = tailCommand(
      [channel, '--url', fx.server.url, '--raw', '--rewind', '100'],
      env,
      raw.output,
    );
    if (rawTail === 'help') return;
    try {
      await waitFor(() => raw.lines.out.includes('"bye"'), { message: raw.lines.out });
      assert.match(raw.lines.out, /^\S+ {2}create {2}ai\.input {2}id=in1 /m);
      assert.match(raw.lines.out, /^\S+ {2}v=\S+ {2}update {2}ai\.run {2}id=run:r1 /m);
      assert.ok(!/[›◆■]/.test(raw.lines.out), raw.lines.out);
    } finally {
      await rawTail.stop();
    }
  });

  it('with --rewind 0 starts live, and resumes from where it was after a drop though nothing was printed yet', async () => {
    const channel = 'session:tail-live';
    await publish(channel, 'user', [{ id: 'old', name: 'note', data: 'old' }]);
    const proxy = await FaultProxy.start({ host: '127.0.0.1', port: fx.server.port });
    const { lines, output } = collect();
    const tail = tailCommand(
      [channel, '--url', proxy.url('/').replace(/\/$/, ''), '--rewind', '0'],
      { MOORING_KEY: KEY },
      output,
    );
    if (tail === 'help') return;
    try {
      await subscribers(channel, 1);
      await proxy.reset();
      await waitFor(() => lines.status.length > 0, { message: 'no disconnect said' });
      await publish(channel, 'user', [{ id: 'during', name: 'note', data: 'during' }]);
      await waitFor(() => lines.out.includes('"during"'), { message: lines.out });
      await publish(channel, 'user', [{ id: 'after', name: 'note', data: 'after' }]);
      await waitFor(() => lines.out.includes('"after"'), { message: lines.out });
      assert.equal(lines.out.split('\n').length, 3, `each once, nothing from before: ${lines.out}`);
      assert.ok(!lines.out.includes('"old"'));
      assert.match(lines.status[0]!, /^— disconnected.*\(resuming after \S+\.\d+\)$/);
      assert.match(lines.status[1]!, /^— resumed from \S+\.\d+: nothing missed$/);
      assert.equal(lines.status.length, 2, lines.status.join('\n'));
    } finally {
      await tail.stop();
      await proxy.close();
    }
    await subscribers(channel, 0);
  });

  it('with --from starts after that position and says nothing of a resume; stop() closes the connection', async () => {
    const channel = 'session:tail-from';
    const [first] = await publish(channel, 'user', [
      { id: 'm1', name: 'note', data: 'first' },
      { id: 'm2', name: 'note', data: 'second' },
    ]);
    const { lines, output } = collect();
    const tail = tailCommand(
      [channel, '--url', fx.server.url, '--from', first!],
      { MOORING_KEY: KEY },
      output,
    );
    if (tail === 'help') return;
    try {
      await waitFor(() => lines.out.includes('"second"'), { message: lines.out });
      await publish(channel, 'user', [{ id: 'm3', name: 'note', data: 'third' }]);
      await waitFor(() => lines.out.includes('"third"'), { message: lines.out });
      assert.ok(!lines.out.includes('"first"'), lines.out);
      assert.deepEqual(lines.status, []);
    } finally {
      await tail.stop();
    }
    await subscribers(channel, 0); // stop() closed the connection
  });

  it("stays connected through quiet stretches longer than the server's heartbeat interval", async () => {
    // the server heartbeats every 100 ms: tail allows the interval + 10 s of silence before it gives up
    const quiet = await startFixture('memory', { keys: [KEY], heartbeatInterval: 100 });
    const channel = 'session:tail-quiet';
    const { lines, output } = collect();
    const tail = tailCommand([channel, '--url', quiet.server.url], { MOORING_KEY: KEY }, output);
    if (tail === 'help') return;
    try {
      await waitFor(
        async () => {
          const res = await rest(quiet.server, `/v1/channels/${channel}/health`, { key: KEY });
          const body = res.body as { serverTime: number; subscribers: { since: number }[] };
          return body.subscribers.length === 1 && body.serverTime - body.subscribers[0]!.since > 500;
        },
        { message: `never attached for 5 heartbeats: ${lines.status.join('\n')}` },
      );
      assert.deepEqual(lines.status, [], 'no disconnect');
    } finally {
      await tail.stop();
      await quiet.close();
    }
  });

  it('remembers the latest 10,000 AI parts: an append to an older one prints as a line', async () => {
    const channel = 'session:tail-bounded';
    const { lines, output } = collect();
    const tail = tailCommand([channel, '--url', fx.server.url], { MOORING_KEY: KEY }, output);
    if (tail === 'help') return;
    try {
      await subscribers(channel, 1);
      const parts = (from: number, n: number): OperationInput[] =>
        Array.from({ length: n }, (_, i) => ({
          id: `b${from + i}`,
          name: 'ai.part',
          data: 'x',
          headers: { run: 'r', kind: 'text', partId: `b${from + i}` },
        }));
      const [oldest] = await publish(channel, 'agent', parts(0, 1));
      // 10,000 more: the 10,001st part seen pushes the oldest out
      for (let i = 1; i <= 10_000; i += 100) await publish(channel, 'agent', parts(i, 100));
      await publish(channel, 'agent', [{ action: 'append', serial: oldest!, id: 'b0:late', data: 'late' }]);
      await waitFor(() => lines.out.includes('"late"') || lines.out.endsWith('late'), {
        message: lines.out.slice(-200),
      });
      assert.match(lines.out, /\n\S+ {2}v=\S+ {2}append {2}id=b0:late {2}client=agent {2}"late"\n$/);
    } finally {
      await tail.stop();
    }
  });

  it('prints a message the server sends again only once, and ends on a ref-less error of its own channel only', async () => {
    // a server speaking the wire protocol by script: the protocol lets a server send a message
    // again (a client ignores a version not after its position) and an error without a ref
    const channel = 'session:scripted';
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve) => wss.once('listening', resolve));
    const message = (n: number) => ({
      serial: `a.${n}`,
      version: `a.${n}`,
      action: 'create',
      id: `m${n}`,
      name: 'note',
      data: `n${n}`,
      timestamp: 0,
    });
    wss.on('connection', (ws) => {
      ws.send(JSON.stringify({ type: 'connected', maxIdleInterval: 15_000 }));
      ws.once('message', () => {
        const frames = [
          { type: 'attached', ref: 'tail', channel, resumed: false, position: '' },
          { type: 'messages', channel, messages: [message(1)] },
          { type: 'messages', channel, messages: [message(1), message(2)] },
          {
            type: 'error',
            channel: 'session:other',
            error: { code: 'forbidden', message: 'other', retryable: false },
          },
          { type: 'error', channel, error: { code: 'forbidden', message: 'mine', retryable: false } },
        ];
        for (const frame of frames) ws.send(JSON.stringify(frame));
      });
    });
    const url = `http://127.0.0.1:${(wss.address() as AddressInfo).port}`;
    const { lines, output } = collect();
    const tail = tailCommand([channel, '--url', url], { MOORING_KEY: KEY }, output);
    if (tail === 'help') return;
    try {
      assert.equal((await tail.failed).message, 'forbidden: mine');
      await tail.stop();
      assert.deepEqual(lines.status, [], 'no reconnecting after an error that is not retryable');
      assert.deepEqual(
        lines.out.split('\n').map((l) => l.split('  ')[0]),
        ['a.1', 'a.2', ''],
        lines.out,
      );
    } finally {
      await tail.stop();
      await new Promise((resolve) => wss.close(resolve));
    }
  });

  it('ends on refused credentials (HTTP 401 or 403), and retries any other refused handshake', async () => {
    const wrong = collect();
    const refused = tailCommand(
      ['session:x', '--url', fx.server.url],
      { MOORING_KEY: 'ops:wrong' },
      wrong.output,
    );
    if (refused === 'help') return;
    assert.equal((await refused.failed).message, 'the server refused the credentials (HTTP 401)');
    await refused.stop();
    assert.deepEqual(wrong.lines.status, [], 'no reconnecting after refused credentials');
    // a server that answers every upgrade with one status
    for (const status of [403, 503]) {
      const server = createHttpServer();
      server.on('upgrade', (_req, socket) => {
        socket.end(`HTTP/1.1 ${status} No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { lines, output } = collect();
      const tail = tailCommand(['session:x', '--url', url], { MOORING_KEY: KEY }, output);
      if (tail === 'help') return;
      try {
        if (status === 403) {
          assert.equal((await tail.failed).message, 'the server refused the credentials (HTTP 403)');
          await tail.stop();
          assert.deepEqual(lines.status, [], 'no reconnecting after refused credentials');
        } else {
          await waitFor(() => lines.status.length >= 2, { message: 'no retry' });
          assert.match(lines.status[1]!, /^— disconnected.*; reconnecting in \d+ ms/);
          const ended = await Promise.race([tail.failed.then(() => true), Promise.resolve(false)]);
          assert.equal(ended, false, 'a 503 is not the end');
        }
      } finally {
        await tail.stop();
        await new Promise((resolve) => server.close(resolve));
      }
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
      await waitFor(() => lines.status.length >= 3, { message: lines.status.join('\n') });
      assert.match(
        lines.status[0]!,
        /^— disconnected \(connect ECONNREFUSED 127\.0\.0\.1:\d+\); reconnecting in \d+ ms \(resuming after the start\)$/,
      );
      // the wait printed (not measured): from 125–250 ms, doubling, with jitter
      const waits = lines.status.slice(0, 3).map((l) => Number(/reconnecting in (\d+) ms/.exec(l)?.[1]));
      for (const [i, [low, high]] of [
        [125, 250],
        [250, 500],
        [500, 1000],
      ].entries())
        assert.ok(waits[i]! >= low! && waits[i]! <= high!, `wait ${i + 1}: ${waits[i]} ms`);
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
