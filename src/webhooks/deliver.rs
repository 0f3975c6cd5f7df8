//! The deliverer: every `webhooks.poll` it claims due events from the outbox (at most
//! `webhooks.max_in_flight`, under a lease, the first pending event of each job only), sends them
//! at once, and records each attempt: delivered on a 2xx answer; otherwise tried again after a
//! wait that doubles from `first_retry` up to `max_retry`, until the event is older than
//! `max_age`, then failed. Redirects are not followed, an attempt is bounded by `timeout`, and at
//! most `max_response_bytes` of an answer is read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::sign::{self, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::{Webhooks, target};
use crate::store::{Attempt, OutboxEvent};

/// How often, in polls, delivered and failed events past `webhooks.keep` are removed and the
/// pending ones counted.
const HOUSEKEEPING_EVERY: u32 = 60;

/// Delivers until `stop` turns true.
pub(super) async fn run(hooks: Arc<Webhooks>, mut stop: watch::Receiver<bool>) {
    // Tenants whose receiver failed last: a failing receiver is logged when it starts and stops
    // failing, not at every attempt.
    let mut failing: HashMap<String, bool> = HashMap::new();
    let mut store_down = false;
    let mut polls = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        if polls.is_multiple_of(HOUSEKEEPING_EVERY) {
            housekeeping(&hooks).await;
        }
        polls = polls.wrapping_add(1);
        let now = SystemTime::now();
        let claimed = hooks
            .store
            .claim_events(
                &hooks.owner,
                now,
                now + hooks.config.lease(),
                hooks.config.max_in_flight,
            )
            .await;
        let events = match claimed {
            Ok(events) => {
                if store_down {
                    info!("webhook outbox: the store answers again");
                    store_down = false;
                }
                events
            }
            Err(e) => {
                if !store_down {
                    warn!(error = %e, "webhook outbox: the store failed; events wait there");
                    store_down = true;
                }
                metrics::counter!(crate::metrics::WEBHOOK_STORE_ERRORS).increment(1);
                Vec::new()
            }
        };
        let full = events.len() >= hooks.config.max_in_flight as usize;
        let outcomes = join_all(events.iter().map(|e| deliver(&hooks, e))).await;
        for (event, attempt) in events.iter().zip(outcomes) {
            let ok = matches!(attempt, Attempt::Delivered { .. });
            let was_failing = failing.insert(event.tenant.clone(), !ok).unwrap_or(false);
            match &attempt {
                Attempt::Delivered { .. } if was_failing => {
                    info!(tenant = %event.tenant, "webhook: the receiver takes events again");
                }
                Attempt::Retry { error, .. } if !was_failing => warn!(
                    tenant = %event.tenant, job = %event.job_id, event = %event.id, %error,
                    "webhook: delivery failed; retrying with back-off"
                ),
                Attempt::Failed { error, .. } => warn!(
                    tenant = %event.tenant, job = %event.job_id, event = %event.id, %error,
                    "webhook: event not delivered within webhooks.max_age; marked failed"
                ),
                _ => debug!(tenant = %event.tenant, event = %event.id, ?attempt, "webhook attempt"),
            }
            match &attempt {
                Attempt::Delivered { .. } => {
                    metrics::counter!(crate::metrics::WEBHOOK_EVENTS, "result" => "delivered")
                        .increment(1);
                }
                Attempt::Failed { .. } => {
                    metrics::counter!(crate::metrics::WEBHOOK_EVENTS, "result" => "failed")
                        .increment(1);
                }
                Attempt::Retry { .. } => {}
            }
            let recorded = hooks
                .store
                .record_attempt(&event.id, &hooks.owner, &attempt, SystemTime::now())
                .await;
            if let Err(e) = recorded {
                // The lease lapses and the event is sent again: at least once.
                warn!(error = %e, event = %event.id, "webhook outbox: an attempt was not recorded");
                metrics::counter!(crate::metrics::WEBHOOK_STORE_ERRORS).increment(1);
            }
        }
        if full {
            // More may be due: look again at once.
            continue;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(hooks.config.poll) => {}
        }
    }
}

async fn housekeeping(hooks: &Webhooks) {
    let before = SystemTime::now()
        .checked_sub(hooks.config.keep)
        .unwrap_or(UNIX_EPOCH);
    if let Err(e) = hooks.store.prune_events(before).await {
        debug!(error = %e, "webhook outbox: pruning failed; tried again later");
    }
    if let Ok(pending) = hooks.store.pending_events().await {
        metrics::gauge!(crate::metrics::WEBHOOK_PENDING).set(pending as f64);
    }
}

