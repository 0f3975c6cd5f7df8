//! Budget taken from the budget store in blocks: a process holds room in the store (Redis or the
//! database) a block at a time and serves its requests' holds and settlements from the block in
//! memory, so that a request costs no round trip to the store. What was billed is written back
//! every [`FLUSH_EVERY`], and room a process is not using is given back.
//!
//! Everything a process has taken is counted in the store as held, so processes together never
//! pass a budget. What a block costs: while a process is busy it may keep up to one block (a
//! 64th of the budget, at most 64 requests' worth) that another process could have used; a process
//! that dies counts its unreturned room as spent until the day ends, as a caller that goes away
//! does. Budgets too small for a block are held request by request, exactly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tracing::warn;

use crate::domain::Money;
use crate::store::{BudgetLimit, BudgetStore, DayUse, Spend, StoreError};

/// How often billed amounts are written to the store and unused room is given back.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Requests' worth of budget a block takes at most.
const BLOCK_REQUESTS: u64 = 64;
/// A block is at most this share of a budget (1/64).
const BLOCK_SHARE: u64 = 64;

/// One tenant's day in this process.
#[derive(Debug, Default, Clone, Copy)]
struct Block {
    /// Held in the store for this process.
    reserved: Spend,
    /// Held by requests in flight (within `reserved`).
    in_use: Spend,
    /// Billed and settled here, still held in the store (within `reserved`).
    billed: Spend,
    /// Billed on this day by requests held on the day before (midnight in between): not held in
    /// the store, to add to what was spent.
    carried: Spend,
}

impl Block {
    fn free(&self) -> Spend {
        self.reserved.minus(self.in_use.plus(self.billed))
    }
}

fn covers(room: Spend, want: Spend) -> bool {
    room.calls >= want.calls && room.cost >= want.cost
}

/// How much to take from the store for a request of `want` under `limit`: a block when the
/// budget is large enough for one, else just `want`.
fn block_for(want: Spend, limit: BudgetLimit) -> Spend {
    let calls = want.calls.saturating_mul(BLOCK_REQUESTS);
    let cost = want.cost.times(BLOCK_REQUESTS);
    let block = Spend {
        calls: limit.calls.map_or(calls, |l| calls.min(l / BLOCK_SHARE)),
        cost: limit.cost.map_or(cost, |l| {
            cost.min(Money::from_nanos(l.nanos() / BLOCK_SHARE as i64))
        }),
    };
    if covers(block, want) { block } else { want }
}

/// A [`BudgetStore`] that takes room from another in blocks (see the module's docs).
#[derive(Debug)]
pub struct Reserving {
    store: Arc<dyn BudgetStore>,
    days: Mutex<HashMap<(String, String), Block>>,
    /// One trip to the store at a time: requests that find no room wait for the block another
    /// is taking instead of each taking one.
    taking: tokio::sync::Mutex<()>,
}

