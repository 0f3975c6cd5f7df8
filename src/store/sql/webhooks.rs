//! [`WebhookStore`] in SQL, one text for SQLite and PostgreSQL, and the outbox write that
//! [`JobStore::transition`] makes in the transaction of a state change.
//!
//! [`WebhookStore`]: crate::store::WebhookStore
//! [`JobStore::transition`]: crate::store::JobStore::transition

use std::time::SystemTime;

use async_trait::async_trait;
use sqlx::{AssertSqlSafe, ColumnIndex, Executor, QueryBuilder, Row};

use super::{RowsAffected, SqlDb, SqlStore, Text, Value};
use crate::domain::Money;
use crate::store::webhooks::*;
use crate::store::{JobCounts, JobState, StoreError, from_millis, millis};

/// The columns [`SqlStore::event_from_row`] reads.
const EVENT_COLUMNS: &str = "id, tenant, job_id, seq, kind, created_at, \
    job_state, rows_total, rows_done, numbers_total, numbers_done, numbers_pending, \
    numbers_failed, bad_rows, billable, cache_hits, spent, max_cost, reason, status, attempts, \
    since, next_at, delivered_at, last_http, last_error";

/// Copies the job's tenant, state and counters into a new event (`$1` the job, `$2` the event
/// id, `$3` its kind, `$4` the time). The job's row is locked by the state change made before in
/// the same transaction, so that the next `seq` is computed by one transaction at a time.
pub(super) const INSERT_EVENT: &str = "INSERT INTO webhook_events (id, tenant, job_id, \
    seq, kind, created_at, job_state, rows_total, rows_done, numbers_total, numbers_done, \
    numbers_pending, numbers_failed, bad_rows, billable, cache_hits, spent, max_cost, reason, \
    since, next_at)
    SELECT $2, tenant, id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM webhook_events WHERE job_id = $1),
        $3, $4, state, rows_total, rows_done, numbers_total, numbers_done, numbers_pending,
        numbers_failed, bad_rows, billable, cache_hits, spent, max_cost, error, $4, $4
    FROM batch_jobs WHERE id = $1";

impl<DB: SqlDb> SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
{
    /// An event from a row of `SELECT {EVENT_COLUMNS}`.
    fn event_from_row(row: &DB::Row) -> OutboxEvent {
        OutboxEvent {
            id: row.get("id"),
            tenant: row.get("tenant"),
            job_id: row.get("job_id"),
            seq: row.get("seq"),
            kind: EventKind::from_i64(row.get("kind")).unwrap_or(EventKind::Failed),
            created_at: from_millis(row.get("created_at")),
            job_state: JobState::from_i64(row.get("job_state")),
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
                ..JobCounts::default()
            },
            max_cost: row.get::<Option<i64>, _>("max_cost").map(Money::from_nanos),
            reason: row.get("reason"),
            status: DeliveryStatus::from_i64(row.get("status")),
            attempts: row.get::<i64, _>("attempts").try_into().unwrap_or(0),
            since: from_millis(row.get("since")),
            next_at: from_millis(row.get("next_at")),
            delivered_at: row.get::<Option<i64>, _>("delivered_at").map(from_millis),
            last_http: row.get::<i64, _>("last_http").try_into().unwrap_or(0),
            last_error: row.get("last_error"),
        }
    }

    async fn event_by_id(&self, id: &str) -> Result<Option<OutboxEvent>, StoreError> {
        // Only constant text is formatted into these statements.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM webhook_events WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(Self::event_from_row))
    }
}

#[async_trait]
impl<DB: SqlDb> WebhookStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    i64: Value<DB>,
    Option<i64>: Value<DB>,
{
    async fn claim_events(
        &self,
        owner: &str,
        now: SystemTime,
        until: SystemTime,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let now = millis(now);
        // The first pending event of each job only: a job's events go out in order.
        let candidates = sqlx::query(
            "SELECT e.id FROM webhook_events e
             WHERE e.status = 0 AND e.next_at <= $1 AND e.lease_until < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_events p
                               WHERE p.job_id = e.job_id AND p.status = 0 AND p.seq < e.seq)
             ORDER BY e.next_at, e.created_at, e.id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        for row in &candidates {
            let id: String = row.get(0);
            // A compare-and-set on the row: of replicas racing for an event, one takes it.
            let taken = sqlx::query(
                "UPDATE webhook_events SET lease_owner = $2, lease_until = $3
                 WHERE id = $1 AND status = 0 AND lease_until < $4 AND next_at <= $4",
            )
            .bind(&id)
            .bind(owner)
            .bind(millis(until))
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
            if taken == 1
                && let Some(event) = self.event_by_id(&id).await?
            {
                claimed.push(event);
            }
        }
        Ok(claimed)
    }

    async fn record_attempt(
        &self,
        id: &str,
        owner: &str,
        attempt: &Attempt,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let (status, next_at, http, error) = match attempt {
            Attempt::Delivered { http } => (DeliveryStatus::Delivered, None, *http, ""),
            Attempt::Retry {
                next_at,
                http,
                error,
            } => (
                DeliveryStatus::Pending,
                Some(millis(*next_at)),
                *http,
                error.as_str(),
            ),
            Attempt::Failed { http, error } => {
                (DeliveryStatus::Failed, None, *http, error.as_str())
            }
        };
        let recorded = sqlx::query(
            "UPDATE webhook_events SET status = $3, attempts = attempts + 1,
                 next_at = COALESCE($4, next_at), last_http = $5, last_error = $6,
                 delivered_at = CASE WHEN $3 = 1 THEN $7 ELSE delivered_at END,
                 lease_owner = '', lease_until = 0
             WHERE id = $1 AND lease_owner = $2 AND status = 0",
        )
        .bind(id)
        .bind(owner)
        .bind(status as i64)
        .bind(next_at)
        .bind(i64::from(http))
        .bind(error)
        .bind(millis(now))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(recorded == 1)
    }

    async fn list_events(
        &self,
        tenant: &str,
        job_id: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut query: QueryBuilder<DB> = QueryBuilder::new(format!(
            "SELECT {EVENT_COLUMNS} FROM webhook_events WHERE tenant = "
        ));
        query.push_bind(tenant);
        if let Some(job_id) = job_id {
            query.push(" AND job_id = ");
            query.push_bind(job_id);
        }
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
        Ok(rows.iter().map(Self::event_from_row).collect())
    }

    async fn resend_event(
        &self,
        tenant: &str,
        id: &str,
        now: SystemTime,
    ) -> Result<Option<OutboxEvent>, StoreError> {
        let now = millis(now);
        let changed = sqlx::query(
            "UPDATE webhook_events SET status = 0, attempts = 0, since = $3, next_at = $3,
                 lease_owner = '', lease_until = 0
             WHERE id = $1 AND tenant = $2",
        )
        .bind(id)
        .bind(tenant)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        self.event_by_id(id).await
    }

    async fn prune_events(&self, before: SystemTime) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM webhook_events WHERE status <> 0 AND since < $1")
                .bind(millis(before))
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    async fn pending_events(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM webhook_events WHERE status = 0")
                .fetch_one(&self.pool)
                .await?
                .get(0),
        )
    }
}
