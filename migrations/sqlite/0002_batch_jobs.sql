-- Bulk file jobs: the job, its rows in file order, and its distinct numbers with their results.
CREATE TABLE IF NOT EXISTS batch_jobs (
    id              TEXT    PRIMARY KEY,
    tenant          TEXT    NOT NULL,
    state           INTEGER NOT NULL,           -- 0 importing, then phonecheck.v1.BatchJobState
    spec            BLOB    NOT NULL,           -- phonecheck.v1.BatchJobSpec, without numbers
    format          INTEGER NOT NULL,           -- phonecheck.v1.FileFormat
    encoding        TEXT    NOT NULL,
    number_column   TEXT    NOT NULL,
    columns         TEXT    NOT NULL,           -- JSON array: the original header
    sheets          INTEGER NOT NULL,           -- sheets rows were read from
    created_at      INTEGER NOT NULL,           -- Unix milliseconds
    started_at      INTEGER,
    finished_at     INTEGER,
    error           TEXT    NOT NULL DEFAULT '',
    rows_total      INTEGER NOT NULL DEFAULT 0,
    rows_done       INTEGER NOT NULL DEFAULT 0,
    numbers_total   INTEGER NOT NULL DEFAULT 0,
    numbers_done    INTEGER NOT NULL DEFAULT 0,
    numbers_pending INTEGER NOT NULL DEFAULT 0,
    numbers_failed  INTEGER NOT NULL DEFAULT 0,
    bad_rows        INTEGER NOT NULL DEFAULT 0,
    billable        INTEGER NOT NULL DEFAULT 0,
    cache_hits      INTEGER NOT NULL DEFAULT 0,
    passes          INTEGER NOT NULL DEFAULT 0,
    rate            REAL    NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS batch_jobs_by_tenant ON batch_jobs (tenant, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS batch_jobs_by_state ON batch_jobs (state, created_at);

-- Every data row of the file, in order. `number_key` is NULL for a row without a readable number
-- (`problem` says why).
CREATE TABLE IF NOT EXISTS batch_job_rows (
    job_id     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    sheet      TEXT    NOT NULL,
    row_no     INTEGER NOT NULL,
    cells      TEXT    NOT NULL,                -- JSON array of the row's cells
    number_key TEXT,
    problem    TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- Each distinct number once. state: 0 to check, 1 done, 2 waiting for another pass.
CREATE TABLE IF NOT EXISTS batch_job_numbers (
    job_id      TEXT    NOT NULL,
    key         TEXT    NOT NULL,               -- E.164 (or the digits of an invalid number)
    seq         INTEGER NOT NULL,               -- first row's seq: numbers are checked in file order
    input       TEXT    NOT NULL,
    rows        INTEGER NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0,
    passes      INTEGER NOT NULL DEFAULT 0,
    line_status INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    carrier     TEXT    NOT NULL DEFAULT '',
    province    TEXT    NOT NULL DEFAULT '',
    report      BLOB,                           -- phonecheck.v1.NumberReport
    PRIMARY KEY (job_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_job_numbers_todo ON batch_job_numbers (job_id, state, seq);

-- Rows per line status of the numbers done, kept with each write of results.
CREATE TABLE IF NOT EXISTS batch_job_counts (
    job_id      TEXT    NOT NULL,
    line_status INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    PRIMARY KEY (job_id, line_status)
) WITHOUT ROWID;
