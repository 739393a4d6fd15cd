// The demo in real Chromium against the real demo (Mooring with SQLite in a temp dir, the agent, the
// page), everything on port 0. What a person would try: a streamed answer; a reload mid-answer; a
// second device on the same session; the network dropping mid-answer; Stop; regenerate and ‹ ›.
// Each check compares what the page shows with what the agent published (DemoAgents transcripts).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDemo } from '../src/demo.ts';
import {
  answer,
  ask,
  assertNoErrors,
  type DemoInChromium,
  STORY,
  sessionIdOf,
  shownText,
  startDemoInChromium,
  WAIT,
  waitForStatus,
  waitForText,
} from './support/demo-in-chromium.ts';

const HOW = 'How does Mooring keep this answer when I reload?';

let h: DemoInChromium;
before(async () => {
  h = await startDemoInChromium();
});
after(() => h?.close());

describe('the demo in Chromium', { timeout: 180_000 }, () => {
  it('streams an answer with reasoning and a tool call to completion', async () => {
    const { page } = await h.openPage();
    const runId = await ask(page, "What's the weather in Lisbon today?");
    await waitForStatus(page, runId, 'running');
    await waitForStatus(page, runId, 'complete');

    const published = await h.ended(runId);
    assert.equal(published.status, 'complete');
    assert.deepEqual(published.tools, ['getWeather']);
    assert.deepEqual(await shownText(page, runId), published.textParts);
    assert.equal(await page.textContent(`${answer(runId)} [data-part="reasoning"]`), published.reasoning);
    const tool = await page.waitForSelector(`${answer(runId)} .tool[data-state="output-available"]`);
    assert.equal(await tool.$eval('.tool-name', (el) => el.textContent), 'getWeather');
    assert.match((await tool.$eval('.tool-output', (el) => el.textContent)) ?? '', /temperatureC/);
    assert.equal(await page.textContent('article.user .bubble'), "What's the weather in Lisbon today?");
    assert.equal(await page.getAttribute('#badge', 'data-state'), 'connected');
    assert.equal(await page.textContent('#transport'), 'websocket');
    assert.ok(await page.isDisabled('#stop'), 'Stop stays enabled after the answer completed');
    assertNoErrors(page);
  });

  it('a reload mid-answer comes back to the same answer, which completes with exactly the published text', async () => {
    const { page } = await h.openPage();
    const runId = await ask(page, STORY);
    await waitForText(page, runId, 60);
    const before = (await shownText(page, runId)).join('');
    assert.equal(h.transcript(runId).status, 'running', 'the answer ended before the reload');

    await page.reload();
    await page.waitForSelector('body[data-ready="true"]', { timeout: WAIT });
    // The same run, still streaming: the page continues it rather than showing a finished copy.
    await waitForStatus(page, runId, 'running');
    const resumed = (await shownText(page, runId)).join('');
    assert.ok(resumed.startsWith(before), 'the reloaded page lost text it had shown');
    assert.ok(
      Number(await page.getAttribute('#last-attach', 'data-caught-up')) > 0,
      'the reload loaded no history',
    );

    await waitForStatus(page, runId, 'complete');
    const published = await h.ended(runId);
    assert.deepEqual(await shownText(page, runId), published.textParts);
    assert.equal(await page.locator('article.user').count(), 1, 'the question is shown more than once');
    assert.equal(await page.locator('article.assistant').count(), 1, 'the answer was regenerated');
    assertNoErrors(page);
  });

  it('a second device on the same session sees the conversation live', async () => {
    const first = await h.openPage();
    const sessionId = await sessionIdOf(first.page);
    const second = await h.openPage(sessionId);
    assert.equal(await sessionIdOf(second.page), sessionId);

    const runId = await ask(first.page, "What's the weather in Porto?");
    await waitForStatus(second.page, runId, 'running');
    await waitForText(second.page, runId, 20);
    assert.equal(await second.page.textContent('article.user .bubble'), "What's the weather in Porto?");

    await waitForStatus(first.page, runId, 'complete');
    await waitForStatus(second.page, runId, 'complete');
    const published = await h.ended(runId);
    assert.deepEqual(await shownText(first.page, runId), published.textParts);
    assert.deepEqual(await shownText(second.page, runId), published.textParts);
    await second.page.waitForSelector(`${answer(runId)} .tool[data-state="output-available"]`);

    // "Who's here": each page lists both devices (itself marked "(you)") and the assistant.
    const you: string[] = [];
    for (const page of [first.page, second.page]) {
      await page.waitForFunction(
        () =>
          document.querySelectorAll('#presence li[data-kind="user"]').length === 2 &&
          document.querySelectorAll('#presence li[data-kind="assistant"]').length === 1,
        undefined,
        { timeout: WAIT },
      );
      const own = await page.$$eval('#presence li[data-you="true"]', (els) =>
        els.map((el) => ({ id: el.getAttribute('data-connection-id') ?? '', text: el.textContent ?? '' })),
      );
      assert.equal(own.length, 1, 'exactly one member is "you"');
      assert.match(own[0]?.text ?? '', /Chrome on Linux \(you\)/);
      you.push(own[0]?.id ?? '');
    }
    assert.notEqual(you[0], you[1], 'each page is its own member');
    const seenByFirst = await first.page.$$eval('#presence li[data-kind="user"]', (els) =>
      els.map((el) => el.getAttribute('data-connection-id')).sort(),
    );
    assert.deepEqual(seenByFirst, [...you].sort());

    const screenshot = join(tmpdir(), `mooring-demo-${process.pid}.png`);
    await second.page.screenshot({ path: screenshot });
    console.log(`# screenshot of the second device: ${screenshot}`);
    assertNoErrors(first.page);
    assertNoErrors(second.page);
  });

  it('going offline mid-answer: the page reconnects, resumes and completes with the right text', async () => {
    const { page, context } = await h.openPage();
    const runId = await ask(page, STORY);
    await waitForText(page, runId, 40);

    await context.setOffline(true);
    await page.waitForSelector('#badge:not([data-connection="connected"])', { timeout: WAIT });
    assert.notEqual(await page.getAttribute('#badge', 'data-state'), 'connected');
    await context.setOffline(false);

    await page.waitForSelector('#badge[data-state="connected"]', { timeout: WAIT });
    await waitForStatus(page, runId, 'complete');
    const published = await h.ended(runId);
    assert.deepEqual(await shownText(page, runId), published.textParts);
    assert.ok(Number(await page.textContent('#reconnects')) >= 1, 'no reconnect was counted');
    assert.equal(await page.getAttribute('#last-attach', 'data-resumed'), 'true');
    assertNoErrors(page);
  });

  it('Stop cancels the run on the agent and every page shows it cancelled', async () => {
    const first = await h.openPage();
    const second = await h.openPage(await sessionIdOf(first.page));
    const runId = await ask(first.page, HOW);
    await waitForText(second.page, runId, 40);

    await first.page.click('#stop');
    await waitForStatus(first.page, runId, 'cancelled');
    await waitForStatus(second.page, runId, 'cancelled');
    const published = await h.ended(runId);
    assert.equal(published.status, 'cancelled');

    // The agent stopped writing: no page shows more than it published, and it never finished.
    const full = published.textParts.join('');
    for (const page of [first.page, second.page]) {
      const shown = (await shownText(page, runId)).join('');
      assert.ok(full.startsWith(shown), 'a page shows text the agent did not publish');
      assert.ok(await page.isDisabled('#stop'));
    }
    assert.ok(!full.includes('every open view marks this answer as cancelled'), 'the answer ran to its end');
    assertNoErrors(first.page);
    assertNoErrors(second.page);
  });

  it('Regenerate adds an alternative answer, and ‹ › switches between them on every device', async () => {
    const first = await h.openPage();
    const second = await h.openPage(await sessionIdOf(first.page));
    const original = await ask(first.page, "What's the weather in Madrid?");
    await waitForStatus(first.page, original, 'complete');

    await first.page.click('#regenerate');
    const regenerated = await first.page.waitForSelector(`article.assistant:not(${answer(original)})`, {
      timeout: WAIT,
    });
    const alternative = (await regenerated.getAttribute('data-run-id')) ?? '';
    await waitForStatus(first.page, alternative, 'running');
    await first.page.click('#stop');
    await waitForStatus(second.page, alternative, 'cancelled');
    assert.equal(await first.page.locator(answer(original)).count(), 0, 'both answers are shown at once');
    assert.equal(await second.page.textContent(`${answer(alternative)} .branch-label`), '2/2');

    await second.page.click(`${answer(alternative)} button.branch[title="previous alternative"]`);
    // The selection is shared: both devices go back to the first answer.
    for (const page of [first.page, second.page]) {
      await waitForStatus(page, original, 'complete');
      assert.equal(await page.textContent(`${answer(original)} .branch-label`), '1/2');
      assert.deepEqual(await shownText(page, original), h.transcript(original).textParts);
    }
    assertNoErrors(first.page);
    assertNoErrors(second.page);
  });

  it('short-lived tokens are renewed over the live connection: no reconnect, and the answer completes', async () => {
    // Tokens of 4 s, an answer of ~8 s: the client renews each token before it expires with an
    // `auth` frame on the open connection (PROTOCOL.md §14), so the answer streams through several
    // token lifetimes without a single reconnect.
    const shortLived = await startDemo({
      key: { name: 'short', secret: randomBytes(16).toString('hex') },
      port: 0,
      mooringPort: 0,
      pace: 0.5,
      tokenTtl: 4_000,
    });
    try {
      const { page } = await h.openPage(undefined, shortLived);
      const runId = await ask(page, STORY);
      await waitForStatus(page, runId, 'complete');
      await page.waitForSelector('#badge[data-state="connected"]', { timeout: WAIT });
      assert.equal(await page.textContent('#reconnects'), '0', 'renewal needed no reconnect');
      const published = await h.ended(runId, shortLived);
      assert.deepEqual(await shownText(page, runId), published.textParts);
      assertNoErrors(page);
      await page.context().close();
    } finally {
      await shortLived.close();
    }
  });
});
