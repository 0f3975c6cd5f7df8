//! A `spread` route over two Thinksms accounts: numbers are dealt in proportion to the accounts'
//! quotas, each account's quota holds (the simulator counts per account and answers "over limit"
//! past it), and together they reach the sum of the quotas. In a test binary of its own, like
//! `redis_quota`: it measures a rate that other tests sharing the two cores would disturb.

#[path = "it/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimAccount, SimConfig, faults::Faults};

const SECOND_HASHCODE: &str = "second0thinksms0account00000000";
const SECOND_KEY: &str = "second-thinksms-private-key";

#[tokio::test]
async fn spread_over_two_accounts_holds_each_quota_and_reaches_their_sum() {
    // The vendor answers "over limit" past 100 calls in any second, per account.
    let sim = SimApart::start(SimConfig {
        extra_accounts: vec![SimAccount {
            vendor: "thinksms".into(),
            id: SECOND_HASHCODE.into(),
            secret: SECOND_KEY.into(),
        }],
        faults: Faults {
            quota_per_second: Some(100),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    // phonecheck keeps to 97/s per account with a burst of 2: at most 99 calls in any second,
    // and a call that starts a little late (timer and scheduling) does not push every later
    // one back, as it would with a burst of 1 (about 0.94 of the rate on a busy machine).
    let limits = r#"{ quota = { requests_per_second = 97, burst = 2 }, retries = 0 }"#;
    let config = Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "2s"
        [providers.first]
        type = "thinksms"
        base_url = "{base}"
        hashcode = "{first}"
        private_key = {{ file = "{first_key}" }}
        limits = {limits}
        [providers.second]
        type = "thinksms"
        base_url = "{base}"
        hashcode = "{SECOND_HASHCODE}"
        private_key = {{ file = "{second_key}" }}
        limits = {limits}
        [routes.line_status]
        providers = ["first", "second"]
        policy = "spread"
        "#,
        base = sim.base_url(),
        first = phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        first_key = write(
            "first.key",
            phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY
        ),
        second_key = write("second.key", SECOND_KEY),
    ))
    .unwrap();
    let server = TestServer::start_in(config, dir.path()).await;

    // Distinct numbers, none with a magic suffix of a vendor failure (0429, 0500).
    let n = 800;
    let items: Vec<_> = (0..)
        .map(|i: u32| format!("1370{:07}", i * 7))
        .filter(|number| !number.ends_with("0429") && !number.ends_with("0500"))
        .take(n)
        .enumerate()
        .map(|(i, number)| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number,
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        })
        .collect();
    let (results, summary, elapsed) = {
        let stream = check_numbers(&server, items);
        let clock = async {
            // From the vendor's first call: what the accounts' rates allow is measured there.
            sim.stats().wait_for_calls(1).await;
            Instant::now()
        };
        let ((results, summary), first_call) = tokio::join!(stream, clock);
        (results, summary, first_call.elapsed().as_secs_f64())
    };
    assert_eq!(results.len(), n);
    let mut by_provider = std::collections::BTreeMap::<String, usize>::new();
    for result in &results {
        let Some(pb::check_numbers_result::Outcome::Report(report)) = &result.outcome else {
            panic!("{result:?}");
        };
        let o = outcome(report, pb::Check::LineStatus);
        assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
        assert!(o.attempts.is_empty(), "no failover: {o:?}");
        *by_provider.entry(o.provider.clone()).or_default() += 1;
    }
    let stats = sim.stats().vendor("thinksms");
    assert_eq!(stats.over_limit, 0, "no over-limit answer: {stats:?}");
    assert_eq!(summary.billable_calls, n as i64);
    assert_eq!(stats.billable, n as u64);
    // Equal quotas: the numbers alternate.
    assert_eq!(by_provider["first"], n / 2, "{by_provider:?}");
    assert_eq!(by_provider["second"], n / 2, "{by_provider:?}");
    // 800 calls at two accounts' 100/s each (phonecheck keeps to 97/s): after the first, 799.
    let achieved = (n - 1) as f64 / elapsed / 200.0;
    eprintln!(
        "spread over two accounts: {achieved:.3} of the summed quota in {elapsed:.2}s, {stats:?}"
    );
    assert!(achieved <= 1.0, "over the quotas: {achieved:.3} of them");
    assert!(
        achieved >= 0.95,
        "the two accounts together reached only {achieved:.3} of their quotas"
    );
    server.stop().await.unwrap();
}
