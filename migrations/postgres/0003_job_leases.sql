-- A job runs on one replica at a time: the one holding its lease, renewed while it runs and taken
-- over by another replica once it has lapsed (the holder died).
ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS lease_owner TEXT NOT NULL DEFAULT '';
ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS lease_until BIGINT NOT NULL DEFAULT 0; -- Unix milliseconds
