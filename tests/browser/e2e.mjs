// End-to-end check of the dashboard page in the system's headless Chromium, driven by
// playwright-core (which never downloads a browser). Run by tests/browser.rs, which seeds the
// database and starts `chancy web`; it can also be run by hand against a running server:
//
//   CHANCY_URL=http://127.0.0.1:8000/ CHANCY_USERNAME=u CHANCY_PASSWORD=p \
//   CHANCY_PENDING_JOB=<id> CHANCY_FAILED_JOB=<id> CHANCY_FAILED_QUEUE=default \
//   CHANCY_FAILED_TEXT='some error text' CHANCY_WORKFLOW=<id> node tests/browser/e2e.mjs
//
// Exits 0 when every step passed, 1 otherwise (the failing step is printed, and a
// screenshot of the page at that moment is saved as failure.png). Screenshots go to
// $CHANCY_ARTIFACTS (default target/browser-artifacts).

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`e2e: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const url = env('CHANCY_URL');
const username = env('CHANCY_USERNAME');
const password = env('CHANCY_PASSWORD');
const pendingJob = env('CHANCY_PENDING_JOB');
const failedJob = env('CHANCY_FAILED_JOB');
const failedQueue = env('CHANCY_FAILED_QUEUE', 'default');
const failedText = env('CHANCY_FAILED_TEXT');
const workflow = env('CHANCY_WORKFLOW');
const cancelledState = env('CHANCY_CANCELLED_STATE', 'failed');
const executablePath = env('CHROMIUM', '/usr/bin/chromium');
const artifacts = env('CHANCY_ARTIFACTS', 'target/browser-artifacts');
const TIMEOUT = 15_000;

mkdirSync(artifacts, { recursive: true });
const shot = (page, name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });

let stepName = 'launch';
function step(name) {
  stepName = name;
  console.log(`e2e: ${name}`);
}

async function expectText(locator, expected, what) {
  await locator.waitFor({ state: 'visible', timeout: TIMEOUT });
  const deadline = Date.now() + TIMEOUT;
  let text = '';
  while (Date.now() < deadline) {
    text = (await locator.textContent()) ?? '';
    if (text.includes(expected)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: expected text containing ${JSON.stringify(expected)}, found ${JSON.stringify(text)}`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
page.on('console', (msg) => {
  if (msg.type() === 'error') console.log(`e2e: browser console error: ${msg.text()}`);
});
// The Cancel button asks for confirmation.
page.on('dialog', (dialog) => dialog.accept());

