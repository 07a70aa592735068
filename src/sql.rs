//! Every statement chancy runs, rendered once per prefix.
//!
//! Templates use `{prefix}` inside quoted identifiers; [`Prefix::render`] fills it in. All
//! values are bound parameters.

use crate::prefix::Prefix;

/// The statements of one prefix.
#[derive(Debug)]
pub(crate) struct Sql {
    pub push: String,
    pub notify: String,
    pub declare: String,
    pub declare_upsert: String,
    pub get_queue: String,
    pub all_queues: String,
    pub delete_queue: String,
    pub delete_queue_jobs: String,
    pub pause_queue: String,
    pub resume_queue: String,
    pub get_job: String,
    pub get_jobs: String,
    pub cancel_job: String,
    pub lock_job: String,
    pub retry_job: String,
    pub purge_job: String,
    pub unique_key_holder: String,
    pub all_workers: String,
    pub fetch: String,
    pub queues_with_work: String,
    pub rate_limit_window: String,
    pub rate_limit_bump: String,
    pub update_batch: String,
    pub delete_expired_workers: String,
    pub announce_worker: String,
    pub held_claims: String,
    pub release_orphans: String,
    pub worker_holder: String,
    pub release_worker: String,
}

const PUSH: &str = r#"
WITH inserted AS (
INSERT INTO "{prefix}jobs"
    (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at, unique_key)
SELECT j.id, j.queue, j.func, j.kwargs, j.limits, j.meta, j.priority, j.max_attempts,
       COALESCE(j.scheduled_at, NOW()), j.unique_key
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::jsonb[],
            $7::int4[], $8::int4[], $9::timestamptz[], $10::text[])
     WITH ORDINALITY AS j(id, queue, func, kwargs, limits, meta, priority, max_attempts,
                          scheduled_at, unique_key, n)
ORDER BY j.n
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed')
DO UPDATE SET state = "{prefix}jobs".state
RETURNING id, unique_key)
SELECT id, unique_key FROM inserted WHERE unique_key IS NOT NULL"#;

const NOTIFY: &str = r#"
SELECT pg_notify($1, e.payload)
FROM unnest($2::text[]) WITH ORDINALITY AS e(payload, position)
ORDER BY e.position"#;

const DECLARE_INSERT: &str = r#"
INSERT INTO "{prefix}queues"
    (name, state, concurrency, tags, executor, executor_options, polling_interval,
     rate_limit, rate_limit_window, resume_at, eager_polling)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (name) DO "#;

const DECLARE_NOOP: &str = "UPDATE SET name = EXCLUDED.name";

const DECLARE_UPSERT: &str = "UPDATE SET state = EXCLUDED.state, \
    concurrency = EXCLUDED.concurrency, tags = EXCLUDED.tags, executor = EXCLUDED.executor, \
    executor_options = EXCLUDED.executor_options, polling_interval = EXCLUDED.polling_interval, \
    rate_limit = EXCLUDED.rate_limit, rate_limit_window = EXCLUDED.rate_limit_window, \
    resume_at = EXCLUDED.resume_at, eager_polling = EXCLUDED.eager_polling";

const DECLARE_RETURNING: &str = " RETURNING *";

/// Claims up to $2 jobs of queue $1 for worker $3, in Chancy's order. With a session tag $4,
/// only while worker $3's row still carries it: a process that stalled past its
/// heartbeat_timeout while another took over its id claims nothing (one primary-key probe
/// of the workers table per claim, evaluated once). NULL for a worker that has not taken its
/// id (`Worker::fetch_jobs` before `start`).
const FETCH: &str = r#"
WITH selected_jobs AS (
    SELECT id FROM "{prefix}jobs"
    WHERE queue = $1
      AND (state = 'pending' OR state = 'retrying')
      AND COALESCE(attempts, 0) < max_attempts
      AND (scheduled_at IS NULL OR scheduled_at <= NOW())
      AND ($4::text IS NULL OR EXISTS (
          SELECT 1 FROM "{prefix}workers" w WHERE w.worker_id = $3 AND $4 = ANY(w.tags)))
    ORDER BY priority DESC, id ASC
    LIMIT $2
    FOR UPDATE OF "{prefix}jobs" SKIP LOCKED
)
UPDATE "{prefix}jobs"
SET started_at = NOW(), state = 'running', claim_id = gen_random_uuid(), taken_by = $3
FROM selected_jobs
WHERE "{prefix}jobs".id = selected_jobs.id
RETURNING "{prefix}jobs".*"#;

