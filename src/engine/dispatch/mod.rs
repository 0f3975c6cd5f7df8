//! One provider's front: the answer cache, single-flight, and the batcher.
//!
//! A check of a number is answered from the cache when a fresh enough answer is there. Otherwise
//! the first caller reserves the (check, number) key and queues a job; any caller that comes while
//! the job is in flight waits for the same answer (single-flight: one vendor call, whoever asks,
//! unary or streamed). The batcher gathers queued jobs into calls of the provider's batch size,
//! waiting at most `linger` for a batch to fill.
//!
//! The cache is the engine's [`Answers`]: the hot tier in memory, then the answer store on disk.
//! With `[redis]`, the cache and single-flight reach across replicas ([`SharedAnswers`]): a local
//! miss looks in the shared cache, and the one caller of this replica that would call the vendor
//! first agrees with the other replicas which of them calls.
//!
//! Platform profiles (account presence) are personal data: an answer is kept with them only when
//! the caller that paid for it was granted them; otherwise they are removed before it is kept
//! anywhere (memory, disk, Redis), and a later caller granted them asks the vendor again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::answers::AnswerId;
use super::answers::{Answers, Hit, Wanted};
use super::health::Health;
use super::usage::Usage;
use crate::domain::{Check, CheckData};
use crate::providers::{Answer, Provider, ProviderError, Query};
use crate::replicas::{AnswerKey, Coordination, RemoteLock, SharedAnswer, SharedAnswers, TtlFn};

/// Jobs queued for the batcher before callers wait.
const QUEUE: usize = 16_384;

/// What identifies one answer: the check, and keyed hashes of the number and of everything the
/// vendor was told (provider, check, number, KYC inputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    check: Check,
    id: AnswerId,
}

/// A cached answer.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The answer.
    pub data: CheckData,
    /// When the vendor gave it.
    pub fetched_at: SystemTime,
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

/// Who asks for an answer, and how.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The tenant the vendor call is counted to in the usage ledger.
    pub tenant: Arc<str>,
    /// When the caller stops waiting; retries do not start after it.
    pub deadline: Option<Instant>,
    /// Live or bulk.
    pub priority: super::Priority,
    /// The caller was granted platform profiles: they may be kept with the answer.
    pub profiles: bool,
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

impl From<Hit> for Cached {
    fn from(hit: Hit) -> Cached {
        Cached {
            data: hit.data,
            fetched_at: hit.fetched_at,
        }
    }
}

struct Job {
    key: Key,
    query: Query,
    /// The caller was granted platform profiles: they may be kept with the answer.
    profiles: bool,
    deadline: Option<Instant>,
    /// Whose usage the call is.
    tenant: Arc<str>,
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
    /// What the circuit breaker says now, for the health `ListProviders` shows.
    breaker: super::stack::BreakerView,
    /// The engine's answer cache (memory, then disk).
    answers: Arc<Answers>,
    /// The answers shared with other replicas, with `[redis]`.
    remote: Option<SharedAnswers>,
    inflight: Mutex<HashMap<Key, Vec<oneshot::Sender<Fetched>>>>,
    health: Mutex<Health>,
    /// The usage ledger's increments.
    usage: Arc<Usage>,
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
    /// Starts the batcher of `provider`, whose answers are kept in `answers` (and in Redis, for
    /// `ttl`, with `shared`), and whose vendor calls are counted in `usage`. Must be called within
    /// a Tokio runtime.
    pub fn new(
        provider: Arc<dyn Provider>,
        answers: Arc<Answers>,
        ttl: TtlFn,
        bulk_share: f64,
        shared: Option<&crate::replicas::Shared>,
        usage: Arc<Usage>,
    ) -> Dispatcher {
        Self::with_queue(provider, answers, ttl, bulk_share, shared, usage, QUEUE)
    }

