/**
 * The dashboard in real Chromium against a real server (port 0): after traffic its charts have data
 * points (asserted on the data uPlot draws, not on pixels), the sessions in trouble list the channel
 * that had trouble, the inspector shows its log and an AI session's conversation tree with run
 * statuses (`/v1/channels/:channel/conversation`), and the key typed in never reaches the page's HTML.
 * A screenshot goes to $MOORING_TEST_ARTIFACTS (default: a temp dir), never into the repository.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { waitFor } from '@mooring/testkit';
import { type Browser, chromium } from 'playwright-core';
import { type Fixture, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
];
const SECRET = 'dashboard-secret-0f3a9c';

type Charts = Record<string, { names: string[]; data: Array<Array<number | null>> }>;

/** One series of a chart; fails if the chart has no series of that name. */
function column(charts: Charts, chart: string, name: string): Array<number | null> {
  const c = charts[chart];
  const at = c ? c.names.indexOf(name) : -1;
  assert.ok(c && at >= 0, `chart ${chart} has no series ${name}: ${c?.names}`);
  return c.data[at + 1]!;
}

let fx: Fixture;
let browser: Browser;

before(async () => {
  fx = await startFixture('memory', { keys: [`ops:${SECRET}`], metricsSampleInterval: 250 });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
});
after(async () => {
  await browser?.close();
  await fx?.close();
});

describe('dashboard (Chromium)', () => {
  it('draws the last hour after traffic, lists sessions in trouble and inspects one, without the key in its HTML', async () => {
    const key = `ops:${SECRET}`;
    const channel = 'session:dash-trouble';
    const agent = await RawClient.connect(fx.server.url, { key, clientId: 'agent' });
    const user = await RawClient.connect(fx.server.url, { key, clientId: 'user' });
    await user.attach(channel);
    const first = await agent.publish(channel, [
      { id: 'q', name: 'note', data: 'first', headers: { kind: 'q' } },
    ]);
    user.kill();
    for (let i = 0; i < 40; i++) await agent.publish(channel, [{ id: `t${i}`, data: `token ${i}` }]);
    const back = await RawClient.connect(fx.server.url, { key, clientId: 'user' });
    await back.attach(channel, { from: first.results[0]!.serial });
    await back.request({ type: 'nope' }); // an error by code

    const context = await browser.newContext({ viewport: { width: 1280, height: 1500 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (m) => {
      // 401s before signing in (and the missing favicon) are expected; a CSP violation is not
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(m.text());
    });
    try {
      await page.goto(`${fx.server.url}/dashboard`);
      await page.waitForSelector('#login:not([hidden])');
      await page.fill('#key', key);
      await page.click('#login button');
      await page.waitForSelector('#panels:not([hidden])');

      // keep traffic flowing while the page samples
      for (let i = 0; i < 20; i++)
        await agent.publish(channel, [{ id: `late${i}`, data: 'x', headers: { kind: 'q' } }]);
      const charts = await waitFor(
        async () => {
          const c = (await page.evaluate('window.mooringDashboard.charts')) as Charts;
          return c.operations && column(c, 'operations', 'stored').some((v) => (v ?? 0) > 0) && c;
        },
        { timeout: 20_000, message: 'the operations chart never showed a stored operation' },
      );
      for (const name of [
        'connections',
        'closed',
        'resumes',
        'operations',
        'latency',
        'errors',
        'slow',
        'abandoned',
      ]) {
        assert.ok(charts[name], `chart ${name} has no data`);
        assert.ok(charts[name].data[0]!.length >= 2, `chart ${name}: ${charts[name].data[0]!.length} points`);
      }
      const conns = charts.connections!;
      assert.ok(
        conns.data[conns.names.indexOf('websocket') + 1]!.some((v) => (v ?? 0) >= 2),
        'connections drawn',
      );
      const latency = charts.latency!;
      assert.ok(latency.data[latency.names.indexOf('publish p50') + 1]!.some((v) => v !== null && v > 0));
      assert.ok(charts.errors!.names.includes('invalid_frame'), `errors: ${charts.errors!.names}`);
      const drawn = await page.$$eval('.chart canvas', (nodes) => nodes.length);
      assert.ok(drawn >= 7, `uPlot canvases: ${drawn}`);

      await page.waitForFunction(
        (c) => document.querySelector('#trouble')?.textContent?.includes(c),
        channel,
      );
      await page.click(`#trouble tr.pick`);
      await page.waitForFunction(() =>
        document.querySelector('#inspector')?.textContent?.includes('Log, rolled up'),
      );
      const inspector = (await page.textContent('#inspector')) ?? '';
      assert.match(inspector, /Subscribers \(1\)/);
      assert.match(inspector, /reconnects 1 · resumed 1/);
      assert.match(inspector, /\{"kind":"q"\}/, 'headers shown');
      assert.ok(
        !inspector.includes('Conversation ('),
        'no conversation tree for a channel without AI events',
      );

      // an AI session: an input and a run that completed (the ops AgentRun publishes)
      const ai = 'session:dash-ai';
      const runData = { runId: 'run1', agent: 'helper', input: 'in1', parent: 'in1' };
      await agent.publish(ai, [
        {
          id: 'in1',
          name: 'ai.input',
          data: { message: { id: 'in1', role: 'user', parts: [{ type: 'text', text: 'Why <b>blue</b>?' }] } },
        },
      ]);
      const [started] = (
        await agent.publish(ai, [
          {
            id: 'run:run1',
            name: 'ai.run',
            data: runData,
            headers: { run: 'run1', agent: 'helper', status: 'running' },
          },
        ])
      ).results;
      await agent.publish(ai, [
        {
          id: 'p1',
          name: 'ai.part',
          data: 'Rayleigh scattering.',
          headers: { run: 'run1', kind: 'text', partId: 'p1', state: 'done' },
        },
      ]);
      await agent.publish(ai, [
        {
          action: 'update',
          serial: started!.serial,
          id: 'run:run1:end',
          data: { ...runData, finishReason: 'stop' },
          headers: { run: 'run1', agent: 'helper', status: 'complete' },
        },
      ]);
      await page.fill('#channel', ai);
      await page.click('#inspect button');
      await page.waitForFunction(() => document.querySelector('#conversation') !== null);
      const tree = (await page.textContent('#conversation')) ?? '';
      assert.match(tree, /› input in1 from agent: "Why <b>blue<\/b>\?"/, tree);
      assert.match(tree, /◆ run run1 · helper · complete \(stop\)/, tree);
      assert.match(tree, /text: "Rayleigh scattering\."/, tree);
      assert.equal(await page.$$eval('#conversation b', (n) => n.length), 0, 'text, never markup');
      assert.match((await page.textContent('#inspector')) ?? '', /Conversation \(3 latest messages\)/);
      const denied = await fetch(`${fx.server.url}/v1/channels/${encodeURIComponent(ai)}/conversation`);
      assert.equal(denied.status, 401, 'the conversation needs credentials');

      const html = await page.content();
      assert.ok(!html.includes(SECRET), 'the key is not in the page HTML');
      const dir = process.env.MOORING_TEST_ARTIFACTS ?? join(tmpdir(), 'mooring-artifacts');
      await mkdir(dir, { recursive: true });
      const file = join(dir, `dashboard-${process.pid}.png`);
      await page.screenshot({ path: file, fullPage: true });
      console.log(`# dashboard screenshot: ${file}`);
      assert.deepEqual(problems, [], 'no errors (nor CSP violations) in the page');
    } finally {
      await context.close();
      for (const c of [agent, back]) await c.close();
    }
  });
});
