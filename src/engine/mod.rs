//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the providers of its [route](route) in turn, each through its
//! [`Dispatcher`]: the answer cache ([`Answers`]: a compact hot tier in memory, then the answer
//! store on disk), single-flight, and the batcher. Before any vendor is asked, every provider of
//! the route is looked for in the answer cache, so an answer from any of them serves the route.

mod answers;
mod check;
mod dispatch;
mod health;
mod quote;
pub mod route;
pub mod stack;
mod usage;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::future::join_all;

use crate::domain::{Check, CheckOptions, Currency, Money, Report};
use crate::number::{Analyzer, NumberError};
use crate::providers::Provider;

pub use answers::{
    AnswerId, AnswerStats, Answers, CacheConfig, ENTRY_BYTES, Hit, HotStats, KEY_FILE, Share, Tier,
    Wanted, parse_bytes,
};
pub use dispatch::{Cached, Caller, Delivery, Dispatcher, Fetched};
pub use health::Health;
pub use quote::Quote;
use route::Route;
pub use route::{Policy, RouteConfig, RouteError, RoutesConfig, RuleConfig};
pub use usage::{FLUSH_EVERY, Usage, UsageEvent};

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
    /// The tenant asking: its vendor calls, cache hits and shared calls are counted to it in the
    /// usage ledger.
    pub tenant: Arc<str>,
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
    Shared(#[from] crate::replicas::SharedError),
}

/// The engine.
#[derive(Debug)]
pub struct Engine {
    analyzer: Analyzer,
    dispatchers: Vec<Dispatcher>,
    routes: HashMap<Check, Route>,
    answers: Arc<Answers>,
    shared: Option<crate::replicas::Shared>,
    currency: Currency,
    /// The share of each vendor's quota bulk jobs may use.
    bulk_share: f64,
    usage: Arc<Usage>,
}

/// A check's route as `ListProviders` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    /// The check.
    pub check: Check,
    /// Its providers, in order.
    pub providers: Vec<Arc<str>>,
    /// How numbers are shared among them.
    pub policy: Policy,
    /// Its match rules, as configured.
    pub rules: Vec<RuleConfig>,
}

impl Engine {
    /// An engine over these providers, with the default cache in memory. Each check is routed
    /// over every provider that serves it, in the order given (see [`Engine::with_routes`]). Must
    /// be called within a Tokio runtime (each provider gets a batcher).
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
    /// are shared through `replicas` (Redis) when given.
    pub fn build(
        analyzer: Analyzer,
        providers: Vec<Arc<dyn Provider>>,
        cache: &CacheConfig,
        answers: Arc<Answers>,
        bulk_share: f64,
        shared: Option<&crate::replicas::Shared>,
    ) -> Engine {
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
        let usage = Arc::new(Usage::default());
        let mut engine = Engine {
            analyzer,
            dispatchers: providers
                .into_iter()
                .map(|p| {
                    let ttl = cache.ttl_fn();
                    Dispatcher::new(p, answers.clone(), ttl, bulk_share, shared, usage.clone())
                })
                .collect(),
            routes: HashMap::new(),
            answers,
            shared: shared.cloned(),
            currency: Currency::default(),
            bulk_share,
            usage,
        };
        for check in Check::ALL {
            let members: Vec<usize> = (0..engine.dispatchers.len())
                .filter(|&i| {
                    engine.dispatchers[i]
                        .provider()
                        .info()
                        .checks
                        .contains(&check)
                })
                .collect();
            if !members.is_empty() {
                let route = engine.route(check, members, route::Policy::Failover, Vec::new());
                engine.routes.insert(check, route);
            }
        }
        engine
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

    /// The engine with prices and costs in `currency` (CNY unless set).
    pub fn with_currency(mut self, currency: Currency) -> Engine {
        self.currency = currency;
        self
    }

    /// The currency of every price and cost.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The most one number's `check` can cost: the highest price among the providers of the
    /// check's route (a failover may land on any of them). What budgets hold and estimates count.
    pub fn price_ceiling(&self, check: Check) -> Money {
        self.routes
            .get(&check)
            .map(|route| {
                route
                    .providers()
                    .into_iter()
                    .map(|i| self.dispatchers[i].provider().info().prices.of(check))
                    .max()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Replaces the default route of each check named in `routes` (`[routes]`). Fails, listing
    /// every problem, when a route names a provider the engine does not have or one that does not
    /// serve the check.
    pub fn with_routes(mut self, routes: &RoutesConfig) -> Result<Engine, RouteError> {
        let names: Vec<Arc<str>> = self
            .dispatchers
            .iter()
            .map(|d| d.provider().info().name.clone())
            .collect();
        let served = self
            .dispatchers
            .iter()
            .map(|d| {
                let info = d.provider().info();
                (info.name.to_string(), info.checks.clone())
            })
            .collect();
        let problems = route::problems(routes, &served);
        if !problems.is_empty() {
            return Err(RouteError::Invalid(problems));
        }
        for (key, config) in routes {
            let Some(check) = route::check_named(key) else {
                continue;
            };
            let table = config.table();
            let members = table
                .providers
                .iter()
                .filter_map(|name| names.iter().position(|n| **n == **name))
                .collect();
            let rules = table
                .rules
                .into_iter()
                .map(|rule| Route::rule(rule, &names))
                .collect();
            let route = self.route(check, members, table.policy, rules);
            self.routes.insert(check, route);
        }
        Ok(self)
    }

    fn route(
        &self,
        check: Check,
        members: Vec<usize>,
        policy: Policy,
        rules: Vec<route::Rule>,
    ) -> Route {
        let quotas: Vec<f64> = members
            .iter()
            .map(|&i| {
                self.dispatchers[i]
                    .provider()
                    .info()
                    .limits
                    .quota
                    .requests_per_second
            })
            .collect();
        Route::new(check, members, policy, rules, &quotas)
    }

    /// Each check's route, in the order of [`Check::ALL`].
    pub fn routes(&self) -> Vec<RouteView> {
        Check::ALL
            .into_iter()
            .filter_map(|check| self.routes.get(&check))
            .map(|route| RouteView {
                check: route.check,
                providers: route
                    .members
                    .iter()
                    .map(|&i| self.dispatchers[i].provider().info().name.clone())
                    .collect(),
                policy: route.policy,
                rules: route.rules.iter().map(|r| r.config().clone()).collect(),
            })
            .collect()
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
}
