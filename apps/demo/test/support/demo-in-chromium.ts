/**
 * What the demo's Chromium tests share: the real demo (Mooring with SQLite in a temp dir, the agent,
 * the page; everything on port 0), one headless Chromium, a page per device (its own browser context,
 * recording uncaught errors), and the queries that compare what a page shows with what the agent
 * published (DemoAgents transcripts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import type { Demo } from '../../src/demo.ts';
import { startDemo } from '../../src/demo.ts';
import type { RunTranscript } from '../../src/demo-agents.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** How long any one wait may take, ms. */
export const WAIT = 60_000;
export const STORY = 'Tell me a story about harbours.';

export interface DemoInChromium {
  demo: Demo;
  /** A page in its own browser context (a separate device), joined to `sessionId` or a new session. */
  openPage(sessionId?: string, on?: Demo): Promise<{ page: Page; context: BrowserContext }>;
  /** The agent's transcript of a run (it must exist). */
  transcript(runId: string, on?: Demo): RunTranscript;
  /** The run's transcript once the agent ended it. */
  ended(runId: string, on?: Demo): Promise<RunTranscript>;
  /** Closes the pages, Chromium and the demo, and removes its data. */
  close(): Promise<void>;
}

/** Starts the demo, paced so an answer lasts ≈ 8 s (long enough to act mid-stream), and Chromium. */
export async function startDemoInChromium(viewport = { width: 1200, height: 820 }): Promise<DemoInChromium> {
  const dataDir = await mkdtemp(join(tmpdir(), 'mooring-demo-'));
  // Chromium starts while the demo bundles its page and starts its servers: neither needs the other
  const [started, launched] = await Promise.allSettled([
    startDemo({
      key: { name: 'demo', secret: randomBytes(16).toString('hex') },
      port: 0,
      mooringPort: 0,
      dataDir,
      pace: 0.5,
    }),
    chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS }),
  ]);
  if (started.status === 'rejected' || launched.status === 'rejected') {
    if (started.status === 'fulfilled') await started.value.close();
    if (launched.status === 'fulfilled') await launched.value.close();
    await rm(dataDir, { recursive: true, force: true });
    throw started.status === 'rejected' ? started.reason : (launched as PromiseRejectedResult).reason;
  }
  const demo = started.value;
  const browser: Browser = launched.value;
  const contexts: BrowserContext[] = [];
  return {
    demo,
    async openPage(sessionId, on = demo) {
      const context = await browser.newContext({ viewport });
      contexts.push(context);
      const page = await context.newPage();
      const errors: string[] = [];
      page.on('pageerror', (err) => errors.push(err.message));
      (page as Page & { errors: string[] }).errors = errors;
      await page.goto(sessionId === undefined ? on.url : `${on.url}/#s=${sessionId}`);
      await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
      return { page, context };
    },
    transcript(runId, on = demo) {
      const t = on.agents.transcript(runId);
      assert.ok(t, `the agent has no run ${runId}`);
      return t;
    },
    async ended(runId, on = demo) {
      const deadline = Date.now() + WAIT;
      for (;;) {
        const t = on.agents.transcript(runId);
        if (t && t.status !== 'running') return t;
        if (Date.now() > deadline) throw new Error(`timed out waiting for run ${runId} to end`);
        await sleep(50);
      }
    },
    async close() {
      await Promise.all(contexts.map((c) => c.close()));
      await browser.close();
      await demo.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

export function assertNoErrors(page: Page): void {
  assert.deepEqual((page as Page & { errors?: string[] }).errors ?? [], [], 'uncaught errors in the page');
}

export async function sessionIdOf(page: Page): Promise<string> {
  const hash = await page.evaluate(() => location.hash);
  const id = new URLSearchParams(hash.slice(1)).get('s');
  assert.ok(id, `no session id in the URL (${hash})`);
  return id;
}

/** Sends a prompt; resolves with the run id of the answer it starts. */
export async function ask(page: Page, prompt: string): Promise<string> {
  const before = await page.locator('article.assistant').count();
  await page.fill('#input', prompt);
  await page.press('#input', 'Enter');
  await page.waitForFunction((n) => document.querySelectorAll('article.assistant').length > n, before, {
    timeout: WAIT,
  });
  const runId = await page.locator('article.assistant').last().getAttribute('data-run-id');
  assert.ok(runId, 'the answer has no run id');
  return runId;
}

/** The selector of an answer, optionally in one status. */
export function answer(runId: string, status?: string): string {
  return `article[data-run-id="${runId}"]${status === undefined ? '' : `[data-status="${status}"]`}`;
}

export async function waitForStatus(page: Page, runId: string, status: string): Promise<void> {
  await page.waitForSelector(answer(runId, status), { timeout: WAIT });
}

/** Waits until the page shows at least `chars` characters of the answer's text. */
export async function waitForText(page: Page, runId: string, chars: number): Promise<void> {
  await page.waitForFunction(
    ([selector, n]) =>
      [...document.querySelectorAll(`${selector} [data-part="text"]`)].reduce(
        (sum, el) => sum + (el.textContent?.length ?? 0),
        0,
      ) >= n,
    [answer(runId), chars] as const,
    { timeout: WAIT },
  );
}

/** The text parts the page shows for an answer. */
export async function shownText(page: Page, runId: string): Promise<string[]> {
  return page.$$eval(`${answer(runId)} [data-part="text"]`, (els) => els.map((el) => el.textContent ?? ''));
}
