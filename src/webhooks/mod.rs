//! Signed webhooks: a tenant with `[tenants.NAME.webhook]` is told of its jobs' state changes
//! (estimated, finished, failed, cancelled, paused) by an HTTP POST of a `phonecheck.v1.JobEvent`
//! (protobuf JSON), signed with HMAC-SHA256 over `timestamp.body`.
//!
//! The store writes each event to an outbox in the transaction of the state change
//! ([`crate::store::WebhookStore`]); the deliverer ([`deliver`]) claims due events under a lease
//! (of several replicas, one sends each), sends them in order per job to a checked target
//! ([`target`]), and retries with capped exponential back-off until `webhooks.max_age`, then marks
//! them failed. [`Webhooks`] owns `[webhooks]` ([`WebhooksConfig`]) and the tenants' targets.

pub mod deliver;
pub mod sign;
pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::Currency;
use crate::secret::SecretRef;
use crate::store::{EventKind, OutboxEvent, StoreError, Subscriptions, WebhookStore};
pub use target::AddressClass;

/// `[webhooks]`: how events are delivered, for every tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// How long one delivery may take: resolving the host, connecting, sending and the answer.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The most of a receiver's answer that is read; the rest is left unread (only the status
    /// counts).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How long an event is retried, from the state change (or from a re-send); then it is
    /// marked failed.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// The wait after the first failed attempt; it doubles with each failure up to `max_retry`.
    #[serde(default = "default_first_retry", with = "humantime_serde")]
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    #[serde(default = "default_max_retry", with = "humantime_serde")]
    pub max_retry: Duration,
    /// How often the outbox is looked at for due events.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// Deliveries one process makes at once (events are claimed this many at a time).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// How long delivered and failed events are kept for `ListWebhookDeliveries`.
    #[serde(default = "default_keep", with = "humantime_serde")]
    pub keep: Duration,
    /// Whether `http://` targets are allowed (`https://` only by default).
    #[serde(default)]
    pub allow_http: bool,
    /// Classes of addresses a target may resolve to besides public ones: `loopback`,
    /// `private`, `link_local`, `metadata`. None by default.
    #[serde(default)]
    pub allow_addresses: Vec<AddressClass>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_first_retry() -> Duration {
    Duration::from_secs(10)
}
fn default_max_retry() -> Duration {
    Duration::from_secs(3600)
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_max_in_flight() -> u32 {
    16
}
fn default_keep() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

impl Default for WebhooksConfig {
    fn default() -> WebhooksConfig {
        WebhooksConfig {
            timeout: default_timeout(),
            max_response_bytes: default_max_response_bytes(),
            max_age: default_max_age(),
            first_retry: default_first_retry(),
            max_retry: default_max_retry(),
            poll: default_poll(),
            max_in_flight: default_max_in_flight(),
            keep: default_keep(),
            allow_http: false,
            allow_addresses: Vec::new(),
        }
    }
}

impl WebhooksConfig {
    /// Everything wrong with `[webhooks]`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let within = |d: Duration, lo: Duration, hi: Duration| d >= lo && d <= hi;
        if !within(
            self.timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        ) {
            problems.push("webhooks.timeout must be between 100ms and 5m".to_owned());
        }
        if !(1..=16 * 1024 * 1024).contains(&self.max_response_bytes) {
            problems.push("webhooks.max_response_bytes must be between 1 and 16 MiB".to_owned());
        }
        if !within(
            self.max_age,
            Duration::from_secs(1),
            Duration::from_secs(30 * 86_400),
        ) {
            problems.push("webhooks.max_age must be between 1s and 30 days".to_owned());
        }
        if self.first_retry < Duration::from_millis(10) || self.first_retry > self.max_retry {
            problems.push(
                "webhooks.first_retry must be at least 10ms and at most max_retry".to_owned(),
            );
        }
        if !within(
            self.poll,
            Duration::from_millis(10),
            Duration::from_secs(60),
        ) {
            problems.push("webhooks.poll must be between 10ms and 1m".to_owned());
        }
        if !(1..=256).contains(&self.max_in_flight) {
            problems.push("webhooks.max_in_flight must be between 1 and 256".to_owned());
        }
        if self.keep < self.max_age {
            problems.push("webhooks.keep must be at least max_age".to_owned());
        }
        problems
    }

    /// How long a claimed event is this process's to deliver: past it (the process died), another
    /// may take it.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(10)
    }
}

/// `[tenants.NAME.webhook]`: where a tenant's events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The receiver's URL (`https://`, or `http://` with `webhooks.allow_http`). Never logged: it
    /// may carry a token.
    pub url: String,
    /// The signing secret (`{ env = "..." }` or `{ file = "..." }`), shared with the receiver.
    pub secret: SecretRef,
    /// The events sent: `estimated`, `finished`, `failed`, `cancelled`, `paused`; all by default.
    #[serde(default = "all_events")]
    pub events: Vec<EventKind>,
}

fn all_events() -> Vec<EventKind> {
    EventKind::ALL.to_vec()
}

/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

impl TargetConfig {
    /// Everything wrong with `[tenants.NAME.webhook]`, read with `[webhooks]`.
    pub fn problems(&self, tenant: &str, webhooks: &WebhooksConfig) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = target::check_url(&self.url, webhooks.allow_http) {
            problems.push(format!("tenants.{tenant}.webhook.url: {e}"));
        }
        match self.secret.resolve() {
            Ok(secret) => {
                if secrecy::ExposeSecret::expose_secret(&secret).len() < MIN_SECRET_BYTES {
                    problems.push(format!(
                        "tenants.{tenant}.webhook.secret: at least {MIN_SECRET_BYTES} bytes"
                    ));
                }
            }
            Err(e) => problems.push(format!("tenants.{tenant}.webhook.secret: {e}")),
        }
        if self.events.is_empty() {
            problems.push(format!(
                "tenants.{tenant}.webhook.events: empty (remove the webhook instead)"
            ));
        }
        problems
    }
}

