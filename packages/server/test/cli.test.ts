/**
 * The `mooring` command (src/cli.ts): which command runs, and for `mooring serve` what it hands to
 * the server — the key it was given or a development key, the timings of its flags, environment and
 * file, tracing — the banner that says where it listens and what it stores in, and its stop on a
 * signal. Real processes on port 0, real requests. (`mooring token`: cli-token.test.ts; `inspect`
 * and `tail`: inspector-cli.test.ts.)
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { waitFor } from '@mooring/testkit';
import { RawClient } from './support/raw-client.ts';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const SPAN_NAMES = fileURLToPath(new URL('./support/span-names.ts', import.meta.url));
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-cli-serve-'));
  dirs.push(dir);
  return dir;
}

interface Served {
  child: ChildProcess;
  url: string;
  banner: string;
  /** Everything it wrote to stderr so far. */
  output(): string;
  stop(): Promise<void>;
}

/** Every MOORING_ variable of this process's environment unset (empty is unset), then `env`. */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(
    Object.keys(process.env)
      .filter((name) => name.startsWith('MOORING_'))
      .map((name) => [name, '']),
  );
  return { ...process.env, ...clean, ...env };
}

/** Starts `mooring serve --port 0` with `args`; resolves with its banner once it listens. */
function serve(args: string[], env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<Served> {
  const child = spawn(
    process.execPath,
    [...nodeFlags, CLI, 'serve', '--port', '0', '--log-level', 'warn', ...args],
    { env: environment(env), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  let output = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      output += d;
      // the banner is one write, its last fixed line the young generation's
      const url = /Mooring listening on (http:\/\/\S+)/.exec(output)?.[1];
      if (url !== undefined && /V8 young generation: .*\n/.test(output))
        resolve({
          child,
          url,
          banner: output,
          output: () => output,
          stop: async () => {
            child.kill('SIGTERM');
            await exited;
          },
        });
    });
    void exited.then(() => reject(new Error(`mooring serve exited before listening:\n${output}`)));
  });
}

