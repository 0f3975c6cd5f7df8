//! State shared by replicas through Redis, when `[redis]` is configured, so that N replicas behave
//! as one towards the vendors:
//! - [`SharedQuota`]: each vendor account's rate, kept together;
//! - [`SharedAnswers`]: the answer cache, and single-flight of vendor calls across replicas;
//! - [`RedisPendingStore`]: asynchronous submissions (caih), collectable by any replica;
//! - [`RedisBudgets`] and [`SharedRate`]: tenants' daily budgets and request rates.
//!
//! Numbers never appear in Redis in clear: every key is a keyed hash (HMAC-SHA256 with
//! `[redis] hash_key`) of what it stands for.
//!
//! When Redis cannot be reached, billable calls fail closed (the quota cannot be kept, so no call
//! is made) or, with `on_unreachable = "local_share"`, go on within this replica's share of the
//! quota; the cache and single-flight fall back to the replica's own. Every command is bounded
//! by `[redis] timeout` as a whole, and after a failure Redis is treated as down for `down_for`
//! (commands fail at once; see [`crate::dependency`]). The connection is re-established by
//! itself.

mod answers;
mod budget;
mod connection;
mod pending;
mod quota;

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::dependency::{Breaker, Dependency};
use crate::secret::SecretRef;

/// Redis is down after this many unreachable commands in a row (one timed-out command is
/// enough: its caller already waited the whole `timeout`).
const DOWN_AFTER: u32 = 3;
/// The client library's reconnection attempts after the first, each bounded by `timeout`.
const RECONNECT_RETRIES: usize = 2;

pub use answers::{AnswerKey, Coordination, RemoteLock, SharedAnswer, SharedAnswers};
pub use budget::{RedisBudgets, SharedRate};

/// Each check's time to live, counted from when the vendor answered; given by the layer that owns
/// the cache settings (the engine).
pub type TtlFn = Arc<dyn Fn(crate::domain::Check) -> Duration + Send + Sync>;
pub use pending::RedisPendingStore;
pub use quota::SharedQuota;

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS). A password belongs in `password`.
    pub url: String,
    /// The server's password (`AUTH`), from the environment or a file.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// The key of the keyed hash that stands for numbers in Redis keys (any long random string;
    /// the same on every replica).
    pub hash_key: SecretRef,
    /// Prefix of every key phonecheck writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest wait for one Redis command.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long Redis is treated as down after it failed (commands fail at once) before one
    /// command is let through to see whether it is back.
    #[serde(default = "default_down_for", with = "humantime_serde")]
    pub down_for: Duration,
    /// What paid calls to a vendor with a quota do while Redis cannot be reached: `deny` (fail
    /// closed) or `local_share` (go on within `quota ÷ expected_replicas` on this replica).
    #[serde(default)]
    pub on_unreachable: OnUnreachable,
    /// How many replicas share each vendor quota; with `on_unreachable = "local_share"` each
    /// keeps to its share of the quota while Redis is away.
    #[serde(default)]
    pub expected_replicas: Option<u32>,
    /// How long a replica may hold a vendor call for a number before others stop waiting for it
    /// (a replica that died mid-call); longer than a vendor call with its retries.
    #[serde(default = "default_lock_timeout", with = "humantime_serde")]
    pub lock_timeout: Duration,
}

fn default_prefix() -> String {
    "phonecheck".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_lock_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_down_for() -> Duration {
    Duration::from_secs(1)
}

/// `[redis] on_unreachable`: what paid calls do while Redis (the shared vendor quota) cannot be
/// reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnreachable {
    /// No vendor call is made (`STATE_UNAVAILABLE`, not billed). The default: the vendor account's
    /// quota is shared by every replica, and replicas that each spent blind could together
    /// overrun it (the vendor's throttling, or its penalties, would fall on the whole account).
    #[default]
    Deny,
    /// Each replica goes on alone within `quota ÷ expected_replicas` (Envoy's global rate limit
    /// with `failure_mode_deny: false`, kept to a share): answers keep coming, and the account
    /// stays within its quota as long as no more than `expected_replicas` replicas run.
    LocalShare,
}

impl RedisConfig {
    /// Problems with this configuration, for start-up validation.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = redis::Client::open(self.url.as_str()) {
            problems.push(format!(
                "redis.url: not a redis:// or rediss:// URL ({:?})",
                e.kind()
            ));
        }
        if self.url.contains('@') {
            problems.push(
                "redis.url: credentials do not belong in the URL; use redis.password".to_owned(),
            );
        }
        match self.hash_key.resolve() {
            Ok(key) if key.expose_secret().len() < 16 => {
                problems.push("redis.hash_key: use at least 16 characters".to_owned());
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("redis.hash_key: {e}")),
        }
        if let Some(Err(e)) = self.password.as_ref().map(SecretRef::resolve) {
            problems.push(format!("redis.password: {e}"));
        }
        if self.timeout.is_zero() || self.lock_timeout.is_zero() {
            problems.push("redis.timeout and redis.lock_timeout must be above zero".to_owned());
        }
        if self.down_for.is_zero() || self.down_for > Duration::from_secs(60) {
            problems.push("redis.down_for: between 1ms and 60s".to_owned());
        }
        match (self.on_unreachable, self.expected_replicas) {
            (_, Some(0)) => problems.push("redis.expected_replicas: at least 1".to_owned()),
            (OnUnreachable::LocalShare, None) => problems.push(
                "redis.expected_replicas: needed with on_unreachable = \"local_share\" (each \
                 replica's share of the quota)"
                    .to_owned(),
            ),
            _ => {}
        }
        problems
    }
}

