-- Re-checks (#26): each number's line status in the earlier job, copied when a re-check is
-- created, so that the export can say what changed even after the earlier job is gone.
ALTER TABLE batch_job_numbers ADD COLUMN IF NOT EXISTS previous_line_status INTEGER; -- phonecheck.v1.LineStatus; NULL: not a re-check, or not known then
