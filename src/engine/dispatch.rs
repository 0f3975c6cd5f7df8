//! One provider's front: the answer cache, single-flight, and the batcher.
//!
//! A check of a number is answered from the cache when a fresh enough answer is there. Otherwise
//! the first caller reserves the (check, number) key and queues a job; any caller that comes while
//! the job is in flight waits for the same answer (single-flight: one vendor call, whoever asks,
//! unary or streamed). The batcher gathers queued jobs into calls of the provider's batch size,
//! waiting at most `linger` for a batch to fill.
//!
//! With `[redis]`, the cache and single-flight reach across replicas ([`SharedAnswers`]): a local
//! miss looks in the shared cache, and the one caller of this replica that would call the vendor
//! first agrees with the other replicas which of them calls.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use moka::Expiry;
use moka::future::Cache;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::Instrument;

use super::health::Health;
use crate::config::CacheConfig;
use crate::domain::{Check, CheckData};
use crate::providers::{Answer, Provider, ProviderError, Query};
use crate::shared::{AnswerKey, Coordination, RemoteLock, SharedAnswers};

/// Jobs queued for the batcher before callers wait.
const QUEUE: usize = 16_384;

/// The name under which answers are shared with other replicas. Not the provider's: answers are
/// kept per check, so that an answer from any provider of a route is a hit for all of them
/// (and replicas calling different providers for one number still make one call).
const SHARED_SCOPE: &str = "route";

/// The answers in memory, shared by every dispatcher of an engine: keyed by check and number,
/// not by provider, for the same reason.
pub type AnswerCache = Cache<Key, Cached>;

/// The answer cache of an engine.
pub fn answer_cache(cache: &CacheConfig) -> AnswerCache {
    Cache::builder()
        .max_capacity(cache.max_entries)
        .expire_after(PerCheckTtl(cache.clone()))
        .build()
}

/// What identifies one answer: the check, the number, and what else the vendor was told.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    check: Check,
    e164: String,
    /// A hash of the KYC inputs, which change account-presence answers; 0 without any.
    inputs: u64,
}

impl Key {
    fn new(check: Check, query: &Query) -> Key {
        let inputs = query.kyc.as_ref().map_or(0, |kyc| {
            let mut h = DefaultHasher::new();
            kyc.hash(&mut h);
            h.finish()
        });
        Key {
            check,
            e164: query.number.e164.clone(),
            inputs,
        }
    }
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The answer.
    pub data: CheckData,
    /// When the vendor gave it.
    pub fetched_at: SystemTime,
    /// The provider that gave it (a route's providers share the cache). An answer adopted from
    /// another replica is credited to the provider that adopted it: Redis keeps no provider.
    pub provider: Arc<str>,
}

/// A vendor call's result for one number, and when it came.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The result.
    pub result: Result<Answer, ProviderError>,
    /// When the vendor answered.
    pub fetched_at: SystemTime,
}

impl Fetched {
    fn now(result: Result<Answer, ProviderError>) -> Fetched {
        Fetched {
            result,
            fetched_at: SystemTime::now(),
        }
    }
}

/// How an answer was obtained.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// From the cache.
    Cached(Cached),
    /// From a vendor call made for this caller.
    Fresh(Fetched),
    /// From a vendor call another caller made at the same time.
    Joined(Fetched),
}

struct PerCheckTtl(CacheConfig);

impl Expiry<Key, Cached> for PerCheckTtl {
    /// The check's TTL from when the vendor answered (an answer from the shared cache may be
    /// older than its arrival here).
    fn expire_after_create(
        &self,
        key: &Key,
        value: &Cached,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let age = SystemTime::now()
            .duration_since(value.fetched_at)
            .unwrap_or_default();
        Some(self.0.ttl(key.check).saturating_sub(age))
    }
}

struct Job {
    key: Key,
    query: Query,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Fetched>,
    /// This replica's hold on the call among replicas, when they share answers.
    lock: Option<RemoteLock>,
    /// The caller's span: the vendor call is traced under the first caller of its batch.
    span: tracing::Span,
}

type Pacer = governor::DefaultDirectRateLimiter;

struct Shared {
    provider: Arc<dyn Provider>,
    /// Paces bulk numbers to their share of the vendor's quota; `None` without a quota.
    bulk_pacer: Option<Pacer>,
    stack: super::stack::CallService,
    breaker: super::stack::BreakerView,
    cache: AnswerCache,
    /// The answers shared with other replicas, with `[redis]`.
    remote: Option<SharedAnswers>,
    inflight: Mutex<HashMap<Key, Vec<oneshot::Sender<Fetched>>>>,
    health: Mutex<Health>,
}