/// Which of the queues `$1` have a job the claim would take now (the claim's eligibility,
/// one probe of the fetch-order index per queue): a worker polls all its quiet queues with
/// this one statement instead of one claim each.
const QUEUES_WITH_WORK: &str = r#"
SELECT q FROM unnest($1::text[]) AS q
WHERE EXISTS (
    SELECT 1 FROM "{prefix}jobs" j
    WHERE j.queue = q
      AND (j.state = 'pending' OR j.state = 'retrying')
      AND COALESCE(j.attempts, 0) < j.max_attempts
      AND (j.scheduled_at IS NULL OR j.scheduled_at <= NOW())
)"#;

/// Opens (or reads) the fixed window of queue $1 for a window of $2 seconds. The window
/// start comes from the database clock (upstream uses the worker's, so a worker whose clock
/// is off opens its own windows and the limit is exceeded).
const RATE_LIMIT_WINDOW: &str = r#"
INSERT INTO "{prefix}queue_rate_limits" (queue, window_start, count)
VALUES ($1, (floor(extract(epoch FROM NOW()))::int8 / $2::int8 * $2::int8)::int4, 0)
ON CONFLICT (queue) DO UPDATE SET
    count = CASE WHEN "{prefix}queue_rate_limits".window_start = EXCLUDED.window_start
                 THEN "{prefix}queue_rate_limits".count ELSE 0 END,
    window_start = EXCLUDED.window_start
RETURNING count"#;

const RATE_LIMIT_BUMP: &str =
    r#"UPDATE "{prefix}queue_rate_limits" SET count = count + $2 WHERE queue = $1"#;

/// Writes a batch of outcomes, each fenced by its claim (Python's columns, one statement).
/// $11 is the worker's clock when the batch is written: times the worker computed
/// (`completed_at`, and a `scheduled_at` a plugin moved, e.g. a retry delay) are shifted by
/// `NOW() - $11` onto the database clock, so a worker whose clock is off neither delays nor
/// hastens retries nor writes a `completed_at` before `started_at`; a moved `scheduled_at`
/// never lands after 9999-12-31T23:59:59Z (Python's `datetime.max`). A NULL `errors` or
/// `meta` (both are NOT NULL columns) means "as the claim read it": the column is left as the
/// row holds it, so a large (TOASTed) value is not stored again (BENCHMARKS.md, issue 19).
const UPDATE_BATCH: &str = r#"
UPDATE "{prefix}jobs" AS j
SET state = u.state,
    started_at = u.started_at,
    completed_at = u.completed_at + (NOW() - $11::timestamptz),
    scheduled_at = CASE WHEN u.scheduled_at IS DISTINCT FROM j.scheduled_at
                        THEN LEAST(u.scheduled_at + (NOW() - $11::timestamptz),
                                   '9999-12-31 23:59:59+00'::timestamptz)
                        ELSE u.scheduled_at END,
    attempts = u.attempts,
    errors = COALESCE(u.errors, j.errors),
    meta = COALESCE(u.meta, j.meta),
    max_attempts = u.max_attempts
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
            $6::timestamptz[], $7::int4[], $8::jsonb[], $9::jsonb[], $10::int4[])
     AS u(id, claim_id, state, started_at, completed_at, scheduled_at, attempts, errors,
          meta, max_attempts)
WHERE j.id = u.id AND j.claim_id IS NOT DISTINCT FROM u.claim_id
RETURNING j.id"#;

/// Upstream's heartbeat upsert, fenced: an existing row is updated only while it carries
/// this process's session tag $5 (one worker id = one live process, `worker/identity.rs`).
/// Returns the row when this process owns it.
const ANNOUNCE_WORKER: &str = r#"
INSERT INTO "{prefix}workers" (worker_id, last_seen, expires_at, tags, queues)
VALUES ($1, NOW(), NOW() + make_interval(secs => $2), $3, $4)
ON CONFLICT (worker_id) DO UPDATE SET
    last_seen = NOW(),
    expires_at = NOW() + make_interval(secs => $2),
    tags = EXCLUDED.tags,
    queues = EXCLUDED.queues
WHERE $5 = ANY("{prefix}workers".tags)
RETURNING worker_id"#;

/// Running jobs this worker claimed more than $3 seconds ago, in the queues it serves, while
/// its row carries this process's session tag $4 (never another process's claims).
const HELD_CLAIMS: &str = r#"
SELECT id, claim_id FROM "{prefix}jobs"
WHERE queue = ANY($1) AND state = 'running' AND taken_by = $2
  AND claim_id IS NOT NULL AND started_at < NOW() - make_interval(secs => $3)
  AND EXISTS (SELECT 1 FROM "{prefix}workers" w WHERE w.worker_id = $2 AND $4 = ANY(w.tags))"#;

