//! State shared by replicas through Redis, when `[redis]` is configured: for now the vendor
//! quota, so that N replicas together keep within one vendor account's rate.
//!
//! The quota is a GCRA (generic cell rate algorithm) kept in one Redis key per provider and
//! updated by a Lua script, atomically, with Redis's own clock (replicas' clocks do not matter).
//! When Redis cannot be reached the call fails closed (`STATE_UNAVAILABLE`, not billed, retried by
//! the usual policy): a replica on its own cannot know what the others spend.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::providers::{ProviderError, QuotaConfig};

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS).
    pub url: String,
    /// Prefix of every key phonecheck writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis command.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "phonecheck".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

/// GCRA over Redis time, in microseconds, reserving: each caller takes the next slot and is told
/// how long to wait for it, so that no slot is lost to callers racing for it. KEYS[1]: the
/// bucket; ARGV[1]: emission interval; ARGV[2]: burst tolerance. Returns the wait (0: go now).
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return math.ceil(wait)
";

/// A connection to the shared state.
#[derive(Clone)]
pub struct Shared {
    connection: ConnectionManager,
    config: RedisConfig,
    gcra: Arc<redis::Script>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("key_prefix", &self.config.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects (the connection is re-established by itself after Redis comes back).
    pub async fn connect(config: &RedisConfig) -> Result<Shared, redis::RedisError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout));
        let connection = ConnectionManager::new_with_config(client, manager_config).await?;
        Ok(Shared {
            connection,
            config: config.clone(),
            gcra: Arc::new(redis::Script::new(GCRA)),
        })
    }

    /// The shared bucket of a provider's quota; `None` when the quota is unlimited.
    pub fn quota(&self, provider: &str, quota: QuotaConfig) -> Option<SharedQuota> {
        if quota.requests_per_second <= 0.0 {
            return None;
        }
        let interval = (1_000_000.0 / quota.requests_per_second).round() as u64;
        Some(SharedQuota {
            shared: self.clone(),
            key: format!("{}:quota:{provider}", self.config.key_prefix),
            interval,
            tolerance: interval * u64::from(quota.burst.max(1) - 1),
        })
    }
}

/// One provider's quota, shared by every replica on the same Redis.
#[derive(Debug, Clone)]
pub struct SharedQuota {
    shared: Shared,
    key: String,
    interval: u64,
    tolerance: u64,
}

impl SharedQuota {
    /// Reserves the next slot of the shared bucket and waits for it; fails closed when Redis is
    /// unreachable. (A slot reserved by a caller that then goes away is not used: the bucket errs
    /// on the side of the vendor's limit.)
    pub async fn until_ready(&self) -> Result<(), ProviderError> {
        let mut connection = self.shared.connection.clone();
        let wait: i64 = self
            .shared
            .gcra
            .key(&self.key)
            .arg(self.interval)
            .arg(self.tolerance)
            .invoke_async(&mut connection)
            .await
            .map_err(|e| {
                ProviderError::State(format!(
                    "the shared quota (Redis) is unreachable, so no call is made: {}",
                    e.kind_name()
                ))
            })?;
        if wait > 0 {
            tokio::time::sleep(Duration::from_micros(wait as u64)).await;
        }
        Ok(())
    }
}

trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    /// The error's kind without its details (which may carry the server's address).
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}
