#!/bin/bash
# $1: extra SET clause of one completion of 2,000 running jobs with a 4 kB (TOASTed) meta; u.meta is
# the stored value, u.nmeta NULL. "" or ", meta = COALESCE(u.nmeta, j.meta)": kept; ", meta = u.meta::text::jsonb": a new datum
P="psql -X -q -h ${PGHOST:-/tmp/costpg} -U postgres -At"
$P <<SQL >/dev/null
TRUNCATE x_jobs;
INSERT INTO x_jobs (id, queue, func, kwargs, limits, meta, state, priority, max_attempts, scheduled_at, claim_id)
SELECT gen_random_uuid(), 'bench', 'f', '{}', '[]', jsonb_build_object('blob', (SELECT string_agg(md5(i::text||'-'||g), '') FROM generate_series(1,128) g)), 'running', 0, 1, now(), gen_random_uuid()
FROM generate_series(1, 2000) i;
VACUUM ANALYZE x_jobs;
CHECKPOINT;
SQL
S=$($P -c "select pg_current_wal_insert_lsn()")
$P -c "UPDATE x_jobs AS j SET state='succeeded', completed_at=now(), attempts=1 $1 FROM (SELECT id, meta, NULL::jsonb AS nmeta FROM x_jobs) u WHERE j.id=u.id" >/dev/null
E=$($P -c "select pg_current_wal_insert_lsn()")
echo "set='$1' WAL bytes/job: $($P -c "select round(pg_wal_lsn_diff('$E','$S')/2000.0)") toast size: $($P -c "select pg_size_pretty(pg_total_relation_size(reltoastrelid)) from pg_class where relname='x_jobs'")"
