//! The usage ledger: per tenant, provider, check and day (China time), the billable vendor calls
//! and what they cost, the answers that came free (cache hits, calls shared with another caller)
//! and the vendor calls that failed. Behind [`UsageStore`], in the job store's database (SQLite,
//! or PostgreSQL shared by replicas, which add to the same rows).

use async_trait::async_trait;
use chrono::NaiveDate;

use super::StoreError;
use crate::domain::Money;

/// What one ledger row counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    /// Billable vendor calls.
    pub billable_calls: i64,
    /// What they cost, in the billing currency.
    pub cost: Money,
    /// Answers served from the answer cache.
    pub cache_hits: i64,
    /// Answers shared from another caller's vendor call in flight (single-flight).
    pub joined_calls: i64,
    /// Vendor calls (per number) that ended in a failure.
    pub failures: i64,
}

impl UsageCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &UsageCounts) {
        self.billable_calls = self.billable_calls.saturating_add(other.billable_calls);
        self.cost += other.cost;
        self.cache_hits = self.cache_hits.saturating_add(other.cache_hits);
        self.joined_calls = self.joined_calls.saturating_add(other.joined_calls);
        self.failures = self.failures.saturating_add(other.failures);
    }

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        *self == UsageCounts::default()
    }
}

/// Whose usage a ledger row is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// The tenant that caused it.
    pub tenant: String,
    /// The provider (configured name).
    pub provider: String,
    /// The check, as [`crate::domain::Check::as_str`] writes it.
    pub check: String,
    /// The day, China time.
    pub day: NaiveDate,
}

/// How ledger rows are added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsagePeriod {
    /// One row per day (`2026-12-01`).
    Day,
    /// One row per calendar month (`2026-12`).
    Month,
}

/// What part of the ledger to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// First day, inclusive.
    pub from: NaiveDate,
    /// Last day, inclusive.
    pub to: NaiveDate,
    /// One tenant only.
    pub tenant: Option<String>,
    /// One provider only.
    pub provider: Option<String>,
    /// One check only ([`crate::domain::Check::as_str`]).
    pub check: Option<String>,
    /// Rows per day or per month.
    pub period: UsagePeriod,
    /// At most this many rows are returned.
    pub limit: u32,
}

/// One row read from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The tenant.
    pub tenant: String,
    /// The provider.
    pub provider: String,
    /// The check ([`crate::domain::Check::as_str`]).
    pub check: String,
    /// The day (`YYYY-MM-DD`) or month (`YYYY-MM`).
    pub period: String,
    /// The counts.
    pub counts: UsageCounts,
}

/// The usage ledger.
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Adds each increment to its row (created at zero), atomically: all or none. Keys are
    /// distinct.
    async fn add_usage(&self, increments: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError>;

    /// The rows of `query`, ordered by period, tenant, provider and check; at most `query.limit`.
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
}
