-- A database as upstream praefect (v14 to v16) leaves it after its 42
-- migrations, laid out the way pg_dump prints one: objects first, then
-- defaults, constraints, indexes, triggers and foreign keys. Written by us
-- from docs/technical/store.md ("PostgreSQL: the schema"), not taken from
-- upstream. Test rows follow; @REPLICA_PATH@ is substituted by the test.

CREATE TYPE public.replication_job_state AS ENUM ('ready', 'in_progress', 'completed', 'cancelled', 'failed', 'dead');

CREATE FUNCTION public.notify_on_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    msg jsonb;
BEGIN
    CASE TG_OP
    WHEN 'INSERT' THEN
        SELECT json_agg(obj) INTO msg FROM (
            SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                      'relative_paths', array_agg(DISTINCT relative_path)) AS obj
            FROM NEW GROUP BY virtual_storage) t;
    WHEN 'UPDATE' THEN
        SELECT json_agg(obj) INTO msg FROM (
            SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                      'relative_paths', array_agg(DISTINCT relative_path)) AS obj
            FROM NEW AS new_value FULL JOIN OLD AS old_value USING (virtual_storage, relative_path)
            WHERE COALESCE(new_value.generation, -1) != COALESCE(old_value.generation, -1)
               OR new_value.relative_path != old_value.relative_path
            GROUP BY virtual_storage) t;
    WHEN 'DELETE' THEN
        SELECT json_agg(obj) INTO msg FROM (
            SELECT jsonb_build_object('virtual_storage', virtual_storage,
                                      'relative_paths', array_agg(DISTINCT relative_path)) AS obj
            FROM OLD GROUP BY virtual_storage) t;
    END CASE;
    CASE WHEN jsonb_array_length(msg) > 0 THEN
        PERFORM pg_notify(TG_ARGV[TG_NARGS-1], msg::text);
    ELSE END CASE;
    RETURN NULL;
END;
$$;

CREATE TABLE public.node_status (
    id bigint NOT NULL,
    praefect_name character varying(511) NOT NULL,
    shard_name character varying(255) NOT NULL,
    node_name character varying(255) NOT NULL,
    last_contact_attempt_at timestamp with time zone,
    last_seen_active_at timestamp with time zone
);

CREATE VIEW public.healthy_storages AS
 SELECT ns.shard_name AS virtual_storage, ns.node_name AS storage
   FROM public.node_status ns
  WHERE ns.last_seen_active_at >= (now() - '00:00:10'::interval)
  GROUP BY ns.shard_name, ns.node_name
 HAVING count(ns.praefect_name)::numeric >= (
    SELECT ceil(count(DISTINCT node_status.praefect_name)::numeric / 2.0)
      FROM public.node_status
     WHERE node_status.shard_name::text = ns.shard_name::text
       AND node_status.last_contact_attempt_at >= (now() - '00:01:00'::interval))
  ORDER BY ns.shard_name, ns.node_name;

CREATE TABLE public.hello_world (id integer);

CREATE SEQUENCE public.node_status_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE public.node_status_id_seq OWNED BY public.node_status.id;

CREATE TABLE public.replication_queue (
    id bigint NOT NULL,
    state public.replication_job_state DEFAULT 'ready'::public.replication_job_state NOT NULL,
    created_at timestamp without time zone DEFAULT timezone('UTC'::text, now()) NOT NULL,
    updated_at timestamp without time zone,
    attempt integer DEFAULT 3 NOT NULL,
    lock_id text,
    job jsonb,
    meta jsonb
);
CREATE SEQUENCE public.replication_queue_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE public.replication_queue_id_seq OWNED BY public.replication_queue.id;

CREATE TABLE public.replication_queue_job_lock (
    job_id bigint NOT NULL,
    lock_id text NOT NULL,
    triggered_at timestamp without time zone DEFAULT timezone('UTC'::text, now()) NOT NULL
);

CREATE TABLE public.replication_queue_lock (
    id text NOT NULL,
    acquired boolean DEFAULT false NOT NULL
);

CREATE TABLE public.repositories (
    virtual_storage text NOT NULL,
    relative_path text NOT NULL,
    generation bigint,
    "primary" text,
    repository_id bigint NOT NULL,
    replica_path text
);
CREATE SEQUENCE public.repositories_repository_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE public.repositories_repository_id_seq OWNED BY public.repositories.repository_id;