/** How `mooring serve` ends when it cannot start: its exit code and what it said. */
function refused(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--log-level', 'warn', ...args], {
    env: environment(env),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => {
    stderr += d;
    // a server that started after all: stop it, the test fails on its exit code
    if (stderr.includes('listening on')) child.kill('SIGTERM');
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

/** `mooring <args>` to its end: its exit code and what it printed. */
function command(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: environment({}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
}

async function history(url: string, key: string): Promise<number> {
  const res = await fetch(`${url}/v1/channels/session:cli/messages`, {
    headers: { authorization: `Bearer ${key}` },
  });
  await res.body?.cancel();
  return res.status;
}

describe('mooring', () => {
  it('prints its usage for no command, --help, -h and help, and refuses an unknown command with it', async () => {
    // five processes that need nothing from one another: started at once
    const asks = [[], ['--help'], ['-h'], ['help']];
    const [r, ...usages] = await Promise.all([command(['serv']), ...asks.map((args) => command(args))]);
    for (const [i, u] of usages.entries()) {
      const args = asks[i]!.join(' ');
      assert.equal(u.status, 0, `${args}: ${u.stderr}`);
      assert.match(u.stdout, /^Usage: mooring <command>\n\nCommands:\n {2}serve /, args);
    }
    assert.ok(r);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^unknown command "serv"\n\nUsage: mooring <command>/);
  });
});

describe('mooring serve', () => {
  it('takes the key it was given: no development key, and no data folder for the memory store', async () => {
    const data = join(tempDir(), 'never-made');
    const server = await serve(['--store', 'memory', '--data', data], {
      MOORING_KEY: 'ops:cli-serve-secret',
    });
    try {
      assert.equal(await history(server.url, 'ops:cli-serve-secret'), 200);
      assert.doesNotMatch(server.banner, /development key/);
      assert.ok(!existsSync(data), 'a memory server makes no data folder');
    } finally {
      await server.stop();
    }
  });

  it('without a key makes a development key in the data folder, prints it and takes it', async () => {
    const data = tempDir();
    const server = await serve(['--store', 'memory', '--data', data]);
    try {
      const key = readFileSync(join(data, 'dev-key'), 'utf8').trim();
      assert.ok(server.banner.includes(`  development key (from ${data}/dev-key): ${key}\n`), server.banner);
      assert.equal(await history(server.url, key), 200);
    } finally {
      await server.stop();
    }
  });

  it('makes no development key for a server listening beyond this machine: without a key, --host 0.0.0.0 is refused', async () => {
    const data = tempDir();
    const { code, stderr } = await refused(['--store', 'memory', '--data', data, '--host', '0.0.0.0'], {});
    assert.equal(code, 1);
    assert.match(
      stderr,
      /no API key is configured and --host 0\.0\.0\.0 is not a loopback address: set MOORING_KEY/,
    );
    assert.equal(existsSync(join(data, 'dev-key')), false, 'no key was made');
  });

  it('says where it listens and what it stores in: the data folder for SQLite only', async () => {
    const data = tempDir();
    // the memory server makes nothing in the data folder: the two start at once
    const [memory, sqlite] = await Promise.all([
      serve(['--store', 'memory', '--data', data], { MOORING_KEY: 'ops:s' }),
      serve(['--store', 'sqlite', '--data', data], { MOORING_KEY: 'ops:s' }),
    ]);
    await Promise.all([memory.stop(), sqlite.stop()]);
    assert.match(memory.banner, /^Mooring listening on http:\/\/127\.0\.0\.1:\d+ {2}\(store: memory\)\n/);
    assert.ok(memory.banner.includes(`  WebSocket: ${memory.url.replace('http', 'ws')}/v1/connect\n`));
    assert.ok(sqlite.banner.includes(`(store: sqlite, data: ${data})\n`), sqlite.banner);
  });

  it('--new-epochs (after restoring a data folder) starts every channel in a new epoch, once; --synchronous full is said', async () => {
    const data = tempDir();
    const env = { MOORING_KEY: 'ops:s' };
    const auth = { authorization: 'Bearer ops:s', 'content-type': 'application/json' };
    const epochOf = async (url: string) => {
      const res = await fetch(`${url}/v1/channels/session:cli`, { headers: auth });
      return ((await res.json()) as { epoch: string }).epoch;
    };
    // refused at once (memory store): started beside the three SQLite servers, which run in turn
    const wrong = refused(['--store', 'memory', '--new-epochs'], env);
    const first = await serve(['--data', data], env);
    const published = await fetch(`${first.url}/v1/channels/session:cli/messages`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ data: 'x' }),
    });
    assert.equal(published.status, 200);
    const before = await epochOf(first.url);
    await first.stop();
    const restored = await serve(['--data', data, '--new-epochs', '--synchronous', 'full'], env);
    const after = await epochOf(restored.url);
    await restored.stop();
    assert.ok(after > before, `a new, later epoch: ${after} after ${before}`);
    assert.ok(
      restored.banner.includes(`(store: sqlite, data: ${data}, synchronous: full)\n`),
      restored.banner,
    );
    assert.match(restored.banner, /--new-epochs: every channel went on in a new epoch/);
    const again = await serve(['--data', data], env);
    assert.equal(await epochOf(again.url), after, 'once: the next start keeps it');
    await again.stop();
    const { code, stderr } = await wrong;
    assert.equal(code, 1);
    assert.match(stderr, /--new-epochs is for the SQLite store/);
  });

  it('hands the server the timings it was given: heartbeat and connection state TTL reach clients', async () => {
    const server = await serve(['--store', 'memory', '--heartbeat', '5s'], {
      MOORING_KEY: 'test:secret',
      MOORING_CONNECTION_STATE_TTL: '45s',
    });
    try {
      const client = await RawClient.connect(server.url, { key: 'test:secret' });
      assert.equal(client.connected.heartbeatInterval, 5_000);
      assert.equal(client.connected.connectionStateTtl, 45_000);
      await client.close();
    } finally {
      await server.stop();
    }
  });

  it('hands the server every other timing: one the server cannot take is refused at start, naming it', async () => {
    const file = join(tempDir(), 'mooring.json');
    writeFileSync(file, JSON.stringify({ firstPollTimeout: 0 }));
    const cases = [
      [{ MOORING_PRESENCE_GRACE: 'forever' }, 'presenceGrace'],
      [{ MOORING_SWEEP_INTERVAL: '0' }, 'sweepInterval'],
      [{ MOORING_NODE_TTL: '0' }, 'nodeTtl'],
      [{ MOORING_CONFIG: file }, 'firstPollTimeout'],
    ] as const;
    // four processes that need nothing from one another: started at once
    const answers = await Promise.all(
      cases.map(([env]) => refused(['--store', 'memory'], { MOORING_KEY: 'test:secret', ...env })),
    );
    for (const [i, [, name]] of cases.entries()) {
      const r = answers[i]!;
      assert.equal(r.code, 1, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^mooring: ${name} must be a number of ms`), name);
    }
  });

  it('makes OpenTelemetry spans with MOORING_TRACING=1 only, for the SDK registered with node --import', async () => {
    const dir = tempDir();
    // the two servers write to files of their own: they run at once
    const once = async (tracing: string) => {
      const names = join(dir, `spans-${tracing || 'off'}`);
      writeFileSync(names, '');
      const server = await serve(
        ['--store', 'memory'],
        { MOORING_KEY: 'test:secret', MOORING_TRACING: tracing, SPAN_NAMES: names },
        ['--import', SPAN_NAMES],
      );
      try {
        const res = await fetch(`${server.url}/v1/channels/session:traced/messages`, {
          method: 'POST',
          headers: { authorization: 'Bearer test:secret', 'content-type': 'application/json' },
          body: JSON.stringify({ data: 'x' }),
        });
        assert.equal(res.status, 200, await res.text());
      } finally {
        await server.stop();
      }
      // the span ends before the answer is written; the exporter writes it as it ends
      const spans = readFileSync(names, 'utf8');
      if (tracing) assert.match(spans, /^mooring\.publish$/m, 'MOORING_TRACING=1: spans made');
      else assert.equal(spans, '', 'without MOORING_TRACING: no span');
    };
    await Promise.all([once('1'), once('')]);
  });

  it('a second signal during its shutdown neither repeats nor cuts it short: said once, exit 0', async () => {
    const server = await serve(['--store', 'memory'], { MOORING_KEY: 'test:secret' });
    // a request whose body never ends: the shutdown waits for it (3 s at most) before it drops sockets.
    // Its `100 Continue` comes as the server takes the request: it is in flight before the signal.
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    let answer = '';
    socket.on('data', (d) => {
      answer += d;
    });
    socket.write(
      'POST /v1/channels/session:slow/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test:secret\r\n' +
        'Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n',
    );
    await waitFor(() => answer.startsWith('HTTP/1.1 100 Continue'), {
      message: `no 100 Continue: ${answer}`,
    });
    // 'close': the process ended and all it wrote has been read
    const closed = new Promise<number | null>((resolve) => server.child.on('close', (code) => resolve(code)));
    server.child.kill('SIGTERM');
    await waitFor(() => server.output().includes('SIGTERM: shutting down'));
    server.child.kill('SIGINT');
    assert.equal(await closed, 0, server.output());
    socket.destroy();
    assert.equal(server.output().match(/shutting down/g)?.length, 1, server.output());
  });
});
