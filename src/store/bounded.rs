//! Every call to the database, bounded: [`Bounded`] wraps a store and fails a call that has not
//! completed within `storage.timeout` with [`StoreError::Timeout`].
//!
//! sqlx has no client-side statement timeout, and a server-side one cannot help when the server
//! itself does not run (paused, or cut off by a partition that leaves connections open): a
//! query's reply would be awaited for as long as the partition lasts, and with it a job, an RPC
//! without a deadline, or the shutdown's last flush. Dropping a sqlx call midway is safe: a
//! transaction not committed is rolled back, and the connection drains (or is closed) before it
//! is used again. A call that timed out may still have committed; every write here is one
//! transaction that may be repeated without counting twice (results are recorded once per
//! number, lease and state changes are compare-and-set).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::budget::{BudgetLimit, BudgetStore, DayUse, Spend};
use super::jobs::{
    BadRowRecord, Breakdown, ExportFilter, ExportRow, ImportRow, JobCounts, JobRecord, JobState,
    JobStore, Lease, LineStatusChanges, NewJob, NumberResult, TodoNumber,
};
use super::usage::{UsageCounts, UsageKey, UsageQuery, UsageRow, UsageStore};
use super::webhooks::{Attempt, OutboxEvent, WebhookStore};
use super::{Claim, PendingStore, PendingSubmission, StoreError};
use crate::domain::Money;

/// A store whose every call ends within `timeout`.
#[derive(Debug)]
pub struct Bounded<S: ?Sized> {
    inner: Arc<S>,
    timeout: Duration,
}

impl<S: ?Sized> Bounded<S> {
    /// `inner`, each call bounded by `timeout`.
    pub fn new(inner: Arc<S>, timeout: Duration) -> Arc<Bounded<S>> {
        Arc::new(Bounded { inner, timeout })
    }

    async fn bound<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)))
    }
}

/// Implements `$trait` for `Bounded<dyn $trait>`: each listed method forwards to the inner store
/// within the timeout; `sync` methods forward as they are.
macro_rules! bounded {
    (
        $trait:ident;
        $( fn $sync:ident(&self) -> $sync_ret:ty; )*
        $( async fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*
    ) => {
        #[async_trait::async_trait]
        impl $trait for Bounded<dyn $trait> {
            $( fn $sync(&self) -> $sync_ret { self.inner.$sync() } )*
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.bound(self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

bounded! {
    JobStore;
    fn shared(&self) -> bool;
    async fn create_job(&self, job: &NewJob) -> Result<(), StoreError>;
    async fn add_rows(&self, job_id: &str, first_seq: i64, rows: &[ImportRow]) -> Result<(), StoreError>;
    async fn finish_import(&self, job: &NewJob, to: JobState) -> Result<JobCounts, StoreError>;
    async fn set_estimate(&self, job_id: &str, estimate: &[u8]) -> Result<(), StoreError>;
    async fn start(&self, job_id: &str, from: JobState, max_cost: Option<Money>, raise: bool) -> Result<bool, StoreError>;
    async fn drop_unfinished_imports(&self, created_before: SystemTime) -> Result<u64, StoreError>;
    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    async fn list_jobs(&self, tenant: &str, after: Option<(i64, String)>, limit: u32) -> Result<Vec<JobRecord>, StoreError>;
    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError>;
    async fn runnable_jobs(&self, now: SystemTime) -> Result<Vec<String>, StoreError>;
    async fn take_job(&self, job_id: &str, lease: &Lease, now: SystemTime) -> Result<bool, StoreError>;
    async fn renew_lease(&self, job_id: &str, lease: &Lease) -> Result<bool, StoreError>;
    async fn release_lease(&self, job_id: &str, owner: &str) -> Result<(), StoreError>;
    async fn transition(&self, job_id: &str, from: &[JobState], to: JobState, error: &str) -> Result<bool, StoreError>;
    async fn todo(&self, job_id: &str, after_seq: i64, limit: u32) -> Result<Vec<TodoNumber>, StoreError>;
    async fn record(&self, job_id: &str, results: &[NumberResult], rate: f64) -> Result<(), StoreError>;
    async fn next_pass(&self, job_id: &str) -> Result<u64, StoreError>;
    async fn bad_rows(&self, job_id: &str, limit: u32) -> Result<Vec<BadRowRecord>, StoreError>;
    async fn export_rows(&self, job_id: &str, filter: ExportFilter, after_seq: i64, limit: u32) -> Result<Vec<ExportRow>, StoreError>;
    async fn breakdown(&self, job_id: &str, top: u32) -> Result<Breakdown, StoreError>;
    async fn numbers(&self, job_id: &str, after: &str, limit: u32) -> Result<Vec<String>, StoreError>;
    async fn line_status_changes(&self, job_id: &str, limit: u32) -> Result<LineStatusChanges, StoreError>;
    async fn copy_rows(&self, from: &str, to: &str) -> Result<(), StoreError>;
    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError>;
    async fn finished_before(&self, before: SystemTime) -> Result<Vec<String>, StoreError>;
}

bounded! {
    PendingStore;
    async fn claim(&self, provider: &str, number: &str, stale_after: Duration) -> Result<Claim, StoreError>;
    async fn submitted(&self, provider: &str, numbers: &[String], batch_id: &str) -> Result<(), StoreError>;
    async fn release(&self, provider: &str, numbers: &[String]) -> Result<(), StoreError>;
    async fn get(&self, provider: &str, number: &str) -> Result<Option<PendingSubmission>, StoreError>;
}

bounded! {
    BudgetStore;
    async fn hold(&self, tenant: &str, day: &str, want: Spend, limit: BudgetLimit) -> Result<bool, StoreError>;
    async fn settle(&self, tenant: &str, day: &str, held: Spend, billed: Spend) -> Result<(), StoreError>;
    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError>;
}

bounded! {
    UsageStore;
    async fn add_usage(&self, increments: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError>;
    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError>;
}

bounded! {
    WebhookStore;
    async fn claim_events(&self, owner: &str, now: SystemTime, until: SystemTime, limit: u32) -> Result<Vec<OutboxEvent>, StoreError>;
    async fn record_attempt(&self, id: &str, owner: &str, attempt: &Attempt, now: SystemTime) -> Result<bool, StoreError>;
    async fn list_events(&self, tenant: &str, job_id: Option<&str>, after: Option<(i64, String)>, limit: u32) -> Result<Vec<OutboxEvent>, StoreError>;
    async fn resend_event(&self, tenant: &str, id: &str, now: SystemTime) -> Result<Option<OutboxEvent>, StoreError>;
    async fn prune_events(&self, before: SystemTime) -> Result<u64, StoreError>;
    async fn pending_events(&self) -> Result<i64, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that never answers.
    #[derive(Debug)]
    struct Silent;

    #[async_trait::async_trait]
    impl UsageStore for Silent {
        async fn add_usage(&self, _: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn usage(&self, _: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_ends_fails_at_the_timeout() {
        let inner: Arc<dyn UsageStore> = Arc::new(Silent);
        let store = Bounded::new(inner, Duration::from_secs(5));
        let started = tokio::time::Instant::now();
        let failed = store.add_usage(&[]).await;
        assert!(matches!(failed, Err(StoreError::Timeout(t)) if t == Duration::from_secs(5)));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
