//! Redis gone or paused: a new number's lookup fails closed within `[redis] timeout` (not after
//! the client library's reconnect backoff), later ones at once (Redis is treated as down for
//! `down_for`), readiness says so, and everything comes back by itself; with
//! `on_unreachable = "local_share"` lookups go on within the replica's share of the quota.

use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `[redis] timeout` in these tests (`replica_toml`).
const TIMEOUT: Duration = Duration::from_millis(300);
/// What a lookup may take beyond the timeout: scheduling on two shared cores.
const SLACK: Duration = Duration::from_millis(700);

fn line_status(number: &str) -> pb::LookupNumberRequest {
    lookup(number, &[pb::Check::LineStatus])
}

async fn readiness(server: &TestServer) -> ServingStatus {
    HealthClient::new(server.channel())
        .check(HealthCheckRequest {
            service: "phonecheck.v1.PhoneCheckService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// Waits (bounded) until `server`'s readiness is `want`.
async fn wait_readiness(server: &TestServer, want: ServingStatus) {
    for _ in 0..100 {
        if readiness(server).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readiness never became {want:?}");
}

/// Looks up new numbers until one is answered `Ok` (bounded): Redis is back.
async fn wait_recovered(server: &TestServer, prefix: &str) {
    for i in 0..100 {
        let r = report(server, line_status(&format!("{prefix}{i:03}"))).await;
        if outcome(&r, pb::Check::LineStatus).state() == pb::CheckState::Ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("paid lookups never succeeded again once Redis was back");
}

/// Five new numbers, each failing closed within the bound; returns the longest wait.
async fn fail_closed_fast(server: &TestServer, prefix: &str) -> Duration {
    let mut longest = Duration::ZERO;
    for i in 0..5 {
        let started = Instant::now();
        let failed = report(server, line_status(&format!("{prefix}{i}"))).await;
        let took = started.elapsed();
        longest = longest.max(took);
        let o = outcome(&failed, pb::Check::LineStatus);
        assert_eq!(o.state(), pb::CheckState::Error, "{o:?}");
        assert!(!o.billable);
        assert!(
            o.error.as_ref().unwrap().message.contains("shared quota"),
            "{o:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "lookup {i} took {took:?}");
    }
    longest
}

async fn replica(sim: &SimServer, port: u16, more: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let toml = replica_toml(sim, dir.path(), port, 100).replace(
        "timeout = \"300ms\"",
        &format!("timeout = \"300ms\"\ndown_for = \"200ms\"\n{more}"),
    );
    let config = Config::from_toml(&toml).unwrap();
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

#[tokio::test]
async fn a_new_number_fails_closed_within_the_timeout_while_redis_is_gone() {
    let mut redis = Redis::start();
    let port = redis.port;
    let sim = start_sim(SimConfig::default()).await;
    let server = replica(&sim, port, "").await;
    let ok = report(&server, line_status("13800138001")).await;
    assert!(outcome(&ok, pb::Check::LineStatus).billable);
    assert_eq!(readiness(&server).await, ServingStatus::Serving);

    redis.stop();
    let longest = fail_closed_fast(&server, "1380013810").await;
    println!("killed: longest new-number lookup {longest:?}");
    wait_readiness(&server, ServingStatus::NotServing).await;
    // A number paid before is still answered, from this replica's own store.
    let cached = report(&server, line_status("13800138001")).await;
    assert!(outcome(&cached, pb::Check::LineStatus).cached);
    let metrics = phonecheck::metrics::install().unwrap().render();
    assert!(
        metrics.contains("phonecheck_dependency_up{dependency=\"redis\"}"),
        "{metrics}"
    );

    // Back, empty: calls succeed again by themselves, and readiness follows.
    let _redis = Redis::start_on(port);
    wait_recovered(&server, "13800139").await;
    wait_readiness(&server, ServingStatus::Serving).await;
    let stats = sim.stats().vendor("thinksms");
    assert_eq!(
        stats.calls, stats.billable,
        "no call made without the quota"
    );
}

#[tokio::test]
async fn a_paused_redis_costs_one_timeout_not_one_per_command() {
    let redis = Redis::start();
    let sim = start_sim(SimConfig::default()).await;
    let server = replica(&sim, redis.port, "").await;
    let ok = report(&server, line_status("13800138299")).await;
    assert!(outcome(&ok, pb::Check::LineStatus).billable);

    // SIGSTOP: connections hang rather than refuse (a partition).
    redis.signal("STOP");
    let longest = fail_closed_fast(&server, "1380013820").await;
    println!("paused: longest new-number lookup {longest:?}");
    redis.signal("CONT");
    wait_recovered(&server, "13800138300").await;
    wait_readiness(&server, ServingStatus::Serving).await;
    let stats = sim.stats().vendor("thinksms");
    assert_eq!(stats.calls, stats.billable);
}

#[tokio::test]
async fn with_local_share_lookups_go_on_within_the_replica_share() {
    let mut redis = Redis::start();
    let port = redis.port;
    let sim = start_sim(SimConfig::default()).await;
    // 100/s shared by 4 replicas: 25/s each while Redis is away.
    let server = replica(
        &sim,
        port,
        "on_unreachable = \"local_share\"\nexpected_replicas = 4",
    )
    .await;
    // Started (it connects to Redis at start-up) and paying through Redis.
    let first = report(&server, line_status("13800138499")).await;
    assert!(outcome(&first, pb::Check::LineStatus).billable);
    redis.stop();
    let started = Instant::now();
    let mut longest = Duration::ZERO;
    for i in 0..20 {
        let asked = Instant::now();
        let r = report(&server, line_status(&format!("138001384{i:02}"))).await;
        longest = longest.max(asked.elapsed());
        let o = outcome(&r, pb::Check::LineStatus);
        assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
        assert!(o.billable, "{o:?}");
    }
    let took = started.elapsed();
    println!("local share: 20 lookups in {took:?}, longest {longest:?}");
    // 20 calls at 25/s (burst 1) take at least 19 intervals of 40 ms.
    assert!(took >= Duration::from_millis(19 * 40), "{took:?}");
    assert!(longest <= TIMEOUT + SLACK, "{longest:?}");
    // Readiness stays: this replica can serve.
    assert_eq!(readiness(&server).await, ServingStatus::Serving);
    assert_eq!(sim.stats().vendor("thinksms").billable, 21);
}
