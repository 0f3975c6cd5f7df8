-- Registration times per row (#25, the reassigned check): the time read from a row's cell, kept
-- with the (number, time) pair it is checked as, and the column it was read from.
ALTER TABLE batch_job_numbers ADD COLUMN registered_at INTEGER; -- Unix seconds; NULL: the job's options.registered_at, if any
ALTER TABLE batch_jobs ADD COLUMN registered_at_column TEXT NOT NULL DEFAULT ''; -- for people, as `header (letter)`; empty: none read
