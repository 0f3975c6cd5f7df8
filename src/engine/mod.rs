//! Runs the checks a request asks for: offline analysis first (free; invalid numbers never reach a
//! vendor), then, per check, the providers of its [route](route) in turn, each through its
//! [`Dispatcher`]: the answer cache ([`Answers`]: a compact hot tier in memory, then the answer
//! store on disk), single-flight, and the batcher. Before any vendor is asked, every provider of
//! the route is looked for in the answer cache, so an answer from any of them serves the route.

mod answers;
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

use crate::domain::{
    Attempt, Check, CheckData, CheckOptions, CheckOutcome, CheckState, Currency, LineStatus,
    LineStatusResult, Money, NumberInfo, Report, SkipReason,
};
use crate::number::{Analyzer, NumberError};
use crate::providers::{Answer, Provider, Query};

pub use answers::{
    AnswerId, AnswerStats, Answers, CacheConfig, ENTRY_BYTES, Hit, HotStats, KEY_FILE, Share, Tier,
    parse_bytes,
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

    async fn run_check(
        &self,
        check: Check,
        info: &NumberInfo,
        request: &LookupRequest,
        started: Instant,
    ) -> CheckOutcome {
        let options = &request.options;
        let query = Query {
            number: info.clone(),
            kyc: options.kyc.clone(),
            scope: self
                .answers
                .scope(&request.tenant)
                .map(|_| request.tenant.clone()),
        };
        let order = match self.plan(check, info, &query, &request.tenant) {
            Plan::Local(local) => return local.finish(started),
            Plan::Providers(order) => order,
        };
        let profiles = options.include_profile_details;
        let caller = Caller {
            tenant: request.tenant.clone(),
            deadline: request.deadline,
            priority: request.priority,
            profiles,
        };
        // An answer any provider of the route gave is a hit for the route: the first one found,
        // in the route's order, is served in the name of the provider that gave it. (A route of
        // one is left to its dispatcher, which looks in its cache first anyway.)
        for &index in order.iter().filter(|_| order.len() > 1) {
            let dispatcher = &self.dispatchers[index];
            if let Some(hit) = dispatcher
                .find_cached(
                    check,
                    &query,
                    options.max_cache_age,
                    profiles,
                    &request.tenant,
                )
                .await
            {
                let hit = dispatcher.serve_cached(hit);
                let provider = dispatcher.provider().info();
                self.count_usage(&request.tenant, &provider.name, check, true, false);
                return redact_profiles(
                    CheckOutcome {
                        check,
                        provider: provider.name.clone(),
                        state: CheckState::Ok(hit.data),
                        billable: false,
                        cost: Money::ZERO,
                        joined: false,
                        cached: true,
                        latency: started.elapsed(),
                        fetched_at: Some(hit.fetched_at),
                        sandbox: provider.sandbox,
                        attempts: Vec::new(),
                    },
                    options,
                );
            }
        }
        let mut attempts = Vec::new();
        for (n, &index) in order.iter().enumerate() {
            let dispatcher = &self.dispatchers[index];
            let tried = Instant::now();
            let delivery = dispatcher
                .dispatch(check, query.clone(), options.max_cache_age, &caller)
                .await;
            let provider = dispatcher.provider().info();
            let joined = matches!(delivery, Delivery::Joined(_));
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
            if let CheckState::Failed(error) = &state
                && let Some(&next) = order.get(n + 1)
                && route::fails_over(error)
                && !billable
                && request
                    .deadline
                    .is_none_or(|deadline| tokio::time::Instant::now() < deadline)
            {
                let to = self.dispatchers[next].provider().info().name.clone();
                route::failed_over(check, &provider.name, &to, error);
                attempts.push(Attempt {
                    provider: provider.name.clone(),
                    error: error.clone(),
                    latency: tried.elapsed(),
                });
                continue;
            }
            self.count_usage(&request.tenant, &provider.name, check, cached, joined);
            return redact_profiles(
                CheckOutcome {
                    check,
                    provider: provider.name.clone(),
                    state,
                    billable,
                    cost: if billable {
                        provider.prices.of(check)
                    } else {
                        Money::ZERO
                    },
                    joined,
                    cached,
                    latency: started.elapsed(),
                    fetched_at: Some(fetched_at),
                    sandbox: provider.sandbox,
                    attempts,
                },
                options,
            );
        }
        unreachable!("a plan names at least one provider, and the last one always answers")
    }

    /// The providers to try for a check, in order, or the local decision why none is asked.
    fn plan(&self, check: Check, info: &NumberInfo, query: &Query, tenant: &str) -> Plan {
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
        let Some(route) = self.routes.get(&check) else {
            return Plan::Local(LocalOutcome::local(
                check,
                CheckState::Skipped(SkipReason::NoProvider),
            ));
        };
        let order = route.order(
            info,
            |i| self.dispatchers[i].provider().covers(info).is_ok(),
            |i| self.dispatchers[i].in_flight_for(check, query, tenant),
        );
        if order.is_empty() {
            // Nobody on the route takes the number: the first provider says why.
            let provider = self.dispatchers[route.members[0]].provider();
            let why = provider.covers(info).err().unwrap_or_default();
            return Plan::Local(LocalOutcome {
                check,
                provider: provider.info().name.clone(),
                state: CheckState::Skipped(SkipReason::NotCovered(why)),
            });
        }
        Plan::Providers(order)
    }
}

/// Where a check goes.
enum Plan {
    /// To the providers at these indices, in turn.
    Providers(Vec<usize>),
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
            cost: Money::ZERO,
            joined: false,
            cached: false,
            latency: started.elapsed(),
            fetched_at: None,
            sandbox: false,
            attempts: Vec::new(),
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
