// Upstream Chancy 0.26.0's own API client against `chancy web` (run by tests/upstream_ui.rs).
//
// Bundles the TypeScript client and zod schemas shipped in the wheel
// (chancy/plugins/api/ui/src/services/) with esbuild, logs in like upstream's UI, then calls
// every client method the UI uses — reads first, then actions — and counts the calls whose
// reply the client accepted (every read goes through `schema.parse`). A few error calls
// check that failures carry upstream's `{"title": …}` body. Prints one JSON line:
// {"passed": n, "failed": n, "failures": [...], "errors": {...}}; exits 1 on any failure.
//
// Environment: CHANCY_URL (no trailing slash), CHANCY_USERNAME, CHANCY_PASSWORD,
// CHANCY_WHEEL (the unpacked wheel: the folder holding chancy/), CHANCY_SEED (JSON ids).
import { build } from 'esbuild';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const env = name => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('CHANCY_URL');
const seed = JSON.parse(env('CHANCY_SEED'));
const services = path.join(env('CHANCY_WHEEL'), 'chancy/plugins/api/ui/src/services');

// The wheel's client, bundled as-is; zod comes from this folder's pinned node_modules.
const bundle = await build({
  stdin: {
    contents: "export { ChancyApi } from './chancy.ts'; export { ApiError } from './http.ts';",
    resolveDir: services,
    loader: 'ts',
  },
  bundle: true,
  platform: 'node',
  format: 'esm',
  write: false,
  nodePaths: [path.join(here, 'node_modules')],
  logLevel: 'error',
});
const out = path.join(mkdtempSync(path.join(tmpdir(), 'chancy-client-')), 'client.mjs');
writeFileSync(out, bundle.outputFiles[0].text);
const { ChancyApi, ApiError } = await import(pathToFileURL(out).href);

// The client reads its token from localStorage, as in the browser.
const storage = new Map();
globalThis.localStorage = {
  getItem: key => storage.get(key) ?? null,
  setItem: (key, value) => storage.set(key, String(value)),
  removeItem: key => storage.delete(key),
};

// Upstream's UI login: POST /api/v1/login, keep data.token for this server URL.
const login = await fetch(`${base}/api/v1/login`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ username: env('CHANCY_USERNAME'), password: env('CHANCY_PASSWORD') }),
});
if (login.status !== 200) throw new Error(`login answered ${login.status}`);
localStorage.setItem(`auth.token:${base}`, (await login.json()).token);

const api = ChancyApi(base);
const results = [];
const describe = e => (e instanceof ApiError ? `${e.status} ${e.message}` : String(e?.message ?? e)).slice(0, 600);
async function call(name, fn, check) {
  try {
    const value = await fn();
    const problem = check ? check(value) : null;
    results.push({ name, ok: !problem, error: problem || undefined });
    return value;
  } catch (e) {
    results.push({ name, ok: false, error: describe(e) });
    return undefined;
  }
}
const expect = (cond, why) => (cond ? null : why);

// ---- reads, as the pages make them ----
await call('getConfiguration', () => api.getConfiguration(), c =>
  expect(['Cron', 'WorkflowPlugin', 'Metrics'].every(p => c.plugins.includes(p)),
    `configuration.plugins lacks a nav class: ${JSON.stringify(c.plugins)}`));
await call('getSystem', () => api.getSystem());
await call('listPlugins', () => api.listPlugins(), p => expect(p.length > 0, 'no plugins'));
await call('listQueues', () => api.listQueues(), q => expect(q.length > 0, 'no queues'));
await call('listWorkers', () => api.listWorkers(), w =>
  expect(w.some(x => x.tags.some(t => t.startsWith('python'))) && w.some(x => x.tags.some(t => t.startsWith('rust'))),
    `a mixed fleet has a Python and a Rust worker: ${JSON.stringify(w.map(x => x.worker_id))}`));
await call('listFunctions', () => api.listFunctions(), f => expect(f.length > 0, 'no functions'));
await call('listCrons', () => api.listCrons(), c => expect(c.length > 0, 'no crons'));
await call('listJobs', () => api.listJobs({}), p => expect(p.items.length > 0, 'no jobs'));
for (const state of ['pending', 'running', 'retrying', 'succeeded', 'failed']) {
  await call(`listJobs state=${state}`, () => api.listJobs({ state }),
    p => expect(p.items.length > 0 && p.items.every(j => j.state === state), `no ${state} job listed`));
}
await call('listJobs filters', () => api.listJobs({ filters: [['func', '~', 'shop'], ['attempts', '>=', 0]] }));
await call('listJobs queue', () => api.listJobs({ queue: seed.queue }));
const first = await call('listJobs limit=2', () => api.listJobs({ limit: 2 }),
  p => expect(p.has_more && p.next_cursor, 'a 2-job page should say there is more'));
