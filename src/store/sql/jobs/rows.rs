//! Writing a job's rows: the job itself, the rows of its upload, the rows copied from an earlier
//! job (a re-check), and the delete of all of them. Every transaction that writes a job's rows
//! locks the job's row first, so that two of them never wait on each other in opposite orders
//! and no row outlives its job.

use std::collections::HashMap;
use std::time::SystemTime;

use sqlx::{AssertSqlSafe, ColumnIndex, Encode, Executor, QueryBuilder, Row, Type};

use super::{Jobs, ROWS_PER_STATEMENT};
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
    Vec<u8>: Value<DB>,
    i32: Value<DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
    for<'a> Option<&'a str>: Encode<'a, DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    pub(super) async fn create_job(&self, job: &NewJob) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_jobs (id, tenant, state, spec, format, encoding, number_column,
                 columns, sheets, created_at, max_cost, registered_at_column)
             VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&job.id)
        .bind(&job.tenant)
        .bind(&job.spec)
        .bind(job.format)
        .bind(&job.encoding)
        .bind(&job.number_column)
        .bind(serde_json::to_string(&job.columns).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(job.sheets))
        .bind(millis(job.created_at))
        .bind(job.max_cost.map(Money::nanos))
        .bind(&job.registered_at_column)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn set_estimate(
        &self,
        job_id: &str,
        estimate: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET estimate = $2 WHERE id = $1")
            .bind(job_id)
            .bind(estimate)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn add_rows(
        &self,
        job_id: &str,
        first_seq: i64,
        rows: &[ImportRow],
    ) -> Result<(), StoreError> {
        // Duplicates within the batch are merged before they reach the database.
        let mut numbers: HashMap<&str, (i64, &RowNumber, i64)> = HashMap::new();
        let mut order = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if let Ok(number) = &row.number {
                let seq = first_seq + i as i64;
                numbers
                    .entry(number.key.as_str())
                    .and_modify(|e| e.2 += 1)
                    .or_insert_with(|| {
                        order.push(number.key.as_str());
                        (seq, number, 1)
                    });
            }
        }
        let mut tx = self.pool.begin().await?;
        // The job's row is locked until these rows are in: a delete of the job (a cancelled
        // upload) either waits for them and deletes them too, or goes first and these rows are
        // not written, so that no row outlives its job.
        let importing =
            sqlx::query("UPDATE batch_jobs SET state = state WHERE id = $1 AND state = $2")
                .bind(job_id)
                .bind(JobState::Importing as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if importing == 0 {
            return Err(StoreError::JobGone(job_id.to_owned()));
        }
        for (chunk_index, chunk) in rows.chunks(ROWS_PER_STATEMENT).enumerate() {
            let base = first_seq + (chunk_index * ROWS_PER_STATEMENT) as i64;
            let mut insert: QueryBuilder<DB> = QueryBuilder::new(
                "INSERT INTO batch_job_rows (job_id, seq, sheet, row_no, cells, number_key, problem) ",
            );
            insert.push_values(chunk.iter().enumerate(), |mut b, (i, row)| {
                b.push_bind(job_id)
                    .push_bind(base + i as i64)
                    .push_bind(&row.sheet)
                    .push_bind(i64::try_from(row.row_no).unwrap_or(i64::MAX))
                    .push_bind(serde_json::to_string(&row.cells).unwrap_or_else(|_| "[]".into()))
                    .push_bind(row.number.as_ref().ok().map(|n| n.key.as_str()))
                    .push_bind(row.number.as_ref().err().map(String::as_str));
            });
            insert.build().execute(&mut *tx).await?;
        }
        for chunk in order.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<DB> = QueryBuilder::new(
                "INSERT INTO batch_job_numbers \
                 (job_id, key, seq, input, rows, carrier, province, registered_at) ",
            );
            insert.push_values(chunk, |mut b, key| {
                let (seq, number, count) = numbers[key];
                b.push_bind(job_id)
                    .push_bind(*key)
                    .push_bind(seq)
                    .push_bind(&number.input)
                    .push_bind(count)
                    .push_bind(&number.carrier)
                    .push_bind(&number.province)
                    .push_bind(number.registered_at);
            });
            insert.push(
                " ON CONFLICT (job_id, key) DO UPDATE SET rows = batch_job_numbers.rows + excluded.rows",
            );
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn finish_import(
        &self,
        job: &NewJob,
        to: JobState,
    ) -> Result<JobCounts, StoreError> {
        let job_id = job.id.as_str();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE batch_jobs SET format = $3, encoding = $4, number_column = $5, columns = $6,
                 sheets = $7, registered_at_column = $8,
                 rows_total = (SELECT COUNT(*) FROM batch_job_rows WHERE job_id = $1),
                 bad_rows = (SELECT COUNT(*) FROM batch_job_rows
                             WHERE job_id = $1 AND number_key IS NULL),
                 numbers_total = (SELECT COUNT(*) FROM batch_job_numbers WHERE job_id = $1),
                 state = $2
             WHERE id = $1",
        )
        .bind(job_id)
        .bind(to as i64)
        .bind(job.format)
        .bind(&job.encoding)
        .bind(&job.number_column)
        .bind(serde_json::to_string(&job.columns).unwrap_or_else(|_| "[]".into()))
        .bind(i64::from(job.sheets))
        .bind(&job.registered_at_column)
        .execute(&mut *tx)
        .await?;
        // Bad rows are done the moment they are read.
        sqlx::query("UPDATE batch_jobs SET rows_done = bad_rows WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        let row =
            sqlx::query("SELECT rows_total, bad_rows, numbers_total FROM batch_jobs WHERE id = $1")
                .bind(job_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(JobCounts {
            rows_total: row.get(0),
            rows_done: row.get(1),
            bad_rows: row.get(1),
            numbers_total: row.get(2),
            ..JobCounts::default()
        })
    }

    pub(super) async fn drop_unfinished_imports(
        &self,
        created_before: SystemTime,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT id FROM batch_jobs WHERE state = $1 AND created_at < $2")
            .bind(JobState::Importing as i64)
            .bind(millis(created_before))
            .fetch_all(self.pool)
            .await?;
        for row in &rows {
            self.delete_job(row.get(0)).await?;
        }
        Ok(rows.len() as u64)
    }

    pub(super) async fn copy_rows(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // The earlier job first (as a delete of it locks it): while its rows are copied it can
        // neither go away nor be half gone.
        let earlier = sqlx::query("UPDATE batch_jobs SET state = state WHERE id = $1")
            .bind(from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if earlier == 0 {
            return Err(StoreError::JobGone(from.to_owned()));
        }
        Self::lock_job(&mut tx, to).await?;
        sqlx::query(
            "INSERT INTO batch_job_rows (job_id, seq, sheet, row_no, cells, number_key, problem)
             SELECT $2, seq, sheet, row_no, cells, number_key, problem
             FROM batch_job_rows WHERE job_id = $1",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        // A line status is known only for a number done with an answer to its line-status
        // check (0 is unspecified: not asked, or the check failed), as for the new one.
        sqlx::query(
            "INSERT INTO batch_job_numbers
                 (job_id, key, seq, input, rows, carrier, province, registered_at,
                  previous_line_status)
             SELECT $2, key, seq, input, rows, carrier, province, registered_at,
                    CASE WHEN state = 1 AND line_status <> 0 THEN line_status END
             FROM batch_job_numbers WHERE job_id = $1",
        )
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The job first: its row lock waits for rows being added to it (`add_rows`), whose
        // rows the statements below then see and delete.
        let deleted = sqlx::query("DELETE FROM batch_jobs WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["batch_job_rows", "batch_job_numbers", "batch_job_counts"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE job_id = $1"
            )))
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // The job's rows held personal data and space: the file gives the space back.
        DB::give_back_space(self.pool).await?;
        Ok(deleted == 1)
    }
}
