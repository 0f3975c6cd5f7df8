//! Vendor faults: every item still answered exactly once, retries never re-bill, the breaker
//! opens and recovers, the quota is never exceeded.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{
    Secrets, TestServer, check_numbers, lookup, outcome, set_limits, start_sim, vendors_config,
};
use phonecheck::pb;
use phonecheck::providers::{LimitsConfig, QuotaConfig};
use phonecheck::sim::SimConfig;
use phonecheck::sim::faults::Faults;

fn items(n: usize, check: pb::Check) -> Vec<pb::CheckNumbersRequest> {
    (0..n)
        .map(|i| pb::CheckNumbersRequest {
            request_id: format!("r{i}"),
            number: format!("1391{i:03}5678"),
            checks: vec![check as i32],
            ..Default::default()
        })
        .collect()
}

async fn server_with(
    sim: &phonecheck::sim::SimServer,
    limits: LimitsConfig,
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(sim, dir.path(), &Secrets::right(), "MD5");
    set_limits(&mut config, limits);
    (TestServer::start_in(config, dir.path()).await, dir)
}

#[tokio::test]
async fn exactly_once_under_a_twenty_percent_fault_rate() {
    let sim = start_sim(SimConfig {
        faults: Faults {
            error_rate: 0.1,
            malformed_rate: 0.05,
            reset_rate: 0.05,
            seed: Some(crate::common::fault_seed()),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let limits = LimitsConfig {
        retries: Some(3),
        retry_backoff: Some(Duration::from_millis(1)),
        // Keep the breaker out of this test: it is about retries and exactly-once.
        breaker_failures: Some(1_000),
        ..LimitsConfig::default()
    };
    let (server, _dir) = server_with(&sim, limits).await;
    let (results, summary) = check_numbers(&server, items(400, pb::Check::LineStatus)).await;

    let ids: HashSet<&str> = results.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(
        (results.len(), ids.len()),
        (400, 400),
        "no lost, no duplicated request_id"
    );
    assert_eq!(summary.items_received, 400);
    let thinksms = sim.stats().vendor("thinksms");
    assert!(
        thinksms.calls > 400,
        "faults were injected and retried: {} calls",
        thinksms.calls
    );
    assert_eq!(
        summary.billable_calls as u64, thinksms.billable,
        "phonecheck's billable count is the vendor's: retries never re-bill"
    );
    let answered = results
        .iter()
        .filter(|r| matches!(&r.outcome, Some(pb::check_numbers_result::Outcome::Report(rep)) if rep.line_status.is_some()))
        .count();
    // Errors (a 503, 10%) are retried; a malformed body (5%) is not, as retrying cannot fix it,
    // nor is an answer cut off mid-body (5%): the vendor took that request and may have billed
    // it, so it is not sent again blindly (a later pass may ask).
    assert!(
        answered >= 330,
        "retries recover the retryable faults: {answered}/400"
    );
}

#[tokio::test]
async fn the_breaker_opens_on_repeated_failures_and_recovers() {
    let sim = start_sim(SimConfig::default()).await;
    let cooldown = Duration::from_millis(300);
    let limits = LimitsConfig {
        retries: Some(0),
        breaker_failures: Some(3),
        breaker_cooldown: Some(cooldown),
        ..LimitsConfig::default()
    };
    let (server, _dir) = server_with(&sim, limits).await;
    let mut client = server.client();
    let ask = |number: &str| lookup(number, &[pb::Check::LineStatus]);

    // Three vendor failures in a row (the simulator's 500) open the breaker.
    for _ in 0..3 {
        let r = client
            .lookup_number(ask("13912340500"))
            .await
            .unwrap()
            .into_inner()
            .report
            .unwrap();
        assert_eq!(
            outcome(&r, pb::Check::LineStatus).state(),
            pb::CheckState::Error
        );
    }
    assert_eq!(sim.stats().vendor("thinksms").calls, 3);

    // Open: a good number fails fast, without a vendor call.
    let r = client
        .lookup_number(ask("13912341111"))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!(o.state(), pb::CheckState::Error);
    assert!(
        o.error
            .as_ref()
            .unwrap()
            .message
            .contains("circuit breaker"),
        "{:?}",
        o.error
    );
    assert_eq!(
        sim.stats().vendor("thinksms").calls,
        3,
        "failing fast calls nobody"
    );

    // After the cool-down (the condition is time itself), one probe goes through and closes it.
    tokio::time::sleep(cooldown).await;
    let r = client
        .lookup_number(ask("13912341111"))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(
        outcome(&r, pb::Check::LineStatus).state(),
        pb::CheckState::Ok
    );
    let r = client
        .lookup_number(ask("13912342222"))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap();
    assert_eq!(
        outcome(&r, pb::Check::LineStatus).state(),
        pb::CheckState::Ok
    );
    assert_eq!(sim.stats().vendor("thinksms").calls, 5);
}

#[tokio::test]
async fn the_vendor_quota_is_never_exceeded() {
    let sim = start_sim(SimConfig {
        faults: Faults {
            quota_per_second: Some(20),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    // Paced below the vendor's 20/s with slack: pacing exactly at it would race the arrival
    // jitter against the simulator's one-second window.
    let limits = LimitsConfig {
        quota: Some(QuotaConfig {
            requests_per_second: 16.0,
            burst: 1,
        }),
        ..LimitsConfig::default()
    };
    let (server, _dir) = server_with(&sim, limits).await;
    let started = std::time::Instant::now();
    let (results, summary) = check_numbers(&server, items(50, pb::Check::LineStatus)).await;
    assert_eq!(results.len(), 50);
    assert_eq!(summary.billable_calls, 50);
    let thinksms = sim.stats().vendor("thinksms");
    assert_eq!(
        (thinksms.calls, thinksms.over_limit),
        (50, 0),
        "never over the limit"
    );
    // 50 calls paced at 16/s take at least 49/16 s; the bound asserted is the vendor's own,
    // 49/20 s: no faster than the quota allows.
    assert!(
        started.elapsed() >= Duration::from_millis(2_450),
        "paced within 20/s: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn without_a_quota_the_simulator_answers_over_limit() {
    let sim = start_sim(SimConfig {
        faults: Faults {
            quota_per_second: Some(5),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let limits = LimitsConfig {
        quota: Some(QuotaConfig {
            requests_per_second: 0.0,
            burst: 1,
        }),
        retries: Some(0),
        ..LimitsConfig::default()
    };
    let (server, _dir) = server_with(&sim, limits).await;
    let (results, _) = check_numbers(&server, items(20, pb::Check::LineStatus)).await;
    assert_eq!(results.len(), 20);
    assert!(sim.stats().vendor("thinksms").over_limit > 0);
    let limited = results.iter().any(|r| match &r.outcome {
        Some(pb::check_numbers_result::Outcome::Report(rep)) => rep.outcomes.iter().any(|o| {
            o.error
                .as_ref()
                .is_some_and(|e| crate::common::error_info(e).reason == "PROVIDER_RATE_LIMITED")
        }),
        _ => false,
    });
    assert!(
        limited,
        "the vendor's over-limit answer is surfaced as PROVIDER_RATE_LIMITED"
    );
}
