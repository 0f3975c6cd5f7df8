//! API keys and tenants: `authorization: Bearer <key>` names a tenant, whose grants decide which
//! checks it may run. Keys are configured only as SHA-256 hashes.
//!
//! Transport-free: [`Tenants::authenticate`] and the [`Tenant`] methods return [`AuthError`],
//! which the API edge converts to a `tonic::Status` (its auth layer authenticates every call of
//! the phonecheck services and counts it against the tenant's rate; health and reflection stay
//! open).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::budget::{BudgetHold, DailyBudget, LimitError, LocalRate, RateBucket, TenantLimits};
use crate::domain::{Check, CheckOptions, Currency, Money};
use crate::store::{BudgetLimit, BudgetStore, Spend};

/// The largest `daily_budget`, in units of the currency: Redis's Lua scripts count in doubles,
/// exact to 2^53 nanos (about 9,007,199 units).
pub const MAX_DAILY_BUDGET_UNITS: i64 = 9_000_000;

/// `[tenants.NAME]`: one API client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// SHA-256 (hex) of each of the tenant's API keys; `phonecheck keys new` prints one. The keys
    /// themselves are never stored.
    pub key_sha256: Vec<String>,
    /// The checks the tenant may run. Account presence (social-account probing) is not granted
    /// unless listed.
    #[serde(default = "default_allowed_checks")]
    pub allowed_checks: Vec<crate::domain::Check>,
    /// Whether the tenant may receive platform profile details (personal data).
    #[serde(default)]
    pub profile_details: bool,
    /// Whether the tenant may use the admin service (`ForgetNumber`: erase what phonecheck keeps
    /// about a number).
    #[serde(default)]
    pub admin: bool,
    /// Whether the tenant may read every tenant's usage (`GetUsage`); otherwise it sees its own.
    #[serde(default)]
    pub usage_all: bool,
    /// Calls per second the tenant may make (a token bucket); absent: unlimited.
    pub rate_limit: Option<crate::quota::QuotaConfig>,
    /// Billable vendor calls the tenant may cause per day (China time, as the vendors bill);
    /// absent: unlimited.
    pub daily_billable_budget: Option<u64>,
    /// What the tenant's billable calls may cost per day, in the billing currency, as a decimal
    /// string (`"50.00"`); absent: unlimited. With `daily_billable_budget` too, both hold.
    pub daily_budget: Option<Money>,
    /// `CheckNumbers` streams the tenant may have open at once; `server.max_streams_per_tenant`
    /// when absent.
    pub max_streams: Option<usize>,
    /// Stream items the tenant may have in flight over all its streams;
    /// `server.max_items_in_flight_per_tenant` when absent.
    pub max_items_in_flight: Option<usize>,
    /// Where the tenant's jobs' state changes are posted (signed); none when absent.
    pub webhook: Option<crate::webhooks::TargetConfig>,
}

fn default_allowed_checks() -> Vec<crate::domain::Check> {
    crate::domain::CHECKS
        .iter()
        .filter(|spec| spec.granted_by_default)
        .map(|spec| spec.check)
        .collect()
}

impl TenantConfig {
    /// Everything wrong with `[tenants.NAME]`, each problem prefixed with its key.
    pub fn problems(&self, name: &str) -> Vec<String> {
        let tenant = self;
        let mut problems = Vec::new();
        if let Some(rate) = tenant.rate_limit
            && !(rate.requests_per_second > 0.0
                && rate.requests_per_second.is_finite()
                && rate.burst >= 1)
        {
            problems.push(format!(
                "tenants.{name}.rate_limit: requests_per_second must be above zero and burst at least 1"
            ));
        }
        if let Some(budget) = tenant.daily_budget
            && budget > Money::from_units(MAX_DAILY_BUDGET_UNITS)
        {
            problems.push(format!(
                "tenants.{name}.daily_budget: at most {MAX_DAILY_BUDGET_UNITS} a day (Redis keeps \
                 budgets exact to the nano up to there)"
            ));
        }
        if tenant.key_sha256.is_empty() {
            problems.push(format!("tenants.{name}: key_sha256 is empty"));
        }
        for (i, hash) in tenant.key_sha256.iter().enumerate() {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(format!(
                    "tenants.{name}.key_sha256[{i}]: not a SHA-256 in hex (64 hex digits)"
                ));
            }
        }
        problems
    }
}

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No valid API key.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The tenant was not granted what it asked for.
    #[error("{message}")]
    PermissionDenied {
        /// The `google.rpc.ErrorInfo` reason.
        reason: &'static str,
        /// What was refused.
        message: String,
    },
    /// The tenant called faster than its rate limit.
    #[error("tenant {tenant} is over its rate limit; retry in {retry_after:?}")]
    RateLimited {
        /// The tenant.
        tenant: String,
        /// When a call would be accepted again.
        retry_after: std::time::Duration,
    },
    /// The tenant spent today's budget.
    #[error("tenant {tenant} has spent today's budget of {budget}; it renews in {retry_after:?}")]
    BudgetExhausted {
        /// The tenant.
        tenant: String,
        /// The budget in words (`50 billable calls`, `12.00 CNY`).
        budget: String,
        /// The settings that say so (`daily_billable_budget`, `daily_budget`).
        settings: &'static str,
        /// Until the budget renews.
        retry_after: std::time::Duration,
    },
    /// Where the tenant's budget or rate is kept (Redis, the store) cannot be reached: nothing
    /// is allowed that could pass them.
    #[error("tenant {tenant}: {error}")]
    LimitsUnavailable {
        /// The tenant.
        tenant: String,
        /// What could not be checked, and why (the kind of failure only).
        error: String,
    },
    /// The tenant has as many calls of a kind open as it may.
    #[error("tenant {tenant} has its maximum of {calls} open ({setting}); wait for one to end")]
    TooMany {
        /// The tenant.
        tenant: String,
        /// The calls (`CheckNumbers streams`, `exports`, ...).
        calls: &'static str,
        /// The setting that bounds them.
        setting: &'static str,
    },
}

