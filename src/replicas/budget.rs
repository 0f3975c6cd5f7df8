//! Tenants' daily budgets and request rates kept by every replica together: one Redis hash per
//! tenant and China-time day for the budget (held and settled by Lua scripts, atomically), and
//! one GCRA bucket per tenant for the rate. When Redis cannot be reached nothing passes: a
//! replica alone cannot know what the others spent.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;

use super::{Shared, failed};
use crate::budget::{LimitError, RateBucket, RateSource};
use crate::domain::Money;
use crate::quota::QuotaConfig;
use crate::store::{BudgetLimit, BudgetStore, DayUse, Spend, StoreError};

/// How long a day's hash outlives the day (renewed at each hold): a day and a half past it.
const DAY_TTL_SECONDS: u64 = 3 * 24 * 3600;

/// KEYS[1]: the day's hash; ARGV: calls, nanos wanted; call and nanos limits (-1: none); TTL.
/// Holds and returns 1, or returns 0 when spent + held + wanted would pass a limit. (Lua numbers
/// are doubles: exact to 2^53 nanos, nine million units a day; `daily_budget` is bounded below
/// that, and `HINCRBY` is given the caller's integers as written.)
static HOLD: LazyLock<Arc<redis::Script>> = LazyLock::new(|| {
    Arc::new(redis::Script::new(
        r"
local v = redis.call('HMGET', KEYS[1], 'sc', 'hc', 'sn', 'hn')
local sc, hc = tonumber(v[1]) or 0, tonumber(v[2]) or 0
local sn, hn = tonumber(v[3]) or 0, tonumber(v[4]) or 0
local wc, wn = tonumber(ARGV[1]), tonumber(ARGV[2])
local lc, ln = tonumber(ARGV[3]), tonumber(ARGV[4])
if lc >= 0 and sc + hc + wc > lc then return 0 end
if ln >= 0 and sn + hn + wn > ln then return 0 end
redis.call('HINCRBY', KEYS[1], 'hc', wc)
redis.call('HINCRBY', KEYS[1], 'hn', wn)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
",
    ))
});

/// KEYS[1]: the day's hash; ARGV: calls, nanos held; calls, nanos billed. What is billed is
/// added first, and only amounts above zero are sent to `HINCRBY` as integers written out in
/// full (Redis 7.0 refuses a Lua `-0`, and Lua would write large numbers with an exponent).
static SETTLE: LazyLock<Arc<redis::Script>> = LazyLock::new(|| {
    Arc::new(redis::Script::new(
        r"
redis.call('HINCRBY', KEYS[1], 'sc', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'sn', ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'hc', 'hn')
local hc = math.min(tonumber(v[1]) or 0, tonumber(ARGV[1]))
local hn = math.min(tonumber(v[2]) or 0, tonumber(ARGV[2]))
if hc > 0 then redis.call('HINCRBY', KEYS[1], 'hc', string.format('-%.0f', hc)) end
if hn > 0 then redis.call('HINCRBY', KEYS[1], 'hn', string.format('-%.0f', hn)) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
",
    ))
});

/// Tenants' daily budgets in Redis.
#[derive(Debug, Clone)]
pub struct RedisBudgets {
    shared: Shared,
}

impl RedisBudgets {
    pub(super) fn new(shared: Shared) -> RedisBudgets {
        RedisBudgets { shared }
    }

    fn key(&self, tenant: &str, day: &str) -> String {
        // Tenant names are configuration, not personal data; the day ends the key, so a name
        // with colons in it cannot be mistaken for another tenant's day.
        format!(
            "{}:budget:{}:{day}",
            self.shared.config().key_prefix,
            hex::encode(tenant)
        )
    }
}

fn unreachable(e: &redis::RedisError) -> StoreError {
    StoreError::Shared(failed("budget", e))
}

#[async_trait]
impl BudgetStore for RedisBudgets {
    async fn hold(
        &self,
        tenant: &str,
        day: &str,
        want: Spend,
        limit: BudgetLimit,
    ) -> Result<bool, StoreError> {
        let held: i64 = HOLD
            .key(self.key(tenant, day))
            .arg(want.calls_i64())
            .arg(want.cost.nanos())
            .arg(limit.calls_arg())
            .arg(limit.cost_arg())
            .arg(DAY_TTL_SECONDS)
            .invoke_async(&mut self.shared.connection())
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(held == 1)
    }

    async fn settle(
        &self,
        tenant: &str,
        day: &str,
        held: Spend,
        billed: Spend,
    ) -> Result<(), StoreError> {
        let _: i64 = SETTLE
            .key(self.key(tenant, day))
            .arg(held.calls_i64())
            .arg(held.cost.nanos())
            .arg(billed.calls_i64())
            .arg(billed.cost.nanos())
            .arg(DAY_TTL_SECONDS)
            .invoke_async(&mut self.shared.connection())
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(())
    }

    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError> {
        let values: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(self.key(tenant, day))
            .arg(&["sc", "hc", "sn", "hn"])
            .query_async(&mut self.shared.connection())
            .await
            .map_err(|e| unreachable(&e))?;
        let at = |i: usize| values.get(i).copied().flatten().unwrap_or(0).max(0);
        Ok(DayUse {
            spent: Spend {
                calls: at(0) as u64,
                cost: Money::from_nanos(at(2)),
            },
            held: Spend {
                calls: at(1) as u64,
                cost: Money::from_nanos(at(3)),
            },
        })
    }
}

/// A tenant's request rate kept by every replica together.
#[derive(Debug, Clone)]
pub struct SharedRate {
    /// Paced requests reserve their slot, like a vendor quota.
    quota: super::SharedQuota,
    shared: Shared,
    key: String,
    interval: u64,
    tolerance: u64,
}

impl RateSource for Shared {
    fn bucket(&self, tenant: &str, quota: QuotaConfig) -> Option<Arc<dyn RateBucket>> {
        let name = format!("tenant:{}", hex::encode(tenant));
        let bucket = super::SharedQuota::new(self.clone(), &name, quota)?;
        let (key, interval, tolerance) = bucket.parts();
        Some(Arc::new(SharedRate {
            quota: bucket,
            shared: self.clone(),
            key,
            interval,
            tolerance,
        }))
    }
}

fn rate_unavailable(why: String) -> LimitError {
    LimitError::Unavailable {
        what: "rate limit",
        why,
    }
}

#[async_trait]
impl RateBucket for SharedRate {
    async fn try_take(&self) -> Result<(), LimitError> {
        let wait: i64 = super::quota::GCRA
            .key(&self.key)
            .arg(self.interval)
            .arg(self.tolerance)
            .arg("now")
            .invoke_async(&mut self.shared.connection())
            .await
            .map_err(|e| {
                rate_unavailable(format!("Redis cannot be reached ({})", failed("rate", &e)))
            })?;
        if wait > 0 {
            return Err(LimitError::RateLimited(Duration::from_micros(wait as u64)));
        }
        Ok(())
    }

    fn per_second(&self) -> f64 {
        1_000_000.0 / self.interval.max(1) as f64
    }

    async fn take(&self) -> Result<(), LimitError> {
        self.quota
            .until_ready()
            .await
            .map_err(|e| rate_unavailable(e.to_string()))
    }
}
