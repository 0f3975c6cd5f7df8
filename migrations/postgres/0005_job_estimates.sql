-- Estimates and max_cost of bulk jobs (#17): what a dry run estimated, the job's limit (raised by
-- StartBatchJob) and what its billable answers cost so far, so that a restart keeps holding it.
ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS estimate BYTEA;                   -- phonecheck.v1.BatchJobEstimate
ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS max_cost BIGINT;                  -- nanos of the billing currency; NULL: no limit
ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS spent BIGINT NOT NULL DEFAULT 0;  -- nanos of the billing currency
