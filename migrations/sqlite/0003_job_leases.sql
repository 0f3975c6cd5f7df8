-- A job runs on one process at a time: the one holding its lease, renewed while it runs.
ALTER TABLE batch_jobs ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0; -- Unix milliseconds
