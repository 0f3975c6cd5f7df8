//! Pending asynchronous submissions (caih) in Redis, so that the replica that submitted a number
//! need not be the one that collects its labels, and no two replicas submit it twice.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Shared;
use crate::store::{Claim, PendingStore, PendingSubmission, StoreError, from_millis, millis};

/// How long a submission is remembered. caih labels within hours; a number it has forgotten by
/// the time it is asked again is submitted again.
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Claims a number unless a submission exists that is done (has a batch id) or still fresh.
/// KEYS[1]: the number's key. ARGV[1]: the new claim; ARGV[2]: claims made before this (Unix ms)
/// are stale; ARGV[3]: time to live (ms). Returns nil when claimed, else the existing submission.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if v then
  local p = cjson.decode(v)
  if p.batch_id ~= cjson.null or tonumber(p.submitted_at) > tonumber(ARGV[2]) then return v end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
",
    )
});

#[derive(Serialize, Deserialize)]
struct Stored {
    batch_id: Option<String>,
    /// Unix milliseconds.
    submitted_at: i64,
}

impl From<Stored> for PendingSubmission {
    fn from(s: Stored) -> PendingSubmission {
        PendingSubmission {
            batch_id: s.batch_id,
            submitted_at: from_millis(s.submitted_at),
        }
    }
}

/// [`PendingStore`] in Redis; numbers appear only hashed.
#[derive(Debug, Clone)]
pub struct RedisPendingStore {
    shared: Shared,
}

fn failed(e: redis::RedisError) -> StoreError {
    StoreError::Shared(super::failed("pending", &e))
}

fn encode(stored: &Stored) -> String {
    serde_json::to_string(stored).unwrap_or_default()
}

impl RedisPendingStore {
    pub(super) fn new(shared: Shared) -> RedisPendingStore {
        RedisPendingStore { shared }
    }

    fn key(&self, provider: &str, number: &str) -> String {
        self.shared
            .key("pending", &[provider.as_bytes(), number.as_bytes()])
    }
}

#[async_trait]
impl PendingStore for RedisPendingStore {
    async fn claim(
        &self,
        provider: &str,
        number: &str,
        stale_after: Duration,
    ) -> Result<Claim, StoreError> {
        let now = SystemTime::now();
        let claim = Stored {
            batch_id: None,
            submitted_at: millis(now),
        };
        let stale_before = millis(
            now.checked_sub(stale_after)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let existing: Option<String> = CLAIM
            .key(self.key(provider, number))
            .arg(encode(&claim))
            .arg(stale_before)
            .arg(KEEP.as_millis() as u64)
            .invoke_async(&mut self.shared.connection())
            .await
            .map_err(failed)?;
        Ok(match existing {
            None => Claim::Claimed,
            Some(v) => Claim::Pending(
                serde_json::from_str::<Stored>(&v)
                    .map(Into::into)
                    .map_err(|e| StoreError::Shared(format!("a pending submission: {e}")))?,
            ),
        })
    }

    async fn submitted(
        &self,
        provider: &str,
        numbers: &[String],
        batch_id: &str,
    ) -> Result<(), StoreError> {
        let value = encode(&Stored {
            batch_id: Some(batch_id.to_owned()),
            submitted_at: millis(SystemTime::now()),
        });
        let mut pipe = redis::pipe();
        for number in numbers {
            pipe.set_ex(self.key(provider, number), &value, KEEP.as_secs())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.shared.connection())
            .await
            .map_err(failed)
    }

    async fn release(&self, provider: &str, numbers: &[String]) -> Result<(), StoreError> {
        if numbers.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = numbers.iter().map(|n| self.key(provider, n)).collect();
        self.shared
            .connection()
            .del::<_, ()>(keys)
            .await
            .map_err(failed)
    }

    async fn get(
        &self,
        provider: &str,
        number: &str,
    ) -> Result<Option<PendingSubmission>, StoreError> {
        let value: Option<String> = self
            .shared
            .connection()
            .get(self.key(provider, number))
            .await
            .map_err(failed)?;
        Ok(value
            .and_then(|v| serde_json::from_str::<Stored>(&v).ok())
            .map(Into::into))
    }
}