CREATE TABLE public.repository_assignments (
    virtual_storage text NOT NULL,
    relative_path text NOT NULL,
    storage text NOT NULL,
    repository_id bigint NOT NULL
);

CREATE TABLE public.storage_repositories (
    virtual_storage text NOT NULL,
    relative_path text NOT NULL,
    storage text NOT NULL,
    generation bigint NOT NULL,
    repository_id bigint NOT NULL,
    verified_at timestamp with time zone,
    verification_leased_until timestamp with time zone
);

CREATE VIEW public.repository_generations AS
 SELECT virtual_storage, relative_path, max(generation) AS generation
   FROM public.storage_repositories
  GROUP BY virtual_storage, relative_path;

CREATE TABLE public.schema_migrations (
    id text NOT NULL,
    applied_at timestamp with time zone
);

CREATE TABLE public.shard_primaries (
    id bigint NOT NULL,
    shard_name character varying(255) NOT NULL,
    node_name character varying(255) NOT NULL,
    elected_by_praefect character varying(255) NOT NULL,
    elected_at timestamp with time zone NOT NULL,
    read_only boolean DEFAULT false NOT NULL,
    demoted boolean DEFAULT false NOT NULL,
    previous_writable_primary text
);
CREATE SEQUENCE public.shard_primaries_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE public.shard_primaries_id_seq OWNED BY public.shard_primaries.id;

CREATE TABLE public.storage_cleanups (
    virtual_storage text NOT NULL,
    storage text NOT NULL,
    last_run timestamp without time zone,
    triggered_at timestamp without time zone
);

CREATE VIEW public.valid_primaries AS
 SELECT candidates.repository_id, candidates.virtual_storage, candidates.relative_path, candidates.storage
   FROM (SELECT repositories.repository_id, repositories.virtual_storage, repositories.relative_path,
                storage_repositories.storage,
                (repository_assignments.storage IS NOT NULL)
                  OR bool_and(repository_assignments.storage IS NULL) OVER (PARTITION BY repositories.repository_id)
                  AS eligible
           FROM public.repositories
           JOIN (SELECT repository_id, storage, generation FROM public.storage_repositories) storage_repositories
                USING (repository_id, generation)
           JOIN public.healthy_storages USING (virtual_storage, storage)
           LEFT JOIN public.repository_assignments USING (repository_id, storage)
          WHERE NOT EXISTS (SELECT FROM public.replication_queue
                             WHERE replication_queue.state <> ALL (ARRAY['completed'::public.replication_job_state,
                                   'dead'::public.replication_job_state, 'cancelled'::public.replication_job_state])
                               AND replication_queue.job ->> 'change' = 'delete_replica'
                               AND (replication_queue.job ->> 'repository_id')::bigint = repositories.repository_id
                               AND replication_queue.job ->> 'target_node_storage' = storage_repositories.storage)
        ) candidates
  WHERE candidates.eligible;

CREATE TABLE public.virtual_storages (
    virtual_storage text NOT NULL,
    repositories_imported boolean DEFAULT false NOT NULL
);

ALTER TABLE ONLY public.node_status ALTER COLUMN id SET DEFAULT nextval('public.node_status_id_seq'::regclass);
ALTER TABLE ONLY public.replication_queue ALTER COLUMN id SET DEFAULT nextval('public.replication_queue_id_seq'::regclass);
ALTER TABLE ONLY public.repositories ALTER COLUMN repository_id SET DEFAULT nextval('public.repositories_repository_id_seq'::regclass);
ALTER TABLE ONLY public.shard_primaries ALTER COLUMN id SET DEFAULT nextval('public.shard_primaries_id_seq'::regclass);

ALTER TABLE ONLY public.node_status ADD CONSTRAINT node_status_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.replication_queue_job_lock ADD CONSTRAINT replication_queue_job_lock_pk PRIMARY KEY (job_id, lock_id);
ALTER TABLE ONLY public.replication_queue_lock ADD CONSTRAINT replication_queue_lock_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.replication_queue ADD CONSTRAINT replication_queue_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.repositories ADD CONSTRAINT repositories_pkey PRIMARY KEY (repository_id);
ALTER TABLE ONLY public.repository_assignments ADD CONSTRAINT repository_assignments_pkey PRIMARY KEY (virtual_storage, relative_path, storage);
ALTER TABLE ONLY public.schema_migrations ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.shard_primaries ADD CONSTRAINT shard_primaries_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.storage_cleanups ADD CONSTRAINT storage_cleanups_pkey PRIMARY KEY (virtual_storage, storage);
ALTER TABLE ONLY public.storage_repositories ADD CONSTRAINT storage_repositories_pkey PRIMARY KEY (virtual_storage, relative_path, storage);
ALTER TABLE ONLY public.virtual_storages ADD CONSTRAINT virtual_storages_pkey PRIMARY KEY (virtual_storage);

