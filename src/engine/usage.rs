//! What each tenant's checks used, on its way to the usage ledger ([`UsageStore`]).
//!
//! Counted where it happens: a fresh vendor answer's billable call, cost and failure where the
//! vendor call completes (in the dispatcher, attributed to the caller that caused the call, and
//! counted even when that caller went away meanwhile: the call goes on and is billed), cache hits
//! and shared (joined) calls per caller when its check is answered. Increments are added up in
//! memory by (tenant, provider, check, China day) and written in one transaction every
//! [`FLUSH_EVERY`] by a writer task, at [`Usage::flush`] (a `GetUsage` flushes first, so that a
//! reader sees everything this replica counted before it asked) and at shutdown.
//!
//! A write that fails (the database unreachable, its disk full) loses nothing: the increments
//! are kept in memory, added to what is counted meanwhile (one entry per tenant, provider, check
//! and day, so the memory they take is bounded by those), and written by the next flush. The
//! database is then a [`Dependency`] that is down: logged once when it goes and once when the
//! ledger is written again, `phonecheck_dependency_up{dependency="database"}` 0 meanwhile, and
//! `phonecheck_usage_unwritten` says how many ledger rows wait in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::clock::Clock as _;
use crate::dependency::{Breaker, Dependency, Failure};
use crate::domain::{Check, Money};
use crate::store::{StoreError, UsageCounts, UsageKey, UsageQuery, UsageRow, UsageStore};

/// How often the writer task writes what was counted.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Increments waiting for the ledger, and the ledger they go to.
#[derive(Debug, Default)]
pub struct Usage {
    store: OnceLock<Arc<dyn UsageStore>>,
    pending: Mutex<HashMap<UsageKey, UsageCounts>>,
    /// Held while increments are taken and written, so that a flush returns only once every
    /// increment counted before it began is in the ledger (a writer task's flush in progress
    /// included).
    writing: tokio::sync::Mutex<()>,
    /// The ledger's database, as a dependency (set with the store).
    database: OnceLock<Dependency>,
}

/// Ledger rows (tenant, provider, check, day) whose increments wait in memory for the next write.
pub const USAGE_UNWRITTEN: &str = "phonecheck_usage_unwritten";

/// One vendor answer's share of the ledger.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageEvent {
    /// The vendor billed the call.
    pub billable: bool,
    /// What it cost.
    pub cost: Money,
    /// The answer came from the cache.
    pub cache_hit: bool,
    /// The answer came from another caller's call in flight.
    pub joined: bool,
    /// The vendor call failed.
    pub failed: bool,
}

impl Usage {
    /// Writes to `store` from now on, with a writer task every [`FLUSH_EVERY`] (which ends when
    /// the usage is dropped). Must be called within a Tokio runtime; a second store is ignored.
    pub fn attach(self: &Arc<Self>, store: Arc<dyn UsageStore>) {
        if self.store.set(store).is_err() {
            return;
        }
        // Every flush tries the database (there is no call to spare it): down at the first
        // failed write, back at the first that succeeds.
        let _ = self.database.set(Dependency::new(
            "database",
            Breaker {
                failures: 1,
                down_for: FLUSH_EVERY,
                probe_timeout: FLUSH_EVERY,
            },
        ));
        let usage: Weak<Usage> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(usage) = usage.upgrade() else { return };
                if let Err(e) = usage.flush().await {
                    // Logged once when the database goes down (Dependency), not every second.
                    tracing::debug!(error = %e, "usage ledger: write failed; kept for the next one");
                }
            }
        });
    }

    /// Whether a ledger is attached (without one, nothing is counted).
    pub fn enabled(&self) -> bool {
        self.store.get().is_some()
    }

    /// Counts `event` for `tenant`'s `check` answered by `provider`, today (China time).
    pub fn record(&self, tenant: &str, provider: &str, check: Check, event: UsageEvent) {
        if !self.enabled() {
            return;
        }
        let counts = UsageCounts {
            billable_calls: i64::from(event.billable),
            cost: if event.billable {
                event.cost
            } else {
                Money::ZERO
            },
            cache_hits: i64::from(event.cache_hit),
            joined_calls: i64::from(event.joined),
            failures: i64::from(event.failed),
        };
        if counts.is_empty() {
            return;
        }
        let key = UsageKey {
            tenant: tenant.to_owned(),
            provider: provider.to_owned(),
            check: check.as_str().to_owned(),
            day: crate::clock::SystemClock.now_china().date_naive(),
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .add(&counts);
    }

    /// Writes every increment counted so far to the ledger. On failure they are kept, added to
    /// whatever is counted meanwhile, for the next write.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let increments: Vec<(UsageKey, UsageCounts)> = taken.into_iter().collect();
        match store.add_usage(&increments).await {
            Ok(()) => {
                if let Some(database) = self.database.get() {
                    database.succeeded();
                }
                let left = self.pending.lock().unwrap_or_else(|e| e.into_inner()).len();
                metrics::gauge!(USAGE_UNWRITTEN).set(left as f64);
                Ok(())
            }
            Err(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (key, counts) in increments {
                    pending.entry(key).or_default().add(&counts);
                }
                metrics::gauge!(USAGE_UNWRITTEN).set(pending.len() as f64);
                drop(pending);
                if let Some(database) = self.database.get() {
                    database.failed(Failure::Unreachable, "usage ledger write failed");
                }
                Err(e)
            }
        }
    }
}

