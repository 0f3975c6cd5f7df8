//! Tenants' daily budgets as the replicas keep them together: per tenant and China-time day,
//! what was billed and what requests in flight hold, in calls and in money. The budget layer
//! decides what to hold; a [`BudgetStore`] makes each hold atomic against every other process
//! using the same store (SQL here, Redis in `replicas`).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::StoreError;
use crate::domain::Money;

/// Billable calls and their cost, together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spend {
    /// Billable vendor calls.
    pub calls: u64,
    /// What they cost.
    pub cost: Money,
}

impl Spend {
    /// The sum.
    pub fn plus(self, other: Spend) -> Spend {
        Spend {
            calls: self.calls.saturating_add(other.calls),
            cost: self.cost.saturating_add(other.cost),
        }
    }

    /// The difference, zero at least.
    pub fn minus(self, other: Spend) -> Spend {
        Spend {
            calls: self.calls.saturating_sub(other.calls),
            cost: self.cost.saturating_sub(other.cost),
        }
    }

    /// Whether nothing.
    pub fn is_zero(self) -> bool {
        self.calls == 0 && self.cost.is_zero()
    }

    /// The calls, as stored.
    pub fn calls_i64(self) -> i64 {
        i64::try_from(self.calls).unwrap_or(i64::MAX)
    }
}

/// A daily budget: in calls, in money, or both (absent: no limit of that kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetLimit {
    /// Billable calls per day.
    pub calls: Option<u64>,
    /// Cost per day.
    pub cost: Option<Money>,
}

impl BudgetLimit {
    /// Whether `used` plus `want` stays within the limit.
    pub fn allows(&self, used: Spend, want: Spend) -> bool {
        let total = used.plus(want);
        self.calls.is_none_or(|limit| total.calls <= limit)
            && self.cost.is_none_or(|limit| total.cost <= limit)
    }

    /// The call limit as bound in SQL and Lua: -1 for none.
    pub fn calls_arg(&self) -> i64 {
        self.calls
            .map_or(-1, |c| i64::try_from(c).unwrap_or(i64::MAX))
    }

    /// The money limit in nanos as bound in SQL and Lua: -1 for none.
    pub fn cost_arg(&self) -> i64 {
        self.cost.map_or(-1, Money::nanos)
    }
}

/// A tenant's day: billed, and held by requests in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUse {
    /// Billed.
    pub spent: Spend,
    /// Held by requests in flight (or left held by a process that died mid-request).
    pub held: Spend,
}

impl DayUse {
    /// Spent and held together: what a new hold must fit beside.
    pub fn used(&self) -> Spend {
        self.spent.plus(self.held)
    }
}

/// Where tenants' budgets are kept. `day` is the China-time date (`YYYY-MM-DD`).
#[async_trait]
pub trait BudgetStore: Send + Sync + std::fmt::Debug {
    /// Holds `want` for `tenant` on `day` when what is spent and held with it stays within
    /// `limit`, atomically with every other process using this store. `Ok(false)`: no room.
    async fn hold(
        &self,
        tenant: &str,
        day: &str,
        want: Spend,
        limit: BudgetLimit,
    ) -> Result<bool, StoreError>;

    /// Ends a hold of `held` taken on `day`, counting `billed` as spent.
    async fn settle(
        &self,
        tenant: &str,
        day: &str,
        held: Spend,
        billed: Spend,
    ) -> Result<(), StoreError>;

    /// What `tenant` spent and holds on `day`.
    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError>;
}

/// Budgets in this process's memory only (unit tests, and tools that keep no store).
#[derive(Debug, Default)]
pub struct MemoryBudgets {
    days: Mutex<HashMap<(String, String), DayUse>>,
}

#[async_trait]
impl BudgetStore for MemoryBudgets {
    async fn hold(
        &self,
        tenant: &str,
        day: &str,
        want: Spend,
        limit: BudgetLimit,
    ) -> Result<bool, StoreError> {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let entry = days.entry((tenant.to_owned(), day.to_owned())).or_default();
        if !limit.allows(entry.used(), want) {
            return Ok(false);
        }
        entry.held = entry.held.plus(want);
        Ok(true)
    }

    async fn settle(
        &self,
        tenant: &str,
        day: &str,
        held: Spend,
        billed: Spend,
    ) -> Result<(), StoreError> {
        let mut days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        let entry = days.entry((tenant.to_owned(), day.to_owned())).or_default();
        entry.held = entry.held.minus(held);
        entry.spent = entry.spent.plus(billed);
        Ok(())
    }

    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError> {
        let days = self.days.lock().unwrap_or_else(|e| e.into_inner());
        Ok(days
            .get(&(tenant.to_owned(), day.to_owned()))
            .copied()
            .unwrap_or_default())
    }
}