if (first?.next_cursor) {
  await call('listJobs before', () => api.listJobs({ limit: 2, before: first.next_cursor }));
}
for (const state of ['pending', 'running', 'retrying', 'succeeded', 'failed']) {
  await call(`getJob ${state}`, () => api.getJob(seed.jobs[state]), j => expect(j.state === state, `state ${j.state}`));
}
await call('getJob large', () => api.getJob(seed.large_job),
  j => expect(JSON.stringify(j.kwargs).length > 100000, 'the detail must hold the full kwargs'));
await call('listWorkflows', () => api.listWorkflows({}), p => expect(p.items.length > 0, 'no workflows'));
await call('listWorkflows filters', () => api.listWorkflows({ filters: [['name', '~', 'report']] }));
await call('getWorkflow', () => api.getWorkflow(seed.workflow),
  w => expect(Object.keys(w.steps).length === seed.workflow_steps, `steps: ${Object.keys(w.steps).length}`));
const overview = await call('getMetricsOverview', () => api.getMetricsOverview(),
  o => expect(o.count > 0, 'no metrics'));
const types = new Set();
const keys = [];
for (const [category, names] of Object.entries(overview?.categories ?? {})) {
  for (const name of names) keys.push(`${category}:${name}`);
}
for (const key of keys) {
  await call(`getMetricDetail ${key} 5min`, () => api.getMetricDetail(key, { resolution: '5min', range: 86400 }),
    d => { Object.values(d.series).forEach(s => types.add(s.type)); return null; });
}
await call('getMetricDetail global:status 1min', () => api.getMetricDetail('global:status', { resolution: '1min', range: 3600 }));
await call(`getMetricDetail queue:${seed.queue} worker`, () =>
  api.getMetricDetail(`queue:${seed.queue}`, { resolution: '5min', range: 86400, worker_id: seed.worker }));
await call(`getMetricDetail queue:${seed.queue}:throughput`, () =>
  api.getMetricDetail(`queue:${seed.queue}:throughput`, { resolution: '5min', range: 86400 }));
await call('getMetricDetail limit', () => api.getMetricDetail(`queue:${seed.queue}`, { resolution: '1hour', limit: 24 }));
await call('metric types', async () => [...types],
  t => expect(['counter', 'gauge', 'histogram'].every(k => t.includes(k)), `metric types seen: ${t}`));

// ---- actions, as the buttons send them ----
await call('retryJob', () => api.retryJob(seed.jobs.failed), r => expect(r.ok === true, 'ok must be true'));
await call('cancelJob', () => api.cancelJob(seed.jobs.pending), r => expect(r.ok === true, 'ok must be true'));
await call('purgeJob', () => api.purgeJob(seed.jobs.succeeded), r => expect(r.ok === true, 'ok must be true'));
await call('batchJobs retry', () => api.batchJobs(seed.batch.retry, 'retry'), r => expect(r.ok, JSON.stringify(r.results)));
await call('batchJobs cancel', () => api.batchJobs(seed.batch.cancel, 'cancel'), r => expect(r.ok, JSON.stringify(r.results)));
await call('batchJobs purge', () => api.batchJobs(seed.batch.purge, 'purge'), r => expect(r.ok, JSON.stringify(r.results)));
const queue = 'contract_queue';
await call('createQueue', () => api.createQueue({ name: queue, concurrency: 2, tags: ['.*'] }),
  q => expect(q.name === queue && q.concurrency === 2, JSON.stringify(q)));
await call('updateQueue', () => api.updateQueue(queue, { polling_interval: 7 }),
  q => expect(q.polling_interval === 7, JSON.stringify(q)));
await call('pauseQueue', () => api.pauseQueue(queue), r => expect(r.ok === true, 'ok must be true'));
await call('pauseQueue resume_at', () => api.pauseQueue(queue, new Date(Date.now() + 3600e3).toISOString()),
  r => expect(r.ok === true, 'ok must be true'));
await call('resumeQueue', () => api.resumeQueue(queue), r => expect(r.ok === true, 'ok must be true'));
await call('deleteQueue', () => api.deleteQueue(queue, false), r => expect(r.ok === true, 'ok must be true'));

// ---- failures carry upstream's {"title": …} (the UI shows ApiError.title) ----
const errors = {};
async function failure(name, fn) {
  try {
    await fn();
    errors[name] = 'no error';
  } catch (e) {
    errors[name] = e instanceof ApiError ? { status: e.status, title: e.title ?? null } : String(e);
  }
}
await failure('getJob unknown', () => api.getJob('00000000-0000-4000-8000-000000000000'));
await failure('listJobs limit=0', () => api.listJobs({ limit: 0 }));
await failure('listJobs bad filter', () => api.listJobs({ filters: [['colour', '=', 'red']] }));
await failure('listJobs NUL filter', () => api.listJobs({ filters: [['queue', '=', 'a\u0000b']] }));
await failure('getMetricDetail bad resolution', () => api.getMetricDetail('global', { resolution: '2min' }));

const failed = results.filter(r => !r.ok);
console.log(JSON.stringify({ passed: results.length - failed.length, failed: failed.length, total: results.length, failures: failed, errors }));
process.exit(failed.length ? 1 : 0);
