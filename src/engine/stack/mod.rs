//! The way to one vendor, as tower layers around the provider:
//!
//! ```text
//! CircuitBreaker → Retry → Quota → ConcurrencyLimit → Timeout → provider
//! ```
//!
//! The breaker fails calls fast while the vendor keeps failing, then lets one probe through. Retry
//! repeats a call that failed retryably and was not billed, with exponential back-off and jitter.
//! Quota waits for the account's token bucket, so the vendor never has to say "over limit".
//! Concurrency caps calls in flight; Timeout bounds each attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, RateLimiter};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;

use crate::domain::Check;
use crate::providers::{Answer, Limits, Provider, ProviderError, Query, QuotaConfig};

/// One vendor call: a batch of queries for one check.
#[derive(Debug, Clone)]
pub struct Call {
    /// The check.
    pub check: Check,
    /// The numbers, at most the provider's batch size.
    pub queries: Arc<[Query]>,
    /// The latest deadline of the callers waiting for this call; no retry starts after it.
    /// `None`: some caller waits without a deadline.
    pub deadline: Option<Instant>,
    /// Retries made before this attempt.
    pub attempt: u32,
}

/// One result per query, in order.
pub type Results = Vec<Result<Answer, ProviderError>>;

/// A provider behind its layers.
pub type CallService = BoxCloneSyncService<Call, Results, ProviderError>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Builds the layered service for `provider`, its quota kept in `shared` (Redis) when given.
pub fn build_with(
    provider: Arc<dyn Provider>,
    shared: Option<crate::replicas::SharedQuota>,
) -> CallService {
    build_observed(provider, shared).0
}

/// A view of a circuit breaker's state, for `ListProviders`.
#[derive(Debug, Clone)]
pub struct BreakerView(Arc<Mutex<BreakerState>>);

impl BreakerView {
    /// Whether the breaker is failing calls fast now (open, or letting its one probe through).
    pub fn open(&self) -> bool {
        let s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.probing || s.open_until.is_some_and(|until| Instant::now() < until)
    }
}

/// Like [`build_with`], with a view of the breaker's state.
pub fn build_observed(
    provider: Arc<dyn Provider>,
    shared: Option<crate::replicas::SharedQuota>,
) -> (CallService, BreakerView) {
    let limits = provider.info().limits;
    let name = provider.info().name.clone();
    let state = Arc::new(Mutex::new(BreakerState {
        threshold: limits.breaker_failures.max(1),
        cooldown: limits.breaker_cooldown,
        failures: 0,
        open_until: None,
        probing: false,
    }));
    let service = ServiceBuilder::new()
        .layer(breaker_layer(state.clone(), name.clone()))
        .layer(tower::retry::RetryLayer::new(RetryPolicy::new(&limits)))
        .layer(quota_layer(limits.quota, name, shared))
        .concurrency_limit(limits.concurrency.max(1))
        .layer(timeout_layer(limits.timeout))
        .service(ProviderService(provider));
    (BoxCloneSyncService::new(service), BreakerView(state))
}

/// The provider as a service. A call whose every number failed the same way is a failed call
/// (`Err`), which the layers above count, retry and break on; anything else is per number.
#[derive(Clone)]
struct ProviderService(Arc<dyn Provider>);

impl Service<Call> for ProviderService {
    type Response = Results;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Results, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let provider = self.0.clone();
        let info = provider.info();
        let span = tracing::info_span!(
            "vendor.http",
            otel.kind = "client",
            vendor = info.vendor,
            provider = %info.name,
            check = call.check.as_str(),
            // Signed: OTLP has no unsigned integers, and tracing-opentelemetry would send text.
            batch_size = call.queries.len() as i64,
            retry_attempt = i64::from(call.attempt),
            outcome = tracing::field::Empty,
            billable = tracing::field::Empty,
        );
        Box::pin(tracing::Instrument::instrument(
            async move {
                let started = std::time::Instant::now();
                let results = provider.call(call.check, &call.queries).await;
                record_call(provider.info(), call.check, &results, started.elapsed());
                match results.first() {
                    Some(Err(first)) if results.iter().all(|r| r.as_ref().err() == Some(first)) => {
                        Err(first.clone())
                    }
                    _ => Ok(results),
                }
            },
            span,
        ))
    }
}

/// Counts a vendor call (one attempt) and its numbers.
fn record_call(
    info: &crate::providers::ProviderInfo,
    check: Check,
    results: &Results,
    took: Duration,
) {
    use crate::metrics as m;
    let provider = info.name.to_string();
    let outcome = match results.iter().find_map(|r| r.as_ref().err()) {
        None => "ok",
        Some(e) => e.reason().label(),
    };
    metrics::counter!(m::VENDOR_CALLS, "provider" => provider.clone(), "vendor" => info.vendor,
        "check" => check.as_str(), "outcome" => outcome)
    .increment(1);
    let billable = results
        .iter()
        .filter(|r| match r {
            Ok(answer) => answer.billable(),
            Err(e) => e.billable(),
        })
        .count() as u64;
    metrics::counter!(m::VENDOR_NUMBERS, "provider" => provider.clone(), "billable" => "true")
        .increment(billable);
    metrics::counter!(m::VENDOR_NUMBERS, "provider" => provider.clone(), "billable" => "false")
        .increment(results.len() as u64 - billable);
    metrics::histogram!(m::VENDOR_DURATION, "provider" => provider.clone())
        .record(took.as_secs_f64());
    metrics::histogram!(m::VENDOR_BATCH, "provider" => provider).record(results.len() as f64);
    let span = tracing::Span::current();
    span.record("outcome", outcome);
    span.record("billable", billable as i64);
}