/// The webhooks' failures.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The outbox failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tenant has no such event.
    #[error("webhook event {0:?} not found")]
    NotFound(String),
    /// A secret could not be read at start-up.
    #[error("tenants.{tenant}.webhook.secret: {message}")]
    Secret {
        /// The tenant.
        tenant: String,
        /// Where it was looked for (never the value).
        message: String,
    },
}

/// A tenant's target, with its secret read.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secret: SecretString,
}

impl std::fmt::Debug for Target {
    // The URL may carry a token and the secret is one: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").finish_non_exhaustive()
    }
}

/// The webhooks of a process: the tenants' targets, the outbox, and the deliverer.
#[derive(Debug)]
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    config: WebhooksConfig,
    targets: HashMap<String, Target>,
    currency: Currency,
    owner: String,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// The events each tenant subscribed to, for the store ([`crate::store::SqliteStore::with_webhooks`]).
pub fn subscriptions<'a>(
    tenants: impl IntoIterator<Item = (&'a String, &'a TargetConfig)>,
) -> Subscriptions {
    Subscriptions::new(
        tenants
            .into_iter()
            .map(|(name, target)| (name.clone(), target.events.clone())),
    )
}

impl Webhooks {
    /// The webhooks of the tenants given, over `store`, amounts in `currency`; reads the secrets.
    pub fn new<'a>(
        store: Arc<dyn WebhookStore>,
        config: WebhooksConfig,
        tenants: impl IntoIterator<Item = (&'a String, &'a TargetConfig)>,
        currency: Currency,
    ) -> Result<Webhooks, WebhookError> {
        let mut targets = HashMap::new();
        for (tenant, target) in tenants {
            let secret = target
                .secret
                .resolve()
                .map_err(|message| WebhookError::Secret {
                    tenant: tenant.clone(),
                    message,
                })?;
            targets.insert(
                tenant.clone(),
                Target {
                    url: target.url.clone(),
                    secret,
                },
            );
        }
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "phonecheck".into());
        Ok(Webhooks {
            store,
            config,
            targets,
            currency,
            owner: format!("{host}/{}", uuid::Uuid::now_v7()),
            stop: watch::channel(false).0,
            task: std::sync::Mutex::new(None),
        })
    }

    /// Starts delivering (nothing when no tenant has a webhook).
    pub fn start(self: &Arc<Self>) {
        if self.targets.is_empty() {
            return;
        }
        let task = tokio::spawn(deliver::run(self.clone(), self.stop.subscribe()));
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// Stops delivering: deliveries under way may finish within `webhooks.timeout`; an event cut
    /// short is delivered again once its lease lapses.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            let bound = self.config.timeout * 2 + Duration::from_secs(1);
            if tokio::time::timeout(bound, &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    /// A tenant's events with their delivery, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        job_id: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<OutboxEvent>, WebhookError> {
        Ok(self.store.list_events(tenant, job_id, after, limit).await?)
    }

    /// Sends a tenant's event again, now.
    pub async fn resend(&self, tenant: &str, id: &str) -> Result<OutboxEvent, WebhookError> {
        self.store
            .resend_event(tenant, id, SystemTime::now())
            .await?
            .ok_or_else(|| WebhookError::NotFound(id.to_owned()))
    }

    /// The billing currency, in which events state amounts.
    pub fn currency(&self) -> Currency {
        self.currency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str, secret: &str) -> (tempfile::TempDir, TargetConfig) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, secret).unwrap();
        let target = TargetConfig {
            url: url.into(),
            secret: SecretRef::File(path),
            events: all_events(),
        };
        (dir, target)
    }

    #[test]
    fn targets_are_checked_at_start_up() {
        let defaults = WebhooksConfig::default();
        assert!(defaults.problems().is_empty());
        let (_dir, ok) = target("https://hooks.example.com/p", "0123456789abcdef");
        assert!(ok.problems("acme", &defaults).is_empty());
        let (_dir, http) = target("http://hooks.example.com/p", "0123456789abcdef");
        let problems = http.problems("acme", &defaults);
        assert!(
            problems[0].starts_with("tenants.acme.webhook.url: http is refused"),
            "{problems:?}"
        );
        let allow_http = WebhooksConfig {
            allow_http: true,
            ..WebhooksConfig::default()
        };
        assert!(http.problems("acme", &allow_http).is_empty());
        let (_dir, short) = target("https://hooks.example.com/p", "short");
        let problems = short.problems("acme", &defaults);
        assert_eq!(problems, ["tenants.acme.webhook.secret: at least 16 bytes"]);
        let missing = TargetConfig {
            url: "https://hooks.example.com/p".into(),
            secret: SecretRef::Env("PHONECHECK_TEST_NO_SUCH_VARIABLE".into()),
            events: Vec::new(),
        };
        let problems = missing.problems("acme", &defaults);
        assert_eq!(problems.len(), 2, "{problems:?}");
        // The secret's value is never in a problem.
        assert!(!format!("{:?}", short.problems("acme", &defaults)).contains("short\""));
    }

    #[test]
    fn settings_out_of_bounds_are_refused() {
        let bad = WebhooksConfig {
            timeout: Duration::ZERO,
            max_response_bytes: 0,
            max_age: Duration::from_secs(31 * 86_400),
            first_retry: Duration::from_secs(7200),
            poll: Duration::ZERO,
            max_in_flight: 0,
            keep: Duration::ZERO,
            ..WebhooksConfig::default()
        };
        assert_eq!(bad.problems().len(), 7, "{:?}", bad.problems());
    }
}
