//! [`PendingStore`] in SQL, one text for SQLite and PostgreSQL.
//!
//! [`PendingStore`]: crate::store::PendingStore

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor, Row};

use super::{RowsAffected, SqlDb, SqlStore, Text, Value};
use crate::store::{Claim, PendingStore, PendingSubmission, StoreError, from_millis, millis};

#[async_trait]
impl<DB: SqlDb> PendingStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    i64: Value<DB>,
{
    async fn claim(
        &self,
        provider: &str,
        number: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let now = SystemTime::now();
        let stale_before = millis(now.checked_sub(stale_after).unwrap_or(UNIX_EPOCH));
        // One statement, so concurrent claims cannot both win: insert, or take over a claim whose
        // submission never completed.
        let taken = sqlx::query(
            "INSERT INTO pending_submissions (provider, number, batch_id, submitted_at)
             VALUES ($1, $2, NULL, $3)
             ON CONFLICT (provider, number) DO UPDATE SET submitted_at = excluded.submitted_at
             WHERE pending_submissions.batch_id IS NULL AND pending_submissions.submitted_at <= $4",
        )
        .bind(provider)
        .bind(number)
        .bind(millis(now))
        .bind(stale_before)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Claim::Claimed);
        }
        match self.get(provider, number).await? {
            Some(pending) => Ok(Claim::Pending(pending)),
            // Released between the two statements: claim again.
            None => Box::pin(self.claim(provider, number, stale_after)).await,
        }
    }

    async fn submitted(
        &self,
        provider: &str,
        numbers: &[String],
        batch_id: &str,
    ) -> Result<(), StoreError> {
        let now = millis(SystemTime::now());
        let mut tx = self.pool.begin().await?;
        for number in numbers {
            sqlx::query(
                "INSERT INTO pending_submissions (provider, number, batch_id, submitted_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (provider, number) DO UPDATE SET batch_id = excluded.batch_id,
                     submitted_at = excluded.submitted_at",
            )
            .bind(provider)
            .bind(number)
            .bind(batch_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, provider: &str, numbers: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for number in numbers {
            sqlx::query("DELETE FROM pending_submissions WHERE provider = $1 AND number = $2")
                .bind(provider)
                .bind(number)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get(
        &self,
        provider: &str,
        number: &str,
    ) -> Result<Option<PendingSubmission>, StoreError> {
        let row = sqlx::query(
            "SELECT batch_id, submitted_at FROM pending_submissions WHERE provider = $1 AND number = $2",
        )
        .bind(provider)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| PendingSubmission {
            batch_id: row.get::<Option<String>, _>(0),
            submitted_at: from_millis(row.get::<i64, _>(1)),
        }))
    }
}
