//! API keys and tenants: `authorization: Bearer <key>` names a tenant, whose grants decide which
//! checks it may run. Keys are configured only as SHA-256 hashes.
//!
//! Authentication is a tonic interceptor on the phonecheck services (health and reflection stay
//! open); authorisation of each request's checks happens in the API layer, which knows them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use sha2::{Digest, Sha256};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::api::ApiError;
use crate::config::TenantConfig;
use crate::domain::{Check, CheckOptions};
use crate::providers::{Clock as _, SystemClock};

/// An API client and what it may do.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The configured name (`anonymous` without authentication).
    pub name: String,
    /// Checks it may run.
    pub allowed_checks: HashSet<Check>,
    /// Whether it may receive platform profile details.
    pub profile_details: bool,
    /// Billable vendor calls it may cause per day.
    pub budget: Option<Arc<DailyBudget>>,
    /// Its `CheckNumbers` streams open at once; past it a new one is refused.
    streams: Arc<tokio::sync::Semaphore>,
    /// Its stream items being worked on at once, over all its streams; past it reading waits.
    items: Arc<tokio::sync::Semaphore>,
}

/// How many streams, and stream items in flight, a tenant may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Concurrent `CheckNumbers` streams.
    pub streams: usize,
    /// Stream items being worked on at once, over all the tenant's streams.
    pub items: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            streams: 64,
            items: 4_096,
        }
    }
}

/// A tenant's daily billable budget, counted in China time (the vendors' billing day).
///
/// A request holds room for each paid check it asks before it runs, and settles with what it was
/// billed when it ends, so that requests in flight together never take the tenant past its budget.
#[derive(Debug)]
pub struct DailyBudget {
    limit: u64,
    day: Mutex<BudgetDay>,
}

#[derive(Debug)]
struct BudgetDay {
    date: chrono::NaiveDate,
    /// Billable calls counted today.
    spent: u64,
    /// Calls held by requests in flight.
    held: u64,
}

impl BudgetDay {
    fn new(date: chrono::NaiveDate) -> BudgetDay {
        BudgetDay {
            date,
            spent: 0,
            held: 0,
        }
    }
}

impl DailyBudget {
    /// A budget of `limit` billable calls per day.
    pub fn new(limit: u64) -> DailyBudget {
        DailyBudget {
            limit,
            day: Mutex::new(BudgetDay::new(today())),
        }
    }

    /// Today's counts, started afresh when the (China-time) day changed.
    fn today(&self) -> std::sync::MutexGuard<'_, BudgetDay> {
        let mut day = self.day.lock().unwrap_or_else(|e| e.into_inner());
        let date = today();
        if day.date != date {
            *day = BudgetDay::new(date);
        }
        day
    }

    /// Holds room for `calls`; `Err(time until the budget renews)` when there is not enough.
    fn hold(&self, calls: u64) -> Result<chrono::NaiveDate, std::time::Duration> {
        let mut day = self.today();
        if day.spent.saturating_add(day.held).saturating_add(calls) <= self.limit {
            day.held += calls;
            return Ok(day.date);
        }
        let now = SystemClock.now_china();
        let midnight = now
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t - now.naive_local());
        Err(midnight.and_then(|d| d.to_std().ok()).unwrap_or_default())
    }

    /// Ends a hold of `held` calls taken on `date`, counting `billed` of them.
    fn settle(&self, date: chrono::NaiveDate, held: u64, billed: u64) {
        let mut day = self.today();
        if day.date == date {
            day.held = day.held.saturating_sub(held);
        }
        day.spent = day.spent.saturating_add(billed.min(held));
    }
}

/// Room held in a tenant's budget for one request until it is settled. Dropped unsettled (the
/// caller went away mid-request, when vendor calls may still bill), every held call is counted:
/// the budget errs on the side of the tenant's money.
#[derive(Debug)]
#[must_use = "settle the hold with the request's report"]
pub struct BudgetHold {
    held: Option<(Arc<DailyBudget>, chrono::NaiveDate, u64)>,
}

impl BudgetHold {
    /// Counts the report's billable vendor calls and frees the rest.
    pub fn settle(mut self, report: &crate::domain::Report) {
        if let Some((budget, date, held)) = self.held.take() {
            let billed = report.outcomes.iter().filter(|o| o.billable).count() as u64;
            budget.settle(date, held, billed);
        }
    }

