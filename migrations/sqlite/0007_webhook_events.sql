-- Webhook outbox (#26): each event of a job's state change, written in the transaction of the
-- change, with its delivery. The job's progress is copied at the change, so that every delivery of
-- an event sends the same body. status: 0 pending, 1 delivered, 2 failed.
CREATE TABLE IF NOT EXISTS webhook_events (
    id              TEXT    PRIMARY KEY,        -- the event id (UUIDv7)
    tenant          TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,           -- per job, from 1: the order of delivery
    kind            INTEGER NOT NULL,           -- phonecheck.v1.JobEventType
    created_at      INTEGER NOT NULL,           -- Unix milliseconds
    job_state       INTEGER NOT NULL,
    rows_total      INTEGER NOT NULL,
    rows_done       INTEGER NOT NULL,
    numbers_total   INTEGER NOT NULL,
    numbers_done    INTEGER NOT NULL,
    numbers_pending INTEGER NOT NULL,
    numbers_failed  INTEGER NOT NULL,
    bad_rows        INTEGER NOT NULL,
    billable        INTEGER NOT NULL,
    cache_hits      INTEGER NOT NULL,
    spent           INTEGER NOT NULL,           -- nanos of the billing currency
    max_cost        INTEGER,                    -- nanos; NULL: no limit
    reason          TEXT    NOT NULL,
    status          INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    since           INTEGER NOT NULL,           -- the maximum age counts from here (a re-send resets it)
    next_at         INTEGER NOT NULL,           -- Unix milliseconds of the next attempt
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     INTEGER NOT NULL DEFAULT 0,
    delivered_at    INTEGER,
    last_http       INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_events_by_job ON webhook_events (job_id, seq);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (status, next_at);
CREATE INDEX IF NOT EXISTS webhook_events_by_tenant ON webhook_events (tenant, created_at DESC, id DESC);
