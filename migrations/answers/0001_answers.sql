-- The answer store (answers.db in the data directory): every paid vendor answer, once, so that a
-- restart never pays for it again. A cache: the file may be deleted at any time (answers are then
-- paid again as they are asked).
--
-- number:  keyed hash of the E.164 number (first 8 bytes, as a signed integer); never the number.
-- variant: keyed hash of (provider, check, E.164, KYC inputs); the answer's identity.
-- check_id: 0 line status, 1 spam labels, 2 account presence, 3 risk profile (phonecheck's order).
-- fetched_at: when the vendor answered, Unix milliseconds; the check's TTL counts from it.
-- data: the answer in phonecheck's compact encoding (engine/codec.rs).
CREATE TABLE IF NOT EXISTS answers (
    number     INTEGER NOT NULL,
    variant    INTEGER NOT NULL,
    check_id   INTEGER NOT NULL,
    fetched_at INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    PRIMARY KEY (number, variant)
) WITHOUT ROWID;

-- Purging expired answers per check, and the oldest answer.
CREATE INDEX IF NOT EXISTS answers_age ON answers (check_id, fetched_at);
