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

async fn postgres_fails_under_a_job(fault: Fault, prefix: u32) {
    let seed = fault_seed();
    // The fault strikes once this many numbers are paid for (the job is then well under way).
    let at = 20 + seed % 160;
    // How long it lasts is a time by nature; a pause lasts past the storage timeout, so that
    // calls meanwhile are seen to end.
    let lasts = match fault {
        Fault::StopStart => Duration::from_millis(500 + (seed / 1_200) % 1_500),
        Fault::Pause => Duration::from_millis(1_500 + (seed / 1_200) % 1_500),
    };
    println!("{fault:?} after {at} numbers paid, for {lasts:?}");
    let pg = Postgres::start();
    let url = pg.database("faults").await;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&thinksms_toml(&sim, dir.path(), QUOTA, "")).unwrap();
    config.storage.database_url = Some(SecretRef::File(url_file(dir.path(), &url)));
    config.storage.timeout = STORAGE_TIMEOUT;
    let server = TestServer::start_in(config, dir.path()).await;

    let created = super::job::start(&server, &format!("{prefix}7"), NUMBERS).await;
    let started = Instant::now();
    super::job::paid(&sim, at).await;
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

    let job = super::job::ended(&server, &created.id, JOB_BOUND).await;
    let bill = sim.stats().vendor("thinksms").billable;
    println!("{fault:?}: ended after {:?}", started.elapsed());
    super::job::assert_paid_once(&format!("{fault:?}"), &job, NUMBERS, bill);
    super::job::second_pass_pays_nothing(&server, &format!("{prefix}7"), NUMBERS).await;
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
