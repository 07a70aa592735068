// Upstream Chancy 0.26.0's built dashboard (from the wheel, served on its own origin) against
// `chancy web`, in headless Chromium (run by tests/upstream_ui.rs).
//
// Signs in with the dashboard's own form (server URL = chancy web), then visits every page,
// waiting for text that only our data can produce, with no failed API request and no error
// alert; on the job and queue pages it presses Retry, Cancel, Pause and Resume and waits for
// the success toast and the refreshed state. Saves `upstream-<page>.png` screenshots and
// prints `page ok: <page>` per page. Exits 1 at the first failure (with a screenshot).
//
// Environment: CHANCY_UI (the dashboard's URL), CHANCY_URL (chancy web, no trailing slash),
// CHANCY_USERNAME, CHANCY_PASSWORD, CHANCY_SEED (JSON ids), CHANCY_ARTIFACTS, CHROMIUM.
import { chromium } from 'playwright-core';
import path from 'node:path';

const env = name => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const ui = env('CHANCY_UI');
const server = env('CHANCY_URL');
const seed = JSON.parse(env('CHANCY_SEED'));
const artifacts = env('CHANCY_ARTIFACTS');

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const failures = [];
const pageErrors = [];
page.on('pageerror', e => pageErrors.push(String(e)));
page.on('response', r => {
  if (r.url().startsWith(server) && r.status() >= 400) failures.push(`${r.request().method()} ${r.url()} → ${r.status()}`);
});
page.on('requestfailed', r => {
  const why = r.failure()?.errorText ?? '';
  // React Query aborts its own requests when a page unmounts.
  if (r.url().startsWith(server) && !why.includes('ERR_ABORTED')) failures.push(`${r.method()} ${r.url()} failed: ${why}`);
});

let step = 'start';
async function shot(name) {
  await page.screenshot({ path: path.join(artifacts, `upstream-${name}.png`), fullPage: true });
}
async function waitText(text, timeout = 20000) {
  await page.getByText(text, { exact: false }).first().waitFor({ state: 'visible', timeout });
}
async function expectClean(name) {
  // Give background queries a moment to land, then look for failures.
  await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
  if (failures.length) throw new Error(`failed API requests on ${name}: ${failures.join('; ')}`);
  const alerts = await page.locator('.alert-danger:visible').allInnerTexts();
  if (alerts.length) throw new Error(`error alert on ${name}: ${alerts.join(' | ')}`);
}
async function toast(text) {
  await page.locator('.toast.text-bg-success', { hasText: text }).first().waitFor({ timeout: 20000 });
}
async function visit(name, route, texts, act) {
  step = name;
  await page.goto(new URL(route.replace(/^\//, ''), ui).href);
  for (const text of texts) await waitText(text);
  await expectClean(name);
  if (act) await act();
  await expectClean(name);
  await shot(name);
  console.log(`page ok: ${name}`);
}

try {
  step = 'login';
  await page.goto(ui);
  await page.fill('#username', env('CHANCY_USERNAME'));
  await page.fill('#password', env('CHANCY_PASSWORD'));
  await page.fill('#server-url', server);
  await shot('login');
  await page.click('button[type=submit]');
  // The navigation shows the pages whose plugin classes /configuration lists.
  for (const entry of ['Scheduled Jobs', 'Workflows', 'Metrics']) {
    await page.getByRole('link', { name: entry }).first().waitFor({ timeout: 20000 });
  }

  const jobs = seed.jobs;
  await visit('dashboard', '/dashboard', ['shop']);
  await visit('queues', '/queues', ['shop', 'held']);
  await visit('queue', `/queues/${seed.queue}`, ['shop'], async () => {
    await page.getByRole('button', { name: 'Pause', exact: true }).first().click();
    await page.locator('.modal').getByRole('button', { name: /^Pause/ }).last().click();
    await toast('Queue paused');
    await page.getByRole('button', { name: 'Resume', exact: true }).first().waitFor({ timeout: 20000 });
    await page.getByRole('button', { name: 'Resume', exact: true }).first().click();
    await toast('Queue resumed');
    await page.getByRole('button', { name: 'Pause', exact: true }).first().waitFor({ timeout: 20000 });
  });
  await visit('workers', '/workers', [seed.worker]);
  await visit('worker', `/workers/${seed.worker}`, [seed.worker]);
  await visit('jobs', '/jobs', ['shop.ok']);
  await visit('job', `/jobs/${jobs.failed}`, ['card declined'], async () => {
    await page.getByRole('button', { name: 'Retry Job' }).click();
    await toast('Job retry scheduled');
  });
  await visit('job-cancel', `/jobs/${jobs.pending}`, ['shop.ok'], async () => {
    await page.getByRole('button', { name: 'Cancel Job' }).click();
    await toast('Job cancelled');
    // Refreshed: a cancelled job cannot be cancelled again.
    await page.getByRole('button', { name: 'Cancel Job' }).waitFor({ state: 'detached', timeout: 20000 });
  });
  await visit('crons', '/crons', ['shop.nightly_report']);
  await visit('cron', `/crons/${encodeURIComponent('shop.nightly_report')}`, ['shop.nightly_report']);
  await visit('workflows', '/workflows', ['month-end-report']);
  await visit('workflow', `/workflows/${seed.workflow}`, ['month-end-report', 'step_23']);
  await visit('metrics', '/metrics', ['queue']);
  await visit('metric', `/metrics/${encodeURIComponent(`queue:${seed.queue}`)}`, [`queue:${seed.queue}`]);
  await visit('gossip', '/gossip', ['Gossip'], async () => {
    // The live stream comes from /api/v1/ws, authenticated with the UI's own token.
    await page.getByText('Connected', { exact: true }).first().waitFor({ timeout: 15000 });
  });
  await visit('system', '/system', ['chancy.leadership']);
  if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join('; ')}`);
} catch (e) {
  console.error(`pages: FAILED at "${step}": ${e.message}`);
  if (pageErrors.length) console.error(`uncaught errors in the page: ${pageErrors.join('; ')}`);
  await shot('failure').catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
