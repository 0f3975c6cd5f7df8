//! PostgreSQL failing at a seeded moment under a running file job: stopped at once (connections
//! cut and refused) and started again, or paused with `SIGSTOP` (connections hang) and resumed.
//! Invariants: the job finishes with every number answered once, each number was paid for once
//! (the simulator's bill is the count of distinct numbers: answers that arrived while the job's
//! results could not be written are kept in the answer store and serve the job when it goes on),
//! and the server is alive. The seed is printed (`PHONECHECK_FAULT_SEED` replays it).

use std::time::{Duration, Instant};

use crate::common::*;
use crate::postgres::{Postgres, url_file};
use phonecheck::config::{Config, SecretRef};
use phonecheck::pb;
use phonecheck::sim::SimConfig;

const NUMBERS: u32 = 400;
/// The quota the job runs at: 400 numbers take about four seconds.
const QUOTA: u32 = 100;
/// The longest the job may take: the outage, the numbers at the quota, and the runner's
/// retries after it.
const JOB_BOUND: Duration = Duration::from_secs(60);
/// `storage.timeout` in these tests: each call to the database ends within it.
const STORAGE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// `pg_ctl stop -m immediate`, then started again.
    StopStart,
    /// SIGSTOP to every PostgreSQL process, then SIGCONT.
    Pause,
}

/// The job's state, read as a client would; `None` while the server cannot say.
async fn job_state(server: &TestServer, id: &str) -> Option<pb::BatchJob> {
    let request = pb::GetBatchJobRequest {
        job_id: id.to_owned(),
    };
    let mut client = jobs_client(server);
    match tokio::time::timeout(Duration::from_secs(5), client.get_batch_job(request)).await {
        Ok(Ok(response)) => response.into_inner().job,
        _ => None,
    }
}

async fn postgres_fails_under_a_job(fault: Fault, prefix: u32) {
    let seed = fault_seed();
    let at = Duration::from_millis(300 + seed % 1_200);
    // A pause lasts past the storage timeout, so that calls meanwhile are seen to end.
    let lasts = match fault {
        Fault::StopStart => Duration::from_millis(500 + (seed / 1_200) % 1_500),
        Fault::Pause => Duration::from_millis(1_500 + (seed / 1_200) % 1_500),
    };
    println!("{fault:?} at {at:?} for {lasts:?}");
    let pg = Postgres::start();
    let url = pg.database("faults").await;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&thinksms_toml(&sim, dir.path(), QUOTA, "")).unwrap();
    config.storage.database_url = Some(SecretRef::File(url_file(dir.path(), &url)));
    config.storage.timeout = STORAGE_TIMEOUT;
    let server = TestServer::start_in(config, dir.path()).await;

    let mut file = String::from("mobile\n");
    for i in 0..NUMBERS {
        // Last four digits from 1000: none of the simulator's magic numbers.
        file.push_str(&format!("13{prefix}7000{:04}\n", 1_000 + i));
    }
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let created = create_job(&mut jobs_client(&server), spec, file.as_bytes(), 64 * 1024)
        .await
        .unwrap();
    let started = Instant::now();
    tokio::time::sleep(at).await;
    let before = sim.stats().vendor("thinksms").billable;
    match fault {
        Fault::StopStart => {
            pg.stop_now();
            tokio::time::sleep(lasts).await;
            pg.start_again();
        }
        Fault::Pause => {
            pg.signal_all("STOP");
            let paused = Instant::now();
            // An RPC without a deadline of its own ends within the storage timeout.
            let request = pb::GetBatchJobRequest {
                job_id: created.id.clone(),
            };
            let answer = jobs_client(&server).get_batch_job(request).await;
            let took = paused.elapsed();
            println!(
                "{fault:?}: GetBatchJob during the pause: {:?} after {took:?}",
                answer.as_ref().map(|_| ()).map_err(|s| s.code())
            );
            assert!(
                took < STORAGE_TIMEOUT + Duration::from_millis(1_500),
                "{took:?}"
            );
            assert_eq!(answer.unwrap_err().code(), tonic::Code::Unavailable);
            tokio::time::sleep(lasts.saturating_sub(paused.elapsed())).await;
            pg.signal_all("CONT");
        }
    }
    println!("{fault:?}: {before} numbers paid before the fault");

    let job = loop {
        assert!(
            started.elapsed() < JOB_BOUND,
            "the job did not finish within {JOB_BOUND:?}"
        );
        if let Some(job) = job_state(&server, &created.id).await
            && job.state() != pb::BatchJobState::Queued
            && job.state() != pb::BatchJobState::Running
        {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let progress = job.progress.clone().unwrap();
    let bill = sim.stats().vendor("thinksms").billable;
    println!(
        "{fault:?}: {:?} in {:?}; {} numbers done, the job counts {} billable, the vendor billed {bill}",
        job.state(),
        started.elapsed(),
        progress.numbers_done,
        progress.billable_calls,
    );
    assert_eq!(job.state(), pb::BatchJobState::Succeeded, "{job:?}");
    assert_eq!(progress.numbers_done, i64::from(NUMBERS));
    assert_eq!(progress.numbers_failed, 0, "{progress:?}");
    assert_eq!(
        bill,
        u64::from(NUMBERS),
        "every number paid for exactly once"
    );
    assert_eq!(
        progress.billable_calls as u64, bill,
        "the job counts what the vendor bills"
    );
    // Alive, and the numbers are answered from the store.
    let again = report(
        &server,
        lookup(&format!("13{prefix}70001000"), &[pb::Check::LineStatus]),
    )
    .await;
    assert!(!outcome(&again, pb::Check::LineStatus).billable);
    drop(server);
    drop(pg);
}

#[tokio::test]
async fn postgres_stopped_and_started_under_a_job() {
    postgres_fails_under_a_job(Fault::StopStart, 5).await;
}

#[tokio::test]
async fn postgres_paused_under_a_job() {
    postgres_fails_under_a_job(Fault::Pause, 4).await;
}