/// An API client and what it may do.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The configured name (`anonymous` without authentication).
    pub name: String,
    /// Checks it may run.
    pub allowed_checks: HashSet<Check>,
    /// Whether it may receive platform profile details.
    pub profile_details: bool,
    /// Whether it may use the admin service (forget a number).
    pub admin: bool,
    /// Whether it may read every tenant's usage.
    pub usage_all: bool,
    /// Its daily billable budget and request rate, on every path (calls, stream items, jobs).
    pub limits: TenantLimits,
    /// Its `CheckNumbers` streams open at once; past it a new one is refused.
    streams: Arc<Semaphore>,
    /// Its stream items being worked on at once, over all its streams; past it reading waits.
    items: Arc<Semaphore>,
    /// Its job uploads being received at once.
    uploads: Arc<Semaphore>,
    /// Its exports being produced at once.
    exports: Arc<Semaphore>,
    /// Its `WatchBatchJob` streams open at once.
    watches: Arc<Semaphore>,
}

/// How many of each long-lived call a tenant may have open at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyLimits {
    /// Concurrent `CheckNumbers` streams.
    pub streams: usize,
    /// Stream items being worked on at once, over all the tenant's streams.
    pub items: usize,
    /// Concurrent `CreateBatchJob` uploads.
    pub uploads: usize,
    /// Concurrent `ExportBatchJobResults` calls.
    pub exports: usize,
    /// Concurrent `WatchBatchJob` streams.
    pub watches: usize,
}

impl Default for ConcurrencyLimits {
    fn default() -> Self {
        ConcurrencyLimits {
            streams: 64,
            items: 4_096,
            uploads: 4,
            exports: 4,
            watches: 32,
        }
    }
}

/// A long-lived call a tenant holds a place for while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrent {
    /// A `CheckNumbers` stream.
    Stream,
    /// A `CreateBatchJob` upload.
    Upload,
    /// An `ExportBatchJobResults` call.
    Export,
    /// A `WatchBatchJob` stream.
    Watch,
}

impl Concurrent {
    /// What the caller reads in the error: the calls, and the setting that bounds them.
    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Concurrent::Stream => ("CheckNumbers streams", "max_streams"),
            Concurrent::Upload => ("job uploads", "max_uploads"),
            Concurrent::Export => ("exports", "max_exports"),
            Concurrent::Watch => ("WatchBatchJob streams", "max_watches"),
        }
    }
}

impl Tenant {
    /// The caller when no tenants are configured: may do everything.
    pub fn anonymous() -> Tenant {
        Self::anonymous_with(ConcurrencyLimits::default())
    }

    /// The anonymous caller with these concurrency limits.
    pub fn anonymous_with(limits: ConcurrencyLimits) -> Tenant {
        Tenant {
            admin: true,
            usage_all: true,
            ..Self::with_limits(
                ANONYMOUS,
                Check::ALL.into_iter().collect(),
                true,
                TenantLimits::default(),
                limits,
            )
        }
    }

    fn with_limits(
        name: &str,
        allowed_checks: HashSet<Check>,
        profile_details: bool,
        limits: TenantLimits,
        concurrency: ConcurrencyLimits,
    ) -> Tenant {
        let places = |n: usize| Arc::new(Semaphore::new(n));
        Tenant {
            name: name.to_owned(),
            allowed_checks,
            profile_details,
            admin: false,
            usage_all: false,
            limits,
            streams: places(concurrency.streams),
            items: places(concurrency.items),
            uploads: places(concurrency.uploads),
            exports: places(concurrency.exports),
            watches: places(concurrency.watches),
        }
    }

