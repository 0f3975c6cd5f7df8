//! Faults the simulators inject, set at start: errors, malformed bodies, hangs, connection
//! resets, latency jitter, and each vendor's own over-limit answer past a quota.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::time::Instant;

use super::SimState;

/// What to inject. Rates are shares of calls, 0 to 1, drawn independently per call from a random
/// sequence seeded by `seed`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Answer HTTP 503 with a body that is not the vendor's.
    #[serde(default)]
    pub error_rate: f64,
    /// Answer 200 with a truncated body.
    #[serde(default)]
    pub malformed_rate: f64,
    /// Do not answer for a minute (clients time out).
    #[serde(default)]
    pub timeout_rate: f64,
    /// Close the connection in the middle of the answer.
    #[serde(default)]
    pub reset_rate: f64,
    /// Extra latency, uniform between zero and this, on top of the fixed latency.
    #[serde(default, with = "humantime_serde")]
    pub latency_jitter: Duration,
    /// Calls per second each vendor account accepts; past it, the vendor's own over-limit answer.
    /// Accounts are told apart as each vendor's simulator says ([`AccountKey`]); a vendor that
    /// names none counts as one account.
    #[serde(default)]
    pub quota_per_second: Option<u32>,
    /// The seed of the draws (which calls fail, how much jitter): the same seed makes the same
    /// draws in the same order, so a failing run can be replayed (calls made concurrently may
    /// arrive in another order). Absent: a fresh seed, logged at start.
    #[serde(default)]
    pub seed: Option<u64>,
}

/// The simulators' random draws, from one seeded sequence.
#[derive(Debug)]
pub struct Draws {
    seed: u64,
    rng: Mutex<rand::rngs::StdRng>,
}

impl Draws {
    /// Draws seeded by `faults.seed`, else by a fresh seed (logged when faults are injected).
    pub fn new(faults: &Faults) -> Draws {
        use rand::SeedableRng;
        let seed = faults.seed.unwrap_or_else(rand::random);
        let injects =
            faults.error_rate + faults.malformed_rate + faults.timeout_rate + faults.reset_rate
                > 0.0
                || !faults.latency_jitter.is_zero();
        if injects {
            tracing::info!(seed, "simulator faults drawn with seed {seed}");
        }
        Draws {
            seed,
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        }
    }

    /// The seed in use.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next call's two draws in [0, 1): its jitter share and its fault. Both are always
    /// drawn, so the sequence does not depend on which faults are configured.
    fn next(&self) -> (f64, f64) {
        use rand::Rng;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        (rng.random(), rng.random())
    }
}

impl Faults {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let rates = [
            ("error_rate", self.error_rate),
            ("malformed_rate", self.malformed_rate),
            ("timeout_rate", self.timeout_rate),
            ("reset_rate", self.reset_rate),
        ];
        let mut problems: Vec<String> = rates
            .iter()
            .filter(|(_, r)| !(0.0..=1.0).contains(r))
            .map(|(name, _)| format!("faults.{name} must be between 0 and 1"))
            .collect();
        if rates.iter().map(|(_, r)| r).sum::<f64>() > 1.0 {
            problems.push("faults: the rates add up to more than 1".to_owned());
        }
        problems
    }
}

