use super::*;
use crate::domain::{Check, CheckOutcome, CheckState, Money};
use crate::store::MemoryBudgets;

/// One request's paid checks at their highest prices.
fn want(calls: u64, ceiling: Money) -> Spend {
    Spend {
        calls,
        cost: ceiling,
    }
}

fn limits(calls: Option<u64>, cost: Option<&str>) -> TenantLimits {
    let limit = BudgetLimit {
        calls,
        cost: cost.map(|c| c.parse().unwrap()),
    };
    TenantLimits {
        budget: DailyBudget::new(
            "acme",
            limit,
            Currency::default(),
            Arc::new(MemoryBudgets::default()),
        )
        .map(Arc::new),
        rate: None,
    }
}

fn calls(n: u64) -> Spend {
    want(n, Money::ZERO)
}

fn report(outcomes: &[(bool, &str)]) -> Report {
    let outcome = |(billable, cost): &(bool, &str)| CheckOutcome {
        check: Check::LineStatus,
        provider: "thinksms".into(),
        state: CheckState::Pending,
        billable: *billable,
        cost: cost.parse().unwrap(),
        joined: false,
        cached: !billable,
        latency: Duration::ZERO,
        fetched_at: None,
        sandbox: false,
        attempts: Vec::new(),
    };
    Report {
        info: crate::number::Analyzer::new(crate::number::LocationData::embedded())
            .analyze("13800138000", "CN")
            .unwrap(),
        outcomes: outcomes.iter().map(outcome).collect(),
    }
}

async fn room(limits: &TenantLimits) -> BudgetLimit {
    limits.budget.as_ref().unwrap().room().await.unwrap()
}

#[tokio::test]
async fn requests_in_flight_never_take_a_tenant_past_its_budget() {
    let limits = limits(Some(3), None);
    let first = limits.hold(calls(2)).await.unwrap();
    // 2 held of 3: a second request for two paid checks must wait for the first to settle.
    assert!(limits.hold(calls(2)).await.is_err());
    let one = limits.hold(calls(1)).await.unwrap();
    assert!(limits.hold(calls(1)).await.is_err());
    // Offline analysis holds nothing.
    limits.hold(Spend::default()).await.unwrap().release().await;

    // The first was billed once (the other check came from the cache): one call is free again.
    first.settle(&report(&[(true, "0"), (false, "0")])).await;
    one.release().await;
    assert_eq!(room(&limits).await.calls, Some(2));
    let again = limits.hold(calls(2)).await.unwrap();
    let Err(LimitError::Spent(spent)) = limits.hold(calls(1)).await else {
        panic!("the budget has no room");
    };
    assert_eq!(spent.limit.calls, Some(3));
    assert_eq!(spent.describe(), "3 billable calls");
    assert!(spent.retry_after <= Duration::from_secs(24 * 3600));
    // Dropped unsettled (the caller went away): counted in full, once the settling task ran.
    drop(again);
    tokio::task::yield_now().await;
    assert!(limits.hold(calls(1)).await.is_err(), "3 spent");
    assert_eq!(room(&limits).await.calls, Some(0));
}

#[tokio::test]
async fn a_budget_in_money_holds_the_highest_price_and_counts_what_was_billed() {
    let limits = limits(None, Some("0.10"));
    // Two numbers of a route whose dearest provider charges 0.04: 0.08 held.
    let first = limits.hold(want(1, "0.04".parse().unwrap())).await.unwrap();
    let second = limits.hold(want(1, "0.04".parse().unwrap())).await.unwrap();
    let Err(LimitError::Spent(spent)) = limits.hold(want(1, "0.04".parse().unwrap())).await else {
        panic!("0.12 would pass 0.10");
    };
    assert_eq!(spent.describe(), "0.10 CNY");
    // Answered by the cheaper provider (0.03) and from the cache: 0.03 spent, 0.07 left.
    first.settle(&report(&[(true, "0.03")])).await;
    second.settle(&report(&[(false, "0")])).await;
    assert_eq!(room(&limits).await.cost, Some("0.07".parse().unwrap()));
    // Both limits at once: whichever is reached first says no.
    let both = self::limits(Some(1), Some("1.00"));
    both.hold(want(1, "0.01".parse().unwrap()))
        .await
        .unwrap()
        .release()
        .await;
    let held = both.hold(want(1, "0.01".parse().unwrap())).await.unwrap();
    assert!(both.hold(want(1, "0.01".parse().unwrap())).await.is_err());
    held.release().await;
}

#[tokio::test]
async fn the_rate_refuses_unary_calls_and_paces_the_rest() {
    let rate = LocalRate::new(QuotaConfig {
        requests_per_second: 1000.0,
        burst: 1,
    })
    .unwrap();
    let limits = TenantLimits {
        budget: None,
        rate: Some(Arc::new(rate)),
    };
    assert!(limits.try_request().await.is_ok());
    let Err(LimitError::RateLimited(wait)) = limits.try_request().await else {
        panic!("the second request within a millisecond is over the rate");
    };
    assert!(wait <= Duration::from_millis(1));
    // Paced: waits for its token instead of failing.
    limits.pace().await.unwrap();
    assert!(TenantLimits::default().try_request().await.is_ok());
}
