//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the provider that serves it, through its [`Dispatcher`]: the answer
//! cache ([`Answers`]: a compact hot tier in memory, then the answer store on disk), single-flight,
//! and the batcher.

mod answers;
mod cache;
mod codec;
mod dispatch;
mod health;
mod hot;
mod presence;
pub mod stack;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

use crate::domain::{
    Check, CheckData, CheckOptions, CheckOutcome, CheckState, LineStatus, LineStatusResult,
    NumberInfo, Report, SkipReason,
};
use crate::number::{Analyzer, NumberError};
use crate::providers::{Answer, Provider, Query};

pub use answers::{AnswerStats, Answers, Hit, KEY_FILE, Tier};
pub use cache::{CacheConfig, parse_bytes};
pub use dispatch::{Cached, Delivery, Dispatcher, Fetched};
pub use health::Health;
pub use hot::{AnswerId, ENTRY_BYTES, HotStats};

/// The provider name reported for answers phonecheck decides itself.
pub const LOCAL: &str = "local";

/// A request for one number.
#[derive(Debug, Clone, Default)]
pub struct LookupRequest {
    /// The number as written.
    pub number: String,
    /// Region for numbers without a country code; empty means `CN`.
    pub default_region: String,
    /// Checks to run, in order; duplicates are run once.
    pub checks: Vec<Check>,
    /// Options.
    pub options: CheckOptions,
    /// When the caller stops waiting; retries do not start after it.
    pub deadline: Option<tokio::time::Instant>,
    /// Live callers go first; bulk jobs use a share of each vendor's quota.
    pub priority: Priority,
}

/// Who is waiting for an answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    /// A caller waiting now (unary calls, streams).
    #[default]
    Live,
    /// A bulk job: paced to `jobs.quota_share` of the vendor's quota, so that live calls find
    /// quota left.
    Bulk,
}

/// Why the engine could not produce a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The input is not a number.
    #[error(transparent)]
    Number(#[from] NumberError),
}

/// Why answers could not be forgotten everywhere.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// The answer store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Redis failed (the kind only).
    #[error(transparent)]
    Shared(#[from] crate::shared::SharedError),
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    analyzer: Analyzer,
    dispatchers: Vec<Dispatcher>,
    by_check: HashMap<Check, usize>,
    answers: Arc<Answers>,
    shared: Option<crate::shared::Shared>,
}

impl Engine {
    /// An engine over these providers, with the default cache in memory. The first provider that
    /// serves a check serves it. Must be called within a Tokio runtime (each provider gets a
    /// batcher).
    pub fn new(analyzer: Analyzer, providers: Vec<Arc<dyn Provider>>) -> Engine {
        Self::with_cache(analyzer, providers, &CacheConfig::default())
    }

    /// An engine with the given cache settings, in memory only; bulk jobs may use 80% of each
    /// vendor's quota.
    pub fn with_cache(
        analyzer: Analyzer,
        providers: Vec<Arc<dyn Provider>>,
        cache: &CacheConfig,
    ) -> Engine {
        Self::build(
            analyzer,
            providers,
            cache,
            Answers::memory(cache),
            0.8,
            None,
        )
    }

    /// An engine with the given cache settings and answer cache ([`Answers::open`]), whose bulk
    /// jobs may use `bulk_share` (0 to 1] of each vendor's quota, and whose quotas and answers
    /// are shared through `shared` (Redis) when given.
    pub fn build(
        analyzer: Analyzer,
        providers: Vec<Arc<dyn Provider>>,
        cache: &CacheConfig,
        answers: Arc<Answers>,
        bulk_share: f64,
        shared: Option<&crate::shared::Shared>,
    ) -> Engine {
        let mut by_check = HashMap::new();
        for (i, provider) in providers.iter().enumerate() {
            for &check in &provider.info().checks {
                by_check.entry(check).or_insert(i);
            }
        }
        if let Some(shared) = shared {
            // Other replicas' forgets reach this replica's memory and store too.
            let answers = Arc::downgrade(&answers);
            shared.on_forget(Arc::new(move |payload: Vec<u8>| {
                let Some(answers) = answers.upgrade() else {
                    return;
                };
                let hashes = payload
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                tokio::spawn(async move {
                    if let Err(e) = answers.forget_hashes(&hashes).await {
                        tracing::warn!(error = %e, "answer store: a forget from another replica failed");
                    }
                });
            }));
        }
        Engine {
            analyzer,
            dispatchers: providers
                .into_iter()
                .map(|p| Dispatcher::new(p, answers.clone(), cache.ttl_fn(), bulk_share, shared))
                .collect(),
            by_check,
            answers,
            shared: shared.cloned(),
        }
    }

    /// What the answer cache holds and how it does.
    pub async fn answer_stats(&self) -> AnswerStats {
        self.answers.stats().await
    }

    /// Waits until every paid answer so far is in the answer store (at shutdown).
    pub async fn flush_answers(&self) {
        self.answers.flush().await;
    }

    /// Forgets every answer about these numbers (E.164): in memory, in the answer store and, with
    /// `[redis]`, in Redis (right to erasure). Returns how many answers were forgotten.
    pub async fn forget(&self, numbers: &[String]) -> Result<u64, ForgetError> {
        let hashes: HashSet<u64> = numbers
            .iter()
            .map(|n| self.answers.number_hash(n))
            .collect();
        let mut forgotten = self.answers.forget_hashes(&hashes).await?;
        if let Some(shared) = &self.shared {
            forgotten = forgotten.max(shared.forget(numbers).await?);
            // Every replica keeps its own store: each forgets what the hashes name.
            for chunk in hashes.iter().copied().collect::<Vec<_>>().chunks(4096) {
                let payload = chunk.iter().flat_map(|h| h.to_le_bytes()).collect();
                shared.broadcast_forget(payload).await?;
            }
        }
        Ok(forgotten)
    }

