//! The embedded SQLite store.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Claim, PendingStore, PendingSubmission, StoreError, from_millis, millis};

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "phonecheck.db";

/// SQLite, one file in the data directory, WAL journal.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir`.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Directory {
            path: data_dir.display().to_string(),
            source,
        })?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DATABASE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // With WAL, NORMAL loses nothing when the process dies (only on power loss), and
            // commits need no fsync: job results are written many times a second.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        Self::with_options(options, 4).await
    }

    /// A private in-memory database (tests).
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every connection to `:memory:` is its own database.
        Self::with_options(options, 1).await
    }

    async fn with_options(
        options: SqliteConnectOptions,
        connections: u32,
    ) -> Result<SqliteStore, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

#[async_trait]
impl PendingStore for SqliteStore {
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
             VALUES (?1, ?2, NULL, ?3)
             ON CONFLICT (provider, number) DO UPDATE SET submitted_at = excluded.submitted_at
             WHERE pending_submissions.batch_id IS NULL AND pending_submissions.submitted_at <= ?4",
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
                 VALUES (?1, ?2, ?3, ?4)
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
            sqlx::query("DELETE FROM pending_submissions WHERE provider = ?1 AND number = ?2")
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
            "SELECT batch_id, submitted_at FROM pending_submissions WHERE provider = ?1 AND number = ?2",
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

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn one_claim_wins() {
        let store = SqliteStore::in_memory().await.unwrap();
        assert_eq!(
            store.claim("caih", "+8613800138000", STALE).await.unwrap(),
            Claim::Claimed
        );
        let Claim::Pending(p) = store.claim("caih", "+8613800138000", STALE).await.unwrap() else {
            panic!("second claim must see the first")
        };
        assert_eq!(p.batch_id, None);
        // Another provider is another namespace.
        assert_eq!(
            store.claim("other", "+8613800138000", STALE).await.unwrap(),
            Claim::Claimed
        );
    }

    #[tokio::test]
    async fn submitted_then_released() {
        let store = SqliteStore::in_memory().await.unwrap();
        let n = vec!["+8613800138000".to_owned()];
        store.claim("caih", &n[0], STALE).await.unwrap();
        store.submitted("caih", &n, "u123").await.unwrap();
        assert_eq!(
            store
                .get("caih", &n[0])
                .await
                .unwrap()
                .unwrap()
                .batch_id
                .as_deref(),
            Some("u123")
        );
        // A submitted number is never claimed again, however old.
        assert!(matches!(
            store.claim("caih", &n[0], Duration::ZERO).await.unwrap(),
            Claim::Pending(_)
        ));
        store.release("caih", &n).await.unwrap();
        assert_eq!(store.get("caih", &n[0]).await.unwrap(), None);
        assert_eq!(
            store.claim("caih", &n[0], STALE).await.unwrap(),
            Claim::Claimed
        );
    }

    #[tokio::test]
    async fn a_stale_claim_is_given_out_again() {
        let store = SqliteStore::in_memory().await.unwrap();
        store.claim("caih", "n", STALE).await.unwrap();
        assert_eq!(
            store.claim("caih", "n", Duration::ZERO).await.unwrap(),
            Claim::Claimed
        );
    }

    #[tokio::test]
    async fn survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let n = vec!["+8613800138000".to_owned()];
        {
            let store = SqliteStore::open(dir.path()).await.unwrap();
            store.claim("caih", &n[0], STALE).await.unwrap();
            store.submitted("caih", &n, "u1").await.unwrap();
        }
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(
            store
                .get("caih", &n[0])
                .await
                .unwrap()
                .unwrap()
                .batch_id
                .as_deref(),
            Some("u1")
        );
    }
}
