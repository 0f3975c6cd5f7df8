-- The usage ledger: per tenant, provider, check and day (China time, the vendors' billing day),
-- what vendor calls were billed and what they cost, and how many answers came free (from the
-- cache, or shared with another caller's call in flight), and how many vendor calls failed.
-- Replicas add to the same rows (`ON CONFLICT ... DO UPDATE SET x = x + excluded.x`).
CREATE TABLE IF NOT EXISTS usage_ledger (
    tenant         TEXT    NOT NULL,
    provider       TEXT    NOT NULL,
    check_name     TEXT    NOT NULL,           -- `line-status`, `spam-labels`, ...
    day            TEXT    NOT NULL,           -- YYYY-MM-DD, China time
    billable_calls INTEGER NOT NULL DEFAULT 0,
    cost_nanos     INTEGER NOT NULL DEFAULT 0, -- in the billing currency, 10^-9 of its unit
    cache_hits     INTEGER NOT NULL DEFAULT 0,
    joined_calls   INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, provider, check_name, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_ledger_by_day ON usage_ledger (day);

