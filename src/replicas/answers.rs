//! Answers shared by replicas: the answer cache in Redis, and single-flight across replicas.
//!
//! A replica that is about to pay for a number first looks in the shared cache, then takes a short
//! lock on the (provider, check, number) with `SET NX PX`. The replica holding the lock calls the
//! vendor; when it is done it stores the answer, releases the lock and publishes on the answer's
//! channel, in one script. The others wait for that publication (one `PSUBSCRIBE` connection per
//! replica) and read the answer from the cache; they also look at the lock every
//! [`POLL`], so a lost message or a replica that died holding the lock costs a short delay, never
//! a stuck caller. A failed call is published too: the waiters then try for the lock themselves.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::Shared;
use super::TtlFn;
use crate::domain::{Check, CheckData, KycInput};

/// How often a waiting replica looks whether the lock is still held.
pub const POLL: Duration = Duration::from_millis(250);
/// Rounds of "wait for the holder, then try for the lock" before a replica goes alone.
const ROUNDS: usize = 4;

/// Stores the answer (if any), releases the lock if still ours, and tells the waiters.
/// KEYS[1]: answer key (also the channel); KEYS[2]: lock key; KEYS[3]: the number's index of
/// answers (for forgetting it). ARGV[1]: lock token; ARGV[2]: the answer, or empty after a failed
/// call; ARGV[3]: the answer's time to live, in milliseconds.
static FINISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('SADD', KEYS[3], KEYS[1])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', KEYS[1], ARGV[2] == '' and 'failed' or 'answered')
return 1
",
    )
});

/// Deletes every answer in a number's index, and the index. KEYS[1]: the index. The answers share
/// the index's hash tag, so they live on its cluster slot. Returns how many answers were deleted.
static FORGET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local deleted = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  deleted = deleted + redis.call('DEL', key)
end
redis.call('DEL', KEYS[1])
return deleted
",
    )
});

/// The cached form of an answer.
#[derive(Serialize, Deserialize)]
struct Stored {
    data: CheckData,
    fetched_at: SystemTime,
    /// Platform profiles were not stored (the paying caller was not granted them).
    #[serde(default)]
    withheld: bool,
}

/// An answer from the shared cache.
#[derive(Debug, Clone)]
pub struct SharedAnswer {
    /// The answer.
    pub data: CheckData,
    /// When the vendor gave it.
    pub fetched_at: SystemTime,
    /// Its platform profiles were withheld.
    pub withheld: bool,
}

impl From<Stored> for SharedAnswer {
    fn from(s: Stored) -> SharedAnswer {
        SharedAnswer {
            data: s.data,
            fetched_at: s.fetched_at,
            withheld: s.withheld,
        }
    }
}

/// Where one answer lives in Redis.
#[derive(Debug, Clone)]
pub struct AnswerKey {
    check: Check,
    /// The cached answer, and the channel its publication goes to.
    answer: String,
    lock: String,
    /// The number's index of answers.
    index: String,
}

/// What a replica about to call a vendor should do.
#[derive(Debug)]
pub enum Coordination {
    /// A fresh enough answer is in the shared cache.
    Cached(SharedAnswer),
    /// Another replica made the call while this one waited.
    Joined(SharedAnswer),
    /// This replica makes the call and then [`SharedAnswers::finish`]es the lock.
    Leader(RemoteLock),
    /// Redis cannot be reached (or the holders kept failing): the replica goes on its own.
    Alone,
}

/// The lock on one answer, held by this replica while it calls the vendor.
#[derive(Debug)]
pub struct RemoteLock {
    key: AnswerKey,
    token: String,
}

/// Callers waiting for publications, by channel.
#[derive(Debug, Default)]
pub(super) struct Waiters(Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>);

impl Waiters {
    fn register(&self, channel: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = map.entry(channel.to_owned()).or_default();
        waiting.retain(|w| !w.is_closed());
        waiting.push(tx);
        rx
    }

    fn wake(&self, channel: &str) {
        let woken = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(channel);
        for waiter in woken.into_iter().flatten() {
            let _ = waiter.send(());
        }
    }

    /// Forgets waiters that stopped waiting (their holder never published).
    fn tidy(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, waiting| {
            waiting.retain(|w| !w.is_closed());
            !waiting.is_empty()
        });
    }
}

/// What the subscription listens to.
pub(super) struct Channels {
    /// The pattern of every answer channel.
    pub answers: String,
    /// The channel of forget broadcasts (within the pattern).
    pub forget: String,
    /// `[redis] timeout`: the longest wait to connect and subscribe.
    pub timeout: Duration,
}

