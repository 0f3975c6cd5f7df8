//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the provider that serves it, through its [`Dispatcher`]: the answer
//! cache, single-flight, and the batcher.

mod dispatch;
mod health;
pub mod stack;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

use crate::config::CacheConfig;
use crate::domain::{
    Check, CheckData, CheckOptions, CheckOutcome, CheckState, LineStatus, LineStatusResult,
    NumberInfo, Report, SkipReason,
};
use crate::number::{Analyzer, NumberError};
use crate::providers::{Answer, Provider, Query};

pub use dispatch::{Delivery, Dispatcher, Fetched};
pub use health::Health;

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

/// The engine.
#[derive(Debug)]
pub struct Engine {
    analyzer: Analyzer,
    dispatchers: Vec<Dispatcher>,
    by_check: HashMap<Check, usize>,
}

impl Engine {
    /// An engine over these providers, with the default cache. The first provider that serves a
    /// check serves it. Must be called within a Tokio runtime (each provider gets a batcher).
    pub fn new(analyzer: Analyzer, providers: Vec<Arc<dyn Provider>>) -> Engine {
        Self::with_cache(analyzer, providers, &CacheConfig::default())
    }

    /// An engine with the given cache settings; bulk jobs may use 80% of each vendor's quota.
    pub fn with_cache(
        analyzer: Analyzer,
        providers: Vec<Arc<dyn Provider>>,
        cache: &CacheConfig,
    ) -> Engine {
        Self::build(analyzer, providers, cache, 0.8, None)
    }

    /// An engine with the given cache settings, whose bulk jobs may use `bulk_share` (0 to 1] of
    /// each vendor's quota, and whose quotas are kept in `shared` (Redis) when given.
    pub fn build(
        analyzer: Analyzer,
        providers: Vec<Arc<dyn Provider>>,
        cache: &CacheConfig,
        bulk_share: f64,
        shared: Option<&crate::shared::Shared>,
    ) -> Engine {
        let mut by_check = HashMap::new();
        for (i, provider) in providers.iter().enumerate() {
            for &check in &provider.info().checks {
                by_check.entry(check).or_insert(i);
            }
        }
        Engine {
            analyzer,
            dispatchers: providers
                .into_iter()
                .map(|p| Dispatcher::new(p, cache, bulk_share, shared))
                .collect(),
            by_check,
        }
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
                    Check::LineStatus => CheckState::Ok(CheckData::LineStatus(LineStatusResult {
                        status: LineStatus::Invalid,
                        raw_code: LOCAL.to_owned(),
                        description: "not a valid number".to_owned(),
                    })),
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