/// Recent accepted calls per vendor account, for the quota (a sliding one-second window).
#[derive(Debug, Default)]
pub struct Windows {
    calls: Mutex<HashMap<(&'static str, String), VecDeque<Instant>>>,
}

/// Largest request body read to find the account (a few dozen bytes in practice).
const ACCOUNT_BODY_LIMIT: usize = 64 * 1024;

/// How a vendor's calls name the account they are made for, as far as the quota is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKey {
    /// The vendor's calls all count as one account.
    One,
    /// A string field of the JSON body (which is read and put back).
    JsonField(&'static str),
    /// The `Credential=` of the `Authorization` header (Alibaba Cloud's V3 signature).
    AuthorizationCredential,
}

/// What the fault injector knows of one simulated vendor.
#[derive(Debug, Clone)]
pub struct VendorFaults {
    /// The vendor's name, under which its calls are counted.
    pub vendor: &'static str,
    /// The vendor's own answer past its quota.
    pub over_limit: fn() -> Response,
    /// How its calls name their account.
    pub account: AccountKey,
}

/// The fault injector in front of one vendor's routes.
#[derive(Debug)]
pub struct Guard {
    state: Arc<SimState>,
    vendor: VendorFaults,
}

impl Guard {
    /// The injector of `vendor`, drawing from `state`.
    pub fn new(state: Arc<SimState>, vendor: VendorFaults) -> Guard {
        Guard { state, vendor }
    }
}

/// The account a call is made for.
async fn account_of(key: AccountKey, request: Request) -> (String, Request) {
    match key {
        AccountKey::JsonField(field) => {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, ACCOUNT_BODY_LIMIT)
                .await
                .unwrap_or_default();
            let account = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get(field)?.as_str().map(str::to_owned))
                .unwrap_or_default();
            (account, Request::from_parts(parts, Body::from(bytes)))
        }
        AccountKey::AuthorizationCredential => {
            let account = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split("Credential=").nth(1))
                .and_then(|v| v.split(',').next())
                .unwrap_or_default()
                .to_owned();
            (account, request)
        }
        AccountKey::One => (String::new(), request),
    }
}

/// The middleware in front of every vendor route.
pub async fn inject(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let (state, vendor) = (&guard.state, guard.vendor.vendor);
    state.stats.pass_gate().await;
    let faults = &state.config.faults;
    let counters = state.stats.counters(vendor);
    let mut request = request;
    if let Some(quota) = faults.quota_per_second {
        let (account, whole) = account_of(guard.vendor.account, request).await;
        request = whole;
        let now = Instant::now();
        let mut windows = state
            .windows
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let window = windows.entry((vendor, account)).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= quota as usize {
            drop(windows);
            state.stats.record_call(counters, 0);
            state.stats.record_over_limit(counters);
            return (guard.vendor.over_limit)();
        }
        window.push_back(now);
    }
    let (jitter, draw) = state.draws.next();
    if !faults.latency_jitter.is_zero() {
        tokio::time::sleep(faults.latency_jitter.mul_f64(jitter)).await;
    }
    let mut edge = faults.error_rate;
    if draw < edge {
        state.stats.record_call(counters, 0);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<html>503 Service Temporarily Unavailable</html>",
        )
            .into_response();
    }
    edge += faults.malformed_rate;
    if draw < edge {
        state.stats.record_call(counters, 0);
        return (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":200,"data":{"risk"#,
        )
            .into_response();
    }
    edge += faults.timeout_rate;
    if draw < edge {
        state.stats.record_call(counters, 0);
        tokio::time::sleep(Duration::from_secs(60)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    edge += faults.reset_rate;
    if draw < edge {
        state.stats.record_call(counters, 0);
        // Headers go out, then the body fails: the connection is cut mid-answer.
        let broken = futures::stream::once(async {
            Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))
        });
        return Response::new(Body::from_stream(broken));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked() {
        assert!(Faults::default().problems().is_empty());
        let bad = Faults {
            error_rate: 0.8,
            malformed_rate: 0.5,
            timeout_rate: -0.1,
            ..Faults::default()
        };
        assert_eq!(bad.problems().len(), 2);
    }

    #[test]
    fn a_seed_replays_the_draws() {
        let seeded = |seed| {
            Draws::new(&Faults {
                seed: Some(seed),
                ..Faults::default()
            })
        };
        let (a, b, c) = (seeded(7), seeded(7), seeded(8));
        let draws = |d: &Draws| (0..32).map(|_| d.next()).collect::<Vec<_>>();
        let first = draws(&a);
        assert_eq!(first, draws(&b), "the same seed, the same draws");
        assert_ne!(first, draws(&c));
        assert_eq!(a.seed(), 7);
    }
}