impl super::Engine {
    /// The engine with its usage counted in `store` (see [`Usage::attach`]). Must be called within
    /// a Tokio runtime.
    pub fn with_usage(self, store: Arc<dyn UsageStore>) -> super::Engine {
        self.usage.attach(store);
        self
    }

    /// Writes every usage increment counted so far to the ledger (at shutdown, and before the
    /// ledger is read).
    pub async fn flush_usage(&self) -> Result<(), StoreError> {
        self.usage.flush().await
    }

    /// The usage ledger's rows for `query`, after this replica's increments are written; `None`
    /// when the engine has no ledger.
    pub async fn usage(&self, query: &UsageQuery) -> Option<Result<Vec<UsageRow>, StoreError>> {
        let store = self.usage.store.get()?;
        Some(match self.usage.flush().await {
            Ok(()) => store.usage(query).await,
            Err(e) => Err(e),
        })
    }

    /// Counts an answer served to `tenant` from the cache or from another caller's call.
    pub(super) fn count_usage(
        &self,
        tenant: &str,
        provider: &str,
        check: Check,
        cache_hit: bool,
        joined: bool,
    ) {
        self.usage.record(
            tenant,
            provider,
            check,
            UsageEvent {
                cache_hit,
                joined,
                ..UsageEvent::default()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, UsagePeriod, UsageQuery};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A ledger whose database can be taken away.
    #[derive(Debug)]
    struct Flaky {
        store: SqliteStore,
        down: AtomicBool,
    }

    #[async_trait::async_trait]
    impl UsageStore for Flaky {
        async fn add_usage(
            &self,
            increments: &[(UsageKey, UsageCounts)],
        ) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Shared("the database is unreachable".into()));
            }
            self.store.add_usage(increments).await
        }

        async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
            self.store.usage(query).await
        }
    }

    #[tokio::test]
    async fn increments_that_cannot_be_written_are_kept_and_written_when_the_database_is_back() {
        let usage = Arc::new(Usage::default());
        let store = Arc::new(Flaky {
            store: SqliteStore::in_memory().await.unwrap(),
            down: AtomicBool::new(true),
        });
        usage.attach(store.clone());
        let billed = UsageEvent {
            billable: true,
            cost: "0.03".parse().unwrap(),
            ..UsageEvent::default()
        };
        usage.record("acme", "thinksms", Check::LineStatus, billed);
        assert!(usage.flush().await.is_err());
        let database = usage.database.get().unwrap();
        assert!(!database.is_up(), "down at the first failed write");
        usage.record("acme", "thinksms", Check::LineStatus, billed);
        assert!(usage.flush().await.is_err());
        assert_eq!(usage.pending.lock().unwrap().len(), 1, "kept, added up");

        store.down.store(false, Ordering::SeqCst);
        usage.flush().await.unwrap();
        assert!(database.is_up());
        let today = crate::clock::SystemClock.now_china().date_naive();
        let rows = store
            .usage(&UsageQuery {
                from: today - chrono::Duration::days(1),
                to: today,
                tenant: None,
                provider: None,
                check: None,
                period: UsagePeriod::Day,
                limit: 10,
            })
            .await
            .unwrap();
        let billed: i64 = rows.iter().map(|r| r.counts.billable_calls).sum();
        assert_eq!(billed, 2, "nothing paid lost: {rows:?}");
    }

    #[tokio::test]
    async fn increments_add_up_in_memory_and_land_at_a_flush() {
        let usage = Arc::new(Usage::default());
        let price: Money = "0.03".parse().unwrap();
        let billed = UsageEvent {
            billable: true,
            cost: price,
            ..UsageEvent::default()
        };
        // Without a ledger nothing is kept.
        usage.record("acme", "thinksms", Check::LineStatus, billed);
        assert!(usage.pending.lock().unwrap().is_empty());

        let store = Arc::new(SqliteStore::in_memory().await.unwrap());
        usage.attach(store.clone());
        for _ in 0..3 {
            usage.record("acme", "thinksms", Check::LineStatus, billed);
        }
        usage.record(
            "acme",
            "thinksms",
            Check::LineStatus,
            UsageEvent {
                cache_hit: true,
                ..UsageEvent::default()
            },
        );
        // A cost without a charge is not counted; nothing at all is not a row.
        usage.record(
            "other",
            "thinksms",
            Check::LineStatus,
            UsageEvent {
                cost: price,
                ..UsageEvent::default()
            },
        );
        assert_eq!(usage.pending.lock().unwrap().len(), 1);
        usage.flush().await.unwrap();
        assert!(usage.pending.lock().unwrap().is_empty());
        usage.record("acme", "thinksms", Check::LineStatus, billed);
        usage.flush().await.unwrap();

        // Across a midnight in China the counts are on two days: read both, and add them up.
        let today = crate::clock::SystemClock.now_china().date_naive();
        let rows = store
            .usage(&UsageQuery {
                from: today - chrono::Duration::days(1),
                to: today,
                tenant: None,
                provider: None,
                check: None,
                period: UsagePeriod::Day,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(!rows.is_empty() && rows.len() <= 2, "{rows:?}");
        let mut counts = UsageCounts::default();
        for row in &rows {
            assert_eq!(
                (row.tenant.as_str(), row.check.as_str()),
                ("acme", "line-status")
            );
            counts.add(&row.counts);
        }
        assert_eq!(
            counts,
            UsageCounts {
                billable_calls: 4,
                cost: price.times(4),
                cache_hits: 1,
                joined_calls: 0,
                failures: 0,
            }
        );
    }
}
