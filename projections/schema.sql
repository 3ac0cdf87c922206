-- Read models of Berth. Written only by the projector (rows and position in one
-- transaction); read by the gateway. Every table can be dropped and rebuilt from
-- the EVENTS stream; no column takes its value from the clock or a sequence, so
-- a rebuild gives identical rows. Slot amounts are JSON objects of decimal strings.

CREATE TABLE IF NOT EXISTS projection_position (
    projection  text PRIMARY KEY,
    position    bigint NOT NULL,   -- last event store notification id applied
    stream_seq  bigint NOT NULL    -- last EVENTS stream sequence applied
);

CREATE TABLE IF NOT EXISTS sessions (
    session_id      text PRIMARY KEY,
    name            text NOT NULL,
    owner           text NOT NULL,          -- access key of the owner
    image           text NOT NULL,
    session_type    text NOT NULL,
    status          text NOT NULL,
    status_reason   text,
    requested_slots jsonb NOT NULL,         -- sum over the kernels
    cluster_size    integer NOT NULL,
    agent_ids       text[] NOT NULL DEFAULT '{}',
    status_history  jsonb NOT NULL,         -- {"PENDING": "<iso ts>", ...}
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    terminated_at   timestamptz,
    version         integer NOT NULL,
    last_position   bigint NOT NULL,
    user_name       text NOT NULL DEFAULT '',
    domain          text NOT NULL DEFAULT 'default',
    project         text NOT NULL DEFAULT 'default',
    resource_group  text NOT NULL DEFAULT 'default',
    priority        integer NOT NULL DEFAULT 10,
    pending_code    text,                   -- why the last scheduling pass left it pending
    pending_reason  text,
    status_detail   text,                   -- for people: pull progress while preparing, the cause of a failed start
    mounts          jsonb NOT NULL DEFAULT '[]'  -- the folders mounted (contracts.mounts.MountSpec as JSON)
);
-- Tenancy and scheduling columns came after the first schema: add them to tables created
-- before (without locking the table when they are already there).
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN SELECT * FROM (VALUES
        ('user_name', 'text NOT NULL DEFAULT '''''),
        ('domain', 'text NOT NULL DEFAULT ''default'''),
        ('project', 'text NOT NULL DEFAULT ''default'''),
        ('resource_group', 'text NOT NULL DEFAULT ''default'''),
        ('priority', 'integer NOT NULL DEFAULT 10'),
        ('pending_code', 'text'),
        ('pending_reason', 'text'),
        ('status_detail', 'text'),
        ('mounts', 'jsonb NOT NULL DEFAULT ''[]''')) AS c(name, definition)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_attribute
                        WHERE attrelid = 'sessions'::regclass AND attname = col.name AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE sessions ADD COLUMN %I %s', col.name, col.definition);
        END IF;
    END LOOP;
END $$;
CREATE INDEX IF NOT EXISTS sessions_domain_created ON sessions (domain, created_at, session_id);
CREATE INDEX IF NOT EXISTS sessions_owner_created ON sessions (owner, created_at, session_id);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at, session_id);
-- Session references (projections/session_refs.py): a name per owner, an id prefix (LIKE 'abcd%').
CREATE INDEX IF NOT EXISTS sessions_name_owner ON sessions (name, owner);
CREATE INDEX IF NOT EXISTS sessions_id_pattern ON sessions (session_id text_pattern_ops);
-- The sessions that ended in a time window (the dashboards of ops/grafana), without reading every one ever ended.
CREATE INDEX IF NOT EXISTS sessions_terminated ON sessions (terminated_at) WHERE terminated_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS kernels (
    kernel_id     text PRIMARY KEY,
    session_id    text NOT NULL,
    cluster_role  text NOT NULL,
    cluster_idx   integer NOT NULL,
    agent_id      text,
    status        text NOT NULL,
    container_id  text,
    exit_code     integer,
    slots         jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    status_reason text,                     -- why it ended
    status_detail text                      -- for people: pull progress while preparing, the cause of a failed start
);
-- The kernels' status reason and detail came after the first schema: add them to tables created before.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = 'kernels'::regclass AND attname = 'status_detail' AND NOT attisdropped) THEN
        ALTER TABLE kernels ADD COLUMN status_reason text, ADD COLUMN status_detail text;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS kernels_session ON kernels (session_id);
CREATE INDEX IF NOT EXISTS kernels_agent ON kernels (agent_id);

