// The load-balancer configs we ship (deploy/nginx.conf, deploy/haproxy.cfg), run with the real
// nginx and HAProxy binaries in front of three Mooring nodes on one real redis-server. The config
// files are used as shipped: only the listen address and the upstream servers are rewritten. Both
// balance per request with no stickiness, so a long-poll or SSE connection's polls and POSTs land
// on every node and must be forwarded to the node holding the connection.
// Checks, on every transport: publish and receive exactly once, in order, with no reconnect; the
// balancer's own log shows the connection requests spread over more than one node. And the files'
// inactivity timeouts stay above the longest quiet of a healthy connection (read, not waited for);
// behind nginx, a reader that stops reading is a backlog the node sees (nginx does not absorb it),
// by the file's own `proxy_buffering off`, not only the nodes' `X-Accel-Buffering: no`.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { CONNECT_ATTACH_PARAM, DEFAULT_TIMINGS, type TransportKind } from '@mooring/protocol';
import type { MooringServer } from '@mooring/server';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { client, KEY, realServer, waitFor } from './helpers/real-server.ts';
import { exchangeExactlyOnce } from './helpers/streams.ts';

const DEPLOY = new URL('../../../deploy/', import.meta.url);

function binary(name: string): string | undefined {
  return ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']
    .map((dir) => join(dir, name))
    .find((path) => existsSync(path));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface Balancer {
  url: string;
  /** The upstream node (port) of every request whose path starts with `/v1/connections/`. */
  connectionRequests(): Promise<number[]>;
  /** Whether the balancer process still runs, and if not how it ended and what it printed. */
  status(): string;
}

interface Running {
  child: ChildProcess;
  status(): string;
}

/** A path the balancer answers itself, with the token of its run: see `startBalancer`. */
const PROBE = '/__balancer';

/** The balancer could not bind its port: something else took it between `freePort` and its start. */
class PortTaken extends Error {}

/**
 * A balancer process listening on `port`; resolves once the balancer itself answers `PROBE` with
 * `token`, then once it passes `/health` on to the nodes. A free port can be taken by another test
 * before the balancer binds it — a listener's or an outgoing connection's — and that other listener
 * may answer `/health` too (it did once in CI: the test then talked to a Mooring node of another
 * test, which went away); the token tells them apart.
 */
async function run(
  t: TestContext,
  command: string,
  args: string[],
  port: number,
  token: string,
): Promise<Running> {
  // its own process group: nginx's workers outlive a killed master, holding our pipes open
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.after(async () => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
    child.stdout?.destroy();
    child.stderr?.destroy();
  });
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const answers = async (path: string, body?: string) => {
    if (gone) {
      if (/address already in use/i.test(output)) throw new PortTaken(output);
      throw new Error(`${command} exited:\n${output}`);
    }
    return fetch(`http://127.0.0.1:${port}${path}`).then(
      async (res) => res.ok && (body === undefined || (await res.text()) === body),
      () => false,
    );
  };
  await waitFor(() => answers(PROBE, token), { message: `${command} never answered on ${port}:\n${output}` });
  await waitFor(() => answers('/health'), { message: `no node answered through ${command}:\n${output}` });
  return {
    child,
    status: () =>
      gone
        ? `${command} exited (${child.exitCode ?? child.signalCode}):\n${output.slice(-2000)}`
        : `${command} is running`,
  };
}

/** Starts a balancer on a free port, with a fresh port (up to five) each time the port was taken. */
async function startBalancer(
  t: TestContext,
  start: (port: number, token: string) => Promise<Running>,
): Promise<Running & { port: number }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return { ...(await start(port, `balancer-${process.pid}-${port}-${attempt}`)), port };
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt === 5) throw error;
      t.diagnostic(`port ${port} was taken before the balancer bound it; trying another`);
    }
  }
}

/**
 * nginx with the shipped site. `ignoreAccelBuffering`: nginx ignores the nodes' `X-Accel-Buffering: no`
 * (which it would otherwise obey), so that only the file's own settings decide whether it buffers.
 */