CREATE UNIQUE INDEX delete_replica_unique_index ON public.replication_queue USING btree ((job ->> 'virtual_storage'), (job ->> 'relative_path'))
    WHERE state <> ALL (ARRAY['completed'::public.replication_job_state, 'cancelled'::public.replication_job_state, 'dead'::public.replication_job_state])
      AND job ->> 'change' = 'delete_replica';
CREATE INDEX replication_queue_target_index ON public.replication_queue USING btree ((job ->> 'virtual_storage'), (job ->> 'relative_path'), (job ->> 'target_node_storage'), (job ->> 'change'))
    WHERE state <> ALL (ARRAY['completed'::public.replication_job_state, 'cancelled'::public.replication_job_state, 'dead'::public.replication_job_state]);
CREATE UNIQUE INDEX repository_assignments_new_pkey ON public.repository_assignments USING btree (repository_id, storage);
CREATE UNIQUE INDEX repository_lookup_index ON public.repositories USING btree (virtual_storage, relative_path);
CREATE INDEX repository_replica_path_index ON public.repositories USING btree (replica_path, virtual_storage);
CREATE INDEX shard_name_on_node_status_idx ON public.node_status USING btree (shard_name, node_name);
CREATE UNIQUE INDEX shard_name_on_shard_primaries_idx ON public.shard_primaries USING btree (shard_name);
CREATE UNIQUE INDEX shard_node_names_on_node_status_idx ON public.node_status USING btree (praefect_name, shard_name, node_name);
CREATE UNIQUE INDEX storage_repositories_new_pkey ON public.storage_repositories USING btree (repository_id, storage);
CREATE INDEX verification_leases ON public.storage_repositories USING btree (verification_leased_until) WHERE verification_leased_until IS NOT NULL;
CREATE INDEX verification_queue ON public.storage_repositories USING btree (verified_at NULLS FIRST) WHERE verification_leased_until IS NULL;
CREATE INDEX virtual_target_on_replication_queue_idx ON public.replication_queue USING btree ((job ->> 'virtual_storage'), (job ->> 'target_node_storage'));

CREATE TRIGGER notify_on_delete AFTER DELETE ON public.repositories REFERENCING OLD TABLE AS old
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_on_change('repositories_updates');
CREATE TRIGGER notify_on_delete AFTER DELETE ON public.storage_repositories REFERENCING OLD TABLE AS old
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_on_change('storage_repositories_updates');
CREATE TRIGGER notify_on_insert AFTER INSERT ON public.storage_repositories REFERENCING NEW TABLE AS new
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_on_change('storage_repositories_updates');
CREATE TRIGGER notify_on_update AFTER UPDATE ON public.storage_repositories REFERENCING OLD TABLE AS old NEW TABLE AS new
    FOR EACH STATEMENT EXECUTE FUNCTION public.notify_on_change('storage_repositories_updates');

ALTER TABLE ONLY public.replication_queue_job_lock
    ADD CONSTRAINT replication_queue_job_lock_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.replication_queue(id);
ALTER TABLE ONLY public.replication_queue_job_lock
    ADD CONSTRAINT replication_queue_job_lock_lock_id_fkey FOREIGN KEY (lock_id) REFERENCES public.replication_queue_lock(id);
ALTER TABLE ONLY public.repository_assignments
    ADD CONSTRAINT repository_assignments_repository_id_fkey FOREIGN KEY (repository_id) REFERENCES public.repositories(repository_id) ON DELETE CASCADE;
ALTER TABLE ONLY public.repository_assignments
    ADD CONSTRAINT repository_assignments_virtual_storage_relative_path_fkey FOREIGN KEY (virtual_storage, relative_path)
    REFERENCES public.repositories(virtual_storage, relative_path) ON UPDATE CASCADE ON DELETE CASCADE;
