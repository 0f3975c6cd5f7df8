-- Numbers submitted to an asynchronous vendor (caih) and not yet collected.
CREATE TABLE IF NOT EXISTS pending_submissions (
    provider     TEXT    NOT NULL,
    number       TEXT    NOT NULL,
    batch_id     TEXT,
    submitted_at INTEGER NOT NULL, -- Unix milliseconds
    PRIMARY KEY (provider, number)
);