async function nginx(
  t: TestContext,
  dir: string,
  nodes: MooringServer[],
  { ignoreAccelBuffering = false } = {},
): Promise<Balancer> {
  // run as root, nginx's workers are `nobody`: they must reach their temp files in `dir` (mkdtemp: 0700)
  await chmod(dir, 0o755);
  const shipped = await readFile(new URL('nginx.conf', DEPLOY), 'utf8');
  const log = join(dir, 'access.log');
  const { port, status } = await startBalancer(t, async (port, token) => {
    let site = shipped
      .replace(/^\s*server 10\.0\.0\.\d+:8080 (.*)$/gm, '')
      .replace(
        /keepalive 64;/,
        `${nodes.map((n) => `server 127.0.0.1:${n.port} max_fails=1 fail_timeout=5s;`).join('\n    ')}\n    keepalive 64;`,
      )
      .replace(/listen 80;/, `listen 127.0.0.1:${port};\n    location = ${PROBE} { return 200 "${token}"; }`);
    assert.notEqual(site, shipped);
    if (ignoreAccelBuffering)
      site = site.replace(
        /proxy_pass http:\/\/mooring;/,
        '$&\n        proxy_ignore_headers X-Accel-Buffering;',
      );
    await writeFile(join(dir, 'mooring.conf'), site);
    await writeFile(
      join(dir, 'nginx.conf'),
      [
        'worker_processes 1;',
        `pid ${join(dir, 'nginx.pid')};`,
        `error_log stderr warn;`,
        'events { worker_connections 1024; }',
        'http {',
        `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;`,
        `  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
        `  log_format upstream '$upstream_addr $request_uri';`,
        `  access_log ${log} upstream;`,
        `  include ${join(dir, 'mooring.conf')};`,
        '}',
      ].join('\n'),
    );
    return run(
      t,
      binary('nginx')!,
      ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'],
      port,
      token,
    );
  });
  return {
    url: `http://127.0.0.1:${port}/`,
    async connectionRequests() {
      const lines = (await readFile(log, 'utf8')).split('\n');
      return lines
        .map((line) => /^127\.0\.0\.1:(\d+) (\/v1\/connections\/\S*)/.exec(line))
        .filter((m) => m !== null)
        .map((m) => Number(m[1]));
    },
    status,
  };
}

async function haproxy(t: TestContext, dir: string, nodes: MooringServer[]): Promise<Balancer> {
  const shipped = await readFile(new URL('haproxy.cfg', DEPLOY), 'utf8');
  const { port, child, status } = await startBalancer(t, async (port, token) => {
    const config = shipped
      .replace(/^\s*server node\d 10\.0\.0\.\d+:8080\s*$/gm, '')
      .replace(
        /(default-server [^\n]*\n)/,
        `$1${nodes.map((n, i) => `    server node${i} 127.0.0.1:${n.port}`).join('\n')}\n`,
      )
      .replace(/maxconn 100000/, 'maxconn 4000')
      .replace(
        /bind :80\n/,
        `bind 127.0.0.1:${port}\n    http-request return status 200 content-type text/plain string "${token}" if { path ${PROBE} }\n`,
      )
      // the request log, to see where each request went (the shipped file leaves logging to the site)
      .replace(/defaults\n/, 'defaults\n    log stdout format raw local0 info\n    option httplog\n');
    assert.notEqual(config, shipped);
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, config);
    return run(t, binary('haproxy')!, ['-db', '-f', file], port, token);
  });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => {
    log += d.toString();
  });
  const ports = new Map(nodes.map((n, i) => [`node${i}`, n.port]));
  return {
    url: `http://127.0.0.1:${port}/`,
    async connectionRequests() {
      return [...log.matchAll(/mooring_nodes\/(node\d+) .*"(?:GET|POST) \/v1\/connections\//g)].map(
        (m) => ports.get(m[1]!) ?? 0,
      );
    },
    status,
  };
}

/**
 * The longest a node leaves a healthy request quiet: the heartbeat on streams and WebSockets, and a
 * long poll (25 s, `http-transports.ts`) forwarded to the node holding its connection (+ 5 s,
 * `forwardTimeout`). A balancer's inactivity timeouts must stay above it, or it cuts healthy
 * connections — which these tests, running a few seconds, would not see; so the numbers are read.
 */
const QUIETEST_MS = Math.max(DEFAULT_TIMINGS.heartbeatInterval, 25_000 + 5_000);

describe('deploy/: inactivity timeouts', () => {
  const seconds = (text: string, directive: RegExp): number => {
    const m = directive.exec(text);
    assert.ok(m, `${directive} is not in the shipped file`);
    return Number(m[1]) * 1000;
  };
  it('nginx.conf and haproxy.cfg wait longer than a node stays quiet on a healthy connection', async () => {
    const nginx = await readFile(new URL('nginx.conf', DEPLOY), 'utf8');
    const haproxy = await readFile(new URL('haproxy.cfg', DEPLOY), 'utf8');
    const timeouts = {
      'nginx proxy_read_timeout': seconds(nginx, /^\s*proxy_read_timeout (\d+)s;/m),
      'nginx proxy_send_timeout': seconds(nginx, /^\s*proxy_send_timeout (\d+)s;/m),
      'haproxy timeout client': seconds(haproxy, /^\s*timeout client (\d+)s$/m),
      'haproxy timeout server': seconds(haproxy, /^\s*timeout server (\d+)s$/m),
      'haproxy timeout tunnel': seconds(haproxy, /^\s*timeout tunnel (\d+)s$/m),
    };
    for (const [name, ms] of Object.entries(timeouts))
      assert.ok(ms > QUIETEST_MS, `${name} is ${ms} ms: not above ${QUIETEST_MS} ms`);
  });
});

const BALANCERS = { nginx, haproxy } as const;
const redisMissing = redisSkipReason();

for (const [name, start] of Object.entries(BALANCERS)) {
  const missing =
    redisMissing ??
    (binary(name) ? undefined : `${name} is not installed (apt-get install ${name}); .ci/run installs it`);
  describe(`deploy/${name === 'nginx' ? 'nginx.conf' : 'haproxy.cfg'} with the real ${name}`, () => {
    if (missing) {
      it(`needs ${name} and redis-server`, (t) => t.skip(missing));
      return;
    }
    for (const transport of ['websocket', 'sse', 'longpoll'] as const satisfies TransportKind[]) {
      it(`${transport}: three nodes, no stickiness; each message once, in order, no reconnect`, async (t) => {
        const redis = await startRedis();
        t.after(() => redis.close());
        const dir = await mkdtemp(join(tmpdir(), `mooring-${name}-`));
        t.after(() => rm(dir, { recursive: true, force: true }));
        const nodes: MooringServer[] = [];
        for (let i = 0; i < 3; i++)
          nodes.push(await realServer(t, { store: { kind: 'redis', url: redis.url } }));
        const balancer = await start(t, dir, nodes);

        const reader = client(t, balancer.url, { transports: [transport] });
        const writer = client(t, balancer.url, { transports: [transport] });
        await exchangeExactlyOnce(reader, writer, `session:${name}-${transport}`, transport).catch(
          (error) => {
            throw new Error(`${error}\n(${balancer.status()})`, { cause: error });
          },
        );
        if (transport !== 'websocket') {
          // the log is written as requests end: wait until it shows the polls and POSTs
          const nodesUsed = async () => new Set(await balancer.connectionRequests()).size;
          await waitFor(async () => (await nodesUsed()) >= 2).catch(async () => {
            const upstreams = await balancer.connectionRequests();
            assert.fail(`${name} never spread a connection's requests over nodes: ${upstreams.join(', ')}`);
          });
        }
      });
    }
  });
}

describe('deploy/nginx.conf with the real nginx: a reader that stops reading', () => {
  const missing = binary('nginx')
    ? undefined
    : 'nginx is not installed (apt-get install nginx); .ci/run installs it';
  it(
    'reaches the node as a backlog: the node drops it as a slow consumer',
    { skip: missing ?? false },
    async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'mooring-nginx-slow-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const node = await realServer(t, { store: { kind: 'memory' }, limits: { maxSendBuffer: 1024 * 1024 } });
      const balancer = await nginx(t, dir, [node], { ignoreAccelBuffering: true });
      const channel = 'session:nginx-slow';
      const url = new URL(balancer.url);
      const attach = encodeURIComponent(JSON.stringify([{ channel }]));
      const reader = connect(Number(url.port), url.hostname);
      reader.on('error', () => {});
      t.after(() => reader.destroy());
      reader.write(
        `GET /v1/connect/sse?v=1&key=${encodeURIComponent(KEY)}&${CONNECT_ATTACH_PARAM}=${attach} HTTP/1.1\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n\r\n`,
      );
      let got = '';
      const onData = (chunk: Buffer) => {
        got += chunk.toString('latin1');
      };
      reader.on('data', onData);
      await waitFor(() => got.includes('"attached"'), { message: `the reader never attached: ${got}` });
      // it stops reading for good: what nginx does not hold must wait in the node
      reader.off('data', onData);
      reader.pause();
      // the node's limit is 1 MiB, the kernel's socket buffers a few MiB more: with nginx passing the
      // backlog on, the node drops the reader after about 9 MiB; a buffering nginx would take 1 GiB
      const writer = client(t, node.url);
      await waitFor(() => node.connections === 2, { message: 'the writer never connected' });
      const chunk = 'x'.repeat(32 * 1024);
      let sent = 0;
      while (node.connections === 2 && sent < 64 * 1024 * 1024) {
        await writer.channels.get(channel).publish('w', chunk);
        sent += chunk.length;
      }
      assert.equal(node.connections, 1, `the reader was never dropped: nginx held ${sent} bytes for it`);
    },
  );
});
