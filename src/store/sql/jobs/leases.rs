//! A job's state and lease: starting it, taking it to run (a compare-and-set, so that of the
//! processes racing for a job one runs it), keeping and releasing the lease, and the state
//! changes that write the webhook outbox in the same transaction.

use std::time::SystemTime;

use sqlx::{ColumnIndex, Executor, QueryBuilder, Row};

use super::Jobs;
use crate::domain::Money;
use crate::store::jobs::*;
use crate::store::sql::{RowsAffected, SqlDb, Text, Value};
use crate::store::{StoreError, millis};

impl<DB: SqlDb> Jobs<'_, DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
{
    pub(super) async fn start(
        &self,
        job_id: &str,
        from: JobState,
        max_cost: Option<Money>,
        raise: bool,
    ) -> Result<bool, StoreError> {
        let started = sqlx::query(
            "UPDATE batch_jobs SET state = $3, error = '', max_cost = COALESCE($4, max_cost),
                 finished_at = NULL
             WHERE id = $1 AND state = $2
               AND ($5 = 0 OR ($4 > spent AND $4 > COALESCE(max_cost, -1)))",
        )
        .bind(job_id)
        .bind(from as i64)
        .bind(JobState::Queued as i64)
        .bind(max_cost.map(Money::nanos))
        .bind(i64::from(raise))
        .execute(self.pool)
        .await?
        .rows_affected();
        Ok(started == 1)
    }

    pub(super) async fn runnable_jobs(&self, now: SystemTime) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM batch_jobs
             WHERE state = $1 OR (state IN ($2, $4) AND lease_until < $3)
             ORDER BY created_at, id",
        )
        .bind(JobState::Queued as i64)
        .bind(JobState::Running as i64)
        .bind(millis(now))
        .bind(JobState::Paused as i64)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn take_job(
        &self,
        job_id: &str,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        // A compare-and-set on the row: of processes racing for a job, one sees it runnable.
        let taken = sqlx::query(
            "UPDATE batch_jobs SET state = $2, started_at = COALESCE(started_at, $5),
                 lease_owner = $3, lease_until = $4
             WHERE id = $1 AND (state = $6 OR (state IN ($2, $7) AND lease_until < $5))",
        )
        .bind(job_id)
        .bind(JobState::Running as i64)
        .bind(&lease.owner)
        .bind(millis(lease.until))
        .bind(millis(now))
        .bind(JobState::Queued as i64)
        .bind(JobState::Paused as i64)
        .execute(self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    pub(super) async fn renew_lease(
        &self,
        job_id: &str,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE batch_jobs SET lease_until = $3
             WHERE id = $1 AND lease_owner = $2 AND state IN ($4, $5)",
        )
        .bind(job_id)
        .bind(&lease.owner)
        .bind(millis(lease.until))
        .bind(JobState::Running as i64)
        .bind(JobState::Paused as i64)
        .execute(self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    pub(super) async fn release_lease(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET lease_until = 0 WHERE id = $1 AND lease_owner = $2")
            .bind(job_id)
            .bind(owner)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn transition(
        &self,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        error: &str,
    ) -> Result<bool, StoreError> {
        let now = millis(SystemTime::now());
        let mut update: QueryBuilder<DB> = QueryBuilder::new("UPDATE batch_jobs SET state = ");
        update.push_bind(to as i64);
        if to == JobState::Running {
            update.push(", started_at = COALESCE(started_at, ");
            update.push_bind(now);
            update.push(")");
        }
        // A job paused at its max_cost waits for a client that may never come: retention counts
        // from the pause, as from a job's end (a start clears it).
        if to.is_final() || to == JobState::CostPaused {
            update.push(", finished_at = ");
            update.push_bind(now);
            update.push(", rate = 0");
        }
        // The error says why a job failed, or why and until when it is paused; going on clears it.
        if to.is_final()
            || matches!(
                to,
                JobState::Paused | JobState::CostPaused | JobState::Running
            )
        {
            update.push(", error = ");
            update.push_bind(error);
        }
        update.push(" WHERE id = ");
        update.push_bind(job_id);
        update.push(" AND state IN (");
        let mut states = update.separated(", ");
        for state in from {
            states.push_bind(*state as i64);
        }
        update.push(")");
        let Some(kind) =
            crate::store::webhooks::EventKind::of(to).filter(|_| !self.webhooks.is_empty())
        else {
            return Ok(update.build().execute(self.pool).await?.rows_affected() == 1);
        };
        // The event is written with the change or not at all: a restart between the two can
        // neither lose it nor tell of a change that did not happen.
        let mut tx = self.pool.begin().await?;
        if update.build().execute(&mut *tx).await?.rows_affected() != 1 {
            return Ok(false);
        }
        let tenant: String = sqlx::query("SELECT tenant FROM batch_jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        if self.webhooks.wants(&tenant, kind) {
            sqlx::query(crate::store::sql::webhooks::INSERT_EVENT)
                .bind(job_id)
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(kind as i64)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