    /// Refuses a tenant not granted the admin service.
    pub fn authorize_admin(&self) -> Result<(), AuthError> {
        if self.admin {
            return Ok(());
        }
        Err(AuthError::PermissionDenied {
            reason: "ADMIN_NOT_ALLOWED",
            message: format!("tenant {} may not use the admin service", self.name),
        })
    }

    /// Whose usage the tenant may read when it asks for `asked` (empty: its own, or everyone's
    /// when granted `usage_all`): one tenant's name, or `None` for every tenant. Refuses another
    /// tenant's usage to a tenant not granted `usage_all`.
    pub fn usage_of(&self, asked: &str) -> Result<Option<String>, AuthError> {
        match (self.usage_all, asked) {
            (true, "") => Ok(None),
            (true, asked) => Ok(Some(asked.to_owned())),
            (false, "") => Ok(Some(self.name.clone())),
            (false, asked) if asked == self.name => Ok(Some(self.name.clone())),
            (false, _) => Err(AuthError::PermissionDenied {
                reason: "USAGE_NOT_ALLOWED",
                message: format!(
                    "tenant: tenant {} may read only its own usage (usage_all is not granted)",
                    self.name
                ),
            }),
        }
    }

    /// Takes a place for a long-lived call, or refuses it when the tenant has its maximum open.
    pub fn open(&self, call: Concurrent) -> Result<OwnedSemaphorePermit, AuthError> {
        let places = match call {
            Concurrent::Stream => &self.streams,
            Concurrent::Upload => &self.uploads,
            Concurrent::Export => &self.exports,
            Concurrent::Watch => &self.watches,
        };
        let (calls, setting) = call.describe();
        places
            .clone()
            .try_acquire_owned()
            .map_err(|_| AuthError::TooMany {
                tenant: self.name.clone(),
                calls,
                setting,
            })
    }

    /// Waits for room for one more stream item in flight.
    pub async fn item_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.items.clone().acquire_owned().await.ok()
    }

    /// Holds room in today's budget for the paid checks of one request (one call each at most,
    /// at `price(check)`, the highest price of the check's route), or refuses them when the
    /// budget has not that much left (offline analysis stays free).
    pub async fn hold_budget(
        &self,
        checks: &[Check],
        price: impl Fn(Check) -> Money,
    ) -> Result<BudgetHold, AuthError> {
        let distinct: HashSet<Check> = checks.iter().copied().collect();
        let want = Spend {
            calls: distinct.len() as u64,
            cost: distinct.into_iter().map(price).sum(),
        };
        self.limits
            .hold(want)
            .await
            .map_err(|e| self.limit_error(e))
    }

    /// Waits for the tenant's rate to allow one more stream item.
    pub async fn pace(&self) -> Result<(), AuthError> {
        self.limits.pace().await.map_err(|e| self.limit_error(e))
    }

    /// Counts one call against the tenant's rate, refusing it past the rate.
    pub async fn count_call(&self) -> Result<(), AuthError> {
        self.limits
            .try_request()
            .await
            .map_err(|e| self.limit_error(e))
    }

    /// What the budget or the rate said, as the tenant's error.
    pub fn limit_error(&self, e: LimitError) -> AuthError {
        let tenant = self.name.clone();
        match e {
            LimitError::Spent(spent) => AuthError::BudgetExhausted {
                tenant,
                budget: spent.describe(),
                settings: match (spent.limit.calls, spent.limit.cost) {
                    (Some(_), Some(_)) => "daily_billable_budget and daily_budget",
                    (None, Some(_)) => "daily_budget",
                    _ => "daily_billable_budget",
                },
                retry_after: spent.retry_after,
            },
            LimitError::RateLimited(retry_after) => AuthError::RateLimited {
                tenant,
                retry_after,
            },
            LimitError::Unavailable { .. } => AuthError::LimitsUnavailable {
                tenant,
                error: e.to_string(),
            },
        }
    }

    /// Refuses checks and options the tenant was not granted.
    pub fn authorize(
        &self,
        field: &str,
        checks: &[Check],
        options: &CheckOptions,
    ) -> Result<(), AuthError> {
        if let Some(check) = checks.iter().find(|c| !self.allowed_checks.contains(c)) {
            return Err(AuthError::PermissionDenied {
                reason: "CHECK_NOT_ALLOWED",
                message: format!("{field}: tenant {} may not run {check}", self.name),
            });
        }
        if options.include_profile_details && !self.profile_details {
            return Err(AuthError::PermissionDenied {
                reason: "PROFILE_DETAILS_NOT_ALLOWED",
                message: format!("tenant {} may not receive profile details", self.name),
            });
        }
        Ok(())
    }
}

