// graphile-worker on chancy bench's workloads, measured the way `chancy bench` measures.
//
//   node bench.mjs [--mode drain|steady] [--jobs 100000] [--rate 5000 --seconds 30]
//                  [--concurrency 24] [--local-queue 500] [--no-analyze] [--json]
//
// drain:  pushes --jobs no-op jobs (addJobs, 10,000 per call), then ANALYZEs its jobs
//         table (unless --no-analyze), then one runner (concurrency 24, localQueue.size
//         500, completeJobBatchDelay 0, failJobBatchDelay 0: graphile-worker's documented
//         batching) drains them; timed from the runner's start until the jobs table is
//         empty (completions committed).
//
//         Why the ANALYZE: the freshly created jobs table has no statistics until
//         autovacuum analyzes it (within `autovacuum_naptime`, 1 min, on a stock server;
//         never on a server with autovacuum off, like the project's shared one). Without
//         statistics the planner runs graphile's batch claim (`get_job500`) as a
//         sequential scan of the whole backlog plus an external-merge sort (≈ 7,300
//         buffers and 220 ms per 500-job claim at 100,000 jobs, `EXPLAIN ANALYZE`)
//         instead of a walk of `jobs_main_index` (≈ 13 buffers): 2.8× the PostgreSQL CPU
//         per job (48.8 vs 17.3 µs, private server, 2026-11-30). A long-lived graphile
//         deployment has statistics, so the comparison uses them. chancy needs none: its
//         fetch connection rules out sort and bitmap plans (src/worker/fetch.rs).
// steady: open-loop arrivals at --rate jobs/s for --seconds into a running runner; 4
//         pushers share the arrivals round robin and push what is due (addJob for one,
//         addJobs for several), like `chancy bench --mode steady`; latency is from each
//         job's scheduled arrival to its task starting.
//
// PostgreSQL CPU: utime+stime from /proc of the local server's postmaster, its reaped
// children and every live child (all processes), and of this run's backends
// (application_name) plus the server's background processes (own) — the same method as
// chancy's src/cli/bench/cost.rs. Worker CPU: process.cpuUsage() of this process. WAL:
// pg_current_wal_insert_lsn() delta; WAL records and full-page images: pg_stat_wal delta.
// Commits: pg_stat_database.xact_commit delta.
//
// Everything lives in its own schema (graphile_peer_<pid>), dropped at the end.
// Needs DATABASE_URL and `npm ci` in this directory.

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { performance } from "node:perf_hooks";
import os from "node:os";
import pg from "pg";
import { Logger, run, makeWorkerUtils } from "graphile-worker";

const args = parseArgs(process.argv.slice(2), {
  mode: "drain",
  jobs: 100000,
  rate: 5000,
  seconds: 30,
  concurrency: 24,
  "local-queue": 500,
  "no-analyze": false,
  json: false,
});
const url = process.env.DATABASE_URL;
if (!url) {
  console.error("DATABASE_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/postgres)");
  process.exit(2);
}
const APP = `graphile-peer-${process.pid}`;
const SCHEMA = `graphile_peer_${process.pid}`;
const STATS_FLUSH_MS = 1100;
// Clock ticks per second of /proc/<pid>/stat times.
const TICK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

const pool = new pg.Pool({ connectionString: url, application_name: APP, max: 25 }); // maxPoolSize 25: the documented performance preset
pool.on("error", (e) => console.error("idle pool client error:", e.message));
pool.on("connect", (client) => client.on("error", (e) => console.error("pool client error:", e.message)));
// graphile-worker's own log lines would mix with the JSON on stdout.
const logger = new Logger(() => () => {});

function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in defaults)) throw new Error(`unknown argument ${argv[i]}`);
    if (typeof defaults[key] === "boolean") out[key] = true;
    else out[key] = typeof defaults[key] === "number" ? Number(argv[++i]) : argv[++i];
  }
  return out;
}

// ---- measurement (mirrors src/cli/bench/cost.rs) ----

function procStat(pid) {
  let text;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const open = text.indexOf("(");
  const close = text.lastIndexOf(") ");
  const comm = text.slice(open + 1, close);
  const f = text.slice(close + 2).trim().split(/\s+/).map(Number);
  return { comm, ppid: f[1], ticks: f[11] + f[12], childTicks: f[13] + f[14] };
}

