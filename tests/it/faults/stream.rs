//! Redis failing at a seeded moment under a running `CheckNumbers` stream: killed and restarted
//! empty, or paused with `SIGSTOP` and resumed. Invariants: every item answered exactly once
//! (failures allowed, as failures), phonecheck's billable count is the simulator's bill, a second
//! pass pays only for what failed, and the server is alive. The seed is printed
//! (`PHONECHECK_FAULT_SEED` replays it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::pb;
use phonecheck::pb::check_numbers_result::Outcome;
use phonecheck::sim::SimConfig;

const ITEMS: u32 = 300;
/// The longest the whole stream may take: the outage, plus the items at the quota (200/s).
const STREAM_BOUND: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL, then a new (empty) Redis on the same port.
    KillRestart,
    /// SIGSTOP, then SIGCONT.
    Pause,
}

/// Items whose line status was answered.
fn answered(results: &[pb::CheckNumbersResult]) -> HashSet<String> {
    results
        .iter()
        .filter(|r| {
            matches!(&r.outcome, Some(Outcome::Report(rep))
                if outcome(rep, pb::Check::LineStatus).state() == pb::CheckState::Ok)
        })
        .map(|r| r.request_id.clone())
        .collect()
}

async fn redis_fails_under_a_stream(fault: Fault, prefix: u32) {
    let seed = fault_seed();
    // The moment of the fault and how long it lasts, drawn from the seed.
    let at = Duration::from_millis(100 + seed % 400);
    let lasts = Duration::from_millis(300 + (seed / 400) % 700);
    println!("{fault:?} at {at:?} for {lasts:?}");
    let mut redis = Redis::start();
    let port = redis.port;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_in(replica_config(&sim, dir.path(), port, 200), dir.path()).await;
    // Started (connected to Redis) before the stream.
    report(&server, lookup("13912345678", &[])).await;

    let started = Instant::now();
    let stream = tokio::spawn({
        let channel = server.channel();
        async move { check_numbers_on(channel, items(prefix, ITEMS)).await }
    });
    tokio::time::sleep(at).await;
    match fault {
        Fault::KillRestart => {
            redis.stop();
            tokio::time::sleep(lasts).await;
            redis = Redis::start_on(port);
        }
        Fault::Pause => {
            redis.signal("STOP");
            tokio::time::sleep(lasts).await;
            redis.signal("CONT");
        }
    }
    let (results, summary) = tokio::time::timeout(STREAM_BOUND, stream)
        .await
        .expect("the stream ends within its bound")
        .unwrap();
    println!(
        "{fault:?}: {} items in {:?}, {} billable",
        results.len(),
        started.elapsed(),
        summary.billable_calls
    );
    let ids: HashSet<&str> = results.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!((results.len(), ids.len()), (ITEMS as usize, ITEMS as usize));
    let bill = sim.stats().vendor("thinksms").billable;
    assert_eq!(
        summary.billable_calls as u64, bill,
        "phonecheck counts what the vendor bills"
    );
    let first = answered(&results);

    // A second pass pays only for what failed in the first.
    let (again, second) = check_numbers(&server, items(prefix, ITEMS)).await;
    assert_eq!(again.len(), ITEMS as usize);
    let paid_again = sim.stats().vendor("thinksms").billable - bill;
    assert_eq!(paid_again, second.billable_calls as u64);
    assert!(
        paid_again <= (ITEMS as usize - first.len()) as u64,
        "second pass paid {paid_again}, but only {} failed",
        ITEMS as usize - first.len()
    );
    for r in &again {
        if first.contains(&r.request_id)
            && let Some(Outcome::Report(rep)) = &r.outcome
        {
            assert!(
                !outcome(rep, pb::Check::LineStatus).billable,
                "paid twice: {r:?}"
            );
        }
    }
    // Alive.
    report(&server, lookup("13912345678", &[])).await;
    drop(redis);
}

#[tokio::test]
async fn redis_killed_and_restarted_empty_under_a_stream() {
    redis_fails_under_a_stream(Fault::KillRestart, 7).await;
}

#[tokio::test]
async fn redis_paused_under_a_stream() {
    redis_fails_under_a_stream(Fault::Pause, 6).await;
}
