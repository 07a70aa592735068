// Times the dashboard's views in headless Chromium against a running `chancy web` (a manual
// measurement, not a test: no assertions on time). Usage:
//   CHANCY_URL=http://127.0.0.1:8000/ CHANCY_USERNAME=admin CHANCY_PASSWORD=p \
//   CHANCY_JOB=<an id> CHANCY_QUEUE=<a queue> CHANCY_FUNC=<part of a func> node tests/browser/measure.mjs
import { chromium } from 'playwright-core';

const base = process.env.CHANCY_URL;
const job = process.env.CHANCY_JOB;
const queue = process.env.CHANCY_QUEUE || 'default';
const func = process.env.CHANCY_FUNC || '';
if (!base || !job) {
  console.error('set CHANCY_URL, CHANCY_USERNAME, CHANCY_PASSWORD and CHANCY_JOB');
  process.exit(2);
}
const b = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
const p = await b.newPage({ viewport: { width: 1280, height: 800 } });
p.on('pageerror', (e) => console.log('PAGEERROR', e));
await p.goto(base);
await p.fill('#login-username', process.env.CHANCY_USERNAME || 'admin');
await p.fill('#login-password', process.env.CHANCY_PASSWORD || '');
let t = Date.now(); await p.click('#login-submit'); await p.waitForSelector('[data-testid=overview-table]');
console.log(`login -> overview: ${Date.now() - t} ms`);
const views = [['overview', '[data-testid=overview-table]'], ['jobs', '[data-testid=job-row]'], ['jobs?state=failed', '[data-testid=job-row]'],
  [`jobs?state=failed&queue=${queue}`, '[data-testid=job-row]'], [`jobs?func=${func}`, '[data-testid=job-row]'], [`jobs/${job}`, '#job-detail']];
for (const [route, sel] of views) {
  const times = [];
  for (let k = 0; k < 3; k++) {
    await p.goto(base + '#/workers'); await p.waitForSelector('[data-testid=workers-table]');
    t = Date.now();
    await p.evaluate((r) => { location.hash = '#/' + r; }, route);
    await p.waitForSelector(`main:not([aria-busy]) ${sel}`);
    times.push(Date.now() - t);
  }
  console.log(`#/${route}: ${times.join(', ')} ms`);
}
// Older pages: click "Older »" 5 times from the newest page
await p.goto(base + '#/jobs'); await p.waitForSelector('[data-testid=jobs-older]');
const older = [];
for (let k = 0; k < 5; k++) { const first = await p.getAttribute('[data-testid=job-row]', 'data-job-id'); t = Date.now(); await p.click('[data-testid=jobs-older]'); await p.waitForFunction((f) => document.querySelector('[data-testid=job-row]')?.dataset.jobId !== f && !document.querySelector('main[aria-busy]'), first); older.push(Date.now() - t); }
console.log(`Older » x5: ${older.join(', ')} ms; rows on page: ${await p.locator('[data-testid=job-row]').count()}`);
const heap = await p.evaluate(() => performance.memory ? Math.round(performance.memory.usedJSHeapSize / 1e6) : null);
console.log(`JS heap: ${heap} MB; DOM nodes: ${await p.evaluate(() => document.getElementsByTagName('*').length)}`);
await b.close();
