-- Herald on PostgreSQL, layout version 1. Applied by `schema.rs` in one transaction, under an
-- advisory lock, so nodes starting together apply it once.
--
-- The tables mirror the redb layout (storage/redb/tables.rs) so each read and write is the same
-- operation on both backends. Ids (ULIDs, time-ordered u128) are 16 big-endian bytes, which
-- PostgreSQL orders as numbers; times are milliseconds or microseconds since the epoch. Records
-- are the redb backend's own bytes (versioned postcard, storage/codec.rs and rows.rs); columns
-- hold only what is looked up, ordered or constrained.

CREATE TABLE apps (
    id bytea PRIMARY KEY,
    uid text UNIQUE,
    rec bytea NOT NULL
);

CREATE TABLE event_types (
    name text PRIMARY KEY,
    rec bytea NOT NULL
);
-- Names in byte order, as redb orders them (the list pages by name, whatever the database's
-- collation).
CREATE INDEX event_types_by_bytes ON event_types (name COLLATE "C");

CREATE TABLE endpoints (
    id bytea PRIMARY KEY,
    app_id bytea NOT NULL,
    uid text,
    rec bytea NOT NULL,
    UNIQUE (app_id, uid)
);
CREATE INDEX endpoints_by_app ON endpoints (app_id, id);

CREATE TABLE triggers (
    app_id bytea NOT NULL,
    id bytea NOT NULL,
    endpoint_id bytea NOT NULL,
    rec bytea NOT NULL,
    PRIMARY KEY (app_id, id)
);

CREATE TABLE messages (
    app_id bytea NOT NULL,
    id bytea NOT NULL,
    event_id text,
    rec bytea NOT NULL,
    PRIMARY KEY (app_id, id),
    UNIQUE (app_id, event_id)
);
CREATE INDEX messages_by_id ON messages (id);

CREATE TABLE deliveries (
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    rec bytea NOT NULL,
    PRIMARY KEY (msg_id, n)
);

-- The delivery queue: one row per pending, unparked delivery, in its priority lane (0 high,
-- 1 normal, 2 low). `lease_until` / `lease_node` are set by the node that claimed it.
CREATE TABLE queue (
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    lane smallint NOT NULL,
    due_ms bigint NOT NULL,
    endpoint_id bytea NOT NULL,
    lease_until bigint NOT NULL DEFAULT 0,
    lease_node text,
    PRIMARY KEY (msg_id, n)
);
CREATE INDEX queue_due ON queue (lane, due_ms, msg_id, n);

CREATE TABLE parked (
    endpoint_id bytea NOT NULL,
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (endpoint_id, msg_id, n)
);

CREATE TABLE unique_keys (
    endpoint_id bytea NOT NULL,
    key text NOT NULL,
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (endpoint_id, key)
);

CREATE TABLE attempts (
    msg_id bytea NOT NULL,
    id bytea NOT NULL,
    rec bytea NOT NULL,
    PRIMARY KEY (msg_id, id)
);

CREATE TABLE endpoint_attempts (
    endpoint_id bytea NOT NULL,
    attempt_id bytea NOT NULL,
    msg_id bytea NOT NULL,
    PRIMARY KEY (endpoint_id, attempt_id)
);

CREATE TABLE alerts (
    id bytea PRIMARY KEY,
    rec bytea NOT NULL
);

CREATE TABLE cursors (
    name text PRIMARY KEY,
    position bytea NOT NULL
);

CREATE TABLE tasks (
    id bytea PRIMARY KEY,
    app_id bytea NOT NULL,
    running boolean NOT NULL,
    rec bytea NOT NULL
);
CREATE INDEX tasks_by_app ON tasks (app_id, id);

CREATE TABLE tokens (hash bytea PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE idempotency (hash bytea PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE users (username text PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE sessions (hash bytea PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE portal_links (hash bytea PRIMARY KEY, rec bytea NOT NULL);
CREATE TABLE setup_tokens (hash bytea PRIMARY KEY, rec bytea NOT NULL);

-- Aggregates kept in the same commits as the data they summarise (storage/redb/stats.rs).
CREATE TABLE message_timeline (
    msg_id bytea PRIMARY KEY,
    app_id bytea NOT NULL
);
CREATE TABLE endpoint_deliveries (
    endpoint_id bytea NOT NULL,
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (endpoint_id, msg_id)
);
CREATE TABLE failed_deliveries (
    msg_id bytea NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (msg_id, n)
);
CREATE TABLE hourly (
    hour bigint NOT NULL,
    counter smallint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (hour, counter)
);
CREATE TABLE latency (
    hour bigint NOT NULL,
    bucket smallint NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (hour, bucket)
);
CREATE TABLE endpoint_hourly (
    hour bigint NOT NULL,
    endpoint_id bytea NOT NULL,
    succeeded bigint NOT NULL,
    failed bigint NOT NULL,
    last_failed_msg bytea NOT NULL,
    last_failed_attempt bytea NOT NULL,
    PRIMARY KEY (hour, endpoint_id)
);
CREATE TABLE app_daily (
    day bigint NOT NULL,
    app_id bytea NOT NULL,
    messages bigint NOT NULL,
    failed bigint NOT NULL,
    PRIMARY KEY (day, app_id)
);
