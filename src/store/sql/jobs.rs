//! [`JobStore`] in SQL, one text for SQLite and PostgreSQL: `$N` parameters (which SQLite takes
//! too), `ON CONFLICT` upserts, `UPDATE ... FROM (VALUES ...)`, and column types that decode the
//! same from both (see the two `migrations/` folders).
//!
//! [`JobStore`]: crate::store::JobStore

/// Rows per INSERT statement (SQLite allows 32,766 bound values, PostgreSQL 65,535).
pub(in crate::store) const ROWS_PER_STATEMENT: usize = 1_000;
/// Results per UPDATE statement.
pub(in crate::store) const RESULTS_PER_STATEMENT: usize = 500;

pub(in crate::store) const JOB_COLUMNS: &str = "id, tenant, state, spec, format, encoding, \
    number_column, columns, sheets, created_at, started_at, finished_at, error, rows_total, \
    rows_done, numbers_total, numbers_done, numbers_pending, numbers_failed, bad_rows, billable, \
    cache_hits, passes, rate, estimate, max_cost, spent";

/// Implements [`JobStore`](crate::store::JobStore) for `$store` (with a `pool` of `$db`, whose
/// rows are `$row`), and tells whether other processes share it.
macro_rules! sql_job_store {
    ($store:ty, $db:ty, $row:ty, shared = $shared:expr) => {
const _: () = {
use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, QueryBuilder, Row};

use crate::store::jobs::*;
use crate::store::sql::jobs::{JOB_COLUMNS, RESULTS_PER_STATEMENT, ROWS_PER_STATEMENT};
use crate::domain::Money;
use crate::store::{StoreError, from_millis, millis};

/// Locks the job's row for the rest of `tx` (a no-op update: SQLite's whole-database write
/// lock, PostgreSQL's row lock).
async fn lock_job(tx: &mut sqlx::Transaction<'_, $db>, job_id: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE batch_jobs SET state = state WHERE id = $1")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn job_from_row(row: &$row) -> Result<JobRecord, StoreError> {
    let columns: String = row.get("columns");
    Ok(JobRecord {
        job: NewJob {
            id: row.get("id"),
            tenant: row.get("tenant"),
            spec: row.get("spec"),
            format: row.get("format"),
            encoding: row.get("encoding"),
            number_column: row.get("number_column"),
            columns: serde_json::from_str(&columns).unwrap_or_default(),
            sheets: row.get::<i64, _>("sheets").try_into().unwrap_or(0),
            created_at: from_millis(row.get("created_at")),
            max_cost: row.get::<Option<i64>, _>("max_cost").map(Money::from_nanos),
        },
        state: JobState::from_i64(row.get("state")),
        started_at: row.get::<Option<i64>, _>("started_at").map(from_millis),
        finished_at: row.get::<Option<i64>, _>("finished_at").map(from_millis),
        error: row.get("error"),
        passes: row.get::<i64, _>("passes").try_into().unwrap_or(0),
        counts: JobCounts {
            rows_total: row.get("rows_total"),
            rows_done: row.get("rows_done"),
            numbers_total: row.get("numbers_total"),
            numbers_done: row.get("numbers_done"),
            numbers_pending: row.get("numbers_pending"),
            numbers_failed: row.get("numbers_failed"),
            bad_rows: row.get("bad_rows"),
            billable: row.get("billable"),
            cost: Money::from_nanos(row.get("spent")),
            cache_hits: row.get("cache_hits"),
            rate: row.get("rate"),
            line_status_rows: Vec::new(),
        },
        estimate: row.get("estimate"),
    })
}

impl $store {
    async fn line_status_rows(&self, job_id: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT line_status, rows FROM batch_job_counts WHERE job_id = $1 ORDER BY line_status",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[async_trait]
impl JobStore for $store {
    fn shared(&self) -> bool {
        $shared
    }

    async fn create_job(&self, job: &NewJob) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_jobs (id, tenant, state, spec, format, encoding, number_column,
                 columns, sheets, created_at, max_cost)
             VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_estimate(&self, job_id: &str, estimate: &[u8]) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET estimate = $2 WHERE id = $1")
            .bind(job_id)
            .bind(estimate)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn start(
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(started == 1)
    }

    async fn add_rows(
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
        let importing = sqlx::query("UPDATE batch_jobs SET state = state WHERE id = $1 AND state = $2")
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
            let mut insert: QueryBuilder<$db> = QueryBuilder::new(
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
            let mut insert: QueryBuilder<$db> = QueryBuilder::new(
                "INSERT INTO batch_job_numbers (job_id, key, seq, input, rows, carrier, province) ",
            );
            insert.push_values(chunk, |mut b, key| {
                let (seq, number, count) = numbers[key];
                b.push_bind(job_id)
                    .push_bind(*key)
                    .push_bind(seq)
                    .push_bind(&number.input)
                    .push_bind(count)
                    .push_bind(&number.carrier)
                    .push_bind(&number.province);
            });
            insert.push(
                " ON CONFLICT (job_id, key) DO UPDATE SET rows = batch_job_numbers.rows + excluded.rows",
            );
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_import(&self, job: &NewJob, to: JobState) -> Result<JobCounts, StoreError> {
        let job_id = job.id.as_str();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE batch_jobs SET format = $3, encoding = $4, number_column = $5, columns = $6,
                 sheets = $7,
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
        .execute(&mut *tx)
        .await?;
        // Bad rows are done the moment they are read.
        sqlx::query("UPDATE batch_jobs SET rows_done = bad_rows WHERE id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(
            "SELECT rows_total, bad_rows, numbers_total FROM batch_jobs WHERE id = $1",
        )
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

    async fn drop_unfinished_imports(
        &self,
        created_before: SystemTime,
    ) -> Result<u64, StoreError> {
        let rows = sqlx::query("SELECT id FROM batch_jobs WHERE state = $1 AND created_at < $2")
            .bind(JobState::Importing as i64)
            .bind(millis(created_before))
            .fetch_all(&self.pool)
            .await?;
        for row in &rows {
            self.delete_job(row.get(0)).await?;
        }
        Ok(rows.len() as u64)
    }

    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        // Only constant text is formatted into these statements.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM batch_jobs WHERE id = $1 AND state <> 0"
        )))
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut job = job_from_row(&row)?;
        job.counts.line_status_rows = self.line_status_rows(job_id).await?;
        Ok(Some(job))
    }

    async fn list_jobs(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut query: QueryBuilder<$db> = QueryBuilder::new(format!(
            "SELECT {JOB_COLUMNS} FROM batch_jobs WHERE state <> 0 AND tenant = "
        ));
        query.push_bind(tenant);
        if let Some((created, id)) = &after {
            query.push(" AND (created_at < ");
            query.push_bind(*created);
            query.push(" OR (created_at = ");
            query.push_bind(*created);
            query.push(" AND id < ");
            query.push_bind(id.as_str());
            query.push("))");
        }
        query.push(" ORDER BY created_at DESC, id DESC LIMIT ");
        query.push_bind(i64::from(limit));
        let rows = query.build().fetch_all(&self.pool).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut job = job_from_row(row)?;
            job.counts.line_status_rows = self.line_status_rows(&job.job.id).await?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT id FROM batch_jobs WHERE state = $1 ORDER BY created_at, id")
                .bind(state as i64)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn runnable_jobs(&self, now: SystemTime) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM batch_jobs
             WHERE state = $1 OR (state IN ($2, $4) AND lease_until < $3)
             ORDER BY created_at, id",
        )
        .bind(JobState::Queued as i64)
        .bind(JobState::Running as i64)
        .bind(millis(now))
        .bind(JobState::Paused as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn take_job(
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
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn renew_lease(&self, job_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE batch_jobs SET lease_until = $3
             WHERE id = $1 AND lease_owner = $2 AND state IN ($4, $5)",
        )
        .bind(job_id)
        .bind(&lease.owner)
        .bind(millis(lease.until))
        .bind(JobState::Running as i64)
        .bind(JobState::Paused as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn release_lease(&self, job_id: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_jobs SET lease_until = 0 WHERE id = $1 AND lease_owner = $2")
            .bind(job_id)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn transition(
        &self,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        error: &str,
    ) -> Result<bool, StoreError> {
        let now = millis(SystemTime::now());
        let mut update: QueryBuilder<$db> = QueryBuilder::new("UPDATE batch_jobs SET state = ");
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
        if to.is_final() || matches!(to, JobState::Paused | JobState::CostPaused | JobState::Running) {
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
        let Some(kind) = crate::store::webhooks::EventKind::of(to).filter(|_| !self.webhooks.is_empty())
        else {
            return Ok(update.build().execute(&self.pool).await?.rows_affected() == 1);
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

    async fn todo(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TodoNumber>, StoreError> {
        let rows = sqlx::query(
            "SELECT key, seq, input, passes FROM batch_job_numbers
             WHERE job_id = $1 AND state = 0 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TodoNumber {
                key: r.get(0),
                seq: r.get(1),
                input: r.get(2),
                passes: r.get::<i64, _>(3).try_into().unwrap_or(0),
            })
            .collect())
    }

    async fn record(
        &self,
        job_id: &str,
        results: &[NumberResult],
        rate: f64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Every transaction that writes a job's rows locks the job's row first (as `add_rows`
        // and `delete_job` do), so that two of them never wait on each other in opposite orders.
        lock_job(&mut tx, job_id).await?;
        let (mut numbers_done, mut rows_done, mut failed, mut pending_delta) = (0i64, 0i64, 0, 0);
        let (mut billable, mut cache_hits, mut cost) = (0i64, 0i64, Money::ZERO);
        let mut by_status: HashMap<i32, i64> = HashMap::new();
        let by_key: HashMap<&str, &NumberResult> =
            results.iter().map(|r| (r.key.as_str(), r)).collect();
        // One statement per chunk; only numbers still to check are updated, so a result recorded
        // twice counts once.
        for chunk in results.chunks(RESULTS_PER_STATEMENT) {
            let mut update: QueryBuilder<$db> = QueryBuilder::new(
                "UPDATE batch_job_numbers SET state = v.column2, passes = passes + 1,
                     line_status = v.column3, failed = v.column4, report = v.column5
                 FROM (",
            );
            update.push_values(chunk, |mut b, result| {
                b.push_bind(&result.key)
                    .push_bind(match result.fate {
                        NumberFate::Done => 1,
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

    async fn next_pass(&self, job_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_job(&mut tx, job_id).await?;
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

    async fn bad_rows(&self, job_id: &str, limit: u32) -> Result<Vec<BadRowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT sheet, row_no, problem FROM batch_job_rows
             WHERE job_id = $1 AND number_key IS NULL ORDER BY seq LIMIT $2",
        )
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| BadRowRecord {
                sheet: r.get(0),
                row_no: r.get::<i64, _>(1).try_into().unwrap_or(0),
                reason: r.get::<Option<String>, _>(2).unwrap_or_default(),
            })
            .collect())
    }

    async fn export_rows(
        &self,
        job_id: &str,
        filter: ExportFilter,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ExportRow>, StoreError> {
        // Only constant text is formatted into the statement.
        let status_clause = match filter.line_status {
            None => "",
            Some(_) => "AND n.state = 1 AND n.line_status = $4",
        };
        let changed_clause = if filter.changed_only {
            "AND n.state = 1 AND n.line_status <> 0 AND n.previous_line_status IS NOT NULL
             AND n.line_status <> n.previous_line_status"
        } else {
            ""
        };
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "SELECT r.seq, r.sheet, r.row_no, r.cells, r.problem, n.report, n.previous_line_status
             FROM batch_job_rows r
             LEFT JOIN batch_job_numbers n ON n.job_id = r.job_id AND n.key = r.number_key
             WHERE r.job_id = $1 AND r.seq > $2 {status_clause} {changed_clause}
             ORDER BY r.seq LIMIT $3"
        )))
        .bind(job_id)
        .bind(after_seq)
        .bind(i64::from(limit));
        if let Some(status) = filter.line_status {
            query = query.bind(status);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| ExportRow {
                seq: r.get(0),
                sheet: r.get(1),
                row_no: r.get::<i64, _>(2).try_into().unwrap_or(0),
                cells: serde_json::from_str(r.get::<&str, _>(3)).unwrap_or_default(),
                problem: r.get(4),
                report: r.get(5),
                previous_line_status: r.get(6),
            })
            .collect())
    }

    async fn breakdown(&self, job_id: &str, top: u32) -> Result<Breakdown, StoreError> {
        let grouped = |column: &str| {
            format!(
                "SELECT {column}, CAST(SUM(rows) AS BIGINT) AS n FROM batch_job_numbers WHERE job_id = $1
                 GROUP BY {column} ORDER BY n DESC, {column} LIMIT $2"
            )
        };
        let mut breakdown = Breakdown::default();
        for (column, out) in [
            ("carrier", &mut breakdown.carriers),
            ("province", &mut breakdown.provinces),
        ] {
            let rows = sqlx::query(AssertSqlSafe(grouped(column)))
                .bind(job_id)
                .bind(i64::from(top))
                .fetch_all(&self.pool)
                .await?;
            *out = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        }
        // LineStatus INVALID is 8 in phonecheck.v1.
        let rows = sqlx::query(
            "SELECT r.sheet, r.row_no, n.input FROM batch_job_rows r
             JOIN batch_job_numbers n ON n.job_id = r.job_id AND n.key = r.number_key
             WHERE r.job_id = $1 AND n.state = 1 AND n.line_status = 8 ORDER BY r.seq LIMIT $2",
        )
        .bind(job_id)
        .bind(i64::from(top))
        .fetch_all(&self.pool)
        .await?;
        breakdown.invalid_rows = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get::<i64, _>(1).try_into().unwrap_or(0),
                    r.get(2),
                )
            })
            .collect();
        Ok(breakdown)
    }

    async fn numbers(
        &self,
        job_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT key FROM batch_job_numbers WHERE job_id = $1 AND key > $2 ORDER BY key LIMIT $3",
        )
        .bind(job_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn line_status_changes(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<LineStatusChanges, StoreError> {
        // Numbers checked again with an answer, whose earlier line status is known.
        const COMPARED: &str = "job_id = $1 AND state = 1 AND line_status <> 0
             AND previous_line_status IS NOT NULL";
        let moved = sqlx::query(AssertSqlSafe(format!(
            "SELECT previous_line_status, line_status, COUNT(*) FROM batch_job_numbers
             WHERE {COMPARED} GROUP BY previous_line_status, line_status
             ORDER BY previous_line_status, line_status"
        )))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        let mut changes = LineStatusChanges::default();
        for row in &moved {
            let (before, now, numbers): (i32, i32, i64) = (row.get(0), row.get(1), row.get(2));
            if before == now {
                changes.unchanged += numbers;
            } else {
                changes.moves.push((before, now, numbers));
            }
        }
        let first = sqlx::query(AssertSqlSafe(format!(
            "SELECT input, previous_line_status, line_status FROM batch_job_numbers
             WHERE {COMPARED} AND line_status <> previous_line_status ORDER BY seq LIMIT $2"
        )))
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        changes.first = first
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(changes)
    }

    async fn copy_rows(&self, from: &str, to: &str) -> Result<(), StoreError> {
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
        lock_job(&mut tx, to).await?;
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
                 (job_id, key, seq, input, rows, carrier, province, previous_line_status)
             SELECT $2, key, seq, input, rows, carrier, province,
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

    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError> {
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
        self.give_back_space().await?;
        Ok(deleted == 1)
    }

    async fn finished_before(&self, before: SystemTime) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM batch_jobs WHERE finished_at IS NOT NULL AND finished_at < $1",
        )
        .bind(millis(before))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
};
    };
}

pub(in crate::store) use sql_job_store;