function serverTicks(postmaster) {
  const pm = procStat(postmaster);
  if (!pm) return null;
  const children = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s && s.ppid === postmaster) children.set(Number(name), s.ticks);
  }
  let total = pm.ticks + pm.childTicks;
  for (const t of children.values()) total += t;
  return { total, self: pm.ticks, children };
}

async function one(sql, params = []) {
  const { rows } = await pool.query(sql, params);
  return rows[0];
}

async function detectPostmaster() {
  const { pid } = await one("SELECT pg_backend_pid() AS pid");
  const backend = procStat(pid);
  if (!backend || backend.comm !== "postgres") return null;
  const parent = procStat(backend.ppid);
  return parent && parent.comm === "postgres" ? backend.ppid : null;
}

async function wal() {
  return Number((await one("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8 AS w")).w);
}

async function counters() {
  const d = await one("SELECT xact_commit AS c FROM pg_stat_database WHERE datname = current_database()");
  const w = await one("SELECT wal_records AS r, wal_fpi AS f FROM pg_stat_wal");
  return { commits: Number(d.c), walRecords: Number(w.r), walFpi: Number(w.f) };
}

async function meterStart(postmaster) {
  const c = await counters();
  const w = await wal();
  return { c, w, server: postmaster && serverTicks(postmaster), cpu: process.cpuUsage(), at: performance.now() };
}

async function meterEnd(postmaster) {
  const at = performance.now();
  const cpu = process.cpuUsage();
  const server = postmaster && serverTicks(postmaster);
  const w = await wal();
  const { rows } = await pool.query(
    "SELECT pid FROM pg_stat_activity WHERE application_name = $1 OR backend_type <> 'client backend'",
    [APP],
  );
  return { at, cpu, server, w, own: new Set(rows.map((r) => r.pid)) };
}

async function costs(start, end, jobs) {
  const c = await counters();
  const cpuUs = end.cpu.user + end.cpu.system - start.cpu.user - start.cpu.system;
  const out = {
    jobs,
    seconds: (end.at - start.at) / 1000,
    worker_cpu_seconds: cpuUs / 1e6,
    worker_cpu_us_per_job: cpuUs / jobs,
    postgres_cpu_source: "unavailable",
    postgres_cpu_seconds: null,
    postgres_cpu_us_per_job: null,
    postgres_own_cpu_seconds: null,
    postgres_own_cpu_us_per_job: null,
    wal_bytes: end.w - start.w,
    wal_bytes_per_job: (end.w - start.w) / jobs,
    wal_records: c.walRecords - start.c.walRecords,
    wal_records_per_job: (c.walRecords - start.c.walRecords) / jobs,
    wal_fpi: c.walFpi - start.c.walFpi,
    wal_fpi_per_job: (c.walFpi - start.c.walFpi) / jobs,
    commits: c.commits - start.c.commits,
    commits_per_job: (c.commits - start.c.commits) / jobs,
  };
  if (start.server && end.server) {
    const all = (end.server.total - start.server.total) / TICK;
    let ownTicks = end.server.self - start.server.self;
    for (const [pid, t] of end.server.children) {
      if (end.own.has(pid)) ownTicks += t - (start.server.children.get(pid) ?? 0);
    }
    Object.assign(out, {
      postgres_cpu_source: "proc",
      postgres_cpu_seconds: all,
      postgres_cpu_us_per_job: (all * 1e6) / jobs,
      postgres_own_cpu_seconds: ownTicks / TICK,
      postgres_own_cpu_us_per_job: ((ownTicks / TICK) * 1e6) / jobs,
    });
  }
  return out;
}