    fn with_queue(
        provider: Arc<dyn Provider>,
        answers: Arc<Answers>,
        ttl: TtlFn,
        bulk_share: f64,
        shared: Option<&crate::replicas::Shared>,
        usage: Arc<Usage>,
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
            answers,
            remote: shared.map(|s| s.answers(&info.name, ttl)),
            provider,
            inflight: Mutex::new(HashMap::new()),
            health: Mutex::new(Health::default()),
            usage,
        });
        let (queue, jobs) = mpsc::channel(queue);
        tokio::spawn(call::batcher(shared.clone(), jobs, linger));
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

    /// What identifies this provider's answer for `check` of `query` asked by `tenant` (with
    /// `cache.share = "tenant"`, each tenant's answers and calls in flight are its own).
    fn key(&self, check: Check, query: &Query, tenant: &str) -> Key {
        Key {
            check,
            id: self.shared.answers.id(
                &self.shared.provider.info().name,
                check,
                &query.number.e164,
                query.kyc.as_ref(),
                self.shared.answers.scope(tenant),
            ),
        }
    }

    /// Whether a vendor call for `check` of `query` that `tenant` may join is in flight here (a
    /// route then sends the same number here, to share it).
    pub fn in_flight_for(&self, check: Check, query: &Query, tenant: &str) -> bool {
        self.in_flight(&self.key(check, query, tenant))
    }

    /// This provider's usable answer for `check` of `query` from the answer cache, without a
    /// vendor call and without counting a lookup (a route looks at each of its providers'
    /// answers before it asks any vendor, and counts that as one lookup).
    pub async fn find_cached(
        &self,
        check: Check,
        query: &Query,
        max_age: Option<Duration>,
        profiles: bool,
        tenant: &str,
    ) -> Option<Hit> {
        let key = self.key(check, query, tenant);
        self.shared
            .answers
            .find(
                &key.id,
                Wanted {
                    check,
                    max_age,
                    profiles,
                },
            )
            .await
    }

    /// Serves `hit` (found by [`Dispatcher::find_cached`]) as this provider's cache hit, counted
    /// as one lookup of the answer cache.
    pub fn serve_cached(&self, hit: Hit) -> Cached {
        self.shared.answers.count(Some(&hit));
        self.shared.count("hit");
        tracing::Span::current().record("delivery", "cache");
        hit.into()
    }

    /// Answers `check` for `query`: from the cache if an answer younger than `max_age` is there
    /// (with platform profiles, when the caller is granted them), else from the vendor call in
    /// flight for the same key, else from a new one, counted to the caller's tenant.
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
        caller: &Caller,
    ) -> Delivery {
        let profiles = caller.profiles;
        let key = self.key(check, &query, &caller.tenant);
        if let Some(hit) = self
            .shared
            .answers
            .lookup(
                &key.id,
                Wanted {
                    check,
                    max_age,
                    profiles,
                },
            )
            .await
        {
            return self.shared.cached(hit.into());
        }
        let remote_key = self.shared.remote.as_ref().map(|remote| {
            remote.key(
                check,
                &query.number.e164,
                query.kyc.as_ref(),
                self.shared.answers.scope(&caller.tenant),
            )
        });
        if caller.priority == super::Priority::Bulk
            && let Some(pacer) = &self.shared.bulk_pacer
            && !self.in_flight(&key)
        {
            // Paced are the numbers that will cost a call, not those another replica paid for.
            if let (Some(remote), Some(remote_key)) = (&self.shared.remote, &remote_key)
                && let Some(answer) = remote.cached(remote_key, max_age, profiles).await
            {
                return self.shared.cached(self.shared.adopt(&key, answer).await);
            }
            pacer.until_ready().await;
            if let Some(hit) = self.fresh(&key, max_age, profiles) {
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
                    inflight.insert(key, Vec::new());
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
        let caller = caller.clone();
        tokio::spawn(
            async move {
                let delivery = match leader.lead(key, remote_key, query, max_age, &caller).await {
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
        caller: &Caller,
    ) -> Result<Delivery, oneshot::Receiver<Fetched>> {
        let profiles = caller.profiles;
        // An answer may have landed between the cache check and the reservation.
        if let Some(hit) = self.fresh(&key, max_age, profiles) {
            self.shared.deliver(&key, hit.ready(), None);
            return Ok(self.shared.cached(hit));
        }
        let mut lock = None;
        if let (Some(remote), Some(remote_key)) = (&self.shared.remote, remote_key) {
            match remote.coordinate(&remote_key, max_age, profiles).await {
                Coordination::Cached(answer) => {
                    let hit = self.shared.adopt(&key, answer).await;
                    return Ok(self.shared.cached(hit));
                }
                Coordination::Joined(answer) => {
                    let hit = self.shared.adopt(&key, answer).await;
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
            profiles,
            deadline: caller.deadline,
            tenant: caller.tenant.clone(),
            reply,
            lock,
            span: tracing::Span::current(),
        };
        if let Err(mpsc::error::SendError(job)) = self.queue.send(job).await {
            if let (Some(remote), Some(lock)) = (&self.shared.remote, job.lock) {
                remote.finish(lock, None, false).await;
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

    /// A usable answer in the hot tier (one that landed since the caller's lookup).
    fn fresh(&self, key: &Key, max_age: Option<Duration>, profiles: bool) -> Option<Cached> {
        self.shared
            .answers
            .peek(
                &key.id,
                Wanted {
                    check: key.check,
                    max_age,
                    profiles,
                },
            )
            .map(Cached::from)
    }
}

/// An answer as it may be kept: without platform profiles unless the paying caller was granted
/// them; true when some were removed.
fn keepable(data: CheckData, profiles: bool) -> (CheckData, bool) {
    match data {
        CheckData::AccountPresence(presence) if !profiles => {
            let withheld = presence.registrations.iter().any(|r| r.profile.is_some());
            (
                CheckData::AccountPresence(presence.without_profiles()),
                withheld,
            )
        }
        data => (data, false),
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

    /// Takes an answer from the shared cache or another replica: kept here too (memory and
    /// store), and handed to this replica's callers waiting for it.
    async fn adopt(&self, key: &Key, answer: SharedAnswer) -> Cached {
        let row = self.answers.hold(
            key.id,
            key.check,
            &answer.data,
            answer.fetched_at,
            answer.withheld,
        );
        self.answers.persist(vec![row]).await;
        let cached = Cached {
            data: answer.data,
            fetched_at: answer.fetched_at,
        };
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
}

mod call;

#[cfg(test)]
mod tests;
