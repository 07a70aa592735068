-- Every claim gets a fresh claim_id; every outcome write is fenced by it.
-- up
ALTER TABLE "{prefix}jobs" ADD COLUMN claim_id UUID;
-- down
ALTER TABLE "{prefix}jobs" DROP COLUMN claim_id;