impl Reserving {
    /// Over `store`; writes back every [`FLUSH_EVERY`] (when made within a Tokio runtime; else
    /// only when [`Reserving::flush`] is called).
    pub fn new(store: Arc<dyn BudgetStore>) -> Arc<Reserving> {
        let reserving = Arc::new(Reserving {
            store,
            days: Mutex::default(),
            taking: tokio::sync::Mutex::new(()),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(flush_every(Arc::downgrade(&reserving)));
        }
        reserving
    }

    fn days(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Block>> {
        self.days.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what was billed to the store and gives back the room no request uses, for every
    /// tenant and day; what cannot be written is kept for the next time.
    pub async fn flush(&self) {
        let today = super::today();
        // Taken out of the blocks first, under the lock: room given back can no longer be handed
        // to a request here while the store is told (and, until it is, it counts there as held).
        let mut writes = Vec::new();
        {
            let mut days = self.days();
            days.retain(|(_, day), block| {
                !(block.reserved.is_zero() && block.in_use.is_zero() && block.carried.is_zero())
                    || *day == today
            });
            for ((tenant, day), block) in days.iter_mut() {
                // The room no request uses goes back when the tenant is idle here, or the day is
                // over.
                let unused = if block.in_use.is_zero() || *day != today {
                    block.free()
                } else {
                    Spend::default()
                };
                let held = block.billed.plus(unused);
                let spent = block.billed.plus(block.carried);
                if held.is_zero() && spent.is_zero() {
                    continue;
                }
                let taken = (held, block.billed, block.carried);
                block.reserved = block.reserved.minus(held);
                block.billed = Spend::default();
                block.carried = Spend::default();
                writes.push((tenant.clone(), day.clone(), taken, spent));
            }
        }
        for (tenant, day, (held, billed, carried), spent) in writes {
            if let Err(e) = self.store.settle(&tenant, &day, held, spent).await {
                warn!(tenant = %tenant, error = %e, "budget: billed amounts not written yet; tried again");
                // Put back as it was: still held in the store, still this process's.
                let mut days = self.days();
                let block = days.entry((tenant, day)).or_default();
                block.reserved = block.reserved.plus(held);
                block.billed = block.billed.plus(billed);
                block.carried = block.carried.plus(carried);
            }
        }
    }
}

async fn flush_every(reserving: Weak<Reserving>) {
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(reserving) = reserving.upgrade() else {
            return;
        };
        reserving.flush().await;
    }
}

#[async_trait]
impl BudgetStore for Reserving {
    async fn hold(
        &self,
        tenant: &str,
        day: &str,
        want: Spend,
        limit: BudgetLimit,
    ) -> Result<bool, StoreError> {
        let key = (tenant.to_owned(), day.to_owned());
        let from_block = || {
            let mut days = self.days();
            let block = days.entry(key.clone()).or_default();
            let fits = covers(block.free(), want);
            if fits {
                block.in_use = block.in_use.plus(want);
            }
            fits
        };
        if from_block() {
            return Ok(true);
        }
        let _taking = self.taking.lock().await;
        // Another request may have taken a block meanwhile, or settled.
        if from_block() {
            return Ok(true);
        }
        let block = block_for(want, limit);
        let taken = if block != want && self.store.hold(tenant, day, block, limit).await? {
            block
        } else if self.store.hold(tenant, day, want, limit).await? {
            want
        } else {
            return Ok(false);
        };
        let mut days = self.days();
        let entry = days.entry(key).or_default();
        entry.reserved = entry.reserved.plus(taken);
        entry.in_use = entry.in_use.plus(want);
        Ok(true)
    }

    async fn settle(
        &self,
        tenant: &str,
        day: &str,
        held: Spend,
        billed: Spend,
    ) -> Result<(), StoreError> {
        let mut days = self.days();
        let block = days.entry((tenant.to_owned(), day.to_owned())).or_default();
        let released = Spend {
            calls: held.calls.min(block.in_use.calls),
            cost: held.cost.min(block.in_use.cost),
        };
        block.in_use = block.in_use.minus(released);
        // What was billed within the hold stays in the block's room until written; beyond it
        // (a request held on the day before), it is carried.
        let within = Spend {
            calls: billed.calls.min(released.calls),
            cost: billed.cost.min(released.cost),
        };
        block.billed = block.billed.plus(within);
        block.carried = block.carried.plus(billed.minus(within));
        Ok(())
    }

    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError> {
        let stored = self.store.day_use(tenant, day).await?;
        let block = self
            .days()
            .get(&(tenant.to_owned(), day.to_owned()))
            .copied()
            .unwrap_or_default();
        // The store counts this process's whole block as held: of it, what was billed is spent
        // and what no request uses is room.
        Ok(DayUse {
            spent: stored.spent.plus(block.billed).plus(block.carried),
            held: stored.held.minus(block.billed.plus(block.free())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryBudgets;

    fn calls(n: u64) -> Spend {
        Spend {
            calls: n,
            cost: Money::ZERO,
        }
    }

    const DAY: &str = "2026-12-01";

    #[tokio::test]
    async fn processes_taking_blocks_never_pass_the_budget_together() {
        let store: Arc<dyn BudgetStore> = Arc::new(MemoryBudgets::default());
        let limit = BudgetLimit {
            calls: Some(1_000),
            cost: None,
        };
        let (a, b) = (Reserving::new(store.clone()), Reserving::new(store.clone()));
        let mut granted = 0;
        for i in 0..1_500 {
            let process = if i % 3 == 0 { &a } else { &b };
            if process.hold("acme", DAY, calls(1), limit).await.unwrap() {
                granted += 1;
                process
                    .settle("acme", DAY, calls(1), calls(1))
                    .await
                    .unwrap();
            }
        }
        assert_eq!(granted, 1_000, "every call of the budget, and no more");
        // A block is 1/64 of the budget here (15 calls): few trips to the store.
        a.flush().await;
        b.flush().await;
        let day = store.day_use("acme", DAY).await.unwrap();
        assert_eq!((day.spent.calls, day.held.calls), (1_000, 0));
    }

    #[tokio::test]
    async fn unused_room_goes_back_and_billing_is_written() {
        let store: Arc<dyn BudgetStore> = Arc::new(MemoryBudgets::default());
        let limit = BudgetLimit {
            calls: Some(6_400),
            cost: None,
        };
        let a = Reserving::new(store.clone());
        assert!(a.hold("acme", DAY, calls(1), limit).await.unwrap());
        // A block of 64 taken for one request.
        assert_eq!(store.day_use("acme", DAY).await.unwrap().held.calls, 64);
        // As seen through the process: one held, the rest is room.
        assert_eq!(a.day_use("acme", DAY).await.unwrap().used().calls, 1);
        a.settle("acme", DAY, calls(1), calls(1)).await.unwrap();
        a.flush().await;
        let day = store.day_use("acme", DAY).await.unwrap();
        assert_eq!((day.spent.calls, day.held.calls), (1, 0));
        // Small budgets are held request by request.
        let small = BudgetLimit {
            calls: Some(10),
            cost: None,
        };
        assert!(a.hold("beta", DAY, calls(1), small).await.unwrap());
        assert_eq!(store.day_use("beta", DAY).await.unwrap().held.calls, 1);
    }
}
