//! The answer store: every paid vendor answer, once, in its own SQLite file in the data directory
//! (`answers.db`), so that a restart never pays for it again.
//!
//! It is a cache, kept apart from the jobs database on purpose: when it cannot be read (a
//! corrupted or foreign file, a schema it does not know) it is deleted and started empty, with a
//! log line, and nothing else is lost. Numbers are never stored: rows are keyed by keyed hashes
//! the engine computes (see `migrations/answers`).
//!
//! Writes come in batches (one transaction each) from the engine's writer task. WAL with
//! `synchronous = NORMAL`: a commit does not wait for `fsync` (only checkpoints do), and a process
//! that dies loses nothing committed; a power cut may lose the last commits, which are then paid
//! again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sqlx::{QueryBuilder, Row, Sqlite};

use super::StoreError;

/// The file name of the answer store inside the data directory.
pub const ANSWERS_FILE: &str = "answers.db";

/// SQLite's page size, as used by this store.
const PAGE_SIZE: u64 = 4096;

/// Rows per `INSERT` statement (5 parameters each; SQLite allows 32,766).
const ROWS_PER_STATEMENT: usize = 500;

/// One stored answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The check, in phonecheck's order (0 line status … 3 risk profile).
    pub check: u8,
    /// When the vendor answered, Unix milliseconds.
    pub fetched_at: i64,
    /// The encoded answer.
    pub data: Vec<u8>,
}

/// One answer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRow {
    /// Keyed hash of the number.
    pub number: i64,
    /// Keyed hash of everything the answer depends on.
    pub variant: i64,
    /// The answer.
    pub answer: StoredAnswer,
}

/// How the store was found at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The file was there and readable.
    Existing,
    /// There was no file; an empty store was created.
    Created,
    /// The file could not be used (the reason); it was deleted and an empty store created.
    Rebuilt(String),
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnswerStoreStats {
    /// Answers stored (expired ones not yet purged included).
    pub entries: u64,
    /// When the oldest stored answer was fetched, Unix milliseconds.
    pub oldest_fetched_at: Option<i64>,
    /// Size of the store on disk (database, WAL), bytes.
    pub disk_bytes: u64,
}

