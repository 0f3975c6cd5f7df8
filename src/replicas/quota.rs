//! A vendor quota kept by every replica together: a GCRA (generic cell rate algorithm) in one
//! Redis key per provider, updated by a Lua script, atomically, with Redis's own clock (replicas'
//! clocks do not matter). When Redis cannot be reached the call fails closed (`STATE_UNAVAILABLE`,
//! not billed, retried by the usual policy): a replica on its own cannot know what the others
//! spend. With `[redis] on_unreachable = "local_share"` it goes on instead within its share of
//! the quota (`quota ÷ expected_replicas`), in a token bucket of its own.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::{Shared, failed};
use crate::providers::{ProviderError, QuotaConfig};

/// GCRA over Redis time, in microseconds. KEYS[1]: the bucket; ARGV[1]: emission interval;
/// ARGV[2]: burst tolerance; ARGV[3]: `reserve` (each caller takes the next slot and is told how
/// long to wait for it, so that no slot is lost to callers racing for it) or `now` (a slot is
/// taken only when it is free now). Returns the wait (0: go now; with `now`, nothing was taken
/// when above 0).
pub(super) static GCRA: LazyLock<Arc<redis::Script>> = LazyLock::new(|| {
    Arc::new(redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > 0 and ARGV[3] == 'now' then return math.ceil(wait) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return math.ceil(wait)
",
    ))
});

/// One provider's quota, shared by every replica on the same Redis.
#[derive(Clone)]
pub struct SharedQuota {
    shared: Shared,
    key: String,
    interval: u64,
    tolerance: u64,
    /// This replica's share of the quota, used while Redis cannot be reached (`local_share`).
    local: Option<Arc<governor::DefaultDirectRateLimiter>>,
}

impl std::fmt::Debug for SharedQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuota")
            .field("key", &self.key)
            .field("local_share", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

impl SharedQuota {
    pub(super) fn new(shared: Shared, provider: &str, quota: QuotaConfig) -> Option<SharedQuota> {
        if quota.requests_per_second <= 0.0 {
            return None;
        }
        let interval = (1_000_000.0 / quota.requests_per_second).round() as u64;
        let key = format!("{}:quota:{provider}", shared.config().key_prefix);
        Some(SharedQuota {
            shared,
            key,
            interval,
            tolerance: interval * u64::from(quota.burst.max(1) - 1),
            local: None,
        })
    }

    /// Goes on within `quota ÷ replicas` on this replica while Redis cannot be reached.
    pub(super) fn with_local_share(mut self, quota: QuotaConfig, replicas: u32) -> SharedQuota {
        let replicas = replicas.max(1);
        let share = QuotaConfig {
            requests_per_second: quota.requests_per_second / f64::from(replicas),
            burst: (quota.burst / replicas).max(1),
        };
        self.local = share
            .governor()
            .map(|q| Arc::new(governor::RateLimiter::direct(q)));
        self
    }

    /// The bucket's key, emission interval and burst tolerance (microseconds).
    pub(super) fn parts(&self) -> (String, u64, u64) {
        (self.key.clone(), self.interval, self.tolerance)
    }

    /// Reserves the next slot of the shared bucket and waits for it; when Redis is unreachable,
    /// fails closed, or waits for this replica's share (`local_share`). (A slot reserved by a
    /// caller that then goes away is not used: the bucket errs on the side of the vendor's
    /// limit.)
    pub async fn until_ready(&self) -> Result<(), ProviderError> {
        let mut connection = self.shared.connection();
        let reserved: Result<i64, _> = GCRA
            .key(&self.key)
            .arg(self.interval)
            .arg(self.tolerance)
            .arg("reserve")
            .invoke_async(&mut connection)
            .await;
        let wait = match (reserved, &self.local) {
            (Ok(wait), _) => wait,
            (Err(e), Some(local)) => {
                failed("quota", &e);
                metrics::counter!(crate::metrics::QUOTA_LOCAL_SHARE).increment(1);
                local.until_ready().await;
                return Ok(());
            }
            (Err(e), None) => {
                return Err(ProviderError::State(format!(
                    "the shared quota (Redis) is unreachable, so no call is made: {}",
                    failed("quota", &e)
                )));
            }
        };
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
        Ok(())
    }
}