function percentiles(samples) {
  samples.sort((a, b) => a - b);
  const p = (q) => (samples.length ? samples[Math.round((samples.length - 1) * q)] : 0);
  return { p50: p(0.5), p95: p(0.95), p99: p(0.99), max: p(1) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the runs ----

const preset = {
  worker: {
    localQueue: { size: args["local-queue"] },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

async function startRunner(taskList) {
  return run({
    pgPool: pool,
    schema: SCHEMA,
    concurrency: args.concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger,
    taskList,
    preset,
  });
}

async function jobsLeft() {
  return Number((await one(`SELECT count(*) AS n FROM "${SCHEMA}"._private_jobs`)).n);
}

async function drain(utils, postmaster) {
  const n = args.jobs;
  let w = await wal();
  let t = performance.now();
  const CHUNK = 10000;
  for (let i = 0; i < n; i += CHUNK) {
    const specs = [];
    for (let j = i; j < Math.min(n, i + CHUNK); j++) specs.push({ identifier: "noop", payload: {} });
    await utils.addJobs(specs);
  }
  const pushSeconds = (performance.now() - t) / 1000;
  const enqueue = {
    jobs: n,
    seconds: pushSeconds,
    jobs_per_second: n / pushSeconds,
    wal_bytes_per_job: ((await wal()) - w) / n,
  };
  if (!args["no-analyze"]) await pool.query(`ANALYZE "${SCHEMA}"._private_jobs`);
  let done = 0;
  // Woken by the last task, not polled: a 1 ms polling timer costs this process CPU for
  // every millisecond of the drain, which would count as graphile-worker's CPU per job.
  let allRan;
  const ran = new Promise((resolve) => (allRan = resolve));
  // The push's statistics (WAL records, commits) reach pg_stat_* within a second.
  await sleep(STATS_FLUSH_MS);
  const start = await meterStart(postmaster);
  const runner = await startRunner({
    noop: async () => {
      if (++done === n) allRan();
    },
  });
  await ran;
  while ((await jobsLeft()) > 0) await sleep(2);
  const end = await meterEnd(postmaster);
  const seconds = (end.at - start.at) / 1000;
  await runner.stop();
  await sleep(STATS_FLUSH_MS);
  const c = await costs(start, end, n);
  return { enqueue, drain: { jobs: n, seconds, jobs_per_second: n / seconds, wal_bytes_per_job: c.wal_bytes_per_job, costs: c } };
}

async function steady(utils, postmaster) {
  const total = args.rate * args.seconds;
  const samples = [];
  let started = 0;
  const runner = await startRunner({
    steady: async (payload) => {
      samples.push(performance.now() - payload.t);
      started++;
    },
  });
  await sleep(STATS_FLUSH_MS);
  const start = await meterStart(postmaster);
  const t0 = performance.now() + 10;
  const due = (i) => t0 + (i * 1000) / args.rate;
  const PUSHERS = 4;
  const MAX_BATCH = 500;
  let pushes = 0;
  let lag = 0;
  const pusher = async (k) => {
    let i = k;
    while (i < total) {
      const wait = due(i) - performance.now();
      if (wait > 0) await sleep(wait);
      const now = performance.now();
      lag = Math.max(lag, now - due(i));
      const batch = [];
      while (i < total && due(i) <= now && batch.length < MAX_BATCH) {
        batch.push({ identifier: "steady", payload: { t: due(i) } });
        i += PUSHERS;
      }
      if (batch.length === 0) continue;
      if (batch.length === 1) await utils.addJob("steady", batch[0].payload);
      else await utils.addJobs(batch);
      pushes++;
    }
  };
  await Promise.all([0, 1, 2, 3].map(pusher));
  const pushedIn = (performance.now() - t0) / 1000;
  const deadline = performance.now() + 60000;
  while (started < total || (await jobsLeft()) > 0) {
    if (performance.now() > deadline) throw new Error(`${started} of ${total} jobs started within 60 s`);
    await sleep(2);
  }
  const end = await meterEnd(postmaster);
  await runner.stop();
  await sleep(STATS_FLUSH_MS);
  return {
    steady: {
      rate: args.rate,
      seconds: args.seconds,
      jobs: total,
      achieved_rate: total / pushedIn,
      pushes,
      max_push_lag_ms: lag,
      push_to_start_ms: percentiles(samples),
      costs: await costs(start, end, total),
    },
  };
}

async function main() {
  const postmaster = await detectPostmaster();
  const utils = await makeWorkerUtils({ pgPool: pool, schema: SCHEMA, logger });
  await utils.migrate();
  const report = {
    system: "graphile-worker",
    version: JSON.parse(readFileSync(new URL("./node_modules/graphile-worker/package.json", import.meta.url))).version,
    schema: SCHEMA,
    cpus: os.cpus().length,
    load_average: os.loadavg(),
    settings: {
      mode: args.mode,
      jobs: args.jobs,
      rate: args.rate,
      seconds: args.seconds,
      concurrency: args.concurrency,
      local_queue_size: args["local-queue"],
      analyze_after_push: !args["no-analyze"],
      complete_job_batch_delay: 0,
      fail_job_batch_delay: 0,
    },
  };
  try {
    Object.assign(report, args.mode === "steady" ? await steady(utils, postmaster) : await drain(utils, postmaster));
  } finally {
    await utils.release();
    await pool.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await pool.end();
  }
  if (args.json) {
    console.log(JSON.stringify(report));
  } else {
    console.log(JSON.stringify(report, null, 2));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
