BEGIN;
WITH selected_jobs AS (     SELECT ctid FROM "x_jobs"     WHERE queue = 'bench'       AND (state = 'pending' OR state = 'retrying')       AND COALESCE(attempts, 0) < max_attempts       AND (scheduled_at IS NULL OR scheduled_at <= NOW())     ORDER BY priority DESC, id ASC     LIMIT 256     FOR UPDATE OF "x_jobs" SKIP LOCKED ) UPDATE "x_jobs" SET started_at = NOW(), state = 'running', claim_id = gen_random_uuid(), taken_by = '0b3e6f2c-5a1d-4c8e-9f7a-2d4b6c8e0a1f' FROM selected_jobs WHERE "x_jobs".ctid = selected_jobs.ctid RETURNING "x_jobs".*; 
ROLLBACK;
