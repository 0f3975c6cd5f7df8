//! The engine between API and vendors: cache, single-flight, batching.

use std::time::Duration;

use crate::common::{Secrets, lookup, outcome, report, start_sim, vendors_server};
use phonecheck::pb;
use phonecheck::sim::SimConfig;

#[tokio::test]
async fn a_second_lookup_is_served_from_the_cache_unless_fresher_is_demanded() {
    let sim = start_sim(SimConfig::default()).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;

    let first = report(&server, lookup("13912340002", &[pb::Check::LineStatus])).await;
    let o = outcome(&first, pb::Check::LineStatus);
    assert!(o.billable && !o.cached);

    let second = report(
        &server,
        lookup("+86 139 1234 0002", &[pb::Check::LineStatus]),
    )
    .await;
    let o = outcome(&second, pb::Check::LineStatus);
    assert!(
        o.cached && !o.billable,
        "same number, other spelling: a cache hit"
    );
    assert_eq!(
        second.line_status.as_ref().unwrap().status(),
        pb::LineStatus::Empty,
        "negative answers are cached too"
    );
    assert_eq!(
        o.fetched_at,
        outcome(&first, pb::Check::LineStatus).fetched_at,
        "the original fetch time"
    );
    assert_eq!(sim.stats().vendor("thinksms").calls, 1);

    let mut fresh = lookup("13912340002", &[pb::Check::LineStatus]);
    fresh.options = Some(pb::CheckOptions {
        max_cache_age: Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..Default::default()
    });
    let third = report(&server, fresh).await;
    let o = outcome(&third, pb::Check::LineStatus);
    assert!(o.billable && !o.cached, "max_cache_age 0 asks the vendor");
    assert_eq!(sim.stats().vendor("thinksms").calls, 2);
}

#[tokio::test]
async fn failures_are_retried_but_not_cached() {
    let sim = start_sim(SimConfig::default()).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    for _ in 0..2 {
        let r = report(&server, lookup("13912340500", &[pb::Check::LineStatus])).await;
        let o = outcome(&r, pb::Check::LineStatus);
        assert_eq!((o.state(), o.billable), (pb::CheckState::Error, false));
    }
    // A retryable, unbilled failure is tried three times (two retries); nothing is cached.
    assert_eq!(sim.stats().vendor("thinksms").calls, 2 * 3);
    // A refusal that retrying cannot change is tried once.
    let r = report(&server, lookup("13912340402", &[pb::Check::RiskProfile])).await;
    assert_eq!(
        outcome(&r, pb::Check::RiskProfile).state(),
        pb::CheckState::Error
    );
    assert_eq!(sim.stats().vendor("yidun").calls, 1);
}

#[tokio::test]
async fn concurrent_lookups_share_one_vendor_call() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    let lookups = (0..25).map(|_| {
        let mut client = server.client();
        async move {
            client
                .lookup_number(lookup(
                    "13912345678",
                    &[pb::Check::LineStatus, pb::Check::RiskProfile],
                ))
                .await
                .unwrap()
                .into_inner()
                .report
                .unwrap()
        }
    });
    let reports = futures::future::join_all(lookups).await;
    let statuses: Vec<_> = reports
        .iter()
        .map(|r| r.line_status.as_ref().unwrap().status())
        .collect();
    assert!(
        statuses.windows(2).all(|w| w[0] == w[1]),
        "one answer for all"
    );
    for check in [pb::Check::LineStatus, pb::Check::RiskProfile] {
        let billed = reports
            .iter()
            .filter(|r| outcome(r, check).billable)
            .count();
        assert_eq!(billed, 1, "{check:?}: one caller pays, the others share");
    }
    assert_eq!(sim.stats().vendor("thinksms").calls, 1);
    assert_eq!(sim.stats().vendor("yidun").calls, 1);
}

#[tokio::test]
async fn concurrent_unary_lookups_meet_in_one_yidun_batch() {
    let sim = start_sim(SimConfig::default()).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    let lookups = (0..60).map(|i| {
        let mut client = server.client();
        async move {
            client
                .lookup_number(lookup(&format!("1381234{i:04}"), &[pb::Check::RiskProfile]))
                .await
                .unwrap()
        }
    });
    futures::future::join_all(lookups).await;
    let yidun = sim.stats().vendor("yidun");
    assert_eq!(yidun.numbers, 60);
    assert!(
        yidun.calls < 60,
        "batched: {} calls for 60 numbers",
        yidun.calls
    );
}

#[tokio::test]
async fn a_unary_call_honours_its_deadline() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    let mut request = tonic::Request::new(lookup("13912345678", &[pb::Check::LineStatus]));
    // The header alone: the server's handling of the deadline, not the client's own timer.
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let started = std::time::Instant::now();
    let status = server.client().lookup_number(request).await.unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}
