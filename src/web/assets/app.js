// The chancy dashboard: a hash-routed page over the JSON API of `chancy web`.
//
// Plain ES module, no framework, no build step. Every piece of data from the server reaches
// the DOM through text nodes (`h()` below) or SVG attributes, never through innerHTML.
// Views: #/overview, #/queues, #/jobs?state=&queue=&func=&before=, #/jobs/<id>, #/workers,
// #/workflows?before=, #/workflows/<id>, #/crons. Whenever the API answers 403 the login
// form is shown; after a successful login the current view is rendered again.

const API = 'api/v1/';
const PAGE_SIZE = 50;
const STATES = ['pending', 'running', 'retrying', 'succeeded', 'failed'];
const ACTIVE_STATES = ['pending', 'running', 'retrying'];
const SHORT_STATE = { pending: 'pend', running: 'run', retrying: 'retry', succeeded: 'ok', failed: 'fail' };
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------------------------------
// DOM helpers

/** Creates an element; string/number children become text nodes, null/false are skipped. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Same for SVG elements. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'testid') el.setAttribute('data-testid', value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const $ = (sel) => document.querySelector(sel);

// ---------------------------------------------------------------------------------------
// API access

class AuthError extends Error {}

/** Calls the API. Mutations always send a JSON body (the server's CSRF check needs it). */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body === undefined ? {} : body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (e) {
    throw new Error(`The server did not answer (${e.message}). Is chancy web still running?`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  // Errors are upstream's {"title": …}. 403 means "log in" unless the server refused for
  // another reason (e.g. its CSRF checks).
  const title = data && (data.title || data.detail);
  const notAuthenticated = !title || /not authenticated/i.test(title);
  if (response.status === 403 && path !== 'login' && notAuthenticated) {
    showLogin();
    throw new AuthError('Not authenticated');
  }
  if (!response.ok) {
    const message = title || `${response.status} ${response.statusText}`;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : '';
}

// ---------------------------------------------------------------------------------------
// Formatting

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtAgo(iso) {
  if (!iso) return '—';
  const ms = Date.now() - new Date(iso).getTime();
  if (Number.isNaN(ms)) return String(iso);
  const future = ms < 0;
  const sec = Math.round(Math.abs(ms) / 1000);
  let text;
  if (sec < 60) text = `${sec}s`;
  else if (sec < 3600) text = `${Math.round(sec / 60)} min`;
  else if (sec < 86400) text = `${Math.round(sec / 3600)} h`;
  else text = `${Math.round(sec / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

/** A <time> showing local time with the relative age beside it and the ISO text as title. */
function timeCell(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso }, fmtTime(iso), ' ', h('span', { class: 'muted small' }, `(${fmtAgo(iso)})`));
}

function fmtNumber(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? '—');
}

function fmtSeconds(v) {
  if (v === null || v === undefined) return '—';
  return `${v}s`;
}

function pretty(value) {
  return h('pre', { class: 'code' }, JSON.stringify(value ?? null, null, 2));
}

function badge(state, testid) {
  const name = state || 'not pushed';
  return h('span', { class: `badge state-${String(state || 'none').replace(/[^a-z_]/gi, '')}`, testid }, name);
}

function chips(list, cls = 'chip') {
  if (!list || list.length === 0) return h('span', { class: 'muted' }, '—');
  return h('span', { class: 'chips' }, list.map((t) => h('span', { class: cls }, t)));
}

/** The distinctive end of an id (chancy ids start with a timestamp, so their heads repeat). */
function shortId(id) {
  const text = String(id);
  return text.length > 12 ? `…${text.slice(-10)}` : text;
}

function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((c) => (typeof c === 'string' ? h('th', {}, c) : c)))),
      h('tbody', {}, rows)));
}

function emptyRow(span, text) {
  return h('tr', {}, h('td', { colspan: span, class: 'empty' }, text));
}

// ---------------------------------------------------------------------------------------
// Flash messages and login

let flashTimer = null;

function flash(message, kind = 'info') {
  const el = $('#flash');
  el.textContent = message;
  el.className = `flash flash-${kind}`;
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { el.hidden = true; }, kind === 'error' ? 8000 : 4000);
}

function showLogin() {
  $('#login').hidden = false;
  $('#view').hidden = true;
  $('#logout').hidden = true;
  $('#nav').classList.add('disabled');
  setTimeout(() => $('#login-username').focus(), 0);
}

function hideLogin() {
  $('#login').hidden = true;
  $('#view').hidden = false;
  $('#logout').hidden = false;
  $('#nav').classList.remove('disabled');
}

async function onLogin(event) {
  event.preventDefault();
  const errorEl = $('#login-error');
  errorEl.hidden = true;
  const button = $('#login-submit');
  button.disabled = true;
  try {
    await api('POST', 'login', {
      username: $('#login-username').value,
      password: $('#login-password').value,
    });
    $('#login-password').value = '';
    hideLogin();
    loadSystemInfo();
    render();
  } catch (e) {
    errorEl.textContent = e.message;
    errorEl.hidden = false;
  } finally {
    button.disabled = false;
  }
}

async function onLogout() {
  try {
    await api('POST', 'logout', {});
  } catch (e) {
    if (!(e instanceof AuthError)) flash(e.message, 'error');
  }
  $('#system-info').textContent = '';
  showLogin();
}

async function loadSystemInfo() {
  try {
    const sys = await api('GET', 'system');
    const el = $('#system-info');
    el.textContent = `v${sys.chancy_version} · prefix ${sys.database?.prefix ?? '?'}`;
    el.title = sys.database?.version ?? '';
  } catch {
    // Optional decoration: the views report errors themselves.
  }
}

// ---------------------------------------------------------------------------------------
// Routing

/** Parses location.hash into {parts: ['jobs', '<id>'], params: URLSearchParams}. */
function currentRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, search] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts: parts.length ? parts : ['overview'], params: new URLSearchParams(search || '') };
}

function href(path, params = {}) {
  return `#/${path}${query(params)}`;
}

const routes = {
  overview: viewOverview,
  queues: viewQueues,
  jobs: (parts, params) => (parts[1] ? viewJob(parts[1]) : viewJobs(params)),
  workers: viewWorkers,
  workflows: (parts, params) => (parts[1] ? viewWorkflow(parts[1]) : viewWorkflows(params)),
  crons: viewCrons,
};

let renderSeq = 0;

/** Renders the current route; a slower earlier render never overwrites a newer one. */
async function render() {
  const seq = ++renderSeq;
  const { parts, params } = currentRoute();
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.route === parts[0]);
  }
  const view = routes[parts[0]];
  const main = $('#view');
  if (!view) {
    main.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/overview' }, 'Go to the overview.')));
    return;
  }
  main.setAttribute('aria-busy', 'true');
  try {
    const content = await view(parts, params);
    if (seq !== renderSeq) return;
    hideLogin();
    main.replaceChildren(content);
    document.title = `${main.querySelector('h1')?.textContent ?? 'chancy'} · chancy`;
  } catch (e) {
    if (seq !== renderSeq || e instanceof AuthError) return;
    main.replaceChildren(h('div', { class: 'card error-card', testid: 'view-error' },
      h('h1', {}, 'Something went wrong'), h('p', { class: 'error-text' }, e.message)));
  } finally {
    if (seq === renderSeq) main.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------------------------------
// Overview

async function viewOverview() {
  const overview = await api('GET', 'overview');
  const queues = overview.queues || [];
  const totals = Object.fromEntries(STATES.map((st) => [st, 0]));
  const extraStates = new Set();
  for (const q of queues) {
    for (const [st, n] of Object.entries(q.counts || {})) {
      if (!(st in totals)) extraStates.add(st);
      totals[st] = (totals[st] || 0) + n;
    }
  }
  // States beyond the five core ones (e.g. "cancelled") are shown only when something has them.
  const states = STATES.concat([...extraStates].filter((st) => totals[st] > 0));

  const cards = h('div', { class: 'stat-cards' },
    states.map((st) => h('a', { class: `stat-card state-border-${st}`, href: href('jobs', { state: st }), testid: `total-${st}` },
      h('span', { class: 'stat-label' }, st),
      h('span', { class: 'stat-value' }, fmtNumber(totals[st])))),
    h('a', { class: 'stat-card', href: '#/workers', testid: 'total-workers' },
      h('span', { class: 'stat-label' }, 'workers'),
      h('span', { class: 'stat-value' }, fmtNumber(overview.workers ?? 0)),
      h('span', { class: 'stat-sub muted' }, overview.leader ? `leader ${overview.leader}` : 'no leader')));

  const rows = queues.length === 0
    ? [emptyRow(4 + states.length, 'No queues declared yet.')]
    : queues.map((q) => h('tr', { testid: 'overview-queue', 'data-queue': q.name },
      h('td', {}, h('a', { href: href('jobs', { queue: q.name }) }, q.name),
        q.state !== 'active' ? h('span', { class: 'show-narrow' }, ' ', queueBadge(q)) : null),
      h('td', { class: 'hide-narrow' }, queueBadge(q)),
      h('td', { class: 'hide-narrow' }, executorName(q.executor)),
      h('td', { class: 'num hide-narrow' }, fmtNumber(q.concurrency)),
      states.map((st) => {
        const n = (q.counts || {})[st] || 0;
        return h('td', { class: 'num' }, n === 0
          ? h('span', { class: 'muted' }, '0')
          : h('a', { class: `count count-${st}`, href: href('jobs', { queue: q.name, state: st }), testid: `count-${q.name}-${st}` }, fmtNumber(n)));
      })));

  const throughput = h('div', { class: 'card', testid: 'throughput' }, h('h2', {}, 'Throughput'), h('p', { class: 'muted' }, 'Loading metrics…'));
  loadThroughput(throughput);

  const warnings = (overview.warnings || []).length === 0 ? null
    : h('section', { class: 'card error-card', testid: 'overview-warnings' },
      h('h2', {}, 'Warnings'),
      (overview.warnings || []).map((w) => h('p', { class: 'error-text', testid: `warning-${w.kind}` }, w.message)));

  return h('div', {},
    h('h1', {}, 'Overview'),
    warnings,
    cards,
    h('section', { class: 'card' },
      h('h2', {}, 'Queues'),
      table(['queue', h('th', { class: 'hide-narrow' }, 'state'), h('th', { class: 'hide-narrow' }, 'executor'), h('th', { class: 'num hide-narrow' }, 'concurrency'),
        states.map((st) => h('th', { class: 'num', title: st }, h('span', { class: 'long' }, st), h('span', { class: 'short' }, SHORT_STATE[st] || st)))],
      rows, { testid: 'overview-table' })),
    throughput);
}

// A queue row another client wrote with values chancy cannot read (the API lists it with
// its raw state and the reason; workers skip it).
function unreadableBadge(q) {
  return h('span', { class: 'badge state-failed', testid: `queue-unreadable-${q.name}`, title: q.unreadable }, `unreadable (${q.state ?? 'null'})`);
}

// A queue that has jobs but no declaration (pushed to a name nobody declared): no worker
// serves it until someone declares it.
function queueBadge(q) {
  if (q.unreadable) return unreadableBadge(q);
  if (q.declared === false) {
    return h('span', { class: 'badge state-none', testid: `queue-undeclared-${q.name}`, title: 'Jobs wait here until the queue is declared; no worker serves it.' }, 'not declared');
  }
  return badge(q.state);
}

function executorName(executor) {
  if (!executor) return '—';
  const last = String(executor).split('.').pop();
  return h('span', { title: executor }, last);
}

const THROUGHPUT_WINDOWS = [
  { label: 'last hour', resolution: '1min', range: 3600 },
  { label: 'last day', resolution: '5min', range: 86400 },
  { label: 'last week', resolution: '1hour', range: 604800 },
];

/** Fills the throughput card from the metrics endpoint (jobs finished per bucket). */
let throughputWindow = 0;

async function loadThroughput(card, windowIndex = throughputWindow) {
  throughputWindow = windowIndex;
  const win = THROUGHPUT_WINDOWS[windowIndex];
  const picker = h('div', { class: 'segmented' }, THROUGHPUT_WINDOWS.map((w, i) =>
    h('button', { type: 'button', class: i === windowIndex ? 'btn btn-small active' : 'btn btn-small', onclick: () => loadThroughput(card, i) }, w.label)));
  let body;
  try {
    const data = await api('GET', `metrics/global${query({ resolution: win.resolution, range: win.range })}`);
    body = throughputChart(data, win);
  } catch (e) {
    if (e instanceof AuthError) return;
    body = h('p', { class: 'muted' }, `No metrics to show (${e.message}). Workers record them with the metrics plugin.`);
  }
  card.replaceChildren(h('div', { class: 'card-head' }, h('h2', {}, 'Throughput'), picker), body);
}

const RESOLUTION_SECONDS = { '1min': 60, '5min': 300, '1hour': 3600, '1day': 86400 };

/** Finished attempts per bucket over the whole window (buckets without data count 0). */
function throughputBuckets(data, win) {
  const step = (RESOLUTION_SECONDS[data?.resolution] || RESOLUTION_SECONDS[win.resolution]) * 1000;
  const finished = ['succeeded', 'failed', 'retrying'];
  const byTime = new Map();
  for (const [key, series] of Object.entries(data?.series || {})) {
    const state = key.split(':').pop();
    if (!key.startsWith('global:status:') || !finished.includes(state)) continue;
    for (const point of series.data || []) {
      const t = Math.floor(new Date(point.timestamp).getTime() / step) * step;
      if (Number.isNaN(t)) continue;
      const entry = byTime.get(t) || { t, all: 0, failed: 0 };
      const value = Number(point.value) || 0;
      entry.all += value;
      if (state === 'failed') entry.failed += value;
      byTime.set(t, entry);
    }
  }
  if (byTime.size === 0) return [];
  const end = Math.floor(Date.now() / step) * step;
  const start = Math.min(end - Math.round((win.range * 1000) / step) * step + step, ...byTime.keys());
  const points = [];
  for (let t = start; t <= end; t += step) points.push(byTime.get(t) || { t, all: 0, failed: 0 });
  return points;
}

function throughputChart(data, win) {
  const points = throughputBuckets(data, win);
  if (points.length === 0) {
    return h('p', { class: 'muted', testid: 'throughput-empty' }, `No jobs finished in the ${win.label} (or no worker runs the metrics plugin).`);
  }
  const total = points.reduce((acc, p) => acc + p.all, 0);
  const failed = points.reduce((acc, p) => acc + p.failed, 0);
  const peak = Math.max(...points.map((p) => p.all));
  const plural = (n, word) => `${fmtNumber(n)} ${word}${n === 1 ? '' : 's'}`;
  return h('div', { class: 'throughput' },
    sparkline(points, win, peak),
    h('p', { class: 'muted small' },
      `${plural(total, 'attempt')} finished in the ${win.label}, ${fmtNumber(failed)} of them failed; peak ${fmtNumber(peak)} per ${win.resolution}. `,
      h('span', { class: 'legend legend-ok' }, 'finished'), ' ', h('span', { class: 'legend legend-bad' }, 'failed')));
}

/** An inline SVG sparkline of finished attempts per bucket, failures overlaid in red. */
function sparkline(points, win, peak) {
  const width = 600;
  const height = 90;
  const pad = 4;
  const max = Math.max(1, peak);
  const span = Math.max(1, points.length - 1);
  const x = (i) => pad + (i / span) * (width - 2 * pad);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const line = (f) => points.map((p, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(f(p)).toFixed(1)}`).join(' ');
  const area = `${line((p) => p.all)} L${x(points.length - 1).toFixed(1)},${height - pad} L${x(0).toFixed(1)},${height - pad} Z`;
  return s('svg', { class: 'sparkline', viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `throughput, ${win.label}`, 'data-testid': 'sparkline' },
    s('title', {}, `peak ${peak} per ${win.resolution}`),
    s('path', { d: area, class: 'spark-area' }),
    s('path', { d: line((p) => p.all), class: 'spark-line' }),
    s('path', { d: line((p) => p.failed), class: 'spark-fail' }));
}

// ---------------------------------------------------------------------------------------
// Queues

async function viewQueues() {
  const queues = await api('GET', 'queues');
  const rows = queues.length === 0
    ? [emptyRow(8, 'No queues declared yet.')]
    : queues.map((q) => q.unreadable
      ? h('tr', { testid: 'queue-row', 'data-queue': q.name },
        h('td', {}, h('a', { href: href('jobs', { queue: q.name }) }, q.name)),
        h('td', {}, unreadableBadge(q)),
        h('td', { colspan: 6, class: 'muted small' }, q.unreadable))
      : h('tr', { testid: 'queue-row', 'data-queue': q.name },
      h('td', {}, h('a', { href: href('jobs', { queue: q.name }) }, q.name)),
      h('td', {}, badge(q.state, `queue-state-${q.name}`),
        q.resume_at ? h('div', { class: 'muted small' }, 'resumes ', timeCell(q.resume_at)) : null),
      h('td', { class: 'hide-narrow' }, executorName(q.executor)),
      h('td', { class: 'num' }, fmtNumber(q.concurrency)),
      h('td', { class: 'hide-narrow' }, chips(q.tags)),
      h('td', { class: 'num hide-narrow' }, fmtSeconds(q.polling_interval), q.eager_polling ? h('div', { class: 'muted small' }, 'eager') : null),
      h('td', { class: 'hide-narrow' }, q.rate_limit ? `${q.rate_limit} / ${q.rate_limit_window}s` : h('span', { class: 'muted' }, '—')),
      h('td', {}, q.state === 'paused'
        ? h('button', { type: 'button', class: 'btn btn-small', testid: `queue-resume-${q.name}`, onclick: () => queueAction(q.name, 'resume', {}) }, 'Resume')
        : h('button', { type: 'button', class: 'btn btn-small btn-warn', testid: `queue-pause-${q.name}`, onclick: () => queueAction(q.name, 'pause', { resume_at: null }) }, 'Pause'))));
  return h('div', {},
    h('h1', {}, 'Queues'),
    h('section', { class: 'card' },
      table(['name', 'state', h('th', { class: 'hide-narrow' }, 'executor'), h('th', { class: 'num' }, 'concurrency'),
        h('th', { class: 'hide-narrow' }, 'tags'), h('th', { class: 'num hide-narrow' }, 'polling'), h('th', { class: 'hide-narrow' }, 'rate limit'), ''],
      rows, { testid: 'queues-table' })));
}

async function queueAction(name, action, body) {
  try {
    await api('POST', `queues/${encodeURIComponent(name)}/${action}`, body);
    flash(`Queue ${name} ${action === 'pause' ? 'paused' : 'resumed'}.`, 'ok');
    render();
  } catch (e) {
    if (!(e instanceof AuthError)) flash(e.message, 'error');
  }
}

// ---------------------------------------------------------------------------------------
// Jobs

async function viewJobs(params) {
  const filters = {
    state: params.get('state') || '',
    queue: params.get('queue') || '',
    func: params.get('func') || '',
  };
  const before = params.get('before') || '';
  const [page, queues] = await Promise.all([
    api('GET', `jobs${query({ ...filters, before, limit: PAGE_SIZE, pagination: 'true' })}`),
    api('GET', 'queues').catch((e) => { if (e instanceof AuthError) throw e; return []; }),
  ]);
  const items = Array.isArray(page) ? page : page.items || [];
  const nextCursor = Array.isArray(page) ? null : (page.has_more ? page.next_cursor : null);

  const selection = new Set();
  const bulk = bulkBar(selection);
  const checkbox = (job) => h('input', {
    type: 'checkbox', class: 'select', testid: 'job-select', 'aria-label': `select job ${job.id}`,
    onchange: (e) => { if (e.target.checked) selection.add(job.id); else selection.delete(job.id); bulk.update(); },
  });
  const rows = items.length === 0
    ? [emptyRow(8, before ? 'No older jobs.' : 'No jobs match these filters.')]
    : items.map((job) => h('tr', { testid: 'job-row', 'data-job-id': job.id, 'data-state': job.state },
      h('td', { class: 'check' }, checkbox(job)),
      h('td', { class: 'mono' }, h('a', { href: href(`jobs/${job.id}`), testid: `job-link-${job.id}`, title: job.id }, shortId(job.id))),
      h('td', { class: 'func' }, job.func),
      h('td', {}, job.queue),
      h('td', {}, badge(job.state)),
      h('td', { class: 'num', title: job.unreadable || null }, job.unreadable ? 'unreadable' : `${job.attempts}/${job.max_attempts}`),
      h('td', { class: 'hide-narrow' }, timeCell(job.created_at)),
      h('td', { class: 'hide-narrow' }, timeCell(job.completed_at))));
  const selectAll = h('input', {
    type: 'checkbox', class: 'select', 'aria-label': 'select every job on this page', testid: 'job-select-all',
    onchange: (e) => {
      for (const box of e.target.closest('table').querySelectorAll('tbody input.select')) {
        if (box.checked !== e.target.checked) box.click();
      }
    },
  });

  const pager = h('div', { class: 'pager' },
    before ? h('a', { class: 'btn btn-small', href: href('jobs', filters), testid: 'jobs-newest' }, '« Newest') : null,
    h('span', { class: 'muted small' }, `${items.length} job${items.length === 1 ? '' : 's'} on this page, newest first`),
    nextCursor ? h('a', { class: 'btn btn-small', href: href('jobs', { ...filters, before: nextCursor }), testid: 'jobs-older' }, 'Older »') : null);

  return h('div', {},
    h('h1', {}, 'Jobs'),
    jobFilters(filters, queues),
    h('section', { class: 'card' },
      bulk.element,
      table([h('th', { class: 'check' }, items.length ? selectAll : null), 'id', 'func', 'queue', 'state', h('th', { class: 'num' }, 'attempts'), h('th', { class: 'hide-narrow' }, 'created'), h('th', { class: 'hide-narrow' }, 'completed')],
        rows, { testid: 'jobs-table' }),
      pager));
}

/** Retry / Cancel / Purge for the jobs ticked on this page (one batch request). */
function bulkBar(selection) {
  const count = h('span', { class: 'muted small', testid: 'bulk-count' });
  const run = async (action) => {
    const ids = [...selection];
    if (ids.length === 0) return;
    const verb = { retry: 'Retry', cancel: 'Cancel', purge: 'Delete' }[action];
    if (action !== 'retry' && !window.confirm(`${verb} ${ids.length} job${ids.length === 1 ? '' : 's'}?`)) return;
    try {
      const answer = await api('POST', 'jobs', { action, ids });
      const results = answer?.results || [];
      const jobs = (n) => `${n} job${n === 1 ? '' : 's'}`;
      const done = results.filter((r) => r.status === 'completed').length;
      const notDone = results.filter((r) => r.status !== 'completed');
      const reasons = [...new Set(notDone.map((r) => r.message).filter(Boolean))];
      const past = { retry: 'Retried', cancel: 'Cancelled', purge: 'Deleted' }[action];
      flash(`${past} ${jobs(done)}.${notDone.length ? ` Left ${jobs(notDone.length)} alone${reasons.length ? ` (${reasons.join('; ')})` : ''}.` : ''}`,
        notDone.some((r) => r.status === 'failed') ? 'error' : 'ok');
      await render();
    } catch (e) {
      if (!(e instanceof AuthError)) flash(e.message, 'error');
    }
  };
  const buttons = [
    h('button', { type: 'button', class: 'btn btn-small', testid: 'bulk-retry', onclick: () => run('retry') }, 'Retry'),
    h('button', { type: 'button', class: 'btn btn-small btn-warn', testid: 'bulk-cancel', onclick: () => run('cancel') }, 'Cancel'),
    h('button', { type: 'button', class: 'btn btn-small btn-danger', testid: 'bulk-purge', onclick: () => run('purge') }, 'Delete'),
  ];
  const element = h('div', { class: 'bulk' }, count, buttons);
  const update = () => {
    count.textContent = selection.size ? `${selection.size} selected:` : 'Tick jobs to act on several at once:';
    for (const b of buttons) b.disabled = selection.size === 0;
  };
  update();
  return { element, update };
}

function jobFilters(filters, queues) {
  const select = (id, name, values, current, any) => h('select', { id, name },
    h('option', { value: '' }, any),
    values.map((v) => h('option', { value: v, selected: v === current }, v)),
    current && !values.includes(current) ? h('option', { value: current, selected: true }, current) : null);
  const form = h('form', { class: 'filters card', testid: 'job-filters' },
    h('label', {}, 'State', select('filter-state', 'state', STATES, filters.state, 'any state')),
    h('label', {}, 'Queue', select('filter-queue', 'queue', queues.map((q) => q.name), filters.queue, 'any queue')),
    h('label', {}, 'Function', h('input', { id: 'filter-func', name: 'func', value: filters.func, list: 'func-list', placeholder: 'contains…' })),
    funcSuggestions(),
    h('div', { class: 'filter-buttons' },
      h('button', { type: 'submit', class: 'btn btn-primary', testid: 'filter-apply' }, 'Filter'),
      h('a', { class: 'btn btn-quiet', href: '#/jobs' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.hash = href('jobs', { state: data.get('state'), queue: data.get('queue'), func: String(data.get('func')).trim() });
  });
  form.addEventListener('change', (event) => {
    if (event.target.tagName === 'SELECT') form.requestSubmit();
  });
  return form;
}

/** A datalist of known job functions, filled when the server answers (it never blocks the list). */
function funcSuggestions() {
  const list = h('datalist', { id: 'func-list' });
  api('GET', 'jobs/functions')
    .then((funcs) => list.replaceChildren(...(funcs || []).map((f) => h('option', { value: f }))))
    .catch(() => {});
  return list;
}

async function viewJob(id) {
  let job;
  try {
    job = await api('GET', `jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) {
      return h('div', {}, h('h1', {}, 'Job not found'),
        h('p', {}, `No job ${id}: it may have been pruned or purged. `, h('a', { href: '#/jobs' }, 'Back to the jobs.')));
    }
    throw e;
  }
  const canCancel = ACTIVE_STATES.includes(job.state);
  // Hints only: the server applies the library's rules and its answer is what is shown.
  const canRetry = ['succeeded', 'failed'].includes(job.state)
    || (job.state !== 'running' && job.attempts >= job.max_attempts);
  const errors = job.errors || [];
  const field = (label, value) => [h('dt', {}, label), h('dd', {}, value)];

  return h('div', { id: 'job-detail', 'data-job-id': job.id },
    h('p', { class: 'crumbs' }, h('a', { href: href('jobs', { queue: job.queue }) }, `Jobs in ${job.queue}`), ' / ', h('span', { class: 'mono' }, shortId(job.id))),
    h('div', { class: 'title-row' },
      h('h1', { class: 'func' }, job.func),
      badge(job.state, 'job-state'),
      h('div', { class: 'actions' },
        h('button', { id: 'job-cancel', type: 'button', class: 'btn btn-danger', disabled: !canCancel, title: canCancel ? 'Mark it failed; a running worker stops it' : 'Only pending, running or retrying jobs can be cancelled', onclick: () => jobAction(job, 'cancel') }, 'Cancel'),
        h('button', { id: 'job-retry', type: 'button', class: 'btn', disabled: !canRetry, title: canRetry ? 'Run it again from attempt 0' : 'Only finished jobs can be retried', onclick: () => jobAction(job, 'retry') }, 'Retry'))),
    errors.length ? h('section', { class: 'card errors', testid: 'job-errors' },
      h('h2', {}, `Errors (${errors.length})`),
      [...errors].reverse().map((err) => h('div', { class: 'error-entry' },
        h('div', { class: 'muted small' }, `attempt ${err.attempt}`),
        h('pre', { class: 'traceback', testid: 'job-error' }, err.traceback ?? JSON.stringify(err))))) : null,
    h('section', { class: 'card' },
      h('h2', {}, 'Details'),
      h('dl', { class: 'fields' },
        field('id', h('span', { class: 'mono', testid: 'job-id' }, job.id)),
        field('queue', h('a', { href: href('jobs', { queue: job.queue }) }, job.queue)),
        field('state', badge(job.state)),
        field('attempts', `${job.attempts} of ${job.max_attempts}`),
        field('priority', String(job.priority)),
        field('taken by', job.taken_by || h('span', { class: 'muted' }, '—')),
        field('unique key', job.unique_key || h('span', { class: 'muted' }, '—')),
        field('created', timeCell(job.created_at)),
        field('scheduled', timeCell(job.scheduled_at)),
        field('started', timeCell(job.started_at)),
        field('completed', timeCell(job.completed_at)))),
    h('div', { class: 'grid-3' },
      h('section', { class: 'card' }, h('h2', {}, 'kwargs'), pretty(job.kwargs)),
      h('section', { class: 'card' }, h('h2', {}, 'meta'), pretty(job.meta)),
      h('section', { class: 'card' }, h('h2', {}, 'limits'), pretty(job.limits))));
}

async function jobAction(job, action) {
  if (action === 'cancel' && !window.confirm(`Cancel job ${job.id} (${job.func})?`)) return;
  try {
    await api('POST', `jobs/${encodeURIComponent(job.id)}/${action}`, {});
    flash(action === 'cancel' ? 'Job cancelled.' : 'Job queued to run again.', 'ok');
    await render();
  } catch (e) {
    if (!(e instanceof AuthError)) flash(e.message, 'error');
  }
}

// ---------------------------------------------------------------------------------------
// Workers

async function viewWorkers() {
  const workers = await api('GET', 'workers');
  workers.sort((a, b) => (b.is_leader - a.is_leader) || String(a.worker_id).localeCompare(String(b.worker_id)));
  const now = Date.now();
  const rows = workers.length === 0
    ? [emptyRow(5, 'No workers have announced themselves.')]
    : workers.map((w) => {
      const expired = w.expires_at && new Date(w.expires_at).getTime() < now;
      return h('tr', { testid: 'worker-row', 'data-worker-id': w.worker_id, class: expired ? 'stale' : null },
        h('td', { class: 'mono' }, w.worker_id, w.is_leader ? h('span', { class: 'badge badge-leader', testid: 'leader-badge' }, 'leader') : null,
          expired ? h('span', { class: 'badge state-failed' }, 'expired') : null),
        h('td', {}, chips(w.queues)),
        h('td', { class: 'hide-narrow' }, chips(w.tags, 'chip chip-tag')),
        h('td', {}, timeCell(w.last_seen)),
        h('td', { class: 'hide-narrow' }, timeCell(w.expires_at)));
    });
  return h('div', {},
    h('h1', {}, 'Workers'),
    h('section', { class: 'card' },
      table(['worker', 'queues', h('th', { class: 'hide-narrow' }, 'tags'), 'last seen', h('th', { class: 'hide-narrow' }, 'expires')], rows, { testid: 'workers-table' })));
}

// ---------------------------------------------------------------------------------------
// Workflows

async function viewWorkflows(params) {
  const before = params.get('before') || '';
  const page = await api('GET', `workflows${query({ before, limit: PAGE_SIZE, pagination: 'true' })}`);
  const items = Array.isArray(page) ? page : page.items || [];
  const nextCursor = Array.isArray(page) ? null : (page.has_more ? page.next_cursor : null);
  const rows = items.length === 0
    ? [emptyRow(5, before ? 'No older workflows.' : 'No workflows yet.')]
    : items.map((wf) => {
      return h('tr', { testid: 'workflow-row', 'data-workflow-id': wf.id },
        h('td', {}, h('a', { href: href(`workflows/${wf.id}`), title: wf.id, testid: `workflow-link-${wf.id}` }, wf.name || shortId(wf.id))),
        h('td', {}, badge(wf.state)),
        h('td', {}, progressBar(wf.succeeded_steps || 0, wf.total_steps || 0)),
        h('td', { class: 'hide-narrow' }, timeCell(wf.created_at)),
        h('td', { class: 'hide-narrow' }, timeCell(wf.updated_at)));
    });
  return h('div', {},
    h('h1', {}, 'Workflows'),
    h('section', { class: 'card' },
      table(['name', 'state', 'steps succeeded', h('th', { class: 'hide-narrow' }, 'created'), h('th', { class: 'hide-narrow' }, 'updated')], rows, { testid: 'workflows-table' }),
      h('div', { class: 'pager' },
        before ? h('a', { class: 'btn btn-small', href: '#/workflows' }, '« Newest') : null,
        h('span', { class: 'muted small' }, `${items.length} on this page, newest first`),
        nextCursor ? h('a', { class: 'btn btn-small', href: href('workflows', { before: nextCursor }) }, 'Older »') : null)));
}

function progressBar(done, total) {
  const pct = total ? Math.round((done / total) * 100) : 0;
  return h('div', { class: 'progress', title: `${done} of ${total} steps succeeded` },
    h('div', { class: 'progress-bar', style: `width:${pct}%` }),
    h('span', { class: 'progress-text' }, `${done}/${total}`));
}

async function viewWorkflow(id) {
  let wf;
  try {
    wf = await api('GET', `workflows/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) {
      return h('div', {}, h('h1', {}, 'Workflow not found'),
        h('p', {}, `No workflow ${id}. `, h('a', { href: '#/workflows' }, 'Back to the workflows.')));
    }
    throw e;
  }
  // `steps` is keyed by step id (upstream's shape).
  const all = Object.values(wf.steps || {});
  const depths = stepDepths(all);
  // Steps in the order they can run: by dependency depth, then by id.
  const steps = [...all].sort((a, b) => (depths.get(a.step_id) - depths.get(b.step_id))
    || String(a.step_id).localeCompare(String(b.step_id)));
  const rows = steps.length === 0
    ? [emptyRow(4, 'This workflow has no steps.')]
    : steps.map((st) => h('tr', { testid: 'step-row', 'data-step-id': st.step_id },
      h('td', { class: 'mono' }, st.step_id),
      h('td', {}, badge(st.state)),
      h('td', { class: 'func' }, st.job?.func ?? '—'),
      h('td', {}, chips(st.dependencies)),
      h('td', { class: 'mono' }, st.job_id ? h('a', { href: href(`jobs/${st.job_id}`) }, shortId(st.job_id)) : h('span', { class: 'muted' }, '—'))));
  return h('div', { id: 'workflow-detail' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/workflows' }, 'Workflows'), ' / ', h('span', { class: 'mono' }, shortId(wf.id))),
    h('div', { class: 'title-row' }, h('h1', {}, wf.name || 'workflow'), badge(wf.state, 'workflow-state')),
    h('p', { class: 'muted small' }, h('span', { class: 'mono' }, wf.id), ' · created ', timeCell(wf.created_at), ' · updated ', timeCell(wf.updated_at)),
    h('section', { class: 'card' }, h('h2', {}, 'Graph'), steps.length ? dag(steps) : h('p', { class: 'muted' }, 'No steps.')),
    h('section', { class: 'card' }, h('h2', {}, 'Steps'),
      table(['step', 'state', 'func', 'depends on', 'job'], rows, { testid: 'steps-table' })));
}

/** Depth of every step: 0 without dependencies, else one more than its deepest dependency. */
function stepDepths(steps) {
  const byId = new Map(steps.map((st) => [st.step_id, st]));
  const depth = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (depth.has(id)) return depth.get(id);
    if (visiting.has(id) || !byId.has(id)) return 0; // a cycle or an unknown step: no deeper
    visiting.add(id);
    const deps = byId.get(id).dependencies || [];
    const d = deps.length ? 1 + Math.max(...deps.map(visit)) : 0;
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  steps.forEach((st) => visit(st.step_id));
  return depth;
}

/** The workflow as an inline SVG: one column per dependency depth, nodes coloured by state. */
function dag(steps) {
  const depth = stepDepths(steps);
  const columns = [];
  for (const st of steps) {
    const d = depth.get(st.step_id);
    (columns[d] = columns[d] || []).push(st);
  }
  const nodeW = 170;
  const nodeH = 46;
  const gapX = 60;
  const gapY = 18;
  const margin = 10;
  const rowsMax = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const height = margin * 2 + rowsMax * nodeH + (rowsMax - 1) * gapY;
  const width = margin * 2 + columns.length * nodeW + (columns.length - 1) * gapX;
  const pos = new Map();
  columns.forEach((col, ci) => {
    if (!col) return;
    const colHeight = col.length * nodeH + (col.length - 1) * gapY;
    const top = (height - colHeight) / 2;
    col.forEach((st, ri) => pos.set(st.step_id, { x: margin + ci * (nodeW + gapX), y: top + ri * (nodeH + gapY) }));
  });
  const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);
  const edges = [];
  for (const st of steps) {
    const to = pos.get(st.step_id);
    for (const dep of st.dependencies || []) {
      const from = pos.get(dep);
      if (!from) continue;
      const x1 = from.x + nodeW;
      const y1 = from.y + nodeH / 2;
      const x2 = to.x - 4;
      const y2 = to.y + nodeH / 2;
      const mx = (x1 + x2) / 2;
      edges.push(s('path', { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: 'dag-edge', 'marker-end': 'url(#dag-arrow)' }));
    }
  }
  const nodes = steps.map((st) => {
    const p = pos.get(st.step_id);
    const state = String(st.state || 'none').replace(/[^a-z_]/gi, '');
    const node = s('g', { class: `dag-node node-${state}`, transform: `translate(${p.x},${p.y})`, 'data-step-id': st.step_id },
      s('title', {}, `${st.step_id}: ${st.state || 'not pushed yet'}${st.job?.func ? ` — ${st.job.func}` : ''}`),
      s('rect', { width: nodeW, height: nodeH, rx: 8 }),
      s('text', { x: 10, y: 19, class: 'dag-label' }, clip(String(st.step_id), 22)),
      s('text', { x: 10, y: 36, class: 'dag-sub' }, clip(`${st.state || 'not pushed'} · ${st.job?.func ?? ''}`, 28)));
    if (!st.job_id) return node;
    const link = s('a', { href: href(`jobs/${st.job_id}`) }, node);
    return link;
  });
  return h('div', { class: 'dag-wrap' },
    s('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'workflow graph', 'data-testid': 'workflow-dag' },
      s('defs', {}, s('marker', { id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'dag-arrow' }))),
      edges, nodes),
    h('div', { class: 'legend-row muted small' }, ['pending', 'running', 'retrying', 'succeeded', 'failed', null].map((st) => badge(st))));
}

// ---------------------------------------------------------------------------------------
// Crons

async function viewCrons() {
  let crons;
  try {
    crons = await api('GET', 'crons');
  } catch (e) {
    if (e instanceof AuthError) throw e;
    return h('div', {}, h('h1', {}, 'Crons'), h('div', { class: 'card' },
      h('p', {}, `Cron schedules are not available: ${e.message}`),
      h('p', { class: 'muted' }, 'They need the cron tables: ', h('code', {}, 'chancy migrate --plugin cron'), '.')));
  }
  const list = Array.isArray(crons) ? crons : Object.values(crons || {});
  const rows = list.length === 0
    ? [emptyRow(6, 'No cron schedules. Add one with chancy cron schedule.')]
    : list.map((c) => h('tr', { testid: 'cron-row', 'data-unique-key': c.unique_key },
      h('td', { class: 'mono' }, c.unique_key),
      h('td', { class: 'mono' }, c.cron, c.timezone ? h('div', { class: 'muted small' }, c.timezone) : null),
      h('td', { class: 'func' }, c.job?.func ?? '—'),
      h('td', {}, c.job?.queue ?? '—'),
      h('td', {}, timeCell(c.next_run)),
      h('td', {}, timeCell(c.last_run))));
  return h('div', {},
    h('h1', {}, 'Crons'),
    h('section', { class: 'card' },
      table(['key', 'schedule', 'func', 'queue', 'next run', 'last run'], rows, { testid: 'crons-table' })));
}

// ---------------------------------------------------------------------------------------
// Start

const LIVE_INTERVAL_MS = 5000;
const LIVE_VIEWS = new Set(['overview', 'queues', 'workers', 'jobs/<id>', 'workflows/<id>']);

/** With "live" ticked, views that show changing state reload every few seconds while visible. */
function setUpAutoRefresh() {
  const box = $('#auto-refresh');
  box.checked = localStorage.getItem('chancy.live') === '1';
  box.addEventListener('change', () => localStorage.setItem('chancy.live', box.checked ? '1' : '0'));
  setInterval(() => {
    if (!box.checked || document.visibilityState !== 'visible' || !$('#login').hidden) return;
    const { parts } = currentRoute();
    const key = parts[1] ? `${parts[0]}/<id>` : parts[0];
    if (LIVE_VIEWS.has(key) && !$('#view').hasAttribute('aria-busy')) render();
  }, LIVE_INTERVAL_MS);
}

function start() {
  setUpAutoRefresh();
  $('#login-form').addEventListener('submit', onLogin);
  $('#logout').addEventListener('click', onLogout);
  $('#refresh').addEventListener('click', () => render());
  window.addEventListener('hashchange', () => {
    $('#flash').hidden = true; // a message belongs to the view it was shown on
    render();
  });
  if (!location.hash) history.replaceState(null, '', '#/overview');
  loadSystemInfo();
  render();
}

start();
