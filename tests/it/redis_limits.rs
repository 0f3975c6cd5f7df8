//! Tenants' budgets and rates held by replicas together: two replicas on one Redis never let a
//! tenant spend past its daily budget in money (the simulator bills at most the budget), share
//! the tenant's request rate, and refuse paid calls while Redis is away rather than spend blind.
//! (Two replicas on one PostgreSQL without Redis: postgres.rs.)

use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use tonic::Code;

const KEY: &str = "pck_shared_limits_tenant_key_for_tests";

/// A replica: Thinksms at 0.03 a billed call (`priced`), sharing state through the Redis on
/// `port`, and the tenant `acme` with `limits` in its table.
fn replica(
    sim: &SimServer,
    dir: &std::path::Path,
    port: u16,
    limits: &str,
    priced: bool,
) -> Config {
    let prices = if priced {
        "[providers.thinksms.prices]\nline_status = \"0.03\"\n"
    } else {
        ""
    };
    let toml = replica_toml(sim, dir, port, 0).replace(
        "[storage]",
        &format!(
            "{prices}[tenants.acme]\nkey_sha256 = [\"{}\"]\n{limits}\n[storage]",
            key_hash(KEY)
        ),
    );
    Config::from_toml(&toml).unwrap()
}

async fn start(sim: &SimServer, port: u16, limits: &str) -> TestServer {
    start_priced(sim, port, limits, true).await
}

async fn start_priced(sim: &SimServer, port: u16, limits: &str, priced: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = replica(sim, dir.path(), port, limits, priced);
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

/// Streams `items` to `server` with the tenant's key; the results.
async fn stream(
    server: &TestServer,
    items: Vec<pb::CheckNumbersRequest>,
) -> Vec<pb::CheckNumbersResult> {
    use pb::check_numbers_response::Response;
    let mut responses = server
        .client()
        .check_numbers(bearer(tokio_stream::iter(items), KEY))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    while let Some(message) = responses.message().await.unwrap() {
        if let Response::Result(r) = message.response.unwrap() {
            results.push(r);
        }
    }
    results
}

#[tokio::test]
async fn two_replicas_on_one_redis_hold_a_daily_budget_in_money_together() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    // 0.30 a day at 0.03 a line-status answer: ten numbers, whichever replica asks.
    let a = start(&sim, redis.port, "daily_budget = \"0.30\"").await;
    let b = start(&sim, redis.port, "daily_budget = \"0.30\"").await;
    let (from_a, from_b) = tokio::join!(stream(&a, items(8, 40)), stream(&b, items(9, 40)));
    let results: Vec<_> = from_a.into_iter().chain(from_b).collect();
    assert_eq!(results.len(), 80, "every item is answered");
    use pb::check_numbers_result::Outcome;
    let (mut paid, mut refused) = (Money::default(), 0);
    for result in &results {
        match result.outcome.as_ref().unwrap() {
            Outcome::Report(r) => {
                let o = outcome(r, pb::Check::LineStatus);
                assert!(o.billable, "{o:?}");
                let cost = o.cost.as_ref().unwrap();
                assert_eq!(
                    (cost.currency_code.as_str(), cost.units, cost.nanos),
                    ("CNY", 0, 30_000_000)
                );
                paid.add(cost);
            }
            Outcome::Error(status) => {
                assert_eq!(status.code, Code::ResourceExhausted as i32, "{status:?}");
                assert!(status.message.contains("0.30 CNY"), "{}", status.message);
                refused += 1;
            }
        }
    }
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        10,
        "the budget, no more"
    );
    assert_eq!((paid.nanos, refused), (300_000_000, 70));
    // Either replica refuses the next paid call now; offline analysis stays free.
    for server in [&a, &b] {
        let status = server
            .client()
            .lookup_number(bearer(lookup("13900139000", &[pb::Check::LineStatus]), KEY))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted);
        server
            .client()
            .lookup_number(bearer(lookup("13900139000", &[]), KEY))
            .await
            .unwrap();
    }
}

/// Money summed from `google.type.Money` parts.
#[derive(Debug, Default)]
struct Money {
    nanos: i64,
}

impl Money {
    fn add(&mut self, m: &phonecheck::pb::google_type::Money) {
        self.nanos += m.units * 1_000_000_000 + i64::from(m.nanos);
    }
}

