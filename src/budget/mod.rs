//! What a tenant may spend and how fast it may ask: the daily budget (in billable calls, in money,
//! or both) and the request rate. Both are used on every path a paid check can take (unary calls,
//! stream items and the numbers of a file job), so that no path spends past the budget or outruns
//! the rate.
//!
//! A request holds room in the budget for each paid check it asks (one call, at the highest price
//! of the check's route) before it runs, and settles with what it was billed when it ends, so
//! requests in flight together never take the tenant past its budget. The budget is kept in a
//! [`BudgetStore`]: Redis when replicas share one, else the store (SQLite, or PostgreSQL shared by
//! replicas), so replicas hold it together and a restart does not renew it; each process takes
//! room from it in blocks ([`Reserving`]), so that a request costs no round trip. The rate is a token
//! bucket, in this process or, with Redis, in Redis for every replica together ([`RateBucket`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use tracing::warn;

mod reserve;

pub use reserve::{FLUSH_EVERY, Reserving};

use crate::clock::{Clock as _, SystemClock};
use crate::domain::{Currency, Report};
use crate::quota::QuotaConfig;
use crate::store::{BudgetLimit, BudgetStore, Spend, StoreError};

/// A tenant's limits on spending and pace.
#[derive(Debug, Clone, Default)]
pub struct TenantLimits {
    /// The daily budget; `None`: unlimited.
    pub budget: Option<Arc<DailyBudget>>,
    /// Requests per second; `None`: unlimited.
    pub rate: Option<Arc<dyn RateBucket>>,
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// The budget has no room for the request's paid checks.
    #[error(transparent)]
    Spent(#[from] BudgetSpent),
    /// Over the rate; a request would be allowed after this long.
    #[error("over the rate limit; retry in {0:?}")]
    RateLimited(Duration),
    /// Where the budget or the rate is kept cannot be reached, so nothing is allowed (a replica
    /// alone cannot know what the others spend). The kind of failure only.
    #[error("the tenant's {what} cannot be checked: {why}")]
    Unavailable {
        /// `daily budget` or `rate limit`.
        what: &'static str,
        /// Why.
        why: String,
    },
}

/// The budget has no room for a request's paid checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the daily budget of {} is spent; it renews in {}s", describe(*limit, *currency), retry_after.as_secs())]
pub struct BudgetSpent {
    /// The budget.
    pub limit: BudgetLimit,
    /// Its currency.
    pub currency: Currency,
    /// Until it renews (midnight, China time).
    pub retry_after: Duration,
}

impl BudgetSpent {
    /// The budget in words: `50 billable calls`, `12.00 CNY`, or both.
    pub fn describe(&self) -> String {
        describe(self.limit, self.currency)
    }
}

fn describe(limit: BudgetLimit, currency: Currency) -> String {
    let calls = limit.calls.map(|c| format!("{c} billable calls"));
    let cost = limit.cost.map(|c| format!("{c} {currency}"));
    match (calls, cost) {
        (Some(calls), Some(cost)) => format!("{calls} and {cost}"),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => "nothing".to_owned(),
    }
}

impl TenantLimits {
    /// Takes one request from the rate, or says how long until one is allowed (unary calls,
    /// which are refused rather than kept waiting).
    pub async fn try_request(&self) -> Result<(), LimitError> {
        match &self.rate {
            Some(rate) => rate.try_take().await,
            None => Ok(()),
        }
    }

    /// Waits until one more request is allowed (stream items and job numbers, which are paced:
    /// the wait holds back reading, and flow control pushes back on the client).
    pub async fn pace(&self) -> Result<(), LimitError> {
        match &self.rate {
            Some(rate) => rate.take().await,
            None => Ok(()),
        }
    }

    /// Holds room for `want` (the request's paid checks, at their highest prices; nothing:
    /// nothing is held), or says when the budget renews.
    pub async fn hold(&self, want: Spend) -> Result<BudgetHold, LimitError> {
        match &self.budget {
            Some(budget) if !want.is_zero() => budget.hold(want).await,
            _ => Ok(BudgetHold { held: None }),
        }
    }

    /// Whether the budget has room for `want` now (a paused job looking whether to go on).
    pub async fn has_room(&self, want: Spend) -> Result<bool, LimitError> {
        match &self.budget {
            Some(budget) => budget.has_room(want).await,
            None => Ok(true),
        }
    }
}

/// A request rate: one token bucket per tenant, whichever of its keys, RPCs, streams or jobs
/// asks; in this process ([`LocalRate`]) or shared by replicas.
#[async_trait]
pub trait RateBucket: Send + Sync + std::fmt::Debug {
    /// Takes one request now, or says how long until one is allowed (taking nothing then).
    async fn try_take(&self) -> Result<(), LimitError>;

    /// Waits for one request.
    async fn take(&self) -> Result<(), LimitError>;