ALTER TABLE ONLY public.storage_repositories
    ADD CONSTRAINT storage_repositories_repository_id_fkey FOREIGN KEY (repository_id) REFERENCES public.repositories(repository_id) ON DELETE CASCADE;

INSERT INTO public.schema_migrations (id, applied_at)
SELECT id, timestamptz '2023-03-01 10:00:00+00' FROM unnest(ARRAY[
    '20200109161404_hello_world', '20200113151438_1_test_migration', '20200224220728_job_queue', '20200225220728_readd_job_queue',
    '20200324001604_add_sql_election_tables', '20200422131451_add_shard_read_only_column',
    '20200512131219_replication_job_indexing', '20200527103816_drop_old_gitaly_tables',
    '20200602154246_remember_previous_writable_primary', '20200707101830_repositories_table',
    '20200810055650_replication_queue_cleanup', '20200921154417_repositories_nullable_generation',
    '20200921170311_repositories_primary_column', '20201006125956_trigger_repository_update_generation',
    '20201102115118_variable_replication_factor', '20201102171914_virtual_storage_configuration',
    '20201126165633_repository_assignments_table', '20201208163237_cleanup_notifiactions_payload',
    '20201231075619_remove_unused_assigned_column', '20210223130233_delete_replica_unique_index',
    '20210225101159_replication_queue_target_index', '20210525143540_healthy_storages_view',
    '20210525173505_valid_primaries_view', '20210607124235_optimize_valid_primaries_view',
    '20210727085659_repository_ids', '20210906130405_add_replica_path', '20210906145021_link_repository_id',
    '20210914115710_storage_cleanups_table', '20210921131816_backfill_replica_path',
    '20210922091614_repository_id_primary_key_indexes', '20210922143752_storage_repositories_cascade_delete',
    '20210923155827_valid_primaries_view_repository_id', '20210927083631_repository_path_index',
    '20211018142158_valid_primaries_view_join_repo_id', '20211025113445_remove_cancelled_replication_events',
    '20211105100456_check_non_null_repository_id', '20211105100458_non_nullable_repository_id',
    '20220215160117_replication_queue_cleanup_again', '20220303105110_background_verification_columns',
    '20220404131105_stale_verification_lease_index', '20220407111624_ignore_verification_in_triggers',
    '20220520083313_remove_maintenance_replication_events']) AS id;

INSERT INTO public.hello_world (id) VALUES (1);

-- two repositories upstream praefect created: one on every storage, one whose
-- replica on gitaly-3 is a generation behind
INSERT INTO public.repositories (repository_id, virtual_storage, relative_path, generation, "primary", replica_path)
VALUES (7, 'default', '@hashed/aa/bb/upstream.git', 2, 'gitaly-1', '@REPLICA_PATH@'),
       (8, 'default', '@hashed/cc/dd/behind.git', 1, 'gitaly-2', '@cluster/repositories/cc/dd/8');
INSERT INTO public.storage_repositories (repository_id, virtual_storage, relative_path, storage, generation, verified_at)
VALUES (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-1', 2, now()),
       (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-2', 2, NULL),
       (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-3', 2, NULL),
       (8, 'default', '@hashed/cc/dd/behind.git', 'gitaly-2', 1, NULL),
       (8, 'default', '@hashed/cc/dd/behind.git', 'gitaly-3', 0, NULL);
INSERT INTO public.repository_assignments (repository_id, virtual_storage, relative_path, storage)
VALUES (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-1'),
       (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-2'),
       (7, 'default', '@hashed/aa/bb/upstream.git', 'gitaly-3');
SELECT pg_catalog.setval('public.repositories_repository_id_seq', 8, true);
-- a job upstream praefect had finished and kept (dead), as its queue holds them
INSERT INTO public.replication_queue_lock (id, acquired) VALUES ('default|gitaly-3|@hashed/cc/dd/behind.git', false);
INSERT INTO public.replication_queue (state, created_at, attempt, lock_id, job, meta)
VALUES ('dead', timestamp '2023-03-01 10:05:00', 0, 'default|gitaly-3|@hashed/cc/dd/behind.git',
        '{"change": "update", "repository_id": 8, "replica_path": "@cluster/repositories/cc/dd/8",
          "relative_path": "@hashed/cc/dd/behind.git", "target_node_storage": "gitaly-3",
          "source_node_storage": "gitaly-2", "virtual_storage": "default", "params": null}',
        '{"correlation_id": "upstream-1"}');