/// Listens to every answer channel of this key prefix and wakes the local waiters, and hands
/// forget broadcasts to the hook, until `stop`'s sender is dropped; reconnects by itself.
pub(super) async fn subscribe(
    client: redis::Client,
    channels: Channels,
    waiters: Arc<Waiters>,
    forget_hook: Arc<Mutex<Option<super::ForgetHook>>>,
    mut stop: watch::Receiver<()>,
) {
    loop {
        let session = async {
            // Bounded like every other command: a paused Redis accepts connections and never
            // answers, and this loop must come round to try again once it does.
            let mut pubsub = tokio::time::timeout(channels.timeout, async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.psubscribe(&channels.answers).await?;
                Ok::<_, redis::RedisError>(pubsub)
            })
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "subscribing timed out"))
            })??;
            let mut messages = pubsub.on_message();
            let mut tidy = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) if message.get_channel_name() == channels.forget => {
                            let hook = forget_hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            if let Some(hook) = hook {
                                hook(message.get_payload_bytes().to_vec());
                            }
                        }
                        Some(message) => waiters.wake(message.get_channel_name()),
                        None => return Ok::<(), redis::RedisError>(()),
                    },
                    _ = tidy.tick() => waiters.tidy(),
                }
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            result = session => if let Err(e) = result {
                let kind = super::failed("answers", &e);
                tracing::debug!(error = %kind, "shared answers: subscription lost");
            },
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// One provider's answers in Redis.
#[derive(Clone)]
pub struct SharedAnswers {
    shared: Shared,
    provider: String,
    ttl: TtlFn,
}

impl std::fmt::Debug for SharedAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAnswers")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// `prefix:answers:{hash(number)}`: the index of a number's answers. The braces make it a cluster
/// hash tag that its answers and locks share.
fn index_key(shared: &Shared, e164: &str) -> String {
    format!(
        "{}:answers:{{{}}}",
        shared.config().key_prefix,
        shared.hash(&[b"number", e164.as_bytes()])
    )
}

/// See [`Shared::forget`].
pub(super) async fn forget(shared: &Shared, numbers: &[String]) -> Result<u64, super::SharedError> {
    let mut deleted = 0;
    for number in numbers {
        let mut connection = shared.connection();
        let n: u64 = FORGET
            .key(index_key(shared, number))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| super::SharedError::Redis(super::failed("answers", &e)))?;
        deleted += n;
    }
    Ok(deleted)
}

impl SharedAnswers {
    pub(super) fn new(shared: Shared, provider: &str, ttl: TtlFn) -> SharedAnswers {
        SharedAnswers {
            shared,
            provider: provider.to_owned(),
            ttl,
        }
    }

    /// Where the answer to `check` for `e164` (and these KYC inputs) lives, within `scope` (the
    /// tenant whose answer it is, or `None` for one every tenant shares). The number is hashed.
    pub fn key(
        &self,
        check: Check,
        e164: &str,
        kyc: Option<&KycInput>,
        scope: Option<&str>,
    ) -> AnswerKey {
        let kyc = kyc
            .and_then(|k| serde_json::to_vec(k).ok())
            .unwrap_or_default();
        let mut parts: Vec<&[u8]> = vec![
            self.provider.as_bytes(),
            check.as_str().as_bytes(),
            e164.as_bytes(),
            &kyc,
        ];
        if let Some(tenant) = scope {
            parts.extend([b"tenant".as_slice(), tenant.as_bytes()]);
        }
        let hash = self.shared.hash(&parts);
        let number = self.shared.hash(&[b"number", e164.as_bytes()]);
        // The number's hash tag keeps its answers, their locks and its index on one cluster
        // slot, so that forgetting it is one script.
        let prefix = &self.shared.config().key_prefix;
        let answer = format!("{prefix}:answer:{{{number}}}:{hash}");
        AnswerKey {
            check,
            lock: format!("{answer}:lock"),
            index: format!("{prefix}:answers:{{{number}}}"),
            answer,
        }
    }

    /// The pattern of every answer channel, for the subscription.
    pub(super) fn channels(shared: &Shared) -> String {
        format!("{}:answer:*", shared.config().key_prefix)
    }

    /// A cached answer no older than `max_age` (and with profiles when `profiles`), if there is
    /// one and Redis answers.
    pub async fn cached(
        &self,
        key: &AnswerKey,
        max_age: Option<Duration>,
        profiles: bool,
    ) -> Option<SharedAnswer> {
        self.get(key, max_age, profiles).await.unwrap_or_default()
    }