    /// Requests per second the bucket allows over time (estimates of how long a job takes).
    fn per_second(&self) -> f64;
}

/// Makes rate buckets kept outside this process (Redis), one per tenant.
pub trait RateSource: Send + Sync + std::fmt::Debug {
    /// `tenant`'s bucket for `quota`; `None` when the quota allows everything.
    fn bucket(&self, tenant: &str, quota: QuotaConfig) -> Option<Arc<dyn RateBucket>>;
}

/// A request rate kept in this process.
#[derive(Debug)]
pub struct LocalRate(governor::DefaultDirectRateLimiter, f64);

impl LocalRate {
    /// `None` when the quota allows everything.
    pub fn new(quota: QuotaConfig) -> Option<LocalRate> {
        quota
            .governor()
            .map(|q| LocalRate(governor::RateLimiter::direct(q), quota.requests_per_second))
    }
}

#[async_trait]
impl RateBucket for LocalRate {
    async fn try_take(&self) -> Result<(), LimitError> {
        self.0.check().map_err(|not_until| {
            LimitError::RateLimited(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    async fn take(&self) -> Result<(), LimitError> {
        self.0.until_ready().await;
        Ok(())
    }

    fn per_second(&self) -> f64 {
        self.1
    }
}

/// A tenant's daily budget, counted in China time (the vendors' billing day).
#[derive(Debug)]
pub struct DailyBudget {
    tenant: Arc<str>,
    limit: BudgetLimit,
    currency: Currency,
    store: Arc<dyn BudgetStore>,
}

impl DailyBudget {
    /// `tenant`'s budget of `limit` per day, kept in `store`; `None` when it limits nothing.
    pub fn new(
        tenant: &str,
        limit: BudgetLimit,
        currency: Currency,
        store: Arc<dyn BudgetStore>,
    ) -> Option<DailyBudget> {
        (limit.calls.is_some() || limit.cost.is_some()).then(|| DailyBudget {
            tenant: tenant.into(),
            limit,
            currency,
            store,
        })
    }

    /// The budget.
    pub fn limit(&self) -> BudgetLimit {
        self.limit
    }

    /// What is left today (spent and held taken off), per limit.
    pub async fn room(&self) -> Result<BudgetLimit, LimitError> {
        let used = self
            .store
            .day_use(&self.tenant, &today())
            .await
            .map_err(unavailable)?
            .used();
        Ok(BudgetLimit {
            calls: self.limit.calls.map(|c| c.saturating_sub(used.calls)),
            cost: self.limit.cost.map(|c| c.saturating_sub(used.cost)),
        })
    }

    async fn has_room(&self, want: Spend) -> Result<bool, LimitError> {
        let day = self
            .store
            .day_use(&self.tenant, &today())
            .await
            .map_err(unavailable)?;
        Ok(self.limit.allows(day.used(), want))
    }

    async fn hold(self: &Arc<Self>, want: Spend) -> Result<BudgetHold, LimitError> {
        let day = today();
        let held = self
            .store
            .hold(&self.tenant, &day, want, self.limit)
            .await
            .map_err(unavailable)?;
        if held {
            return Ok(BudgetHold {
                held: Some((self.clone(), day, want)),
            });
        }
        Err(BudgetSpent {
            limit: self.limit,
            currency: self.currency,
            retry_after: until_midnight(),
        }
        .into())
    }

    async fn settle(&self, day: &str, held: Spend, billed: Spend) {
        // A hold the store never hears settled stays counted in full, as spent: the budget errs
        // on the side of the tenant's money. The vendors bill on the day they answer: a request
        // held before midnight (China time) and answered after it is billed to the new day.
        let today = today();
        let settled = if today == day {
            self.store.settle(&self.tenant, day, held, billed).await
        } else {
            match self
                .store
                .settle(&self.tenant, day, held, Spend::default())
                .await
            {
                Ok(()) => {
                    self.store
                        .settle(&self.tenant, &today, Spend::default(), billed)
                        .await
                }
                Err(e) => Err(e),
            }
        };
        if let Err(e) = settled {
            warn!(tenant = %self.tenant, error = %e, "budget: a hold could not be settled and stays held");
        }
    }
}

/// The store's error stays in the server's log (it may name hosts or SQL); the caller is told
/// what could not be checked.
fn unavailable(e: StoreError) -> LimitError {
    warn!(error = %e, "budget: the daily budget cannot be checked; refusing what would spend");
    LimitError::Unavailable {
        what: "daily budget",
        why: "the budget store (Redis or the database) cannot be reached".to_owned(),
    }
}

/// Room held in a tenant's budget for one request until it is settled. Dropped unsettled (the
/// caller went away mid-request, when vendor calls may still bill), every held call is counted:
/// the budget errs on the side of the tenant's money.
#[derive(Debug)]
#[must_use = "settle the hold with the request's report"]
pub struct BudgetHold {
    held: Option<(Arc<DailyBudget>, String, Spend)>,
}

impl BudgetHold {
    /// Counts the report's billable vendor calls and their cost, and frees the rest.
    pub async fn settle(mut self, report: &Report) {
        if let Some((budget, day, held)) = self.held.take() {
            budget.settle(&day, held, billed(report)).await;
        }
    }

    /// Frees the room: the request ended before any vendor call.
    pub async fn release(mut self) {
        if let Some((budget, day, held)) = self.held.take() {
            budget.settle(&day, held, Spend::default()).await;
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        if let Some((budget, day, held)) = self.held.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { budget.settle(&day, held, held).await });
        }
    }
}

/// What a report was billed: its billable outcomes and their cost.
pub fn billed(report: &Report) -> Spend {
    report
        .outcomes
        .iter()
        .filter(|o| o.billable)
        .fold(Spend::default(), |sum, o| {
            sum.plus(Spend {
                calls: 1,
                cost: o.cost,
            })
        })
}

/// Today's date in China (`YYYY-MM-DD`), the vendors' billing day.
pub fn today() -> String {
    SystemClock
        .now_china()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

/// Time until the next midnight in China, when budgets renew.
pub fn until_midnight() -> Duration {
    let now = SystemClock.now_china();
    now.date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t - now.naive_local())
        .and_then(|d| d.to_std().ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