    /// The offline analyser.
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Every provider with its health, in configuration order.
    pub fn providers(&self) -> Vec<(Arc<dyn Provider>, Health)> {
        self.dispatchers
            .iter()
            .map(|d| (d.provider().clone(), d.health()))
            .collect()
    }

    /// Analyses one number and runs every check asked for, concurrently.
    #[tracing::instrument(
        name = "engine.lookup",
        skip_all,
        fields(number = %crate::telemetry::mask(&request.number), checks = request.checks.len())
    )]
    pub async fn lookup(&self, request: &LookupRequest) -> Result<Report, EngineError> {
        let started = Instant::now();
        let info = self
            .analyzer
            .analyze(&request.number, &request.default_region)?;
        let mut seen = HashSet::new();
        let checks = request.checks.iter().copied().filter(|c| seen.insert(*c));
        let outcomes =
            join_all(checks.map(|check| self.run_check(check, &info, request, started))).await;
        Ok(Report { info, outcomes })
    }

    async fn run_check(
        &self,
        check: Check,
        info: &NumberInfo,
        request: &LookupRequest,
        started: Instant,
    ) -> CheckOutcome {
        let options = &request.options;
        let dispatcher = match self.plan(check, info) {
            Plan::Local(local) => return local.finish(started),
            Plan::Provider(index) => &self.dispatchers[index],
        };
        let provider = dispatcher.provider().info();
        let query = Query {
            number: info.clone(),
            kyc: options.kyc.clone(),
        };
        let delivery = dispatcher
            .dispatch(
                check,
                query,
                options.max_cache_age,
                request.deadline,
                request.priority,
                options.include_profile_details,
            )
            .await;
        let (state, billable, cached, fetched_at) = match delivery {
            Delivery::Cached(hit) => (CheckState::Ok(hit.data), false, true, hit.fetched_at),
            Delivery::Fresh(fetched) => {
                let billable = match &fetched.result {
                    Ok(answer) => answer.billable(),
                    Err(e) => e.billable(),
                };
                (
                    state_of(fetched.result),
                    billable,
                    false,
                    fetched.fetched_at,
                )
            }
            // Another caller's call: shared, and billed to that caller.
            Delivery::Joined(fetched) => {
                (state_of(fetched.result), false, false, fetched.fetched_at)
            }
        };
        redact_profiles(
            CheckOutcome {
                check,
                provider: provider.name.clone(),
                state,
                billable,
                cached,
                latency: started.elapsed(),
                fetched_at: Some(fetched_at),
                sandbox: provider.sandbox,
            },
            options,
        )
    }

    /// Picks the provider for a check, or decides locally why none is asked.
    fn plan(&self, check: Check, info: &NumberInfo) -> Plan {
        if !info.valid {
            // The taxonomy's INVALID is decided here and never sent upstream.
            return Plan::Local(LocalOutcome::local(
                check,
                match check {
                    Check::LineStatus => CheckState::Ok(CheckData::LineStatus(
                        LineStatusResult::new(LineStatus::Invalid, LOCAL, "not a valid number"),
                    )),
                    _ => CheckState::Skipped(SkipReason::NumberInvalid),
                },
            ));
        }
        let Some(&index) = self.by_check.get(&check) else {
            return Plan::Local(LocalOutcome::local(
                check,
                CheckState::Skipped(SkipReason::NoProvider),
            ));
        };
        let provider = self.dispatchers[index].provider();
        if let Err(why) = provider.covers(info) {
            return Plan::Local(LocalOutcome {
                check,
                provider: provider.info().name.clone(),
                state: CheckState::Skipped(SkipReason::NotCovered(why)),
            });
        }
        Plan::Provider(index)
    }
}

/// Where a check goes.
enum Plan {
    /// To the provider at this index.
    Provider(usize),
    /// Nowhere: decided locally.
    Local(LocalOutcome),
}

fn state_of(result: Result<Answer, crate::providers::ProviderError>) -> CheckState {
    match result {
        Ok(Answer::Ready { data, .. }) => CheckState::Ok(data),
        Ok(Answer::Pending { .. }) => CheckState::Pending,
        Err(error) => CheckState::Failed(error),
    }
}

/// An outcome decided without a vendor.
struct LocalOutcome {
    check: Check,
    provider: Arc<str>,
    state: CheckState,
}

impl LocalOutcome {
    fn local(check: Check, state: CheckState) -> LocalOutcome {
        LocalOutcome {
            check,
            provider: LOCAL.into(),
            state,
        }
    }

    fn finish(self, started: Instant) -> CheckOutcome {
        CheckOutcome {
            check: self.check,
            provider: self.provider,
            state: self.state,
            billable: false,
            cached: false,
            latency: started.elapsed(),
            fetched_at: None,
            sandbox: false,
        }
    }
}

/// Platform profiles are personal data: they leave the engine only when the caller asked.
fn redact_profiles(mut outcome: CheckOutcome, options: &CheckOptions) -> CheckOutcome {
    if !options.include_profile_details
        && let CheckState::Ok(CheckData::AccountPresence(presence)) = outcome.state
    {
        outcome.state = CheckState::Ok(CheckData::AccountPresence(presence.without_profiles()));
    }
    outcome
}
