-- Configuration of database triggers that push jobs. The handler function and the triggers
-- themselves are created on demand by the trigger plugin, not here.
-- up
CREATE TABLE "{prefix}triggers" (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    table_name TEXT NOT NULL,
    schema_name TEXT NOT NULL DEFAULT 'public',
    trigger_name TEXT NOT NULL,
    operations JSONB NOT NULL,
    job_template JSONB NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (schema_name, table_name, trigger_name)
);
CREATE INDEX "{prefix}triggers_lookup_idx" ON "{prefix}triggers" (schema_name, table_name, trigger_name)
    WHERE enabled = true;
-- down
DO $$
DECLARE
    t RECORD;
BEGIN
    FOR t IN
        SELECT tg.tgname AS trigger_name, n.nspname AS schema_name, c.relname AS table_name
        FROM pg_catalog.pg_trigger tg
        JOIN pg_catalog.pg_class c ON tg.tgrelid = c.oid
        JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid
        WHERE NOT tg.tgisinternal AND tg.tgname LIKE '{prefix}trigger_%'
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', t.trigger_name, t.schema_name, t.table_name);
    END LOOP;
END $$;
DROP FUNCTION IF EXISTS "{prefix}trigger_handler"();
DROP TABLE IF EXISTS "{prefix}triggers";
