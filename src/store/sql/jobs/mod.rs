//! [`JobStore`] in SQL, one text for SQLite and PostgreSQL: `$N` parameters (which SQLite takes
//! too), `ON CONFLICT` upserts, `UPDATE ... FROM (VALUES ...)`, and column types that decode the
//! same from both (see the two `migrations/` folders).
//!
//! The statements are grouped by topic, one file each: [`rows`] (a job's rows: import, copy,
//! delete), [`leases`] (state and lease), [`results`] (checking) and [`listing`] (reading). Each
//! is an impl block of [`Jobs`] whose methods are named, and do, as [`JobStore`]'s; the
//! `JobStore` impl below only routes each call to its file (one trait impl cannot be split
//! across files).

mod leases;
mod listing;
mod results;
mod rows;

use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Database, Encode, Executor, Pool, Transaction, Type};

use super::{SqlDb, SqlStore, Text, Value};
use crate::domain::Money;
use crate::store::jobs::*;
use crate::store::{StoreError, Subscriptions};

/// Rows per INSERT statement (SQLite allows 32,766 bound values, PostgreSQL 65,535).
const ROWS_PER_STATEMENT: usize = 1_000;
/// Results per UPDATE statement.
const RESULTS_PER_STATEMENT: usize = 500;

/// The columns [`Jobs::job_from_row`] reads.
const JOB_COLUMNS: &str = "id, tenant, state, spec, format, encoding, \
    number_column, registered_at_column, columns, sheets, created_at, started_at, finished_at, error, rows_total, \
    rows_done, numbers_total, numbers_done, numbers_pending, numbers_failed, bad_rows, billable, \
    cache_hits, passes, rate, estimate, max_cost, spent";

/// The job tables of one store, which the files of this module query. Not the store itself, so
/// that its methods, named as [`JobStore`]'s, can never resolve to the trait's and call themselves.
struct Jobs<'s, DB: Database> {
    pool: &'s Pool<DB>,
    /// The tenants whose jobs' state changes go to the webhook outbox.
    webhooks: &'s Subscriptions,
}

impl<DB: Database> SqlStore<DB> {
    /// The job tables of this store.
    fn jobs(&self) -> Jobs<'_, DB> {
        Jobs {
            pool: &self.pool,
            webhooks: &self.webhooks,
        }
    }
}

impl<DB: SqlDb> Jobs<'_, DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
{
    /// Locks the job's row for the rest of `tx` (a no-op update: SQLite's whole-database write
    /// lock, PostgreSQL's row lock).
    async fn lock_job(tx: &mut Transaction<'_, DB>, job_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET state = state WHERE id = $1")
            .bind(job_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl<DB: SqlDb> JobStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    Vec<u8>: Value<DB>,
    i32: Value<DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
    f64: Value<DB>,
    bool: Value<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    fn shared(&self) -> bool {
        DB::SHARED
    }

    async fn create_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.jobs().create_job(job).await
    }

    async fn set_estimate(&self, job_id: &str, estimate: &[u8]) -> Result<(), StoreError> {
        self.jobs().set_estimate(job_id, estimate).await
    }

    async fn start(
        &self,
        job_id: &str,
        from: JobState,
        max_cost: Option<Money>,
        raise: bool,
    ) -> Result<bool, StoreError> {
        self.jobs().start(job_id, from, max_cost, raise).await
    }

    async fn add_rows(
        &self,
        job_id: &str,
        first_seq: i64,
        rows: &[ImportRow],
    ) -> Result<(), StoreError> {
        self.jobs().add_rows(job_id, first_seq, rows).await
    }

    async fn finish_import(&self, job: &NewJob, to: JobState) -> Result<JobCounts, StoreError> {
        self.jobs().finish_import(job, to).await
    }

    async fn drop_unfinished_imports(&self, created_before: SystemTime) -> Result<u64, StoreError> {
        self.jobs().drop_unfinished_imports(created_before).await
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.jobs().job(job_id).await
    }

    async fn list_jobs(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        self.jobs().list_jobs(tenant, after, limit).await
    }

    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        self.jobs().jobs_in_state(state).await
    }

    async fn runnable_jobs(&self, now: SystemTime) -> Result<Vec<String>, StoreError> {
        self.jobs().runnable_jobs(now).await
    }

    async fn take_job(
        &self,
        job_id: &str,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        self.jobs().take_job(job_id, lease, now).await
    }

    async fn renew_lease(&self, job_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        self.jobs().renew_lease(job_id, lease).await
    }

    async fn release_lease(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        self.jobs().release_lease(job_id, owner).await
    }

    async fn transition(
        &self,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.jobs().transition(job_id, from, to, error).await
    }

    async fn todo(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TodoNumber>, StoreError> {
        self.jobs().todo(job_id, after_seq, limit).await
    }

    async fn record(
        &self,
        job_id: &str,
        results: &[NumberResult],
        rate: f64,
    ) -> Result<(), StoreError> {
        self.jobs().record(job_id, results, rate).await
    }

    async fn next_pass(&self, job_id: &str) -> Result<u64, StoreError> {
        self.jobs().next_pass(job_id).await
    }

    async fn bad_rows(&self, job_id: &str, limit: u32) -> Result<Vec<BadRowRecord>, StoreError> {
        self.jobs().bad_rows(job_id, limit).await
    }

    async fn export_rows(
        &self,
        job_id: &str,
        filter: ExportFilter,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ExportRow>, StoreError> {
        self.jobs()
            .export_rows(job_id, filter, after_seq, limit)
            .await
    }

    async fn breakdown(&self, job_id: &str, top: u32) -> Result<Breakdown, StoreError> {
        self.jobs().breakdown(job_id, top).await
    }

    async fn numbers(
        &self,
        job_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.jobs().numbers(job_id, after, limit).await
    }

    async fn line_status_changes(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<LineStatusChanges, StoreError> {
        self.jobs().line_status_changes(job_id, limit).await
    }

    async fn copy_rows(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.jobs().copy_rows(from, to).await
    }

    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        self.jobs().delete_job(job_id).await
    }

    async fn finished_before(&self, before: SystemTime) -> Result<Vec<String>, StoreError> {
        self.jobs().finished_before(before).await
    }
}
