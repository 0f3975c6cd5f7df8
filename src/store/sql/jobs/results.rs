//! A job's checking: the numbers still to check, their results with the job's counters, and the
//! next pass over the numbers to check again.

use std::collections::HashMap;

use sqlx::{ColumnIndex, Executor, QueryBuilder, Row};

use super::{Jobs, RESULTS_PER_STATEMENT};
use crate::domain::Money;
use crate::store::StoreError;
use crate::store::jobs::*;
use crate::store::sql::{RowsAffected, SqlDb, Text, Value};

impl<DB: SqlDb> Jobs<'_, DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    Vec<u8>: Value<DB>,
    i32: Value<DB>,
    i64: Value<DB>,
    f64: Value<DB>,
    bool: Value<DB>,
{
    pub(super) async fn todo(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TodoNumber>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, seq, input, passes, registered_at FROM batch_job_numbers
             WHERE job_id = $1 AND state = 0 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TodoNumber {
                key: r.get(0),
                seq: r.get(1),
                input: r.get(2),
                passes: r.get::<i64, _>(3).try_into().unwrap_or(0),
                registered_at: r.get(4),
            })
            .collect())
    }

    pub(super) async fn record(
        &self,
        job_id: &str,
        results: &[NumberResult],
        rate: f64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every transaction that writes a job's rows locks the job's row first (as `add_rows`
        // and `delete_job` do), so that two of them never wait on each other in opposite orders.
        Self::lock_job(&mut tx, job_id).await?;
        let (mut numbers_done, mut rows_done, mut failed, mut pending_delta) = (0i64, 0i64, 0, 0);
        let (mut billable, mut cache_hits, mut cost) = (0i64, 0i64, Money::ZERO);
        let mut by_status: HashMap<i32, i64> = HashMap::new();
        let by_key: HashMap<&str, &NumberResult> =
            results.iter().map(|r| (r.key.as_str(), r)).collect();
        // One statement per chunk; only numbers still to check are updated, so a result recorded
        // twice counts once.
        for chunk in results.chunks(RESULTS_PER_STATEMENT) {
            let mut update: QueryBuilder<DB> = QueryBuilder::new(
                "UPDATE batch_job_numbers SET state = v.column2, passes = passes + 1,
                     line_status = v.column3, failed = v.column4, report = v.column5
                 FROM (",
            );
            update.push_values(chunk, |mut b, result| {
                b.push_bind(&result.key)
                    // i32: the type the untyped literal had before the SQL was generic.
                    .push_bind(match result.fate {
                        NumberFate::Done => 1i32,
                        NumberFate::Again => 2,
                    })
                    .push_bind(result.line_status)
                    .push_bind(result.failed)
                    .push_bind(&result.report);
            });
            update.push(") AS v WHERE batch_job_numbers.job_id = ");
            update.push_bind(job_id);
            update.push(
                " AND batch_job_numbers.key = v.column1 AND batch_job_numbers.state = 0
                 RETURNING key, rows, passes",
            );
            for row in update.build().fetch_all(&mut *tx).await? {
                let key: &str = row.get(0);
                let Some(result) = by_key.get(key) else {
                    continue;
                };
                let rows: i64 = row.get(1);
                let passes: i64 = row.get(2);
                billable += result.billable;
                cache_hits += result.cache_hits;
                cost += result.cost;
                // A number coming back from an earlier pass is no longer pending.
                if passes > 1 {
                    pending_delta -= 1;
                }
                match result.fate {
                    NumberFate::Done => {
                        numbers_done += 1;
                        rows_done += rows;
                        failed += i64::from(result.failed);
                        *by_status.entry(result.line_status).or_default() += rows;
                    }
                    NumberFate::Again => pending_delta += 1,
                }
            }
        }
        sqlx::query(
            "UPDATE batch_jobs SET numbers_done = numbers_done + $2, rows_done = rows_done + $3,
                 numbers_failed = numbers_failed + $4, numbers_pending = numbers_pending + $5,
                 billable = billable + $6, cache_hits = cache_hits + $7, rate = $8,
                 spent = spent + $9
             WHERE id = $1",
        )
        .bind(job_id)
        .bind(numbers_done)
        .bind(rows_done)
        .bind(failed)
        .bind(pending_delta)
        .bind(billable)
        .bind(cache_hits)
        .bind(rate)
        .bind(cost.nanos())
        .execute(&mut *tx)
        .await?;
        for (status, rows) in by_status {
            sqlx::query(
                "INSERT INTO batch_job_counts (job_id, line_status, rows) VALUES ($1, $2, $3)
                 ON CONFLICT (job_id, line_status)
                 DO UPDATE SET rows = batch_job_counts.rows + excluded.rows",
            )
            .bind(job_id)
            .bind(status)
            .bind(rows)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn next_pass(&self, job_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        Self::lock_job(&mut tx, job_id).await?;
        let moved =
            sqlx::query("UPDATE batch_job_numbers SET state = 0 WHERE job_id = $1 AND state = 2")
                .bind(job_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        sqlx::query("UPDATE batch_jobs SET passes = passes + 1 WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(moved)
    }
}
