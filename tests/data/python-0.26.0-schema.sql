--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: chancy_cron; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_cron (
    unique_key text NOT NULL,
    job jsonb NOT NULL,
    cron text NOT NULL,
    last_run timestamp with time zone,
    next_run timestamp with time zone NOT NULL,
    timezone text DEFAULT 'Etc/UTC'::text NOT NULL
);


--
-- Name: chancy_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_jobs (
    id uuid NOT NULL,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb DEFAULT '{}'::json NOT NULL,
    limits jsonb DEFAULT '[]'::json NOT NULL,
    meta jsonb DEFAULT '{}'::json NOT NULL,
    state character varying(25) DEFAULT 'pending'::character varying NOT NULL,
    priority integer DEFAULT 0,
    attempts integer DEFAULT 0,
    max_attempts integer DEFAULT 1 NOT NULL,
    taken_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    unique_key text,
    errors jsonb DEFAULT '[]'::json NOT NULL,
    claim_id uuid
);


--
-- Name: chancy_leader; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_leader (
    id bigint NOT NULL,
    worker_id text NOT NULL,
    first_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE UNLOGGED SEQUENCE public.chancy_leader_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_leader_id_seq OWNED BY public.chancy_leader.id;


--
-- Name: chancy_metric_definitions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_metric_definitions (
    id bigint NOT NULL,
    key text NOT NULL COLLATE pg_catalog."C",
    metric_type text NOT NULL,
    unit text NOT NULL,
    CONSTRAINT chancy_metric_definitions_metric_type_check CHECK ((metric_type = ANY (ARRAY['counter'::text, 'gauge'::text, 'histogram'::text])))
);


--
-- Name: chancy_metric_definitions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.chancy_metric_definitions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_metric_definitions_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_metric_definitions_id_seq OWNED BY public.chancy_metric_definitions.id;


--
-- Name: chancy_metrics; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_metrics (
    metric_id bigint NOT NULL,
    resolution integer NOT NULL,
    chunk timestamp with time zone NOT NULL,
    session_id uuid NOT NULL,
    worker_id text NOT NULL,
    buckets timestamp with time zone[] NOT NULL,
    counts bigint[],
    totals double precision[],
    minimums double precision[],
    maximums double precision[],
    gauges double precision[],
    sampled_at timestamp with time zone[] NOT NULL
);


--
-- Name: chancy_queue_rate_limits; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_queue_rate_limits (
    queue character varying(255) NOT NULL,
    window_start integer NOT NULL,
    count integer DEFAULT 0 NOT NULL
);


--
-- Name: chancy_queues; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_queues (
    name text NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    concurrency integer DEFAULT 1,
    tags text[],
    executor text DEFAULT 'chancy.executors.process.ProcessExecutor'::text NOT NULL,
    executor_options jsonb,
    polling_interval integer DEFAULT 1,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    rate_limit integer,
    rate_limit_window integer,
    resume_at timestamp with time zone,
    eager_polling boolean DEFAULT false NOT NULL
);


--
-- Name: chancy_schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_schema_version (
    version_of character varying(255) NOT NULL,
    version integer
);


--
-- Name: chancy_triggers; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_triggers (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    table_name text NOT NULL,
    schema_name text DEFAULT 'public'::text NOT NULL,
    trigger_name text NOT NULL,
    operations jsonb NOT NULL,
    job_template jsonb NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: chancy_workers; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_workers (
    worker_id text NOT NULL,
    tags text[],
    queues text[],
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_workflow_steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflow_steps (
    id integer NOT NULL,
    workflow_id uuid,
    step_id text NOT NULL,
    job_data jsonb NOT NULL,
    dependencies jsonb NOT NULL,
    job_id uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.chancy_workflow_steps_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_workflow_steps_id_seq OWNED BY public.chancy_workflow_steps.id;


--
-- Name: chancy_workflows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflows (
    id uuid NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_leader id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader ALTER COLUMN id SET DEFAULT nextval('public.chancy_leader_id_seq'::regclass);


--
-- Name: chancy_metric_definitions id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions ALTER COLUMN id SET DEFAULT nextval('public.chancy_metric_definitions_id_seq'::regclass);


--
-- Name: chancy_workflow_steps id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps ALTER COLUMN id SET DEFAULT nextval('public.chancy_workflow_steps_id_seq'::regclass);


--
-- Name: chancy_cron chancy_cron_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_cron
    ADD CONSTRAINT chancy_cron_pkey PRIMARY KEY (unique_key);


--
-- Name: chancy_jobs chancy_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_jobs
    ADD CONSTRAINT chancy_jobs_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader chancy_leader_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT chancy_leader_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader chancy_leader_worker_id_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT chancy_leader_worker_id_unique UNIQUE (worker_id);


--
-- Name: chancy_metric_definitions chancy_metric_definitions_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions
    ADD CONSTRAINT chancy_metric_definitions_key_key UNIQUE (key);


--
-- Name: chancy_metric_definitions chancy_metric_definitions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions
    ADD CONSTRAINT chancy_metric_definitions_pkey PRIMARY KEY (id);


--
-- Name: chancy_metrics chancy_metrics_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metrics
    ADD CONSTRAINT chancy_metrics_pkey PRIMARY KEY (metric_id, resolution, chunk, session_id);


--
-- Name: chancy_queue_rate_limits chancy_queue_rate_limits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queue_rate_limits
    ADD CONSTRAINT chancy_queue_rate_limits_pkey PRIMARY KEY (queue);


--
-- Name: chancy_queues chancy_queues_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queues
    ADD CONSTRAINT chancy_queues_pkey PRIMARY KEY (name);


--
-- Name: chancy_schema_version chancy_schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_schema_version
    ADD CONSTRAINT chancy_schema_version_pkey PRIMARY KEY (version_of);


--
-- Name: chancy_triggers chancy_triggers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_triggers
    ADD CONSTRAINT chancy_triggers_pkey PRIMARY KEY (id);


--
-- Name: chancy_triggers chancy_triggers_schema_name_table_name_trigger_name_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_triggers
    ADD CONSTRAINT chancy_triggers_schema_name_table_name_trigger_name_key UNIQUE (schema_name, table_name, trigger_name);


--
-- Name: chancy_workers chancy_workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workers
    ADD CONSTRAINT chancy_workers_pkey PRIMARY KEY (worker_id);


--
-- Name: chancy_workflow_steps chancy_workflow_steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_pkey PRIMARY KEY (id);


--
-- Name: chancy_workflows chancy_workflows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflows
    ADD CONSTRAINT chancy_workflows_pkey PRIMARY KEY (id);


--
-- Name: chancy_idx_jobs_fetch_prune; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_fetch_prune ON public.chancy_jobs USING btree (queue, state, attempts, scheduled_at, priority DESC, id DESC) WHERE ((state)::text = ANY ((ARRAY['pending'::character varying, 'retrying'::character varying])::text[]));


--
-- Name: chancy_idx_jobs_queue_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_queue_state ON public.chancy_jobs USING btree (queue, state);


--
-- Name: chancy_jobs_unique_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_jobs_unique_key ON public.chancy_jobs USING btree (unique_key) WHERE ((unique_key IS NOT NULL) AND ((state)::text <> ALL ((ARRAY['succeeded'::character varying, 'failed'::character varying])::text[])));


--
-- Name: chancy_metrics_expiry_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_metrics_expiry_idx ON public.chancy_metrics USING btree (resolution, chunk);


--
-- Name: chancy_triggers_lookup_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_triggers_lookup_idx ON public.chancy_triggers USING btree (schema_name, table_name, trigger_name) WHERE (enabled = true);


--
-- Name: chancy_workflow_steps_workflow_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflow_steps_workflow_id_idx ON public.chancy_workflow_steps USING btree (workflow_id);


--
-- Name: chancy_workflows_active_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflows_active_id_idx ON public.chancy_workflows USING btree (id) WHERE (state = ANY (ARRAY['pending'::text, 'running'::text]));


--
-- Name: chancy_workflows_state_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflows_state_idx ON public.chancy_workflows USING btree (state);


--
-- Name: chancy_workflows_steps_unique_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_workflows_steps_unique_idx ON public.chancy_workflow_steps USING btree (workflow_id, step_id);


--
-- Name: chancy_metrics chancy_metrics_metric_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metrics
    ADD CONSTRAINT chancy_metrics_metric_id_fkey FOREIGN KEY (metric_id) REFERENCES public.chancy_metric_definitions(id) ON DELETE RESTRICT;


--
-- Name: chancy_workflow_steps chancy_workflow_steps_workflow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES public.chancy_workflows(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