/// Why Redis could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// A secret could not be read.
    #[error("{0}")]
    Secret(String),
    /// Redis refused or could not be reached; the kind only (details may carry addresses).
    #[error("Redis: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for SharedError {
    fn from(e: redis::RedisError) -> SharedError {
        SharedError::Redis(kind_name(&e))
    }
}

/// A connection to the shared state.
#[derive(Clone)]
pub struct Shared {
    inner: Arc<Inner>,
}

/// Called with the payload of every forget broadcast (see [`Shared::broadcast_forget`]).
pub type ForgetHook = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

struct Inner {
    connection: connection::Connection,
    config: RedisConfig,
    hash_key: SecretString,
    waiters: Arc<answers::Waiters>,
    forget_hook: Arc<std::sync::Mutex<Option<ForgetHook>>>,
    /// Dropped with the last handle: stops the subscription.
    _stop: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects (the connection is re-established by itself after Redis comes back).
    pub async fn connect(config: &RedisConfig) -> Result<Shared, SharedError> {
        let hash_key = config.hash_key.resolve().map_err(SharedError::Secret)?;
        let mut info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())?;
        if let Some(password) = &config.password {
            let password = password.resolve().map_err(SharedError::Secret)?;
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(settings);
        }
        // The library leaves Nagle's algorithm on: a command written while an earlier one is
        // unacknowledged would wait for Redis's delayed acknowledgement (up to 40 ms on Linux).
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        // The library's reconnection retries with a backoff that grows to seconds; commands wait
        // for it no longer than `timeout` (connection::Connection), and these few short retries
        // keep a reconnection from outliving the outage by much.
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.timeout))
            .set_connection_timeout(Some(config.timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(config.timeout);
        let manager = ConnectionManager::new_with_config(client.clone(), manager_config).await?;
        let connection = connection::Connection {
            manager,
            timeout: config.timeout,
            dependency: Arc::new(Dependency::new(
                "redis",
                Breaker {
                    failures: DOWN_AFTER,
                    down_for: config.down_for,
                    probe_timeout: config.timeout,
                },
            )),
        };
        let waiters = Arc::new(answers::Waiters::default());
        let forget_hook = Arc::new(std::sync::Mutex::new(None));
        let (stop, stopped) = tokio::sync::watch::channel(());
        let shared = Shared {
            inner: Arc::new(Inner {
                connection,
                config: config.clone(),
                hash_key,
                waiters: waiters.clone(),
                forget_hook: forget_hook.clone(),
                _stop: stop,
            }),
        };
        // A dependency that is down is looked at again by itself: a replica taken out of its
        // balancer by readiness gets no calls that would find Redis back.
        tokio::spawn(probe_while_down(
            shared.connection(),
            config.down_for,
            shared.inner._stop.subscribe(),
        ));
        tokio::spawn(answers::subscribe(
            client,
            answers::Channels {
                answers: SharedAnswers::channels(&shared),
                forget: shared.forget_channel(),
                timeout: config.timeout,
            },
            waiters,
            forget_hook,
            stopped,
        ));
        Ok(shared)
    }

    fn connection(&self) -> connection::Connection {
        self.inner.connection.clone()
    }

    /// Redis as a dependency: whether it is up, and a watch on it.
    pub fn dependency(&self) -> Arc<Dependency> {
        self.inner.connection.dependency.clone()
    }

    /// Whether this replica can make paid calls while Redis is down (`local_share`).
    pub fn serves_without_redis(&self) -> bool {
        self.config().on_unreachable == OnUnreachable::LocalShare
    }

    fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// `hex(HMAC-SHA256(hash_key, parts joined by NUL))`: what stands for a number.
    fn hash(&self, parts: &[&[u8]]) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.inner.hash_key.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length");
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0]);
            }
            mac.update(part);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// `prefix:kind:hash(parts)`.
    fn key(&self, kind: &str, parts: &[&[u8]]) -> String {
        format!("{}:{kind}:{}", self.config().key_prefix, self.hash(parts))
    }

    /// The shared bucket of a provider's quota; `None` when the quota is unlimited.
    pub fn quota(
        &self,
        provider: &str,
        quota: crate::providers::QuotaConfig,
    ) -> Option<SharedQuota> {
        let bucket = SharedQuota::new(self.clone(), provider, quota)?;
        Some(match self.config().on_unreachable {
            OnUnreachable::Deny => bucket,
            OnUnreachable::LocalShare => {
                bucket.with_local_share(quota, self.config().expected_replicas.unwrap_or(1))
            }
        })
    }

    /// The shared answers of a provider: cache and single-flight, answers living for `ttl`.
    pub fn answers(&self, provider: &str, ttl: TtlFn) -> SharedAnswers {
        SharedAnswers::new(self.clone(), provider, ttl)
    }

    /// A key for this replica's own answer store derived from `hash_key` (so that the same
    /// deployment keys its stores alike, and the Redis key itself is used for Redis only).
    pub fn local_key(&self) -> Vec<u8> {
        hex::decode(self.hash(&[b"phonecheck answer store key"])).unwrap_or_default()
    }

    /// Forgets every shared answer about these numbers (E.164), whatever the provider, check or
    /// KYC inputs; returns how many answers were removed.
    pub async fn forget(&self, numbers: &[String]) -> Result<u64, SharedError> {
        answers::forget(self, numbers).await
    }

    /// The channel of forget broadcasts (it matches the answers' pattern, so the one
    /// subscription hears both).
    fn forget_channel(&self) -> String {
        format!("{}:answer:forget", self.config().key_prefix)
    }

    /// Tells every replica (this one included) to forget what `payload` names: the engine's
    /// keyed hashes of numbers, never the numbers.
    pub async fn broadcast_forget(&self, payload: Vec<u8>) -> Result<(), SharedError> {
        let mut connection = self.connection();
        redis::cmd("PUBLISH")
            .arg(self.forget_channel())
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await
            .map_err(|e| SharedError::Redis(failed("answers", &e)))?;
        Ok(())
    }

    /// Sets what this replica does when a forget broadcast arrives.
    pub fn on_forget(&self, hook: ForgetHook) {
        *self
            .inner
            .forget_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Tenants' daily budgets, held by every replica together.
    pub fn budget_store(&self) -> RedisBudgets {
        RedisBudgets::new(self.clone())
    }

    /// Pending asynchronous submissions, shared by every replica.
    pub fn pending_store(&self) -> RedisPendingStore {
        RedisPendingStore::new(self.clone())
    }
}

