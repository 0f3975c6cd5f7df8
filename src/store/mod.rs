//! What phonecheck must remember across restarts, behind traits: SQLite in the data directory
//! (the embedded default), or PostgreSQL shared by replicas (`storage.database_url`). Both run the
//! same SQL (`sql/`: [`SqlStore`], generic over the database; [`SqliteStore`] and
//! [`PostgresStore`] are its two instances); each has its own migrations (`migrations/sqlite`,
//! `migrations/postgres`).
//!
//! Kept: the asynchronous vendors' pending submissions (caih adds a number today and labels it
//! hours later; the submission must survive a restart and must never be made twice), bulk jobs
//! with their rows and results ([`JobStore`]), tenants' daily budgets ([`BudgetStore`]: billed
//! and held, per day, so that replicas hold a budget together and a restart does not renew it),
//! the usage ledger ([`UsageStore`]), and the webhook outbox ([`WebhookStore`]). Paid vendor answers have a store of their own,
//! always local and always SQLite ([`AnswerStore`], `migrations/answers`): a cache in front of
//! Redis and PostgreSQL, never shared.

mod answers;
mod bounded;
mod budget;
mod jobs;
mod postgres;
mod sql;
mod sqlite;
mod usage;
mod webhooks;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

pub use answers::{
    ANSWERS_FILE, AnswerRow, AnswerStore, AnswerStoreStats, Opened, StoredAnswer, is_full,
};
pub use bounded::Bounded;
pub use budget::{BudgetLimit, BudgetStore, DayUse, MemoryBudgets, Spend};
pub use jobs::*;
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;
pub use usage::{UsageCounts, UsageKey, UsagePeriod, UsageQuery, UsageRow, UsageStore};
pub use webhooks::{Attempt, DeliveryStatus, EventKind, OutboxEvent, Subscriptions, WebhookStore};

/// Unix milliseconds, as stored.
pub fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time of stored Unix milliseconds.
pub fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// The database's schema could not be brought up to date.
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store's configuration is not usable.
    #[error("{0}")]
    Config(String),
    /// The shared state (Redis) failed; the error's kind only.
    #[error("shared state (Redis): {0}")]
    Shared(String),
    /// The database did not answer within `storage.timeout`.
    #[error("the database did not answer within {0:?} (storage.timeout)")]
    Timeout(std::time::Duration),
    /// Rows were written for a job deleted meanwhile (its upload was cancelled): nothing of
    /// them is kept.
    #[error("job {0} no longer exists")]
    JobGone(String),
    /// The data directory could not be created.
    #[error("store directory {path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A number submitted to an asynchronous vendor and not yet collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSubmission {
    /// The vendor's batch id; `None` while the submission call is still under way.
    pub batch_id: Option<String>,
    /// When it was claimed or submitted.
    pub submitted_at: SystemTime,
}

/// The result of claiming a number for submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller claimed it and must submit it (then [`PendingStore::submitted`] or
    /// [`PendingStore::release`]).
    Claimed,
    /// It was already submitted or is being submitted.
    Pending(PendingSubmission),
}

/// Pending submissions to asynchronous vendors, by provider and number (E.164).
#[async_trait]
pub trait PendingStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims `number` for submission unless it is pending already. Atomic: of concurrent callers,
    /// one gets [`Claim::Claimed`]. A claim whose submission never completed (the process died
    /// mid-call) is given out again after `stale_after`.
    async fn claim(
        &self,
        provider: &str,
        number: &str,
        stale_after: std::time::Duration,
    ) -> Result<Claim, StoreError>;

    /// Records that claimed numbers were submitted under `batch_id`.
    async fn submitted(
        &self,
        provider: &str,
        numbers: &[String],
        batch_id: &str,
    ) -> Result<(), StoreError>;

    /// Forgets numbers: collected, or their submission failed.
    async fn release(&self, provider: &str, numbers: &[String]) -> Result<(), StoreError>;

    /// The pending submission of a number, if any.
    async fn get(
        &self,
        provider: &str,
        number: &str,
    ) -> Result<Option<PendingSubmission>, StoreError>;
}