/// The row of worker $1: seconds since it was seen, last_seen, seconds until it expires,
/// tags (all by the database's clock).
const WORKER_HOLDER: &str = r#"
SELECT EXTRACT(EPOCH FROM NOW() - last_seen)::float8, last_seen,
       EXTRACT(EPOCH FROM expires_at - NOW())::float8, tags
FROM "{prefix}workers" WHERE worker_id = $1"#;

/// Puts claims that never reached an executor back to pending, fenced by the claim.
const RELEASE_ORPHANS: &str = r#"
UPDATE "{prefix}jobs" AS j
SET state = 'pending', taken_by = NULL, claim_id = NULL, started_at = NULL
FROM unnest($1::uuid[], $2::uuid[]) AS o(id, claim_id)
WHERE j.id = o.id AND j.claim_id = o.claim_id AND j.state = 'running'
RETURNING j.queue"#;

impl Sql {
    pub(crate) fn new(p: &Prefix) -> Sql {
        let r = |t: &str| p.render(t);
        Sql {
            push: r(PUSH),
            notify: r(NOTIFY),
            declare: r(&format!(
                "{DECLARE_INSERT}{DECLARE_NOOP}{DECLARE_RETURNING}"
            )),
            declare_upsert: r(&format!(
                "{DECLARE_INSERT}{DECLARE_UPSERT}{DECLARE_RETURNING}"
            )),
            get_queue: r(r#"SELECT * FROM "{prefix}queues" WHERE name = $1"#),
            all_queues: r(r#"SELECT * FROM "{prefix}queues" ORDER BY name"#),
            delete_queue: r(r#"DELETE FROM "{prefix}queues" WHERE name = $1"#),
            delete_queue_jobs: r(r#"DELETE FROM "{prefix}jobs" WHERE queue = $1"#),
            pause_queue: r(
                r#"UPDATE "{prefix}queues" SET state = 'paused', resume_at = $2 WHERE name = $1"#,
            ),
            resume_queue: r(
                r#"UPDATE "{prefix}queues" SET state = 'active', resume_at = NULL WHERE name = $1"#,
            ),
            get_job: r(r#"SELECT * FROM "{prefix}jobs" WHERE id = $1"#),
            get_jobs: r(r#"SELECT * FROM "{prefix}jobs" WHERE id = ANY($1)"#),
            cancel_job: r(
                r#"UPDATE "{prefix}jobs" SET state = 'failed', claim_id = NULL, completed_at = NOW() WHERE id = $1 RETURNING queue"#,
            ),
            lock_job: r(r#"
SELECT state, queue, unique_key, scheduled_at, scheduled_at > NOW() AS later,
       COALESCE(attempts, 0) >= max_attempts AS exhausted
FROM "{prefix}jobs" WHERE id = $1 FOR UPDATE"#),
            retry_job: r(r#"
UPDATE "{prefix}jobs" AS j
SET started_at = NULL, completed_at = NULL, taken_by = NULL, claim_id = NULL,
    scheduled_at = NOW(), state = 'retrying', attempts = 0
WHERE j.id = $1"#),
            purge_job: r(r#"DELETE FROM "{prefix}jobs" WHERE id = $1"#),
            unique_key_holder: r(r#"
SELECT id FROM "{prefix}jobs"
WHERE unique_key = $1 AND state NOT IN ('succeeded', 'failed') AND id <> $2
ORDER BY id LIMIT 1"#),
            all_workers: r(r#"
SELECT wr.worker_id, wr.tags, wr.queues, wr.last_seen, wr.expires_at,
       l.worker_id IS NOT NULL AS is_leader
FROM "{prefix}workers" wr
LEFT JOIN "{prefix}leader" l ON l.worker_id = wr.worker_id
ORDER BY wr.worker_id"#),
            fetch: r(FETCH),
            queues_with_work: r(QUEUES_WITH_WORK),
            rate_limit_window: r(RATE_LIMIT_WINDOW),
            rate_limit_bump: r(RATE_LIMIT_BUMP),
            update_batch: r(UPDATE_BATCH),
            delete_expired_workers: r(r#"DELETE FROM "{prefix}workers" WHERE expires_at < NOW()"#),
            announce_worker: r(ANNOUNCE_WORKER),
            held_claims: r(HELD_CLAIMS),
            release_orphans: r(RELEASE_ORPHANS),
            worker_holder: r(WORKER_HOLDER),
            release_worker: r(
                r#"DELETE FROM "{prefix}workers" WHERE worker_id = $1 AND $2 = ANY(tags)"#,
            ),
        }
    }
}
