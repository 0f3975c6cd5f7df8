//! Reading jobs: one job or a tenant's page of them, the jobs in a state, and what a job's rows
//! and numbers say (bad rows, the export, the breakdowns, line-status changes).

use std::time::SystemTime;

use sqlx::{AssertSqlSafe, ColumnIndex, Executor, QueryBuilder, Row};

use super::{JOB_COLUMNS, Jobs};
use crate::domain::Money;
use crate::store::jobs::*;
use crate::store::sql::{SqlDb, Text, Value};
use crate::store::{StoreError, from_millis, millis};

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
{
    /// A job from a row of `SELECT {JOB_COLUMNS}`, without its line-status counts.
    fn job_from_row(row: &DB::Row) -> Result<JobRecord, StoreError> {
        let columns: String = row.get("columns");
        Ok(JobRecord {
            job: NewJob {
                id: row.get("id"),
                tenant: row.get("tenant"),
                spec: row.get("spec"),
                format: row.get("format"),
                encoding: row.get("encoding"),
                number_column: row.get("number_column"),
                registered_at_column: row.get("registered_at_column"),
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

    /// The rows of the job by line status.
    pub(super) async fn line_status_rows(
        &self,
        job_id: &str,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT line_status, rows FROM batch_job_counts WHERE job_id = $1 ORDER BY line_status",
        )
        .bind(job_id)
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        // Only constant text is formatted into these statements.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM batch_jobs WHERE id = $1 AND state <> 0"
        )))
        .bind(job_id)
        .fetch_optional(self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut job = Self::job_from_row(&row)?;
        job.counts.line_status_rows = self.line_status_rows(job_id).await?;
        Ok(Some(job))
    }

    pub(super) async fn list_jobs(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let mut query: QueryBuilder<DB> = QueryBuilder::new(format!(
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
        let rows = query.build().fetch_all(self.pool).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut job = Self::job_from_row(row)?;
            job.counts.line_status_rows = self.line_status_rows(&job.job.id).await?;
            jobs.push(job);
        }
        Ok(jobs)
    }

    pub(super) async fn jobs_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT id FROM batch_jobs WHERE state = $1 ORDER BY created_at, id")
                .bind(state as i64)
                .fetch_all(self.pool)
                .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn finished_before(
        &self,
        before: SystemTime,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM batch_jobs WHERE finished_at IS NOT NULL AND finished_at < $1",
        )
        .bind(millis(before))
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn bad_rows(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<Vec<BadRowRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT sheet, row_no, problem FROM batch_job_rows
             WHERE job_id = $1 AND number_key IS NULL ORDER BY seq LIMIT $2",
        )
        .bind(job_id)
        .bind(i64::from(limit))
        .fetch_all(self.pool)
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

    pub(super) async fn export_rows(
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
        let rows = query.fetch_all(self.pool).await?;
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

    pub(super) async fn breakdown(&self, job_id: &str, top: u32) -> Result<Breakdown, StoreError> {
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
                .fetch_all(self.pool)
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
        .fetch_all(self.pool)
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

    pub(super) async fn numbers(
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
        .fetch_all(self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub(super) async fn line_status_changes(
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
        .fetch_all(self.pool)
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
        .fetch_all(self.pool)
        .await?;
        changes.first = first
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(changes)
    }
}
