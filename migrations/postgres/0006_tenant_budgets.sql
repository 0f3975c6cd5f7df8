-- Each tenant's daily budget, per China-time day: what was billed and what requests in flight
-- hold, in calls and in nanos of the billing currency. Shared by every process using the store.
CREATE TABLE tenant_budget_days (
    tenant      TEXT    NOT NULL,
    day         TEXT    NOT NULL, -- YYYY-MM-DD, China time
    spent_calls BIGINT NOT NULL DEFAULT 0,
    held_calls  BIGINT NOT NULL DEFAULT 0,
    spent_nanos BIGINT NOT NULL DEFAULT 0,
    held_nanos  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
