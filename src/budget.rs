//! What a tenant may spend and how fast it may ask: the daily billable budget and the request
//! rate. Both are used on every path a paid check can take (unary calls, stream items and the
//! numbers of a file job), so that no path spends past the budget or outruns the rate.
//!
//! A request holds room in the budget for each paid check it asks before it runs, and settles with
//! what it was billed when it ends, so requests in flight together never take the tenant past its
//! budget.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};

use crate::domain::Report;
use crate::providers::{Clock as _, QuotaConfig, SystemClock};

/// A tenant's limits on spending and pace.
#[derive(Debug, Clone, Default)]
pub struct TenantLimits {
    /// Billable vendor calls per day; `None`: unlimited.
    pub budget: Option<Arc<DailyBudget>>,
    /// Requests per second; `None`: unlimited.
    pub rate: Option<Arc<RequestRate>>,
}

/// The budget has no room for a request's paid checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the daily budget of {limit} billable calls is spent; it renews in {}s", retry_after.as_secs())]
pub struct BudgetSpent {
    /// The budget.
    pub limit: u64,
    /// Until it renews (midnight, China time).
    pub retry_after: Duration,
}

impl TenantLimits {
    /// Limits from a tenant's configuration.
    pub fn new(daily_budget: Option<u64>, rate: Option<QuotaConfig>) -> TenantLimits {
        TenantLimits {
            budget: daily_budget.map(|limit| Arc::new(DailyBudget::new(limit))),
            rate: rate.and_then(RequestRate::new).map(Arc::new),
        }
    }

    /// Holds room for `calls` paid checks (none: nothing is held), or says when the budget renews.
    pub fn hold(&self, calls: u64) -> Result<BudgetHold, BudgetSpent> {
        match &self.budget {
            Some(budget) if calls > 0 => budget.hold(calls).map(|date| BudgetHold {
                held: Some((budget.clone(), date, calls)),
            }),
            _ => Ok(BudgetHold { held: None }),
        }
    }

    /// Takes one request from the rate, or says how long until one is allowed (unary calls,
    /// which are refused rather than kept waiting).
    pub fn try_request(&self) -> Result<(), Duration> {
        match &self.rate {
            Some(rate) => rate
                .0
                .check()
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            None => Ok(()),
        }
    }

    /// Waits until one more request is allowed (stream items and job numbers, which are paced:
    /// the wait holds back reading, and flow control pushes back on the client).
    pub async fn pace(&self) {
        if let Some(rate) = &self.rate {
            rate.0.until_ready().await;
        }
    }
}

/// A tenant's request rate: one token bucket, whichever of its keys, RPCs, streams or jobs
/// asks.
#[derive(Debug)]
pub struct RequestRate(governor::DefaultDirectRateLimiter);

impl RequestRate {
    /// `None` when the quota allows everything.
    fn new(quota: QuotaConfig) -> Option<RequestRate> {
        quota
            .governor()
            .map(|q| RequestRate(governor::RateLimiter::direct(q)))
    }
}

/// A tenant's daily billable budget, counted in China time (the vendors' billing day).
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

    /// The budget, in billable calls per day.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Calls that could be held now.
    pub fn room(&self) -> u64 {
        let day = self.today();
        self.limit
            .saturating_sub(day.spent.saturating_add(day.held))
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

    /// Holds room for `calls`, or says when the budget renews.
    fn hold(&self, calls: u64) -> Result<chrono::NaiveDate, BudgetSpent> {
        let mut day = self.today();
        if day.spent.saturating_add(day.held).saturating_add(calls) <= self.limit {
            day.held += calls;
            return Ok(day.date);
        }
        Err(BudgetSpent {
            limit: self.limit,
            retry_after: until_midnight(),
        })
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
    pub fn settle(mut self, report: &Report) {
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
mod tests {
    use super::*;
    use crate::domain::{Check, CheckOutcome, CheckState};

    #[test]
    fn requests_in_flight_never_take_a_tenant_past_its_budget() {
        let limits = TenantLimits::new(Some(3), None);
        let first = limits.hold(2).unwrap();
        // 2 held of 3: a second request for two paid checks must wait for the first to settle.
        assert!(limits.hold(2).is_err());
        let one = limits.hold(1).unwrap();
        assert!(limits.hold(1).is_err());
        // Offline analysis holds nothing.
        limits.hold(0).unwrap().release();

        // The first was billed once (the other check came from the cache): one call is free again.
        let outcome = |billable| CheckOutcome {
            check: Check::LineStatus,
            provider: "thinksms".into(),
            state: CheckState::Pending,
            billable,
            cost: crate::domain::Money::ZERO,
            joined: false,
            cached: !billable,
            latency: Duration::ZERO,
            fetched_at: None,
            sandbox: false,
            attempts: Vec::new(),
        };
        let report = Report {
            info: crate::number::Analyzer::new(crate::number::LocationData::embedded())
                .analyze("13800138000", "CN")
                .unwrap(),
            outcomes: vec![outcome(true), outcome(false)],
        };
        first.settle(&report);
        one.release();
        assert_eq!(limits.budget.as_ref().unwrap().room(), 2);
        let again = limits.hold(2).unwrap();
        let spent = limits.hold(1).unwrap_err();
        assert_eq!(spent.limit, 3);
        assert!(spent.retry_after <= Duration::from_secs(24 * 3600));
        // Dropped unsettled (the caller went away): counted in full.
        drop(again);
        assert!(limits.hold(1).is_err(), "3 spent");
        assert_eq!(limits.budget.as_ref().unwrap().room(), 0);
    }

    #[tokio::test]
    async fn the_rate_refuses_unary_calls_and_paces_the_rest() {
        let limits = TenantLimits::new(
            None,
            Some(QuotaConfig {
                requests_per_second: 1000.0,
                burst: 1,
            }),
        );
        assert!(limits.try_request().is_ok());
        let wait = limits.try_request().unwrap_err();
        assert!(wait <= Duration::from_millis(1));
        // Paced: waits for its token instead of failing.
        limits.pace().await;
        assert!(TenantLimits::default().try_request().is_ok());
    }
}