/// The answer store.
#[derive(Debug, Clone)]
pub struct AnswerStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl AnswerStore {
    /// Opens the store in `data_dir`, creating it if missing and rebuilding it (empty) if it
    /// cannot be used. `max_bytes` caps its size on disk: past it, writes fail as on a full disk.
    pub async fn open(
        data_dir: &Path,
        max_bytes: Option<u64>,
    ) -> Result<(AnswerStore, Opened), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Directory {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(ANSWERS_FILE);
        let existed = path.exists();
        match Self::connect(&path, max_bytes).await {
            Ok(store) => Ok((
                store,
                if existed {
                    Opened::Existing
                } else {
                    Opened::Created
                },
            )),
            Err(e) => {
                let reason = e.to_string();
                for file in Self::files(&path) {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(StoreError::Directory {
                                path: file.display().to_string(),
                                source,
                            });
                        }
                    }
                }
                let store = Self::connect(&path, max_bytes).await?;
                Ok((store, Opened::Rebuilt(reason)))
            }
        }
    }

    /// The database file and SQLite's companions (write-ahead log, shared memory).
    fn files(path: &Path) -> [PathBuf; 3] {
        let with = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        [path.to_owned(), with("-wal"), with("-shm")]
    }

    async fn connect(path: &Path, max_bytes: Option<u64>) -> Result<AnswerStore, StoreError> {
        let mut options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .pragma("page_size", PAGE_SIZE.to_string());
        if let Some(max) = max_bytes {
            options = options.pragma("max_page_count", (max / PAGE_SIZE).max(1).to_string());
        }
        // A writer and readers: WAL lets them work at once.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/answers").run(&pool).await?;
        // A foreign or damaged file may open and migrate yet fail on the table itself.
        sqlx::query("SELECT count(*) FROM (SELECT 1 FROM answers LIMIT 1)")
            .fetch_one(&pool)
            .await?;
        Ok(AnswerStore {
            pool,
            path: path.to_owned(),
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The answer stored under (`number`, `variant`), if any (expired or not: the caller
    /// decides).
    pub async fn get(&self, number: i64, variant: i64) -> Result<Option<StoredAnswer>, StoreError> {
        let row = sqlx::query(
            "SELECT check_id, fetched_at, data FROM answers WHERE number = ? AND variant = ?",
        )
        .bind(number)
        .bind(variant)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| StoredAnswer {
            check: u8::try_from(r.get::<i64, _>(0)).unwrap_or(u8::MAX),
            fetched_at: r.get(1),
            data: r.get(2),
        }))
    }

    /// Writes answers in one transaction; an answer already stored under the same key is
    /// replaced.
    pub async fn put(&self, rows: &[AnswerRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR REPLACE INTO answers (number, variant, check_id, fetched_at, data) ",
            );
            insert.push_values(chunk, |mut b, row| {
                b.push_bind(row.number)
                    .push_bind(row.variant)
                    .push_bind(i64::from(row.answer.check))
                    .push_bind(row.answer.fetched_at)
                    .push_bind(&row.answer.data);
            });
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes up to `limit` answers of `check` fetched before `fetched_before` (Unix ms);
    /// returns how many. Small steps keep the writer's transactions short.
    pub async fn purge(
        &self,
        check: u8,
        fetched_before: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM answers WHERE (number, variant) IN (
                 SELECT number, variant FROM answers
                 WHERE check_id = ? AND fetched_at < ? LIMIT ?)",
        )
        .bind(i64::from(check))
        .bind(fetched_before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Deletes every answer about these numbers (keyed hashes), whatever the check or inputs.
    pub async fn forget(&self, numbers: &[i64]) -> Result<u64, StoreError> {
        let mut forgotten = 0;
        let mut tx = self.pool.begin().await?;
        for chunk in numbers.chunks(ROWS_PER_STATEMENT) {
            let mut delete: QueryBuilder<Sqlite> =
                QueryBuilder::new("DELETE FROM answers WHERE number IN (");
            let mut list = delete.separated(", ");
            for number in chunk {
                list.push_bind(*number);
            }
            delete.push(")");
            forgotten += delete.build().execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(forgotten)
    }

    /// Calls `each` with the key (number, variant) of every stored answer; returns how many.
    pub async fn for_each_key(&self, mut each: impl FnMut(i64, i64)) -> Result<u64, StoreError> {
        use futures::TryStreamExt;
        let mut rows = sqlx::query("SELECT number, variant FROM answers").fetch(&self.pool);
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            each(row.get(0), row.get(1));
            count += 1;
        }
        Ok(count)
    }

    /// Deletes every answer (they were keyed under a key that is gone).
    pub async fn forget_all(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM answers")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// How many answers, the oldest, and the size on disk.
    pub async fn stats(&self) -> Result<AnswerStoreStats, StoreError> {
        let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM answers")
            .fetch_one(&self.pool)
            .await?;
        // The index gives each check's oldest at once.
        let mut oldest: Option<i64> = None;
        for check in 0..4i64 {
            let first: Option<i64> =
                sqlx::query_scalar("SELECT min(fetched_at) FROM answers WHERE check_id = ?")
                    .bind(check)
                    .fetch_one(&self.pool)
                    .await?;
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let disk_bytes = Self::files(&self.path)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        Ok(AnswerStoreStats {
            entries: u64::try_from(entries).unwrap_or(0),
            oldest_fetched_at: oldest,
            disk_bytes,
        })
    }

    /// Closes the connections (after the last write).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// True when a store error means the disk (or `cache.max_disk`) is full.
pub fn is_full(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => {
            // SQLITE_FULL, with or without an extended code.
            e.code().is_some_and(|c| c == "13" || c.ends_with("|13"))
                || e.message().contains("database or disk is full")
        }
        StoreError::Database(sqlx::Error::Io(e)) => {
            e.raw_os_error() == Some(28) // ENOSPC
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(number: i64, variant: i64, check: u8, fetched_at: i64) -> AnswerRow {
        AnswerRow {
            number,
            variant,
            answer: StoredAnswer {
                check,
                fetched_at,
                data: vec![1, 2, 3],
            },
        }
    }

    #[tokio::test]
    async fn written_answers_survive_reopening_and_are_forgotten_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let (store, opened) = AnswerStore::open(dir.path(), None).await.unwrap();
        assert_eq!(opened, Opened::Created);
        store
            .put(&[
                row(1, 10, 0, 1000),
                row(1, 11, 2, 2000),
                row(2, 20, 0, 3000),
            ])
            .await
            .unwrap();
        store.close().await;

        let (store, opened) = AnswerStore::open(dir.path(), None).await.unwrap();
        assert_eq!(opened, Opened::Existing);
        assert_eq!(store.get(1, 10).await.unwrap().unwrap().fetched_at, 1000);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.entries, stats.oldest_fetched_at), (3, Some(1000)));
        assert!(stats.disk_bytes > 0);
        assert_eq!(store.forget(&[1]).await.unwrap(), 2);
        assert_eq!(store.get(1, 10).await.unwrap(), None);
        assert!(store.get(2, 20).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn purging_goes_by_check_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = AnswerStore::open(dir.path(), None).await.unwrap();
        let rows: Vec<_> = (0..1200).map(|i| row(i, i, (i % 2) as u8, i)).collect();
        store.put(&rows).await.unwrap();
        // Check 0 before 1000: 500 rows, in steps.
        assert_eq!(store.purge(0, 1000, 300).await.unwrap(), 300);
        assert_eq!(store.purge(0, 1000, 300).await.unwrap(), 200);
        assert_eq!(store.purge(0, 1000, 300).await.unwrap(), 0);
        assert_eq!(store.stats().await.unwrap().entries, 700);
    }

    #[tokio::test]
    async fn a_corrupted_file_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ANSWERS_FILE), vec![0x5a; 64 * 1024]).unwrap();
        let (store, opened) = AnswerStore::open(dir.path(), None).await.unwrap();
        assert!(matches!(opened, Opened::Rebuilt(_)), "{opened:?}");
        store.put(&[row(1, 1, 0, 1)]).await.unwrap();
        assert!(store.get(1, 1).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_full_store_fails_writes_as_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = AnswerStore::open(dir.path(), Some(64 * 1024))
            .await
            .unwrap();
        let big: Vec<_> = (0..2000)
            .map(|i| AnswerRow {
                number: i,
                variant: i,
                answer: StoredAnswer {
                    check: 0,
                    fetched_at: i,
                    data: vec![7; 200],
                },
            })
            .collect();
        let error = store.put(&big).await.unwrap_err();
        assert!(is_full(&error), "{error}");
    }
}