/// A layer that runs `f(inner, call)` around the inner service: the one shape the custom layers
/// here share. The inner service's readiness is awaited inside `f` (`oneshot`), so that a layer
/// such as the quota can wait before taking a concurrency permit.
#[derive(Clone)]
struct Around<F>(F);

impl<S, F: Clone> Layer<S> for Around<F> {
    type Service = AroundService<S, F>;

    fn layer(&self, inner: S) -> AroundService<S, F> {
        AroundService {
            inner,
            f: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct AroundService<S, F> {
    inner: S,
    f: F,
}

impl<S, F, Fut> Service<Call> for AroundService<S, F>
where
    S: Service<Call, Response = Results, Error = ProviderError> + Clone,
    F: Fn(S, Call) -> Fut,
    Fut: Future<Output = Result<Results, ProviderError>> + Send + 'static,
{
    type Response = Results;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Results, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProviderError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        Box::pin((self.f)(self.inner.clone(), call))
    }
}

/// Bounds each attempt.
fn timeout_layer<S>(
    limit: Duration,
) -> Around<impl Fn(S, Call) -> BoxFuture<Result<Results, ProviderError>> + Clone>
where
    S: Service<Call, Response = Results, Error = ProviderError> + Send + 'static,
    S::Future: Send,
{
    Around(move |inner: S, call| -> BoxFuture<_> {
        Box::pin(async move {
            tokio::time::timeout(limit, inner.oneshot(call))
                .await
                .unwrap_or(Err(ProviderError::Timeout(limit)))
        })
    })
}

/// Waits for the vendor account's token bucket before each attempt.
fn quota_layer<S>(
    quota: QuotaConfig,
    provider: Arc<str>,
    shared: Option<crate::replicas::SharedQuota>,
) -> Around<impl Fn(S, Call) -> BoxFuture<Result<Results, ProviderError>> + Clone>
where
    S: Service<Call, Response = Results, Error = ProviderError> + Send + 'static,
    S::Future: Send,
{
    // One account's bucket: shared by every replica through Redis when configured, else local.
    let limiter: Option<Arc<DefaultDirectRateLimiter>> = if shared.is_some() {
        None
    } else {
        quota.governor().map(|q| Arc::new(RateLimiter::direct(q)))
    };
    Around(move |inner: S, call| -> BoxFuture<_> {
        let limiter = limiter.clone();
        let shared = shared.clone();
        let provider = provider.clone();
        Box::pin(async move {
            let waiting = std::time::Instant::now();
            let waited = async {
                if let Some(limiter) = &limiter {
                    limiter.until_ready().await;
                } else if let Some(shared) = &shared {
                    shared.until_ready().await?;
                }
                Ok::<(), ProviderError>(())
            }
            .instrument(tracing::info_span!("quota.wait"))
            .await;
            if limiter.is_some() || shared.is_some() {
                metrics::histogram!(crate::metrics::QUOTA_WAIT, "provider" => provider.to_string())
                    .record(waiting.elapsed().as_secs_f64());
            }
            waited?;
            inner.oneshot(call).await
        })
    })
}

/// Retries failed calls that may succeed later and were not billed.
#[derive(Clone)]
struct RetryPolicy {
    left: u32,
    backoff: Duration,
}

impl RetryPolicy {
    fn new(limits: &Limits) -> RetryPolicy {
        RetryPolicy {
            left: limits.retries,
            backoff: limits.retry_backoff,
        }
    }
}

impl tower::retry::Policy<Call, Results, ProviderError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        call: &mut Call,
        result: &mut Result<Results, ProviderError>,
    ) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        if self.left == 0
            || !error.retryable()
            || error.billable()
            // The vendor may have billed it: not asked again blindly.
            || error.possibly_billed()
            || *error == ProviderError::CircuitOpen
        {
            return None;
        }
        self.left -= 1;
        // Full jitter: anywhere up to the current back-off, which doubles each time.
        let wait = self.backoff.mul_f64(rand::random::<f64>());
        if call
            .deadline
            .is_some_and(|deadline| Instant::now() + wait >= deadline)
        {
            // Nobody would be there to receive the answer.
            return None;
        }
        self.backoff = self.backoff.saturating_mul(2);
        call.attempt += 1;
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}

/// Opens after consecutive failures of the vendor; fails fast while open; after the cool-down
/// lets one call probe: success closes it, failure opens it again.
#[derive(Debug)]
struct BreakerState {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

fn breaker_layer<S>(
    state: Arc<Mutex<BreakerState>>,
    provider: Arc<str>,
) -> Around<impl Fn(S, Call) -> BoxFuture<Result<Results, ProviderError>> + Clone>
where
    S: Service<Call, Response = Results, Error = ProviderError> + Send + 'static,
    S::Future: Send,
{
    let open = metrics::gauge!(crate::metrics::BREAKER_OPEN, "provider" => provider.to_string());
    open.set(0.0);
    Around(move |inner: S, call| -> BoxFuture<_> {
        let state = state.clone();
        let open = open.clone();
        Box::pin(async move {
            {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(until) = s.open_until {
                    if Instant::now() < until || s.probing {
                        return Err(ProviderError::CircuitOpen);
                    }
                    s.probing = true;
                }
            }
            let result = inner.oneshot(call).await;
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match &result {
                Err(error) if error.counts_against_vendor() => {
                    s.failures = s.failures.saturating_add(1);
                    if s.probing || s.failures >= s.threshold {
                        s.open_until = Some(Instant::now() + s.cooldown);
                        open.set(1.0);
                        tracing::warn!(failures = s.failures, cooldown = ?s.cooldown, "circuit breaker open");
                    }
                }
                _ => {
                    s.failures = 0;
                    s.open_until = None;
                    open.set(0.0);
                }
            }
            s.probing = false;
            result
        })
    })
}

#[cfg(test)]
mod tests;