    /// Frees the room: the request ended before any vendor call.
    pub fn release(mut self) {
        if let Some((budget, date, held)) = self.held.take() {
            budget.settle(date, held, 0);
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        if let Some((budget, date, held)) = self.held.take() {
            budget.settle(date, held, held);
        }
    }
}

fn today() -> chrono::NaiveDate {
    SystemClock.now_china().date_naive()
}

impl Tenant {
    /// The caller when no tenants are configured: may do everything.
    pub fn anonymous() -> Tenant {
        Self::anonymous_with(StreamLimits::default())
    }

    /// The anonymous caller with these stream limits.
    pub fn anonymous_with(limits: StreamLimits) -> Tenant {
        Tenant {
            name: "anonymous".to_owned(),
            allowed_checks: Check::ALL.into_iter().collect(),
            profile_details: true,
            budget: None,
            streams: Arc::new(tokio::sync::Semaphore::new(limits.streams)),
            items: Arc::new(tokio::sync::Semaphore::new(limits.items)),
        }
    }

    /// Opens a stream, or refuses it when the tenant has its maximum open.
    pub fn open_stream(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::TooManyStreams {
                tenant: self.name.clone(),
            })
    }

    /// Waits for room for one more stream item in flight.
    pub async fn item_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.items.clone().acquire_owned().await.ok()
    }

    /// Holds room in today's billable budget for the paid checks of one request (one call each
    /// at most), or refuses them when the budget has not that much left (offline analysis stays
    /// free).
    pub fn hold_budget(&self, checks: &[Check]) -> Result<BudgetHold, ApiError> {
        let calls = checks
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len() as u64;
        match &self.budget {
            Some(budget) if calls > 0 => match budget.hold(calls) {
                Ok(date) => Ok(BudgetHold {
                    held: Some((budget.clone(), date, calls)),
                }),
                Err(retry_after) => Err(ApiError::BudgetExhausted {
                    tenant: self.name.clone(),
                    retry_after,
                }),
            },
            _ => Ok(BudgetHold { held: None }),
        }
    }

    /// Refuses checks and options the tenant was not granted.
    pub fn authorize(
        &self,
        field: &str,
        checks: &[Check],
        options: &CheckOptions,
    ) -> Result<(), ApiError> {
        if let Some(check) = checks.iter().find(|c| !self.allowed_checks.contains(c)) {
            return Err(ApiError::PermissionDenied {
                reason: "CHECK_NOT_ALLOWED",
                message: format!("{field}: tenant {} may not run {check}", self.name),
            });
        }
        if options.include_profile_details && !self.profile_details {
            return Err(ApiError::PermissionDenied {
                reason: "PROFILE_DETAILS_NOT_ALLOWED",
                message: format!("tenant {} may not receive profile details", self.name),
            });
        }
        Ok(())
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

/// A tenant's call rate limit.
type Limiter = governor::DefaultDirectRateLimiter;

/// Every configured key's hash, mapped to its tenant and the tenant's rate limiter.
#[derive(Debug, Clone)]
pub struct Tenants {
    by_hash: HashMap<String, (Arc<Tenant>, Option<Arc<Limiter>>)>,
    anonymous: Arc<Tenant>,
}

impl Tenants {
    /// From the validated configuration.
    pub fn new(
        config: &std::collections::BTreeMap<String, TenantConfig>,
        defaults: StreamLimits,
    ) -> Tenants {
        let mut by_hash = HashMap::new();
        for (name, tenant) in config {
            let resolved = Arc::new(Tenant {
                name: name.clone(),
                allowed_checks: tenant.allowed_checks.iter().copied().collect(),
                profile_details: tenant.profile_details,
                budget: tenant
                    .daily_billable_budget
                    .map(|limit| Arc::new(DailyBudget::new(limit))),
                streams: Arc::new(tokio::sync::Semaphore::new(
                    tenant.max_streams.unwrap_or(defaults.streams),
                )),
                items: Arc::new(tokio::sync::Semaphore::new(
                    tenant.max_items_in_flight.unwrap_or(defaults.items),
                )),
            });
            // One bucket per tenant, whichever of its keys is used.
            let limiter = tenant
                .rate_limit
                .and_then(crate::engine::stack::governor_quota)
                .map(|q| Arc::new(governor::RateLimiter::direct(q)));
            for hash in &tenant.key_sha256 {
                by_hash.insert(
                    hash.to_ascii_lowercase(),
                    (resolved.clone(), limiter.clone()),
                );
            }
        }
        Tenants {
            by_hash,
            anonymous: Arc::new(Tenant::anonymous_with(defaults)),
        }
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }
}

/// Authenticates every call of a service: puts the caller's [`Tenant`] in the request extensions,
/// or refuses the call with `UNAUTHENTICATED`.
#[derive(Debug, Clone)]
pub struct AuthInterceptor {
    tenants: Arc<Tenants>,
    anonymous: Arc<Tenant>,
}

impl AuthInterceptor {
    /// An interceptor over these tenants (none: every caller is anonymous).
    pub fn new(tenants: Tenants) -> AuthInterceptor {
        AuthInterceptor {
            anonymous: tenants.anonymous.clone(),
            tenants: Arc::new(tenants),
        }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let tenant = if self.tenants.enabled() {
            let key = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .map(str::trim)
                .ok_or(ApiError::Unauthenticated(
                    "an API key is required: authorization: Bearer <key>",
                ))?;
            let (tenant, limiter) = self
                .tenants
                .by_hash
                .get(&key_hash(key))
                .ok_or(ApiError::Unauthenticated("the API key is not valid"))?;
            if let Some(limiter) = limiter
                && let Err(not_until) = limiter.check()
            {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                return Err(ApiError::RateLimited {
                    tenant: tenant.name.clone(),
                    retry_after: wait,
                }
                .into());
            }
            tenant.clone()
        } else {
            self.anonymous.clone()
        };
        request.extensions_mut().insert(tenant);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes() {
        let key = new_key();
        assert!(key.starts_with("pck_") && key.len() == 68);
        assert_ne!(new_key(), key);
        assert_eq!(
            key_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn grants() {
        let tenant = Tenant {
            name: "acme".into(),
            allowed_checks: [Check::LineStatus].into_iter().collect(),
            profile_details: false,
            ..Tenant::anonymous()
        };
        assert!(
            tenant
                .authorize("checks", &[Check::LineStatus], &CheckOptions::default())
                .is_ok()
        );
        assert!(
            tenant
                .authorize(
                    "checks",
                    &[Check::AccountPresence],
                    &CheckOptions::default()
                )
                .is_err()
        );
        let profiles = CheckOptions {
            include_profile_details: true,
            ..CheckOptions::default()
        };
        assert!(
            tenant
                .authorize("checks", &[Check::LineStatus], &profiles)
                .is_err()
        );
        assert!(
            Tenant::anonymous()
                .authorize("checks", &Check::ALL, &profiles)
                .is_ok()
        );
    }

    #[test]
    fn requests_in_flight_never_take_a_tenant_past_its_budget() {
        use crate::domain::{CheckOutcome, CheckState, Report};
        let tenant = Tenant {
            budget: Some(Arc::new(DailyBudget::new(3))),
            ..Tenant::anonymous()
        };
        let both = [Check::LineStatus, Check::RiskProfile];
        let first = tenant.hold_budget(&both).unwrap();
        // 2 held of 3: a second request for two paid checks must wait for the first to settle.
        assert!(tenant.hold_budget(&both).is_err());
        let one = tenant
            .hold_budget(&[Check::LineStatus, Check::LineStatus])
            .unwrap();
        assert!(tenant.hold_budget(&[Check::LineStatus]).is_err());
        // Offline analysis holds nothing.
        tenant.hold_budget(&[]).unwrap().release();

        // The first was billed once (the other check came from the cache): one call is free again.
        let outcome = |billable| CheckOutcome {
            check: Check::LineStatus,
            provider: "thinksms".into(),
            state: CheckState::Pending,
            billable,
            cached: !billable,
            latency: std::time::Duration::ZERO,
            fetched_at: None,
            sandbox: false,
        };
        let report = Report {
            info: crate::number::Analyzer::new(crate::number::LocationData::embedded())
                .analyze("13800138000", "CN")
                .unwrap(),
            outcomes: vec![outcome(true), outcome(false)],
        };
        first.settle(&report);
        one.release();
        let again = tenant.hold_budget(&both).unwrap();
        assert!(
            tenant.hold_budget(&[Check::LineStatus]).is_err(),
            "1 spent + 2 held"
        );
        // Dropped unsettled (the caller went away): counted in full.
        drop(again);
        assert!(tenant.hold_budget(&[Check::LineStatus]).is_err(), "3 spent");
    }
}