/// A provider behind its cache, single-flight and batcher.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("provider", &self.shared.provider.info().name)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Starts the batcher of `provider`, whose answers go to `answers` (the engine's). Must be
    /// called within a Tokio runtime.
    pub fn new(
        provider: Arc<dyn Provider>,
        answers: AnswerCache,
        cache: &CacheConfig,
        bulk_share: f64,
        shared: Option<&crate::shared::Shared>,
    ) -> Dispatcher {
        Self::with_queue(provider, answers, cache, bulk_share, shared, QUEUE)
    }

    fn with_queue(
        provider: Arc<dyn Provider>,
        answers: AnswerCache,
        cache: &CacheConfig,
        bulk_share: f64,
        shared: Option<&crate::shared::Shared>,
        queue: usize,
    ) -> Dispatcher {
        let info = provider.info();
        let linger = info.limits.batch_linger;
        // In numbers: a call carries up to `batch_size` of them.
        let size = info.batch_size.max(1) as f64;
        let quota = info.limits.quota;
        let bulk_pacer = crate::providers::QuotaConfig::governor(crate::providers::QuotaConfig {
            requests_per_second: quota.requests_per_second * bulk_share * size,
            burst: (f64::from(quota.burst.max(1)) * size) as u32,
        })
        .map(governor::RateLimiter::direct);
        let (stack, breaker) = super::stack::build_observed(
            provider.clone(),
            shared.and_then(|s| s.quota(&info.name, quota)),
        );
        let shared = Arc::new(Shared {
            bulk_pacer,
            stack,
            breaker,
            cache: answers,
            remote: shared.map(|s| s.answers(SHARED_SCOPE, cache)),
            provider,
            inflight: Mutex::new(HashMap::new()),
            health: Mutex::new(Health::default()),
        });
        let (queue, jobs) = mpsc::channel(queue);
        tokio::spawn(batcher(shared.clone(), jobs, linger));
        Dispatcher { shared, queue }
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.shared.provider
    }

    /// The provider's health as last seen.
    pub fn health(&self) -> Health {
        let mut health = self
            .shared
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        health.circuit_open = self.shared.breaker.open();
        health
    }

    /// Whether a vendor call for `check` of `query` is in flight here (a route then sends the
    /// same number here, to share it).
    pub fn in_flight_for(&self, check: Check, query: &Query) -> bool {
        self.in_flight(&Key::new(check, query))
    }

    /// Answers `check` for `query`: from the cache if an answer younger than `max_age` is there,
    /// else from the vendor call in flight for the same key, else from a new one.
    #[tracing::instrument(
        name = "dispatch",
        skip_all,
        fields(provider = %self.shared.provider.info().name, check = check.as_str(), delivery)
    )]
    pub async fn dispatch(
        &self,
        check: Check,
        query: Query,
        max_age: Option<Duration>,
        deadline: Option<Instant>,
        priority: super::Priority,
    ) -> Delivery {
        let key = Key::new(check, &query);
        if let Some(hit) = self.fresh(&key, max_age).await {
            return self.shared.cached(hit);
        }
        let remote_key = self
            .shared
            .remote
            .as_ref()
            .map(|remote| remote.key(check, &query.number.e164, query.kyc.as_ref()));
        if priority == super::Priority::Bulk
            && let Some(pacer) = &self.shared.bulk_pacer
            && !self.in_flight(&key)
        {
            // Paced are the numbers that will cost a call, not those another replica paid for.
            if let (Some(remote), Some(remote_key)) = (&self.shared.remote, &remote_key)
                && let Some((data, fetched_at)) = remote.cached(remote_key, max_age).await
            {
                return self
                    .shared
                    .cached(self.shared.adopt(&key, data, fetched_at).await);
            }
            pacer.until_ready().await;
            if let Some(hit) = self.fresh(&key, max_age).await {
                return self.shared.cached(hit);
            }
        }
        let joined = {
            let mut inflight = self
                .shared
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match inflight.get_mut(&key) {
                Some(waiters) => {
                    let (reply, answer) = oneshot::channel();
                    waiters.push(reply);
                    Some(answer)
                }
                None => {
                    inflight.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        if let Some(answer) = joined {
            // Another caller of this replica is on it.
            return self.shared.joined(
                answer
                    .await
                    .unwrap_or_else(|_| Fetched::now(Err(dropped()))),
            );
        }
        // This caller speaks for its replica: it makes the call, or learns who does. The work
        // is a task of its own, so that this caller may be dropped at any point (its deadline
        // passed, its client went away) without leaving the key reserved and its waiters with
        // no answer: the call goes on, and every waiter gets its result.
        let (reply, answer) = oneshot::channel();
        let leader = self.clone();
        tokio::spawn(
            async move {
                let delivery = match leader.lead(key, remote_key, query, max_age, deadline).await {
                    Ok(delivery) => delivery,
                    Err(answer) => {
                        leader.shared.count("miss");
                        tracing::Span::current().record("delivery", "vendor");
                        Delivery::Fresh(
                            answer
                                .await
                                .unwrap_or_else(|_| Fetched::now(Err(dropped()))),
                        )
                    }
                };
                let _ = reply.send(delivery);
            }
            .instrument(tracing::Span::current()),
        );
        answer
            .await
            .unwrap_or_else(|_| Delivery::Fresh(Fetched::now(Err(dropped()))))
    }

    /// The first caller of this replica for `key`: answers from the cache if an answer landed
    /// meanwhile, else agrees with the other replicas (if shared) who calls, else queues the call
    /// and hands back the receiver of its answer.
    async fn lead(
        &self,
        key: Key,
        remote_key: Option<AnswerKey>,
        query: Query,
        max_age: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<Delivery, oneshot::Receiver<Fetched>> {
        // An answer may have landed between the cache check and the reservation.
        if let Some(hit) = self.fresh(&key, max_age).await {
            self.shared.deliver(&key, hit.ready(), None);
            return Ok(self.shared.cached(hit));
        }
        let mut lock = None;
        if let (Some(remote), Some(remote_key)) = (&self.shared.remote, remote_key) {
            match remote.coordinate(&remote_key, max_age).await {
                Coordination::Cached(data, fetched_at) => {
                    let hit = self.shared.adopt(&key, data, fetched_at).await;
                    return Ok(self.shared.cached(hit));
                }
                Coordination::Joined(data, fetched_at) => {
                    let hit = self.shared.adopt(&key, data, fetched_at).await;
                    return Ok(self.shared.joined(hit.ready()));
                }
                Coordination::Leader(held) => lock = Some(held),
                Coordination::Alone => {}
            }
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            key,
            query,
            deadline,
            reply,
            lock,
            span: tracing::Span::current(),
        };
        if let Err(mpsc::error::SendError(job)) = self.queue.send(job).await {
            if let (Some(remote), Some(lock)) = (&self.shared.remote, job.lock) {
                remote.finish(lock, None).await;
            }
            self.shared
                .deliver(&job.key, Fetched::now(Err(dropped())), Some(job.reply));
        }
        Err(answer)
    }

    fn in_flight(&self, key: &Key) -> bool {
        self.shared
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    async fn fresh(&self, key: &Key, max_age: Option<Duration>) -> Option<Cached> {
        let hit = self.shared.cache.get(key).await?;
        let age = SystemTime::now()
            .duration_since(hit.fetched_at)
            .unwrap_or_default();
        max_age.is_none_or(|max| age <= max).then_some(hit)
    }
}

fn dropped() -> ProviderError {
    ProviderError::State("the provider's batcher stopped".to_owned())
}

impl Cached {
    /// As a vendor's answer, not billed again.
    fn ready(&self) -> Fetched {
        Fetched {
            result: Ok(Answer::Ready {
                data: self.data.clone(),
                billable: false,
            }),
            fetched_at: self.fetched_at,
        }
    }
}

impl Shared {
    fn count(&self, result: &'static str) {
        let provider = self.provider.info().name.to_string();
        metrics::counter!(crate::metrics::CACHE_LOOKUPS, "provider" => provider, "result" => result)
            .increment(1);
    }

    /// A cache hit (this replica's cache or the shared one).
    fn cached(&self, hit: Cached) -> Delivery {
        self.count("hit");
        tracing::Span::current().record("delivery", "cache");
        Delivery::Cached(hit)
    }

    /// The answer of a call another caller made (on this replica or another).
    fn joined(&self, fetched: Fetched) -> Delivery {
        self.count("miss");
        let provider = self.provider.info().name.to_string();
        metrics::counter!(crate::metrics::SINGLE_FLIGHT_JOINS, "provider" => provider).increment(1);
        tracing::Span::current().record("delivery", "joined");
        Delivery::Joined(fetched)
    }

    /// Takes an answer from the shared cache or another replica: cached here too, and handed to
    /// this replica's callers waiting for it.
    async fn adopt(&self, key: &Key, data: CheckData, fetched_at: SystemTime) -> Cached {
        let cached = Cached {
            data,
            fetched_at,
            provider: self.provider.info().name.clone(),
        };
        self.cache.insert(key.clone(), cached.clone()).await;
        self.deliver(key, cached.ready(), None);
        cached
    }

    /// Hands a result to every waiter of `key` (and to the caller that made the call).
    fn deliver(&self, key: &Key, fetched: Fetched, reply: Option<oneshot::Sender<Fetched>>) {
        let waiters = self
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(fetched.clone());
        }
        if let Some(reply) = reply {
            let _ = reply.send(fetched);
        }
    }

    /// Calls the provider for a batch, then caches and delivers each answer.
    async fn execute(&self, check: Check, jobs: Vec<Job>) {
        let queries: Arc<[Query]> = jobs.iter().map(|j| j.query.clone()).collect();
        // Retries stop at the latest deadline among the callers; any caller without one lifts it.
        let deadline = jobs
            .iter()
            .map(|j| j.deadline)
            .reduce(|a, b| a.zip(b).map(|(a, b)| a.max(b)))
            .flatten();
        let call = super::stack::Call {
            check,
            queries,
            deadline,
            attempt: 0,
        };
        let info = self.provider.info();
        let span = tracing::info_span!(
            parent: &jobs[0].span,
            "vendor.call",
            provider = %info.name,
            vendor = info.vendor,
            check = check.as_str(),
            batch_size = jobs.len() as i64,
            outcome = tracing::field::Empty,
        );
        let mut results = match self
            .stack
            .clone()
            .oneshot(call)
            .instrument(span.clone())
            .await
        {
            Ok(results) => {
                span.record("outcome", "answered");
                results
            }
            Err(error) => {
                // A breaker that is open fails the call here, without a vendor.http span.
                span.record("outcome", error.reason().label());
                vec![Err(error); jobs.len()]
            }
        };
        if results.len() != jobs.len() {
            let error = ProviderError::BadResponse(format!(
                "the provider returned {} results for {} numbers",
                results.len(),
                jobs.len()
            ));
            results = vec![Err(error); jobs.len()];
        }
        self.record(&results);
        let fetched_at = SystemTime::now();
        let mut shared_answers = Vec::new();
        let mut deliveries = Vec::with_capacity(jobs.len());
        for (job, result) in jobs.into_iter().zip(results) {
            // Answers are cached, negative ones too; failures and pending answers are not.
            let data = match &result {
                Ok(Answer::Ready { data, .. }) => Some(data.clone()),
                _ => None,
            };
            if let Some(data) = &data {
                let cached = Cached {
                    data: data.clone(),
                    fetched_at,
                    provider: self.provider.info().name.clone(),
                };
                self.cache.insert(job.key.clone(), cached).await;
            }
            if let (Some(remote), Some(lock)) = (&self.remote, job.lock) {
                shared_answers.push(async move {
                    remote
                        .finish(lock, data.as_ref().map(|d| (d, fetched_at)))
                        .await;
                });
            }
            deliveries.push((job.key, Fetched { result, fetched_at }, job.reply));
        }
        // Other replicas can see an answer by the time this replica's callers have it.
        join_all(shared_answers).await;
        for (key, fetched, reply) in deliveries {
            self.deliver(&key, fetched, Some(reply));
        }
    }

    /// Any success resets the failure count; a call whose results all failed for the vendor's
    /// sake (not a refused number) counts as one failure.
    fn record(&self, results: &[Result<Answer, ProviderError>]) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if results.iter().any(Result::is_ok) {
            *health = Health::default();
            return;
        }
        let failure = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| e.counts_against_vendor());
        if let Some(error) = failure {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.last_error = Some(error.clone());
        }
    }
}

/// Gathers jobs into batches of the provider's size, waiting at most `linger` for one to fill.
async fn batcher(shared: Arc<Shared>, mut jobs: mpsc::Receiver<Job>, linger: Duration) {
    let size = shared.provider.info().batch_size.max(1);
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let until = Instant::now() + linger;
        while batch.len() < size {
            match tokio::time::timeout_at(until, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut by_check: HashMap<Check, Vec<Job>> = HashMap::new();
            for job in batch {
                by_check.entry(job.key.check).or_default().push(job);
            }
            for (check, jobs) in by_check {
                shared.execute(check, jobs).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::{LineStatus, LineStatusResult};
    use crate::engine::Priority;
    use crate::number::{Analyzer, LocationData};
    use crate::providers::{LimitsConfig, ProviderInfo, QuotaConfig};

    /// A vendor that answers only when the test opens its door, and counts its calls.
    #[derive(Debug)]
    struct HeldVendor {
        info: ProviderInfo,
        door: tokio::sync::Semaphore,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for HeldVendor {
        fn info(&self) -> &ProviderInfo {
            &self.info
        }

        fn covers(&self, _: &crate::domain::NumberInfo) -> Result<(), String> {
            Ok(())
        }

        async fn call(&self, _: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = self.door.acquire().await {
                permit.forget();
            }
            let data = CheckData::LineStatus(LineStatusResult::new(LineStatus::Active, "1", ""));
            vec![
                Ok(Answer::Ready {
                    data,
                    billable: true,
                });
                batch.len()
            ]
        }
    }

    fn held(queue: usize) -> (Arc<HeldVendor>, Dispatcher) {
        let limits = LimitsConfig::default().resolve(
            QuotaConfig {
                requests_per_second: 0.0,
                burst: 1,
            },
            Duration::from_secs(5),
        );
        let vendor = Arc::new(HeldVendor {
            info: ProviderInfo {
                name: "held".into(),
                vendor: "held",
                checks: vec![Check::LineStatus],
                batch_size: 1,
                asynchronous: false,
                limits,
                sandbox: true,
            },
            door: tokio::sync::Semaphore::new(0),
            calls: AtomicUsize::new(0),
        });
        let cache = CacheConfig::default();
        let dispatcher = Dispatcher::with_queue(
            vendor.clone(),
            answer_cache(&cache),
            &cache,
            1.0,
            None,
            queue,
        );
        (vendor, dispatcher)
    }

    fn query(number: &str) -> Query {
        Query {
            number: Analyzer::new(LocationData::embedded())
                .analyze(number, "CN")
                .unwrap(),
            kyc: None,
        }
    }

    /// A leader dropped after any number of polls (before its vendor call is queued, while it
    /// is queued, while the vendor holds it) leaves no number wedged: the callers after it get
    /// the answer of the one vendor call.
    #[tokio::test]
    async fn a_dropped_leader_never_wedges_its_number() {
        let (vendor, dispatcher) = held(QUEUE);
        for polls in 0..6 {
            let number = format!("1380013800{polls}");
            let mut leader = Box::pin(dispatcher.dispatch(
                Check::LineStatus,
                query(&number),
                None,
                None,
                Priority::Live,
            ));
            for _ in 0..=polls {
                assert!(futures::poll!(&mut leader).is_pending());
                tokio::task::yield_now().await;
            }
            drop(leader);
            let next = tokio::spawn({
                let dispatcher = dispatcher.clone();
                let query = query(&number);
                async move {
                    dispatcher
                        .dispatch(Check::LineStatus, query, None, None, Priority::Live)
                        .await
                }
            });
            vendor.door.add_permits(1);
            match next.await.unwrap() {
                Delivery::Joined(fetched) | Delivery::Fresh(fetched) => {
                    assert!(fetched.result.is_ok(), "{:?}", fetched.result)
                }
                Delivery::Cached(_) => {}
            }
            assert_eq!(
                vendor.calls.load(Ordering::SeqCst),
                polls + 1,
                "one call each"
            );
        }
    }

    /// A leader dropped while it waits for room in the batcher's queue (this test's runtime has
    /// one thread, so the batcher does not run until the test yields).
    #[tokio::test]
    async fn a_leader_dropped_at_a_full_queue_never_wedges_its_number() {
        let (vendor, dispatcher) = held(1);
        let dispatch = |number: &str| {
            let dispatcher = dispatcher.clone();
            let query = query(number);
            async move {
                dispatcher
                    .dispatch(Check::LineStatus, query, None, None, Priority::Live)
                    .await
            }
        };
        let mut first = Box::pin(dispatch("13800138010"));
        assert!(futures::poll!(&mut first).is_pending());
        let mut second = Box::pin(dispatch("13800138011"));
        assert!(futures::poll!(&mut second).is_pending());
        drop(second);
        vendor.door.add_permits(2);
        let again = tokio::time::timeout(Duration::from_secs(10), dispatch("13800138011"))
            .await
            .expect("the number of the dropped leader is answered");
        assert!(!matches!(again, Delivery::Fresh(ref f) if f.result.is_err()));
        assert!(first.await.is_answered());
        assert_eq!(vendor.calls.load(Ordering::SeqCst), 2);
    }

    impl Delivery {
        fn is_answered(&self) -> bool {
            match self {
                Delivery::Cached(_) => true,
                Delivery::Fresh(f) | Delivery::Joined(f) => f.result.is_ok(),
            }
        }
    }
}