#[tokio::test]
async fn replicas_share_a_tenants_request_rate() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let rate = "rate_limit = { requests_per_second = 5, burst = 1 }";
    let (a, b) = (
        start(&sim, redis.port, rate).await,
        start(&sim, redis.port, rate).await,
    );
    // Offline lookups as fast as they come back, alternating replicas, for one second.
    let started = Instant::now();
    let (mut accepted, mut refused) = (0u32, 0u32);
    for i in 0..10_000 {
        if started.elapsed() >= Duration::from_secs(1) {
            break;
        }
        let server = if i % 2 == 0 { &a } else { &b };
        match server
            .client()
            .lookup_number(bearer(lookup("13800138000", &[]), KEY))
            .await
        {
            Ok(_) => accepted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                refused += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One bucket for both: its burst plus 5 a second (a replica each would allow twice that).
    let most = 1.0 + 5.0 * elapsed + 1.0;
    assert!(
        f64::from(accepted) <= most && accepted >= 2 && refused > 0,
        "accepted {accepted}, refused {refused} in {elapsed:.2}s (at most {most:.1})"
    );
}

#[tokio::test]
async fn without_redis_a_budgeted_tenants_paid_calls_are_refused_not_spent_blind() {
    let mut redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let server = start(&sim, redis.port, "daily_billable_budget = 100").await;
    let paid = server
        .client()
        .lookup_number(bearer(lookup("13800138001", &[pb::Check::LineStatus]), KEY))
        .await
        .unwrap()
        .into_inner();
    assert!(outcome(paid.report.as_ref().unwrap(), pb::Check::LineStatus).billable);
    redis.stop();
    let status = server
        .client()
        .lookup_number(bearer(lookup("13800138000", &[pb::Check::LineStatus]), KEY))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("daily budget"),
        "{}",
        status.message()
    );
    assert_eq!(
        sim.stats().vendor("thinksms").calls,
        1,
        "no call without the budget"
    );
}

#[tokio::test]
async fn a_budget_in_calls_holds_in_redis_when_answers_cost_nothing() {
    // Holds of zero money (no prices configured) settle like any other: the call budget binds.
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = start_priced(&sim, redis.port, "daily_billable_budget = 6", false).await;
    let b = start_priced(&sim, redis.port, "daily_billable_budget = 6", false).await;
    let (from_a, from_b) = tokio::join!(stream(&a, items(8, 10)), stream(&b, items(9, 10)));
    use pb::check_numbers_result::Outcome;
    let answered = from_a
        .iter()
        .chain(&from_b)
        .filter(|r| matches!(r.outcome, Some(Outcome::Report(_))))
        .count();
    assert_eq!(answered, 6);
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        6,
        "the budget, no more"
    );
}

#[tokio::test]
async fn a_large_budget_taken_in_blocks_by_two_replicas_still_holds_exactly() {
    // 3,200 calls a day: each replica takes room in blocks of 50 (a 64th), and together they
    // never pass the budget.
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let a = start_priced(&sim, redis.port, "daily_billable_budget = 3200", false).await;
    let b = start_priced(&sim, redis.port, "daily_billable_budget = 3200", false).await;
    let billed = || sim.stats().vendor("thinksms").billable;
    tokio::join!(stream(&a, items(8, 1_700)), stream(&b, items(9, 1_700)));
    // A replica may have been refused while the other still kept room in a block; at most a
    // block each was left unused.
    let first = billed();
    assert!((3_100..=3_200).contains(&first), "{first}");
    // A replica that stops gives back the room it kept: the other then reaches the budget
    // exactly, and no further.
    a.stop().await.unwrap();
    let more = (0..150)
        .map(|i| pb::CheckNumbersRequest {
            number: format!("13700{i:06}"),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        })
        .collect();
    stream(&b, more).await;
    assert_eq!(billed(), 3_200, "the budget, no more");
}

#[tokio::test]
async fn replicas_pace_a_tenants_stream_items_together() {
    use tokio_stream::wrappers::ReceiverStream;
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let rate = "rate_limit = { requests_per_second = 20, burst = 2 }";
    let (a, b) = (
        start(&sim, redis.port, rate).await,
        start(&sim, redis.port, rate).await,
    );
    // Both streams are opened first (a request each), then 20 offline items go to each at once:
    // 40 requests of one 20-a-second bucket take about two seconds (a bucket per replica would
    // let them through in one).
    let mut opened = Vec::new();
    let mut senders = Vec::new();
    for server in [&a, &b] {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let responses = server
            .client()
            .check_numbers(bearer(ReceiverStream::new(rx), KEY))
            .await
            .expect("the stream is admitted")
            .into_inner();
        opened.push(responses);
        senders.push(tx);
    }
    let started = Instant::now();
    for (n, tx) in senders.into_iter().enumerate() {
        for mut item in items(8 + n as u32, 20) {
            item.checks.clear();
            tx.send(item).await.unwrap();
        }
    }
    let drain = |mut responses: tonic::Streaming<pb::CheckNumbersResponse>| async move {
        let mut results = 0;
        while let Some(message) = responses.message().await.unwrap() {
            if let Some(pb::check_numbers_response::Response::Result(_)) = message.response {
                results += 1;
            }
        }
        results
    };
    let mut opened = opened.into_iter();
    let (first, second) = (opened.next().unwrap(), opened.next().unwrap());
    let (from_a, from_b) = tokio::join!(drain(first), drain(second));
    let elapsed = started.elapsed();
    assert_eq!(
        from_a + from_b,
        40,
        "every item answered: paced, not refused"
    );
    assert!(elapsed >= Duration::from_millis(1_800), "{elapsed:?}");
}
