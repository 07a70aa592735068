-- Databases created before 0.26 have an unprefixed leader constraint; give it the prefix so
-- several prefixes can share a schema. Matches the leader table by name only, like upstream.
-- up
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.conname = 'leader_worker_id_unique' AND t.relname = '{prefix}leader'
    ) THEN
        ALTER TABLE "{prefix}leader"
            RENAME CONSTRAINT "leader_worker_id_unique" TO "{prefix}leader_worker_id_unique";
    END IF;
END $$;
-- down
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
        WHERE c.conname = '{prefix}leader_worker_id_unique' AND t.relname = '{prefix}leader'
    ) THEN
        ALTER TABLE "{prefix}leader"
            RENAME CONSTRAINT "{prefix}leader_worker_id_unique" TO "leader_worker_id_unique";
    END IF;
END $$;
