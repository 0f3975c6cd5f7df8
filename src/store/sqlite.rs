//! The embedded SQLite store.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};

use super::StoreError;

/// The file name of the database inside the data directory.
pub const DATABASE_FILE: &str = "phonecheck.db";

/// `PRAGMA auto_vacuum`'s value for `INCREMENTAL`.
const INCREMENTAL: i64 = 2;

/// SQLite, one file in the data directory, WAL journal.
pub type SqliteStore = super::sql::SqlStore<Sqlite>;

impl super::sql::SqlDb for Sqlite {
    /// The file is this process's alone.
    const SHARED: bool = false;

    /// Gives the pages freed by deletes back to the file system: SQLite otherwise keeps them
    /// in the file for reuse and the file never shrinks. The checkpoint is passive (it never
    /// waits for readers): the file shrinks when the WAL's frames reach it.
    async fn give_back_space(pool: &SqlitePool) -> Result<(), StoreError> {
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(pool)
            .await?;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_all(pool)
            .await?;
        Ok(())
    }
}

impl super::sql::RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
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
            // Deleted jobs' pages are given back to the file system (`give_back_space`), not
            // kept as free pages forever. Set before any table exists in a new file; an older
            // file is converted once at start-up (below).
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .busy_timeout(Duration::from_secs(30));
        let store = Self::with_options(options, 4).await?;
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&store.pool)
            .await?;
        if mode != INCREMENTAL {
            // A file created before auto_vacuum was set: the setting takes effect only once
            // the file is rebuilt, which VACUUM does (once; the mode is kept in the file).
            tracing::info!(
                path = %data_dir.join(DATABASE_FILE).display(),
                "job store: converting the database to incremental vacuum (once)"
            );
            sqlx::query("VACUUM").execute(&store.pool).await?;
        }
        Ok(store)
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
            // After SQLite refused a COMMIT or ROLLBACK (a full disk), the library can still count
            // a transaction on the connection, and every later write on it fails
            // (SQLITE_BUSY_SNAPSHOT): a job stalled so in `faults::disk`. Such a connection is
            // closed when it comes back, not reused. A transaction dropped unfinished is still
            // counted until the rollback the library queued has run: a ping waits for it first.
            // A connection with no transaction costs no statement.
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    if !connection.is_in_transaction() {
                        return Ok(true);
                    }
                    connection.ping().await?;
                    Ok(!connection.is_in_transaction())
                })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore::new(pool))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Claim, JobState, JobStore, Lease, NewJob, PendingStore};
    use std::time::SystemTime;

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

    /// A job `job_1` of a text file, with `max_cost`.
    fn new_job(max_cost: Option<crate::domain::Money>) -> NewJob {
        NewJob {
            id: "job_1".into(),
            tenant: String::new(),
            spec: Vec::new(),
            format: 1,
            encoding: "utf-8".into(),
            number_column: "column 1".into(),
            registered_at_column: String::new(),
            columns: Vec::new(),
            sheets: 0,
            created_at: SystemTime::now(),
            max_cost,
        }
    }

    fn bad_row(row_no: u64) -> crate::store::ImportRow {
        crate::store::ImportRow {
            sheet: String::new(),
            row_no,
            cells: vec!["n/a".into()],
            number_cell: Some(0),
            number: Err("not a number".into()),
        }
    }

    /// Rows that arrive for a job deleted meanwhile (a cancelled upload) are refused whole:
    /// no row outlives its job.
    #[tokio::test]
    async fn rows_for_a_deleted_job_are_not_written() {
        let store = SqliteStore::in_memory().await.unwrap();
        let job = new_job(None);
        store.create_job(&job).await.unwrap();
        store.add_rows("job_1", 0, &[bad_row(1)]).await.unwrap();
        assert!(store.delete_job("job_1").await.unwrap());
        let late = store.add_rows("job_1", 1, &[bad_row(2)]).await;
        assert!(matches!(late, Err(StoreError::JobGone(_))), "{late:?}");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM batch_job_rows")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn a_job_runs_under_one_lease_at_a_time() {
        let store = SqliteStore::in_memory().await.unwrap();
        let job = new_job(None);
        store.create_job(&job).await.unwrap();
        store.finish_import(&job, JobState::Queued).await.unwrap();
        let t0 = SystemTime::now();
        let lease = |owner: &str, from: SystemTime| Lease {
            owner: owner.into(),
            until: from + Duration::from_secs(30),
        };
        assert_eq!(store.runnable_jobs(t0).await.unwrap(), ["job_1"]);
        assert!(store.take_job("job_1", &lease("a", t0), t0).await.unwrap());
        assert!(!store.take_job("job_1", &lease("b", t0), t0).await.unwrap());
        assert!(store.runnable_jobs(t0).await.unwrap().is_empty());
        assert!(store.renew_lease("job_1", &lease("a", t0)).await.unwrap());

        // a stops renewing: once its lease lapses, b takes the job, and a's renewal is refused.
        let later = t0 + Duration::from_secs(31);
        assert_eq!(store.runnable_jobs(later).await.unwrap(), ["job_1"]);
        assert!(
            store
                .take_job("job_1", &lease("b", later), later)
                .await
                .unwrap()
        );
        assert!(
            !store
                .renew_lease("job_1", &lease("a", later))
                .await
                .unwrap()
        );
        assert_eq!(
            store.job("job_1").await.unwrap().unwrap().state,
            JobState::Running
        );

        // Given up at shutdown: runnable at once.
        store.release_lease("job_1", "a").await.unwrap();
        assert!(
            store.runnable_jobs(later).await.unwrap().is_empty(),
            "not a's to give up"
        );
        store.release_lease("job_1", "b").await.unwrap();
        assert_eq!(store.runnable_jobs(later).await.unwrap(), ["job_1"]);

        // Cancelled: no lease renews any more, and it is not runnable.
        assert!(
            store
                .take_job("job_1", &lease("c", later), later)
                .await
                .unwrap()
        );
        store
            .transition("job_1", &[JobState::Running], JobState::Cancelled, "")
            .await
            .unwrap();
        assert!(
            !store
                .renew_lease("job_1", &lease("c", later))
                .await
                .unwrap()
        );
        assert!(store.runnable_jobs(later).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn budgets_hold_exactly_and_settle_what_was_billed() {
        use crate::domain::Money;
        use crate::store::{BudgetLimit, BudgetStore, Spend};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let limit = BudgetLimit {
            calls: Some(10),
            cost: Some("0.25".parse().unwrap()),
        };
        let want = Spend {
            calls: 1,
            cost: "0.03".parse().unwrap(),
        };
        // 40 holds at once over four connections: 8 fit the money (0.24 of 0.25).
        let holds = (0..40).map(|_| store.hold("acme", "2026-12-01", want, limit));
        let held = futures::future::join_all(holds).await;
        assert_eq!(held.iter().filter(|h| *h.as_ref().unwrap()).count(), 8);
        // Another tenant and another day are other budgets.
        assert!(
            store
                .hold("other", "2026-12-01", want, limit)
                .await
                .unwrap()
        );
        assert!(store.hold("acme", "2026-12-02", want, limit).await.unwrap());
        // Eight settled: five billed at 0.02 (a cheaper provider), three from the cache.
        let billed = Spend {
            calls: 1,
            cost: "0.02".parse().unwrap(),
        };
        for i in 0..8 {
            let billed = if i < 5 { billed } else { Spend::default() };
            store
                .settle("acme", "2026-12-01", want, billed)
                .await
                .unwrap();
        }
        let day = store.day_use("acme", "2026-12-01").await.unwrap();
        assert_eq!(day.held, Spend::default());
        assert_eq!(
            day.spent,
            Spend {
                calls: 5,
                cost: Money::from_nanos(100_000_000)
            }
        );
        // Reopened (a restart): the day is remembered.
        drop(store);
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.day_use("acme", "2026-12-01").await.unwrap(), day);
    }

    #[tokio::test]
    async fn starting_a_waiting_job_sets_its_limit_in_the_same_step() {
        use crate::domain::Money;
        let store = SqliteStore::in_memory().await.unwrap();
        let cny = |s: &str| -> Money { s.parse().unwrap() };
        let job = new_job(Some(cny("0.30")));
        store.create_job(&job).await.unwrap();
        store
            .finish_import(&job, JobState::Estimated)
            .await
            .unwrap();
        // Two StartBatchJob calls race: the first queues the job with its limit, the second
        // finds it no longer estimated and changes nothing.
        assert!(
            store
                .start("job_1", JobState::Estimated, Some(cny("5")), false)
                .await
                .unwrap()
        );
        assert!(
            !store
                .start("job_1", JobState::Estimated, Some(cny("1")), false)
                .await
                .unwrap()
        );
        let queued = store.job("job_1").await.unwrap().unwrap();
        assert_eq!(
            (queued.state, queued.job.max_cost),
            (JobState::Queued, Some(cny("5")))
        );
        // Paused at its limit, a "raise" must be above the limit (and what was spent).
        assert!(
            store
                .transition(
                    "job_1",
                    &[JobState::Queued],
                    JobState::CostPaused,
                    "max_cost"
                )
                .await
                .unwrap()
        );
        assert!(
            !store
                .start("job_1", JobState::CostPaused, Some(cny("4")), true)
                .await
                .unwrap()
        );
        assert!(
            !store
                .start("job_1", JobState::CostPaused, Some(cny("5")), true)
                .await
                .unwrap()
        );
        let paused = store.job("job_1").await.unwrap().unwrap();
        assert_eq!(
            (paused.state, paused.job.max_cost),
            (JobState::CostPaused, Some(cny("5")))
        );
        assert!(
            store
                .start("job_1", JobState::CostPaused, Some(cny("6")), true)
                .await
                .unwrap()
        );
    }
}
