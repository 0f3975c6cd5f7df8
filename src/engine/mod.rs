//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the provider that serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures::future::join_all;

use crate::domain::{
    Check, CheckData, CheckOutcome, CheckState, LineStatus, LineStatusResult, NumberInfo, Report,
    SkipReason,
};
use crate::number::{Analyzer, NumberError};
use crate::providers::{Provider, ProviderError};

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
}

/// Why the engine could not produce a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The input is not a number.
    #[error(transparent)]
    Number(#[from] NumberError),
}

/// A provider's health as last seen.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Consecutive failed calls.
    pub consecutive_failures: u32,
    /// The most recent failure while failing.
    pub last_error: Option<ProviderError>,
}

impl Health {
    /// Failing after this many consecutive failed calls.
    pub const FAILING_AFTER: u32 = 3;

    /// Whether recent calls failed.
    pub fn failing(&self) -> bool {
        self.consecutive_failures >= Self::FAILING_AFTER
    }
}

#[derive(Debug)]
struct Registered {
    provider: Arc<dyn Provider>,
    health: Mutex<Health>,
}

impl Registered {
    fn record(&self, result: &Result<crate::providers::Answer, ProviderError>) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => *health = Health::default(),
            // A vendor refusing one number says nothing about the vendor's health.
            Err(e) if e.reason() == crate::providers::ErrorReason::Rejected => {}
            Err(e) => {
                health.consecutive_failures = health.consecutive_failures.saturating_add(1);
                health.last_error = Some(e.clone());
            }
        }
    }
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    analyzer: Analyzer,
    providers: Vec<Registered>,
    by_check: HashMap<Check, usize>,
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
            providers: providers
                .into_iter()
                .map(|provider| Registered {
                    provider,
                    health: Mutex::new(Health::default()),
                })
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
        self.providers
            .iter()
            .map(|r| {
                let health = r.health.lock().unwrap_or_else(|e| e.into_inner()).clone();
                (r.provider.clone(), health)
            })
            .collect()
    }

    /// Analyses the number and runs every check asked for, concurrently.
    pub async fn lookup(&self, request: &LookupRequest) -> Result<Report, EngineError> {
        let info = self
            .analyzer
            .analyze(&request.number, &request.default_region)?;
        let mut checks = request.checks.clone();
        let mut seen = std::collections::HashSet::new();
        checks.retain(|c| seen.insert(*c));
        let outcomes = join_all(checks.iter().map(|&check| self.run_check(check, &info))).await;
        Ok(Report { info, outcomes })
    }

    async fn run_check(&self, check: Check, info: &NumberInfo) -> CheckOutcome {
        let started = Instant::now();
        let local = |state| CheckOutcome {
            check,
            provider: LOCAL.into(),
            state,
            billable: false,
            cached: false,
            latency: started.elapsed(),
            fetched_at: None,
            sandbox: false,
        };
        if !info.valid {
            // The taxonomy's INVALID is decided here and never sent upstream.
            return local(match check {
                Check::LineStatus => CheckState::Ok(CheckData::LineStatus(LineStatusResult {
                    status: LineStatus::Invalid,
                    raw_code: LOCAL.to_owned(),
                    description: "not a valid number".to_owned(),
                })),
                _ => CheckState::Skipped(SkipReason::NumberInvalid),
            });
        }
        let Some(registered) = self.by_check.get(&check).map(|&i| &self.providers[i]) else {
            return local(CheckState::Skipped(SkipReason::NoProvider));
        };
        let provider = &registered.provider;
        let outcome = |state, billable| CheckOutcome {
            check,
            provider: provider.info().name.clone(),
            state,
            billable,
            cached: false,
            latency: started.elapsed(),
            fetched_at: Some(SystemTime::now()),
            sandbox: provider.info().sandbox,
        };
        if let Err(why) = provider.covers(info) {
            let mut skipped = outcome(CheckState::Skipped(SkipReason::NotCovered(why)), false);
            skipped.fetched_at = None;
            // Nothing was asked of the (simulated) vendor.
            skipped.sandbox = false;
            return skipped;
        }
        let result = provider
            .call(check, std::slice::from_ref(info))
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| {
                Err(ProviderError::BadResponse(
                    "the provider returned no result".to_owned(),
                ))
            });
        registered.record(&result);
        match result {
            Ok(answer) => outcome(CheckState::Ok(answer.data), answer.billable),
            Err(error) => {
                let billable = error.billable();
                outcome(CheckState::Failed(error), billable)
            }
        }
    }
}
