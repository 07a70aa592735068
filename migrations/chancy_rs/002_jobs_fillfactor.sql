-- Rust-only (Python ignores this key): rows of the jobs table are inserted into pages
-- filled to 50 %, so the claim's and the outcome's new row versions mostly stay on the
-- row's page (a same-page update: a smaller WAL record, no second heap page locked and
-- logged). Upstream's (queue, state) index keeps every state change a non-HOT update
-- either way. Measured (BENCHMARKS.md, issue 19 third pass): WAL per drained job -20 %,
-- PostgreSQL CPU per job no higher, and the table no larger once the jobs have run (a
-- waiting backlog takes up to twice the pages). Existing pages are not rewritten: the
-- setting applies to rows inserted from then on. A catalog change only (SHARE UPDATE
-- EXCLUSIVE lock: pushes and claims go on).
-- up
ALTER TABLE "{prefix}jobs" SET (fillfactor = 50);
-- down
ALTER TABLE "{prefix}jobs" RESET (fillfactor);
