/**
 * The packages as a user gets them: `npm pack` every published package, install the tarballs into a
 * temp project outside the workspace (no link back into `packages/`), then on the pinned Node and on
 * the server's minimum Node (22.16, installed from the registry as the `node` package): start
 * `npx mooring serve` from that install, connect with `@mooring/client`, publish, append, resume and
 * fold an AI run with `@mooring/ai` (tests/consumer/scenario.js). Also: a consumer's `.ts` typechecks
 * against the packed `.d.ts` with a strict tsconfig, the bin refuses an older Node with a clear
 * message, the tarballs hold only `dist`, `bin`, README and package.json, and
 * `npm publish --dry-run` passes for every package; the installed server on Redis (a real
 * `redis-server`), whose Lua scripts are files the build copies beside the code; and `@mooring/react`
 * (both entry points, rendered on the server with the consumer's own React) and `@mooring/temporal`
 * (both entry points) with the peers a user installs beside them.
 *
 * Only packages changed since their last build are built (after `npm run build`, which `npm test`
 * runs first, none), and the temp project reuses npm's cache, so the run is bounded by `npm install`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import ts from 'typescript';
import { buildStale, PUBLISHED } from '../scripts/build.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HERE = fileURLToPath(new URL('./consumer/', import.meta.url));
/** The oldest Node the server supports (node:sqlite with `isTransaction`); see packages/server/bin/mooring.js. */
const MINIMUM_NODE = '22.16.0';
/** One below it: the bin must refuse it with a message. */
const TOO_OLD_NODE = '22.15.0';
const KEY = 'consumer:consumer-secret';
/** What the consumer installs beside the tarballs: the peers of @mooring/ai, react and temporal. */
const PEERS = [
  'ai',
  'react',
  'react-dom',
  '@ai-sdk/react',
  '@temporalio/activity',
  '@temporalio/client',
  '@temporalio/common',
  '@temporalio/workflow',
];

function lockedVersion(name: string): string {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string }>;
  };
  const version = lock.packages[`node_modules/${name}`]?.version;
  assert.ok(version, `${name} is not in package-lock.json`);
  return version;
}

/**
 * The environment of a user's shell: without the repository's `--conditions=@mooring/source` and
 * without its `node_modules/.bin` on PATH, with `nodeDir` first so `node` (and the `node` that npm
 * and npx run on) is the version under test.
 */
function userEnv(nodeDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'NODE_OPTIONS' || k.startsWith('npm_')) continue;
    env[k] = v;
  }
  const path = (process.env.PATH ?? '').split(delimiter).filter((p) => !p.startsWith(ROOT));
  env.PATH = [nodeDir, ...path].join(delimiter);
  return env;
}