/// While Redis is down, sends a `PING` every `down_for` (the breaker lets one through each time)
/// until it answers; stops with the last handle.
async fn probe_while_down(
    mut connection: connection::Connection,
    down_for: Duration,
    mut stop: tokio::sync::watch::Receiver<()>,
) {
    let mut up = connection.dependency.watch();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            down = up.wait_for(|up| !*up) => if down.is_err() { return },
        }
        while !connection.dependency.is_up() {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(down_for) => {}
            }
            // The breaker records the result; the answer itself does not matter.
            let _: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
        }
    }
}

/// A Redis error's kind without its details (which may carry the server's address).
fn kind_name(e: &redis::RedisError) -> String {
    format!("{:?}", e.kind())
}

/// Counts a failed Redis command made for `operation`; returns the error's kind.
fn failed(operation: &'static str, e: &redis::RedisError) -> String {
    metrics::counter!(crate::metrics::SHARED_STATE_ERRORS, "operation" => operation).increment(1);
    kind_name(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hash_key: &str) -> RedisConfig {
        let dir = std::env::temp_dir().join(format!("phonecheck-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(hash_key.len().to_string());
        std::fs::write(&path, hash_key).unwrap();
        RedisConfig {
            url: "redis://127.0.0.1:1/0".to_owned(),
            password: None,
            hash_key: SecretRef::File(path),
            key_prefix: default_prefix(),
            timeout: default_timeout(),
            down_for: default_down_for(),
            on_unreachable: OnUnreachable::Deny,
            expected_replicas: None,
            lock_timeout: default_lock_timeout(),
        }
    }

    #[test]
    fn local_share_needs_the_number_of_replicas() {
        let mut c = config("a-long-enough-hash-key");
        c.on_unreachable = OnUnreachable::LocalShare;
        let problems = c.problems();
        assert!(
            problems[0].contains("redis.expected_replicas"),
            "{problems:?}"
        );
        c.expected_replicas = Some(0);
        assert!(c.problems()[0].contains("at least 1"));
        c.expected_replicas = Some(3);
        assert!(c.problems().is_empty());
        let parsed: OnUnreachable = serde_json::from_str("\"local_share\"").unwrap();
        assert_eq!(parsed, OnUnreachable::LocalShare);
        assert_eq!(OnUnreachable::default(), OnUnreachable::Deny);
    }

    #[test]
    fn problems_are_named() {
        assert!(config("a-long-enough-hash-key").problems().is_empty());
        let short = config("short").problems();
        assert!(short[0].contains("redis.hash_key"), "{short:?}");
        let mut with_password = config("a-long-enough-hash-key");
        with_password.url = "redis://:secret@127.0.0.1:6379".to_owned();
        let problems = with_password.problems();
        assert!(problems.iter().any(|p| p.contains("redis.password")));
        assert!(
            !problems.iter().any(|p| p.contains("secret")),
            "{problems:?}"
        );
    }
}
