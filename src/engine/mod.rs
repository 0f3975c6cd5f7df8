//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the provider that serves it; numbers bound for the same provider are
//! sent together, in batches of the provider's size.

mod health;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::future::join_all;

use crate::domain::{
    Check, CheckData, CheckOptions, CheckOutcome, CheckState, LineStatus, LineStatusResult,
    NumberInfo, Report, SkipReason,
};
use crate::number::{Analyzer, NumberError};
use crate::providers::{Answer, Provider, ProviderError, Query};

pub use health::Health;
use health::Registered;

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
    providers: Vec<Registered>,
    by_check: HashMap<Check, usize>,
}

/// One check of one request that goes to a provider.
struct Work {
    request: usize,
    slot: usize,
    query: Query,
}

impl Engine {
    /// An engine over these providers. The first provider that serves a check serves it.
    pub fn new(analyzer: Analyzer, providers: Vec<Arc<dyn Provider>>) -> Engine {
        let mut by_check = HashMap::new();
        for (i, provider) in providers.iter().enumerate() {
            for &check in &provider.info().checks {
                by_check.entry(check).or_insert(i);
            }
        }
        Engine {
            analyzer,
            providers: providers.into_iter().map(Registered::new).collect(),
            by_check,
        }
    }

    /// The offline analyser.
    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Every provider with its health, in configuration order.
    pub fn providers(&self) -> Vec<(Arc<dyn Provider>, Health)> {
        self.providers
            .iter()
            .map(|r| (r.provider.clone(), r.health()))
            .collect()
    }

    /// Analyses one number and runs every check asked for, concurrently.
    pub async fn lookup(&self, request: &LookupRequest) -> Result<Report, EngineError> {
        self.lookup_many(std::slice::from_ref(request))
            .await
            .pop()
            .expect("one result per request")
    }

    /// Analyses many numbers and runs their checks: numbers bound for one provider and check are
    /// sent together in batches of the provider's size, all batches concurrently. One result per
    /// request, in order.
    pub async fn lookup_many(
        &self,
        requests: &[LookupRequest],
    ) -> Vec<Result<Report, EngineError>> {
        let started = Instant::now();
        let mut reports: Vec<Result<Report, EngineError>> = Vec::with_capacity(requests.len());
        let mut slots: Vec<Vec<Option<CheckOutcome>>> = Vec::with_capacity(requests.len());
        let mut work: HashMap<(usize, Check), Vec<Work>> = HashMap::new();

        for (r, request) in requests.iter().enumerate() {
            let info = match self
                .analyzer
                .analyze(&request.number, &request.default_region)
            {
                Ok(info) => info,
                Err(e) => {
                    reports.push(Err(e.into()));
                    slots.push(Vec::new());
                    continue;
                }
            };
            let mut seen = HashSet::new();
            let checks: Vec<Check> = request
                .checks
                .iter()
                .copied()
                .filter(|c| seen.insert(*c))
                .collect();
            let mut outcomes = Vec::with_capacity(checks.len());
            for (slot, &check) in checks.iter().enumerate() {
                match self.plan(check, &info) {
                    Plan::Provider(provider) => {
                        outcomes.push(None);
                        work.entry((provider, check)).or_default().push(Work {
                            request: r,
                            slot,
                            query: Query {
                                number: info.clone(),
                                kyc: request.options.kyc.clone(),
                            },
                        });
                    }
                    Plan::Local(local) => outcomes.push(Some(local.finish(started))),
                }
            }
            slots.push(outcomes);
            reports.push(Ok(Report {
                info,
                outcomes: Vec::new(),
            }));
        }

        let batches = work.into_iter().flat_map(|((provider, check), items)| {
            let size = self.providers[provider].provider.info().batch_size.max(1);
            let mut chunks = Vec::new();
            let mut items = items.into_iter().peekable();
            while items.peek().is_some() {
                chunks.push((
                    provider,
                    check,
                    items.by_ref().take(size).collect::<Vec<_>>(),
                ));
            }
            chunks
        });
        let answered = join_all(
            batches.map(|(provider, check, items)| self.run_batch(provider, check, items)),
        )
        .await;
        for (items, outcomes) in answered {
            for (item, outcome) in items.into_iter().zip(outcomes) {
                slots[item.request][item.slot] = Some(outcome);
            }
        }

        for ((report, outcomes), request) in reports.iter_mut().zip(slots).zip(requests) {
            if let Ok(report) = report {
                report.outcomes = outcomes
                    .into_iter()
                    .map(|o| o.expect("every planned check is answered"))
                    .map(|o| redact_profiles(o, &request.options))
                    .collect();
            }
        }
        reports
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
        let provider = &self.providers[index].provider;
        if let Err(why) = provider.covers(info) {
            return Plan::Local(LocalOutcome {
                check,
                provider: provider.info().name.clone(),
                state: CheckState::Skipped(SkipReason::NotCovered(why)),
            });
        }
        Plan::Provider(index)
    }

    async fn run_batch(
        &self,
        provider: usize,
        check: Check,
        items: Vec<Work>,
    ) -> (Vec<Work>, Vec<CheckOutcome>) {
        let registered = &self.providers[provider];
        let info = registered.provider.info();
        let queries: Vec<Query> = items.iter().map(|w| w.query.clone()).collect();
        let started = Instant::now();
        let mut results = registered.provider.call(check, &queries).await;
        if results.len() != queries.len() {
            let error = ProviderError::BadResponse(format!(
                "the provider returned {} results for {} numbers",
                results.len(),
                queries.len()
            ));
            results = vec![Err(error); queries.len()];
        }
        registered.record(&results);
        let latency = started.elapsed();
        let fetched_at = SystemTime::now();
        let outcomes = results
            .into_iter()
            .map(|result| {
                let (state, billable) = match result {
                    Ok(Answer::Ready { data, billable }) => (CheckState::Ok(data), billable),
                    Ok(Answer::Pending { billable }) => (CheckState::Pending, billable),
                    Err(error) => {
                        let billable = error.billable();
                        (CheckState::Failed(error), billable)
                    }
                };
                CheckOutcome {
                    check,
                    provider: info.name.clone(),
                    state,
                    billable,
                    cached: false,
                    latency,
                    fetched_at: Some(fetched_at),
                    sandbox: info.sandbox,
                }
            })
            .collect();
        (items, outcomes)
    }
}

/// Where a check goes.
enum Plan {
    /// To the provider at this index.
    Provider(usize),
    /// Nowhere: decided locally.
    Local(LocalOutcome),
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