CREATE TABLE IF NOT EXISTS agents (
    agent_id      text PRIMARY KEY,
    hostname      text NOT NULL,
    backend       text NOT NULL,
    resource_group text NOT NULL DEFAULT 'default',
    status        text NOT NULL,            -- ALIVE | LOST
    capacity      jsonb NOT NULL,
    occupied      jsonb NOT NULL,           -- sum of assigned kernels' slots
    kernel_count  integer NOT NULL,
    allocations   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- kernel_id -> slots of each assigned kernel
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer NOT NULL
);
-- agents.allocations came after the first schema: add it to tables created before (without
-- locking the table when it is already there).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = 'agents'::regclass AND attname = 'allocations' AND NOT attisdropped) THEN
        ALTER TABLE agents ADD COLUMN allocations jsonb NOT NULL DEFAULT '{}'::jsonb;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = 'agents'::regclass AND attname = 'resource_group' AND NOT attisdropped) THEN
        ALTER TABLE agents ADD COLUMN resource_group text NOT NULL DEFAULT 'default';
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS event_log (
    position          bigint PRIMARY KEY,   -- event store notification id
    stream_seq        bigint NOT NULL,
    event_id          uuid NOT NULL UNIQUE,
    type              text NOT NULL,        -- stable type name, e.g. session.requested
    context           text NOT NULL,
    aggregate_id      text NOT NULL,
    aggregate_version integer NOT NULL,
    occurred_at       timestamptz NOT NULL,
    actor             text NOT NULL,
    correlation_id    text NOT NULL,
    causation_id      text,
    payload           json NOT NULL         -- the event as stored and published, byte for byte (json, not
                                            -- jsonb: checked but kept as its text, not reordered; and not
                                            -- parsed, 40 % of a rebuild's time writing this table)
);
CREATE INDEX IF NOT EXISTS event_log_aggregate ON event_log (aggregate_id, position);
CREATE INDEX IF NOT EXISTS event_log_time ON event_log (occurred_at, position);

-- quota_usage: what each quota scope holds (one row per Quota aggregate, quota_<scope>_<name>),
-- and quota_usage_sessions: one row per holding session, so that a change writes the sum and the
-- one session's row, never every session the scope holds.
CREATE TABLE IF NOT EXISTS quota_usage (
    quota_id      text PRIMARY KEY,
    scope         text NOT NULL,            -- keypair | project | domain
    name          text NOT NULL,            -- access key, project or domain name
    slots         jsonb NOT NULL,           -- sum of the holding sessions' slots
    session_count integer NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS quota_usage_scope_name ON quota_usage (scope, name);
CREATE TABLE IF NOT EXISTS quota_usage_sessions (
    quota_id      text NOT NULL,
    session_id    text NOT NULL,
    slots         jsonb NOT NULL,           -- the session's slots (the sum over its kernels)
    PRIMARY KEY (quota_id, session_id)
);
-- quota_usage.sessions (session_id -> slots, one map per scope) came first: its entries move to
-- quota_usage_sessions and the column goes, in this transaction.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'quota_usage'::regclass AND attname = 'sessions' AND NOT attisdropped) THEN
        INSERT INTO quota_usage_sessions (quota_id, session_id, slots)
            SELECT q.quota_id, s.key, s.value FROM quota_usage q, jsonb_each(q.sessions) AS s
            ON CONFLICT (quota_id, session_id) DO NOTHING;
        ALTER TABLE quota_usage DROP COLUMN sessions;
    END IF;
END $$;

-- Tenancy (projections/tenancy.py): domains, projects, users, keypairs (no secrets: those live
-- in the gateway's own keypairs table), resource policies and resource groups, keyed by name.
CREATE TABLE IF NOT EXISTS domains (
    name                 text PRIMARY KEY,
    description          text NOT NULL,
    total_resource_slots jsonb NOT NULL,       -- a missing slot is unlimited
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              integer NOT NULL,
    last_position        bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS projects (
    name                 text PRIMARY KEY,
    domain               text NOT NULL,
    description          text NOT NULL,
    total_resource_slots jsonb NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    version              integer NOT NULL,
    last_position        bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS projects_domain ON projects (domain, name);

CREATE TABLE IF NOT EXISTS users (
    name           text PRIMARY KEY,
    domain         text NOT NULL,
    role           text NOT NULL,              -- superadmin | admin | user
    projects       text[] NOT NULL,            -- membership
    is_active      boolean NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    version        integer NOT NULL,
    last_position  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS users_domain ON users (domain, name);

CREATE TABLE IF NOT EXISTS keypairs_view (
    access_key      text PRIMARY KEY,
    user_name       text NOT NULL,
    domain          text NOT NULL,
    role            text NOT NULL,
    resource_policy text NOT NULL,
    is_active       boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    version         integer NOT NULL,
    last_position   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS keypairs_view_user ON keypairs_view (user_name);
CREATE INDEX IF NOT EXISTS keypairs_view_domain ON keypairs_view (domain, access_key);

CREATE TABLE IF NOT EXISTS resource_policies (
    name                               text PRIMARY KEY,
    limits                             jsonb NOT NULL,   -- the whole KeypairLimits
    total_resource_slots               jsonb NOT NULL,
    max_concurrent_sessions            integer NOT NULL,  -- 0: no limit
    max_pending_session_count          integer NOT NULL,
    max_pending_session_resource_slots jsonb NOT NULL,
    max_containers_per_session         integer NOT NULL,
    idle_timeout                       integer NOT NULL,  -- seconds
    max_session_lifetime               integer NOT NULL,  -- seconds
    created_at                         timestamptz NOT NULL,
    updated_at                         timestamptz NOT NULL,
    version                            integer NOT NULL,
    last_position                      bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS resource_groups (
    name                  text PRIMARY KEY,
    description           text NOT NULL,
    options               jsonb NOT NULL,      -- the whole ResourceGroupOptions
    scheduler             text NOT NULL,       -- fifo | lifo | drf
    agent_selection       text NOT NULL,       -- concentrated | dispersed | roundrobin
    allowed_session_types text[] NOT NULL,
    pending_timeout       integer NOT NULL,    -- seconds, 0: forever
    is_public             boolean NOT NULL,
    visible_domains       text[] NOT NULL,
    visible_projects      text[] NOT NULL,
    visible_keypairs      text[] NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    version               integer NOT NULL,
    last_position         bigint NOT NULL
);

-- Virtual folders (projections/vfolders.py): one row per folder (purged ones stay, status
-- 'purged'), who it is shared with (directly or by an accepted invitation), its invitations,
-- and the storage limit of each project's quota scope.
CREATE TABLE IF NOT EXISTS vfolders (
    folder_id     text PRIMARY KEY,
    name          text NOT NULL,
    volume        text NOT NULL,
    owner_kind    text NOT NULL,       -- user | project
    owner         text NOT NULL,       -- a user or project name
    domain        text NOT NULL,
    quota_scope   text NOT NULL,       -- user:<name> | project:<name>
    usage_mode    text NOT NULL,       -- general | model | data
    permission    text NOT NULL,       -- project members' default: ro | rw | wd
    cloneable     boolean NOT NULL,
    clone_of      text,
    status        text NOT NULL,       -- provisioning | ready | error | trashed | purging | purged
    status_detail text,                -- why a provision failed
    quota_limit   bigint NOT NULL,     -- the folder's own cap in bytes, 0: none
    usage_bytes   bigint NOT NULL,
    usage_files   bigint NOT NULL,
    uploaded_bytes bigint NOT NULL DEFAULT 0,  -- files uploaded since the last usage measure: counted by quotas
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       integer NOT NULL,
    last_position bigint NOT NULL
);
-- uploaded_bytes came after the first schema: add it to tables created before.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = 'vfolders'::regclass AND attname = 'uploaded_bytes' AND NOT attisdropped) THEN
        ALTER TABLE vfolders ADD COLUMN uploaded_bytes bigint NOT NULL DEFAULT 0;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS vfolders_owner ON vfolders (owner_kind, owner, name);
CREATE INDEX IF NOT EXISTS vfolders_domain ON vfolders (domain, name);
CREATE INDEX IF NOT EXISTS vfolders_scope ON vfolders (quota_scope);

CREATE TABLE IF NOT EXISTS vfolder_shares (
    folder_id  text NOT NULL,
    user_name  text NOT NULL,
    permission text NOT NULL,
    PRIMARY KEY (folder_id, user_name)
);
CREATE INDEX IF NOT EXISTS vfolder_shares_user ON vfolder_shares (user_name);

CREATE TABLE IF NOT EXISTS vfolder_invitations (
    invitation_id text PRIMARY KEY,
    folder_id     text NOT NULL,
    inviter       text NOT NULL,
    invitee       text NOT NULL,
    permission    text NOT NULL,
    state         text NOT NULL,       -- pending | accepted | rejected | withdrawn
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS vfolder_invitations_invitee ON vfolder_invitations (invitee, state);

CREATE TABLE IF NOT EXISTS vfolder_scope_limits (
    quota_scope text PRIMARY KEY,      -- project:<name> (a user's comes from its keypairs' policies)
    limit_bytes bigint NOT NULL        -- 0: no limit
);

-- The dashboards' reader (ops/grafana/README.md): where an operator made the role berth_dashboards, it may
-- read what the dashboards show and nothing else: not the event store, not the gateway's credentials, not
-- the events' payloads, no write. Granted whenever the tables are (re)made (a projector's start, a rebuild).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'berth_dashboards') THEN
        GRANT SELECT ON sessions, agents, quota_usage, vfolders TO berth_dashboards;
        GRANT SELECT (position, type, context, occurred_at) ON event_log TO berth_dashboards;
    END IF;
END $$;