    /// The cached answer, if there is a usable one; `Err` when Redis cannot be reached.
    async fn get(
        &self,
        key: &AnswerKey,
        max_age: Option<Duration>,
        profiles: bool,
    ) -> Result<Option<SharedAnswer>, ()> {
        let mut connection = self.shared.connection();
        let value: Option<Vec<u8>> = connection
            .get(&key.answer)
            .await
            .map_err(|e| redis_down(&e))?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<Stored>(&v).ok())
            .filter(|s| fresh(s.fetched_at, max_age) && !(profiles && s.withheld))
            .map(SharedAnswer::from))
    }

    /// Decides who calls the vendor for `key`: the answer may be cached (no older than
    /// `max_age`, with profiles when `profiles`), in flight on another replica (then this one
    /// waits for it), or this replica's to fetch.
    pub async fn coordinate(
        &self,
        key: &AnswerKey,
        max_age: Option<Duration>,
        profiles: bool,
    ) -> Coordination {
        let lock_timeout = self.shared.config().lock_timeout;
        let mut waited = false;
        for _ in 0..ROUNDS {
            match self.get(key, max_age, profiles).await {
                Err(()) => return Coordination::Alone,
                Ok(Some(answer)) => {
                    return if waited {
                        Coordination::Joined(answer)
                    } else {
                        Coordination::Cached(answer)
                    };
                }
                Ok(None) => {}
            }
            let token = format!("{:032x}", rand::random::<u128>());
            let mut connection = self.shared.connection();
            let taken: Result<Option<String>, _> = redis::cmd("SET")
                .arg(&key.lock)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lock_timeout.as_millis() as u64)
                .query_async(&mut connection)
                .await;
            match taken {
                Err(e) => {
                    redis_down(&e);
                    return Coordination::Alone;
                }
                Ok(Some(_)) => {
                    let lock = RemoteLock {
                        key: key.clone(),
                        token,
                    };
                    // The holder before us may have stored its answer and released the lock
                    // between our look and our lock (it stores before it releases).
                    return match self.get(key, max_age, profiles).await {
                        Ok(Some(answer)) => {
                            self.finish(lock, None, false).await;
                            Coordination::Joined(answer)
                        }
                        Ok(None) => Coordination::Leader(lock),
                        Err(()) => Coordination::Alone,
                    };
                }
                Ok(None) => {}
            }
            waited = true;
            if self.wait_for_holder(key, lock_timeout).await.is_err() {
                return Coordination::Alone;
            }
        }
        tracing::warn!(
            provider = %self.provider,
            "shared answers: other replicas held the call {ROUNDS} times without an answer; \
             calling alone"
        );
        Coordination::Alone
    }

    /// Waits until the holder of `key`'s lock publishes or the lock is gone (released, expired).
    async fn wait_for_holder(&self, key: &AnswerKey, longest: Duration) -> Result<(), ()> {
        let until = Instant::now() + longest;
        let mut published = self.shared.inner.waiters.register(&key.answer);
        let mut connection = self.shared.connection();
        while Instant::now() < until {
            let held: bool = connection
                .exists(&key.lock)
                .await
                .map_err(|e| redis_down(&e))?;
            if !held {
                return Ok(());
            }
            tokio::select! {
                _ = &mut published => return Ok(()),
                () = tokio::time::sleep(POLL) => {}
            }
        }
        Ok(())
    }

    /// Stores this replica's answer (or nothing, after a failure or a pending answer), releases
    /// the lock and wakes the other replicas' waiters. `withheld`: the answer's profiles were
    /// removed (the paying caller was not granted them). Best effort: if Redis is gone, the lock
    /// expires by itself.
    pub async fn finish(
        &self,
        lock: RemoteLock,
        answer: Option<(&CheckData, SystemTime)>,
        withheld: bool,
    ) {
        let ttl = (self.ttl)(lock.key.check);
        let value = answer
            .and_then(|(data, fetched_at)| {
                let age = SystemTime::now()
                    .duration_since(fetched_at)
                    .unwrap_or_default();
                let left = ttl.checked_sub(age).filter(|d| !d.is_zero())?;
                let stored = Stored {
                    data: data.clone(),
                    fetched_at,
                    withheld,
                };
                Some((serde_json::to_vec(&stored).ok()?, left))
            })
            .unwrap_or_default();
        let mut connection = self.shared.connection();
        let result: Result<i64, _> = FINISH
            .key(&lock.key.answer)
            .key(&lock.key.lock)
            .key(&lock.key.index)
            .arg(&lock.token)
            .arg(value.0)
            .arg(value.1.as_millis().max(1) as u64)
            .invoke_async(&mut connection)
            .await;
        if let Err(e) = result {
            redis_down(&e);
        }
    }
}

fn fresh(fetched_at: SystemTime, max_age: Option<Duration>) -> bool {
    let age = SystemTime::now()
        .duration_since(fetched_at)
        .unwrap_or_default();
    max_age.is_none_or(|max| age <= max)
}

fn redis_down(e: &redis::RedisError) {
    let kind = super::failed("answers", e);
    tracing::debug!(error = %kind, "shared answers: Redis unreachable; going alone");
}