/// The wait after the `attempts`-th failed attempt: `first` doubled each time, at most `max`.
pub fn backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32);
    first.saturating_mul(1u32 << doublings.min(31)).min(max)
}

/// One attempt at an event; what to record.
async fn deliver(hooks: &Webhooks, event: &OutboxEvent) -> Attempt {
    let started = Instant::now();
    let (outcome, http, error) = match hooks.targets.get(&event.tenant) {
        None => (
            "no_target",
            0,
            "the tenant has no webhook configured any more".to_owned(),
        ),
        Some(target) => match send(hooks, target, event).await {
            Ok(status) if (200..300).contains(&status) => ("delivered", status, String::new()),
            Ok(status) if (300..400).contains(&status) => (
                "http_error",
                status,
                format!("HTTP {status} (redirects are not followed)"),
            ),
            Ok(status) => ("http_error", status, format!("HTTP {status}")),
            Err((outcome, error)) => (outcome, 0, error),
        },
    };
    metrics::counter!(crate::metrics::WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    metrics::histogram!(crate::metrics::WEBHOOK_DURATION).record(started.elapsed().as_secs_f64());
    if outcome == "delivered" {
        return Attempt::Delivered { http };
    }
    let config = &hooks.config;
    let wait = backoff(config.first_retry, config.max_retry, event.attempts + 1);
    // Up to a tenth more, so that replicas and events that failed together spread out.
    let jitter = wait.mul_f64(rand::random::<f64>() / 10.0);
    let next_at = SystemTime::now() + wait + jitter;
    if outcome == "no_target" || next_at > event.since + config.max_age {
        Attempt::Failed { http, error }
    } else {
        Attempt::Retry {
            next_at,
            http,
            error,
        }
    }
}

/// Posts the event to the tenant's checked target; the HTTP status, or the outcome label and what
/// went wrong (never the URL: it may carry a token).
async fn send(
    hooks: &Webhooks,
    target: &super::Target,
    event: &OutboxEvent,
) -> Result<u16, (&'static str, String)> {
    let config = &hooks.config;
    let url = target::check_url(&target.url, config.allow_http)
        .map_err(|e| ("refused", e.to_string()))?;
    let addrs = target::resolve(&url, &config.allow_addresses, config.timeout)
        .await
        .map_err(|e| ("refused", e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_owned();
    // Installs the TLS crypto once; fails only when one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A client for this attempt that connects only to the addresses checked above, so that a
    // second resolution cannot lead elsewhere; no proxy from the environment either.
    let client = reqwest::Client::builder()
        .user_agent(concat!("phonecheck-webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| ("request_error", e.without_url().to_string()))?;
    let body = sign::body(&sign::event_to_proto(event, hooks.currency));
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signature = sign::signature(&target.secret, timestamp, &body);
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, &event.id)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, signature)
        .body(body);
    let classify = |e: reqwest::Error| {
        if e.is_timeout() {
            ("timeout", format!("no answer within {:?}", config.timeout))
        } else if e.is_connect() {
            ("connect_error", "cannot connect".to_owned())
        } else {
            ("request_error", e.without_url().to_string())
        }
    };
    let mut response = request.send().await.map_err(classify)?;
    let status = response.status().as_u16();
    // Only the status counts: at most `max_response_bytes` of the answer is read, the rest is left
    // (the connection is dropped with the client).
    let mut read = 0usize;
    while read < config.max_response_bytes {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break,
            Err(e) if status >= 300 => return Err(classify(e)),
            // A 2xx whose body broke off was still an answer of delivery.
            Err(_) => break,
        }
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let (first, max) = (Duration::from_secs(10), Duration::from_secs(3600));
        assert_eq!(backoff(first, max, 1), Duration::from_secs(10));
        assert_eq!(backoff(first, max, 2), Duration::from_secs(20));
        assert_eq!(backoff(first, max, 5), Duration::from_secs(160));
        assert_eq!(backoff(first, max, 9), Duration::from_secs(2560));
        assert_eq!(backoff(first, max, 10), max);
        assert_eq!(backoff(first, max, u32::MAX), max);
    }
}