let failed = false;
try {
  step('open the page: the login form is shown');
  await page.goto(url);
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await shot(page, 'login');

  step('a wrong password is refused with a message');
  await page.fill('#login-username', username);
  await page.fill('#login-password', `${password}-wrong`);
  await page.click('#login-submit');
  await expectText(page.locator('#login-error'), 'Invalid', 'login error');

  // The newcomer's path to a failed job's error text: three clicks.
  step('click 1: sign in, the overview shows the queues');
  await page.fill('#login-password', password);
  await page.click('#login-submit');
  await page.locator('[data-testid="overview-table"]').waitFor({ state: 'visible' });
  await page.locator('#login').waitFor({ state: 'hidden' });
  // The seeding worker ran the metrics plugin, which flushed when it stopped.
  await page.locator('[data-testid="sparkline"]').waitFor({ state: 'visible' });
  await shot(page, 'overview');

  step(`click 2: the failed count of queue ${failedQueue}`);
  await page.click(`[data-testid="count-${failedQueue}-failed"]`);
  await page.locator(`[data-testid="job-link-${failedJob}"]`).waitFor({ state: 'visible' });
  const listedStates = await page.locator('[data-testid="job-row"]').evaluateAll((rows) => rows.map((r) => r.dataset.state));
  if (listedStates.some((st) => st !== 'failed')) throw new Error(`the failed filter listed states ${listedStates}`);

  step('click 3: the failed job, its error text is visible');
  await page.click(`[data-testid="job-link-${failedJob}"]`);
  await expectText(page.locator('[data-testid="job-error"]').first(), failedText, 'error traceback');
  await expectText(page.locator('[data-testid="job-state"]'), 'failed', 'failed job state');
  await shot(page, 'failed-job');

  step('the jobs list shows the pending job');
  await page.click('[data-testid="nav-jobs"]');
  await page.locator('[data-testid="jobs-table"]').waitFor({ state: 'visible' });
  const pendingRow = page.locator(`tr[data-job-id="${pendingJob}"]`);
  await pendingRow.waitFor({ state: 'visible' });
  await expectText(pendingRow, 'pending', 'pending job row');
  await shot(page, 'jobs');

  step('open the pending job and cancel it');
  await page.click(`[data-testid="job-link-${pendingJob}"]`);
  await expectText(page.locator('[data-testid="job-state"]'), 'pending', 'pending job state');
  await page.click('#job-cancel');
  await expectText(page.locator('[data-testid="job-state"]'), cancelledState, 'cancelled job state');
  if (await page.locator('#job-cancel').isEnabled()) throw new Error('Cancel is still enabled after cancelling');
  await shot(page, 'cancelled-job');

  step('pause and resume the emails queue');
  await page.click('[data-testid="nav-queues"]');
  await expectText(page.locator('[data-testid="queue-state-emails"]'), 'active', 'emails queue state');
  await page.click('[data-testid="queue-pause-emails"]');
  await expectText(page.locator('[data-testid="queue-state-emails"]'), 'paused', 'paused emails queue');
  await shot(page, 'queues');
  await page.click('[data-testid="queue-resume-emails"]');
  await expectText(page.locator('[data-testid="queue-state-emails"]'), 'active', 'resumed emails queue');

  step('the workflow page draws every step, coloured by state');
  await page.click('[data-testid="nav-workflows"]');
  await page.click(`[data-testid="workflow-link-${workflow}"]`);
  await expectText(page.locator('[data-testid="workflow-state"]'), 'failed', 'workflow state');
  const dag = page.locator('[data-testid="workflow-dag"]');
  await dag.waitFor({ state: 'visible' });
  const nodeClasses = await dag.locator('g.dag-node').evaluateAll((nodes) => nodes.map((n) => n.getAttribute('class')));
  const count = (cls) => nodeClasses.filter((c) => c.includes(cls)).length;
  if (nodeClasses.length !== 5 || count('node-succeeded') !== 3 || count('node-failed') !== 1 || count('node-none') !== 1) {
    throw new Error(`unexpected workflow graph nodes: ${JSON.stringify(nodeClasses)}`);
  }
  if ((await dag.locator('path.dag-edge').count()) !== 5) throw new Error('the graph should have 5 edges');
  await shot(page, 'workflow');

  step('the other views render');
  for (const [nav, testid] of [['workers', 'workers-table'], ['workflows', 'workflows-table']]) {
    await page.click(`[data-testid="nav-${nav}"]`);
    await page.locator(`[data-testid="${testid}"]`).waitFor({ state: 'visible' });
  }
  await page.click('[data-testid="nav-crons"]');
  await page.locator('main h1').filter({ hasText: 'Crons' }).waitFor({ state: 'visible' });

  step('a narrow window still shows the overview');
  await page.setViewportSize({ width: 390, height: 800 });
  await page.click('[data-testid="nav-overview"]');
  await page.locator('[data-testid="overview-table"]').waitFor({ state: 'visible' });
  await shot(page, 'overview-narrow');
  await page.setViewportSize({ width: 1280, height: 860 });

  step('log out: the login form is back');
  await page.click('[data-testid="logout"]');
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.reload();
  await page.locator('#login-form').waitFor({ state: 'visible' });

  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);
  console.log('e2e: all steps passed');
} catch (e) {
  failed = true;
  console.error(`e2e: FAILED at step "${stepName}": ${e.message}`);
  if (pageErrors.length) console.error(`e2e: uncaught errors in the page: ${pageErrors.join('; ')}`);
  await shot(page, 'failure').catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
