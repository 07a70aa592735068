TRUNCATE x_jobs;
INSERT INTO x_jobs (id, queue, func, kwargs, limits, meta, priority, max_attempts, scheduled_at)
SELECT (lpad(to_hex(i), 12, '0') || '7000800000000000' || '0000')::uuid, 'bench', 'chancy.bench.noop', '{}', '[]', '{}', 0, 1, now()
FROM generate_series(1, 100000) i;
VACUUM ANALYZE x_jobs;