async function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, env, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed in ${cwd}:\n${e.stderr ?? ''}\n${e.stdout ?? ''}`);
  }
}

function progress(what: string): void {
  process.stderr.write(`  consumer: ${what}\n`);
}

interface Served {
  url: string;
  child: ChildProcess;
  /** What the banner says of V8's young generation (the bin re-executes itself with a cap). */
  young: string | undefined;
}

/** `npx mooring serve` in the consumer project; resolves with its URL once it listens. */
function serve(project: string, env: NodeJS.ProcessEnv, store: string[] = []): Promise<Served> {
  const data = mkdtempSync(join(project, 'data-'));
  const args = ['mooring', 'serve', '--port', '0', '--data', data, '--log-level', 'warn', ...store];
  const child = spawn('npx', args, {
    cwd: project,
    env: { ...env, MOORING_KEY: KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: npx runs the server as a child, and both are stopped
  });
  return new Promise((resolve, reject) => {
    let output = '';
    const seen = (d: Buffer) => {
      output += d;
      const m = /listening on (http:\/\/[^\s]+)/.exec(output);
      const young = /V8 young generation: (.+)/.exec(output)?.[1]?.trim();
      if (m && young !== undefined) resolve({ url: m[1]!, child, young });
    };
    child.stdout.on('data', seen);
    child.stderr.on('data', seen);
    child.on('exit', (code) =>
      reject(new Error(`mooring serve exited (${code}) before listening:\n${output}`)),
    );
  });
}

function stop(served: Served): Promise<void> {
  return new Promise((resolve) => {
    if (served.child.exitCode !== null) return resolve();
    served.child.on('exit', () => resolve());
    process.kill(-served.child.pid!, 'SIGTERM');
  });
}

/**
 * Type-checks the project's tsconfig.json as `tsc -p` does (the same compiler, options and files),
 * but reports the errors of the files `ours` picks (paths relative to the project) only, and spends
 * no time checking the others: the program's options and global errors, then each picked file's.
 */
function typeErrorsIn(
  project: string,
  ours: (file: string) => boolean,
): { checked: string[]; found: string[] } {
  const config = ts.getParsedCommandLineOfConfigFile(join(project, 'tsconfig.json'), undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) =>
      assert.fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')),
  });
  assert.ok(config, 'the consumer tsconfig.json');
  const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
  const picked = program.getSourceFiles().filter((f) => ours(relative(project, f.fileName)));
  const diagnostics = [
    ...config.errors,
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...picked.flatMap((f) => [...program.getSyntacticDiagnostics(f), ...program.getSemanticDiagnostics(f)]),
  ];
  const host = {
    getCanonicalFileName: (name: string) => name,
    getCurrentDirectory: () => project,
    getNewLine: () => '\n',
  };
  return {
    checked: picked.map((f) => relative(project, f.fileName)),
    found: diagnostics.map((d) => ts.formatDiagnostic(d, host).trim()),
  };
}

interface ScenarioResult {
  node: string;
  resumed: boolean;
  missed: { action: string; data: string }[];
  answerRole: string;
  answerText: string;
  runStatus: string;
}

describe('the published packages, installed from their tarballs', { timeout: 600_000 }, () => {
  const temp = mkdtempSync(join(tmpdir(), 'mooring-consumer-'));
  const project = join(temp, 'app');
  const minimumNode = join(temp, 'node-min');
  const oldNode = join(temp, 'node-old');
  const tarballs = new Map<string, string>();
  const pinned = userEnv(dirname(process.execPath));

  before(
    async () => {
      // The two other Nodes need nothing built: their installs run while the packages build and pack.
      for (const dir of [minimumNode, oldNode]) {
        mkdirSync(dir);
        writeFileSync(join(dir, 'package.json'), '{"private":true}');
      }
      progress(`npm install node@${MINIMUM_NODE} and node@${TOO_OLD_NODE}, beside the build`);
      const npmInstall = ['install', '--no-audit', '--no-fund', '--prefer-offline'];
      const nodes = Promise.all([
        sh('npm', [...npmInstall, `node@${MINIMUM_NODE}`], minimumNode, pinned),
        sh('npm', [...npmInstall, `node@${TOO_OLD_NODE}`], oldNode, pinned),
      ]);
      nodes.catch(() => {}); // awaited below; a build that failed first leaves it
      progress(`building what changed since the last build, and packing into ${temp}`);
      buildStale();
      const packed = JSON.parse(
        await sh(
          'npm',
          [
            'pack',
            '--json',
            '--pack-destination',
            temp,
            ...PUBLISHED.map((n) => `--workspace=packages/${n}`),
          ],
          ROOT,
          pinned,
        ),
      ) as { name: string; filename: string; files: { path: string }[] }[];
      for (const p of packed) {
        tarballs.set(p.name, join(temp, p.filename));
        const outside = p.files
          .map((f) => f.path)
          .filter((f) => !/^(dist\/|bin\/|README\.md$|package\.json$)/.test(f));
        assert.deepEqual(outside, [], `${p.name} packs only dist, bin, README and package.json`);
        assert.ok(
          !p.files.some((f) => /\.test\.|tsbuildinfo/.test(f.path)),
          `${p.name} packs no tests or build info`,
        );
      }

      const deps: Record<string, string> = {};
      for (const [name, file] of tarballs) deps[name] = `file:${file}`;
      mkdirSync(project);
      writeFileSync(
        join(project, 'package.json'),
        JSON.stringify(
          {
            name: 'mooring-consumer',
            private: true,
            type: 'module',
            // the peers a user installs beside @mooring/react and @mooring/temporal
            dependencies: {
              ...deps,
              ...Object.fromEntries(PEERS.map((name) => [name, lockedVersion(name)])),
            },
            devDependencies: {
              '@types/node': lockedVersion('@types/node'),
              '@types/react': lockedVersion('@types/react'),
            },
            // Every @mooring package comes from its tarball, never from a registry.
            overrides: deps,
          },
          null,
          2,
        ),
      );
      copyFileSync(join(HERE, 'scenario.js'), join(project, 'scenario.js'));
      copyFileSync(join(HERE, 'consumer.ts'), join(project, 'consumer.ts'));
      writeFileSync(
        join(project, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'es2022',
            module: 'nodenext',
            moduleResolution: 'nodenext',
            strict: true,
            exactOptionalPropertyTypes: true,
            noUncheckedIndexedAccess: true,
            skipLibCheck: false,
            noEmit: true,
            lib: ['es2023', 'dom'],
            types: ['node'],
          },
          files: ['consumer.ts'],
        }),
      );
      progress(`npm install (tarballs + ${PEERS.join(', ')})`);
      await Promise.all([sh('npm', npmInstall, project, pinned), nodes]);
      progress('installed');
    },
    { timeout: 600_000 },
  ); // packing and installing alone can take minutes on a loaded machine

  after(() => {
    rmSync(temp, { recursive: true, force: true });
  });

  test('the install holds copies, not links into the workspace', () => {
    for (const name of PUBLISHED) {
      const real = realpathSync(join(project, 'node_modules/@mooring', name));
      assert.ok(real.startsWith(realpathSync(project)), `@mooring/${name} resolves to ${real}`);
    }
  });

  for (const which of ['pinned', 'minimum'] as const) {
    test(`npx mooring serve + client + ai on the ${which} Node`, async () => {
      const env = which === 'pinned' ? pinned : userEnv(join(minimumNode, 'node_modules/.bin'));
      const version = (await sh('node', ['--version'], project, env)).trim();
      if (which === 'minimum') assert.equal(version, `v${MINIMUM_NODE}`);
      progress(`scenario on Node ${version}`);
      const served = await serve(project, env);
      // the installed bin re-executed itself with the cap, environment (MOORING_KEY) and all
      assert.equal(served.young, '--max-semi-space-size=16');
      try {
        const out = await sh('node', ['scenario.js', served.url, KEY], project, env);
        const result = JSON.parse(out.trim().split('\n').at(-1)!) as ScenarioResult;
        assert.equal(result.node, version);
        assert.equal(result.resumed, true);
        // Exactly what it missed, caught up as one rolled-up message (PROTOCOL.md §4.1).
        assert.deepEqual(result.missed, [{ action: 'update', data: 'Hello world' }]);
        assert.equal(result.answerRole, 'assistant');
        assert.equal(result.answerText, 'Hi from the agent');
        assert.equal(result.runStatus, 'complete');
        // The dashboard and the files it loads from the installed dependencies (uPlot).
        for (const path of ['/dashboard', '/dashboard.js', '/dashboard/uplot.js', '/dashboard/uplot.css']) {
          const res = await fetch(served.url + path);
          assert.equal(res.status, 200, `${path}: ${res.status}`);
          assert.ok((await res.text()).length > 100, `${path} is empty`);
        }
      } finally {
        await stop(served);
      }
    });
  }

  test('npx mooring serve --store redis: the installed package runs on Redis (its Lua scripts are in the tarball), live sessions and Durable Streams', async (t) => {
    const skip = redisSkipReason();
    if (skip) return t.skip(skip);
    const redis = await startRedis();
    try {
      const served = await serve(project, pinned, ['--store', 'redis', '--redis', redis.url]);
      try {
        const out = await sh('node', ['scenario.js', served.url, KEY], project, pinned);
        const result = JSON.parse(out.trim().split('\n').at(-1)!) as ScenarioResult;
        assert.equal(result.resumed, true);
        assert.deepEqual(result.missed, [{ action: 'update', data: 'Hello world' }]);
        assert.equal(result.answerText, 'Hi from the agent');
        assert.equal(result.runStatus, 'complete');
        // A Durable Stream on Redis: its own scripts (load, commit).
        const stream = `${served.url}/v1/stream/consumer/redis-${Date.now()}`;
        const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'text/plain' };
        assert.equal((await fetch(stream, { method: 'PUT', headers: auth })).status, 201);
        assert.equal((await fetch(stream, { method: 'POST', headers: auth, body: 'tide' })).status, 204);
        assert.equal(await (await fetch(`${stream}?offset=-1`, { headers: auth })).text(), 'tide');
      } finally {
        await stop(served);
      }
    } finally {
      await redis.close();
    }
  });

  test(`the mooring bin and the SQLite store refuse Node ${TOO_OLD_NODE} with a clear message`, async () => {
    const env = userEnv(join(oldNode, 'node_modules/.bin'));
    // `--help` exits at once whatever happens: a bin that wrongly accepted this Node prints the usage
    // and exits 0, so the test fails instead of waiting on a server.
    await assert.rejects(sh('npx', ['mooring', '--help'], project, env), (err: Error) => {
      assert.match(err.message, /mooring needs Node\.js 22\.16 or newer \(this is v22\.15\.0\)/);
      return true;
    });
    // Used as a library on that Node, the SQLite store says the same instead of half working.
    const script = `import { startServer } from '@mooring/server';
      await startServer({ port: 0, keys: ['a:b'], store: { kind: 'sqlite', dataDir: 'data-old' } });
      process.exit(0); // a store that opened: the test fails instead of waiting on a server`;
    await assert.rejects(sh('node', ['--input-type=module', '-e', script], project, env), (err: Error) => {
      assert.match(err.message, /the SQLite store needs Node\.js 22\.16 or newer/);
      return true;
    });
  });

  test('the packed declarations name .js files, never .ts sources', () => {
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (
          entry.name.endsWith('.d.ts') &&
          /from ['"]\.\.?\/[^'"]*\.ts['"]/.test(readFileSync(path, 'utf8'))
        )
          offenders.push(path.slice(project.length + 1));
      }
    };
    for (const name of PUBLISHED) walk(join(project, 'node_modules/@mooring', name, 'dist'));
    assert.deepEqual(offenders, []);
  });

  test('a consumer .ts typechecks against the packed .d.ts (strict, no allowImportingTsExtensions)', () => {
    // `skipLibCheck: false`, so our declarations are checked too, React's and Temporal's entry points
    // included. The peers' own declarations (the AI SDK's do not pass under
    // `exactOptionalPropertyTypes`) are not ours: only consumer.ts and @mooring's files are checked,
    // file by file through the compiler's API. (`tsc -p` checked all ~690 files of the program, most
    // of the time going on the peers' declarations, whose errors were then thrown away.)
    const errors = typeErrorsIn(project, (file) => /^(consumer\.ts|node_modules\/@mooring\/)/.test(file));
    assert.ok(errors.checked.includes('consumer.ts'), 'consumer.ts was checked');
    for (const name of PUBLISHED)
      assert.ok(
        errors.checked.some((file) => file.startsWith(`node_modules/@mooring/${name}/dist/`)),
        `the declarations of @mooring/${name} were checked`,
      );
    assert.deepEqual(errors.found, [], 'no type error in the consumer or in @mooring declarations');
  });

  test("@mooring/react and @mooring/temporal load as installed, with the consumer's own React (server rendering) and Temporal", async () => {
    // every entry point; React hooks from the consumer's one copy of React (a second copy would
    // throw "Invalid hook call"); the workflow entry with the consumer's @temporalio/workflow
    const script = `
      import { createElement } from 'react';
      import { renderToString } from 'react-dom/server';
      import { ConnectionStatus, MooringProvider, useChannel } from '@mooring/react';
      import { useMooringChat } from '@mooring/react/chat';
      import { ControlBridge, streamToSession } from '@mooring/temporal';
      import { runIdFor, useMooringSession, inputUpdate } from '@mooring/temporal/workflow';
      function Panel() {
        const channel = useChannel('session:ssr');
        const chat = useMooringChat({ channel: 'session:ssr' });
        return createElement('p', null, 'messages ' + channel.messages.length + ' ' + chat.messages.length + ' ' + chat.status);
      }
      const html = renderToString(createElement(MooringProvider, { options: { url: 'http://127.0.0.1:1', authUrl: '/t' } },
        createElement(ConnectionStatus), createElement(Panel)));
      console.log(JSON.stringify({ html, kinds: [typeof ControlBridge, typeof streamToSession, typeof useMooringSession],
        runId: runIdFor('wf', 'in-1'), update: inputUpdate.name }));`;
    const out = await sh('node', ['--input-type=module', '-e', script], project, pinned);
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as {
      html: string;
      kinds: string[];
      runId: string;
      update: string;
    };
    assert.match(result.html, /role="status"/);
    assert.match(result.html, /messages 0 0 ready/);
    assert.deepEqual(result.kinds, ['function', 'function', 'function']);
    assert.equal(result.runId, 'wf:wf:in-1');
    assert.equal(typeof result.update, 'string');
  });

  test("a workflow importing the installed @mooring/temporal/workflow passes Temporal's workflow bundler", async () => {
    // What a user's worker does at start: webpack the workflow code with what it imports from
    // node_modules into Temporal's sandbox, which refuses Node built-ins and non-deterministic code.
    // The replay tests bundle the sources; this is the packed dist.
    writeFileSync(
      join(project, 'workflows.js'),
      `import { runIdFor, useMooringSession } from '@mooring/temporal/workflow';
      export async function chat() {
        const session = useMooringSession();
        const input = await session.nextInput();
        return runIdFor('wf', input.inputId);
      }`,
    );
    const { bundleWorkflowCode } = await import('@temporalio/worker');
    const { code } = await bundleWorkflowCode({
      workflowsPath: join(project, 'workflows.js'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    });
    // the installed dist is in the bundle, its update and signal names with it
    assert.match(code, /node_modules\/@mooring\/temporal\/dist\/workflow/);
    assert.match(code, /mooring\.input/);
  });

  test('npm publish --dry-run passes for every package', async () => {
    const out = await sh(
      'npm',
      ['publish', '--dry-run', '--json', ...PUBLISHED.map((n) => `--workspace=packages/${n}`)],
      ROOT,
      pinned,
    );
    const published = JSON.parse(out) as Record<string, { name: string; version: string }>;
    assert.deepEqual(Object.keys(published).sort(), PUBLISHED.map((n) => `@mooring/${n}`).sort());
  });
});
