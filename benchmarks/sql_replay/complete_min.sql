UPDATE x_jobs AS j SET state = 'succeeded', completed_at = now(), attempts = 1
FROM (SELECT id, claim_id, started_at, scheduled_at FROM x_jobs WHERE queue='bench' AND state = 'running') u
WHERE j.id = u.id AND j.claim_id IS NOT DISTINCT FROM u.claim_id;
