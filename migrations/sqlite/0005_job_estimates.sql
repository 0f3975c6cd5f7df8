-- Estimates and max_cost of bulk jobs (#17): what a dry run estimated, the job's limit (raised by
-- StartBatchJob) and what its billable answers cost so far, so that a restart keeps holding it.
ALTER TABLE batch_jobs ADD COLUMN estimate BLOB;                    -- phonecheck.v1.BatchJobEstimate
ALTER TABLE batch_jobs ADD COLUMN max_cost INTEGER;                 -- nanos of the billing currency; NULL: no limit
ALTER TABLE batch_jobs ADD COLUMN spent INTEGER NOT NULL DEFAULT 0; -- nanos of the billing currency
