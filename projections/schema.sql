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
    last_position   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_owner_created ON sessions (owner, created_at, session_id);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status);
CREATE INDEX IF NOT EXISTS sessions_created ON sessions (created_at, session_id);

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
    updated_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS kernels_session ON kernels (session_id);
CREATE INDEX IF NOT EXISTS kernels_agent ON kernels (agent_id);

CREATE TABLE IF NOT EXISTS agents (
    agent_id      text PRIMARY KEY,
    hostname      text NOT NULL,
    backend       text NOT NULL,
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
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name = 'agents'
                      AND column_name = 'allocations') THEN
        ALTER TABLE agents ADD COLUMN allocations jsonb NOT NULL DEFAULT '{}'::jsonb;
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
    payload           jsonb NOT NULL        -- the event as stored and published
);
CREATE INDEX IF NOT EXISTS event_log_aggregate ON event_log (aggregate_id, position);
CREATE INDEX IF NOT EXISTS event_log_time ON event_log (occurred_at, position);