/// Where tenants' budgets and rates are kept: the budget store (Redis when replicas share one,
/// else the store), the billing currency, and, with Redis, rates shared by replicas.
#[derive(Debug, Clone)]
pub struct TenantLimitStores {
    /// Where daily budgets are held and settled.
    pub budgets: Arc<dyn BudgetStore>,
    /// The currency of `daily_budget`.
    pub currency: Currency,
    /// Rates kept by every replica together; `None`: each process keeps its own.
    pub rates: Option<Arc<dyn crate::budget::RateSource>>,
}

impl TenantLimitStores {
    /// Budgets and rates in this process only (tests, tools).
    pub fn local() -> TenantLimitStores {
        TenantLimitStores {
            budgets: Arc::new(crate::store::MemoryBudgets::default()),
            currency: Currency::default(),
            rates: None,
        }
    }

    /// A tenant's budget and rate.
    fn limits(&self, name: &str, tenant: &TenantConfig) -> TenantLimits {
        let limit = BudgetLimit {
            calls: tenant.daily_billable_budget,
            cost: tenant.daily_budget,
        };
        let rate = tenant.rate_limit.and_then(|quota| match &self.rates {
            Some(shared) => shared.bucket(name, quota),
            None => LocalRate::new(quota).map(|r| Arc::new(r) as Arc<dyn RateBucket>),
        });
        TenantLimits {
            budget: DailyBudget::new(name, limit, self.currency, self.budgets.clone())
                .map(Arc::new),
            rate,
        }
    }
}

/// The SHA-256 (hex) of an API key, as configured in `key_sha256`.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh API key: `pck_` and 64 hex digits of randomness.
pub fn new_key() -> String {
    format!("pck_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// The tenant name of callers when no keys are configured.
pub const ANONYMOUS: &str = "anonymous";

/// Every configured key's hash, mapped to its tenant.
#[derive(Debug, Clone)]
pub struct Tenants {
    by_hash: HashMap<String, Arc<Tenant>>,
    by_name: HashMap<String, Arc<Tenant>>,
    anonymous: Arc<Tenant>,
}

impl Tenants {
    /// From the validated configuration.
    pub fn new(
        config: &std::collections::BTreeMap<String, TenantConfig>,
        defaults: ConcurrencyLimits,
        backing: &TenantLimitStores,
    ) -> Tenants {
        let mut by_hash = HashMap::new();
        let mut by_name = HashMap::new();
        for (name, tenant) in config {
            // One budget and one bucket per tenant, whichever of its keys is used.
            let resolved = Arc::new(Tenant {
                admin: tenant.admin,
                usage_all: tenant.usage_all,
                ..Tenant::with_limits(
                    name,
                    tenant.allowed_checks.iter().copied().collect(),
                    tenant.profile_details,
                    backing.limits(name, tenant),
                    ConcurrencyLimits {
                        streams: tenant.max_streams.unwrap_or(defaults.streams),
                        items: tenant.max_items_in_flight.unwrap_or(defaults.items),
                        ..defaults
                    },
                )
            });
            for hash in &tenant.key_sha256 {
                by_hash.insert(hash.to_ascii_lowercase(), resolved.clone());
            }
            by_name.insert(name.clone(), resolved);
        }
        Tenants {
            by_hash,
            by_name,
            anonymous: Arc::new(Tenant::anonymous_with(defaults)),
        }
    }

    /// Each tenant's budget and rate by name, for the job runner, whose jobs keep only their
    /// tenant's name: the configured tenants, or, when none is, the anonymous caller (so that a
    /// job of a tenant no longer configured, or of the anonymous caller once keys are, has none).
    pub fn limits_by_name(&self) -> HashMap<String, TenantLimits> {
        if !self.enabled() {
            return HashMap::from([(ANONYMOUS.to_owned(), self.anonymous.limits.clone())]);
        }
        self.by_name
            .iter()
            .map(|(name, tenant)| (name.clone(), tenant.limits.clone()))
            .collect()
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// The tenant of a call's `authorization` header value (`Bearer <key>`); without configured
    /// keys, the anonymous caller. (The caller counts the call against the tenant's rate:
    /// [`Tenant::count_call`].)
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Tenant>, AuthError> {
        if !self.enabled() {
            return Ok(self.anonymous.clone());
        }
        let key = authorization
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(AuthError::Unauthenticated(
                "an API key is required: authorization: Bearer <key>",
            ))?;
        let tenant = self
            .by_hash
            .get(&key_hash(key))
            .ok_or(AuthError::Unauthenticated("the API key is not valid"))?;
        Ok(tenant.clone())
    }
}

#[cfg(test)]
mod tests;
