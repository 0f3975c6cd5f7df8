-- Webhook outbox (#26), as in the SQLite store: each event of a job's state change, written in the transaction of the
-- change, with its delivery. The job's progress is copied at the change, so that every delivery of
-- an event sends the same body. status: 0 pending, 1 delivered, 2 failed.
CREATE TABLE IF NOT EXISTS webhook_events (
    id              TEXT    PRIMARY KEY,        -- the event id (UUIDv7)
    tenant          TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,           -- per job, from 1: the order of delivery
    kind            BIGINT  NOT NULL,           -- phonecheck.v1.JobEventType
    created_at      BIGINT  NOT NULL,           -- Unix milliseconds
    job_state       BIGINT  NOT NULL,
    rows_total      BIGINT  NOT NULL,
    rows_done       BIGINT  NOT NULL,
    numbers_total   BIGINT  NOT NULL,
    numbers_done    BIGINT  NOT NULL,
    numbers_pending BIGINT  NOT NULL,
    numbers_failed  BIGINT  NOT NULL,
    bad_rows        BIGINT  NOT NULL,
    billable        BIGINT  NOT NULL,
    cache_hits      BIGINT  NOT NULL,
    spent           BIGINT  NOT NULL,           -- nanos of the billing currency
    max_cost        BIGINT,                     -- nanos; NULL: no limit
    reason          TEXT    NOT NULL,
    status          BIGINT  NOT NULL DEFAULT 0,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    since           BIGINT  NOT NULL,           -- the maximum age counts from here (a re-send resets it)
    next_at         BIGINT  NOT NULL,           -- Unix milliseconds of the next attempt
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until     BIGINT  NOT NULL DEFAULT 0,
    delivered_at    BIGINT,
    last_http       BIGINT  NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_events_by_job ON webhook_events (job_id, seq);
CREATE INDEX IF NOT EXISTS webhook_events_due ON webhook_events (status, next_at);
CREATE INDEX IF NOT EXISTS webhook_events_by_tenant ON webhook_events (tenant, created_at DESC, id DESC);
