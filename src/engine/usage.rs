//! What each tenant's checks used, on its way to the usage ledger ([`UsageStore`]).
//!
//! Counted where it happens: a fresh vendor answer's billable call, cost and failure where the
//! vendor call completes (in the dispatcher, attributed to the caller that caused the call, and
//! counted even when that caller went away meanwhile: the call goes on and is billed), cache hits
//! and shared (joined) calls per caller when its check is answered. Increments are added up in
//! memory by (tenant, provider, check, China day) and written in one transaction every
//! [`FLUSH_EVERY`] by a writer task, at [`Usage::flush`] (a `GetUsage` flushes first, so that a
//! reader sees everything this replica counted before it asked) and at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::domain::{Check, Money};
use crate::providers::Clock as _;
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
}

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
        let usage: Weak<Usage> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(usage) = usage.upgrade() else { return };
                if let Err(e) = usage.flush().await {
                    tracing::warn!(error = %e, "usage ledger: write failed; kept for the next one");
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
            day: crate::providers::SystemClock.now_china().date_naive(),
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
            Ok(()) => Ok(()),
            Err(e) => {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (key, counts) in increments {
                    pending.entry(key).or_default().add(&counts);
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
        let today = crate::providers::SystemClock.now_china().date_naive();
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
