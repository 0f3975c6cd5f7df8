//! The answer store: a paid answer survives a restart and is served as `cached` (unbilled) to
//! LookupNumber, CheckNumbers and file jobs alike; TTLs count from the fetch time across
//! restarts; `max_cache_age` still forces a fresh call; a damaged or missing store file costs
//! answers, never the server; forgetting a number (AdminService; not DeleteBatchJob) removes it
//! from memory and disk; a full store degrades to memory with answers still returned.

use std::path::Path;

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};

const NUMBER: &str = "13800138077";

/// Thinksms against `sim`, its state (answer store included) in `dir`, with `cache` settings.
async fn server(sim: &SimServer, dir: &Path, cache: &str) -> TestServer {
    let key = dir.join("thinksms.key");
    std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
    let config = Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [cache]
        {cache}
        [providers.thinksms]
        type = "thinksms"
        base_url = "{}"
        hashcode = "{}"
        private_key = {{ file = "{}" }}
        limits = {{ timeout = "2s" }}
        "#,
        sim.base_url(),
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        key.display()
    ))
    .unwrap();
    TestServer::start_in(config, dir).await
}

fn line_status(number: &str) -> pb::LookupNumberRequest {
    lookup(number, &[pb::Check::LineStatus])
}

async fn line_outcome(server: &TestServer, request: pb::LookupNumberRequest) -> pb::CheckOutcome {
    let report = report(server, request).await;
    let o = outcome(&report, pb::Check::LineStatus).clone();
    assert_eq!(o.state(), pb::CheckState::Ok, "{o:?}");
    o
}

fn calls(sim: &SimServer) -> u64 {
    sim.stats().vendor("thinksms").calls
}

async fn cache_info(server: &TestServer) -> pb::AnswerCacheInfo {
    server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .answer_cache
        .expect("the answer cache's figures")
}

async fn forget(server: &TestServer, number: &str) -> u64 {
    pb::admin_service_client::AdminServiceClient::new(server.channel())
        .forget_number(pb::ForgetNumberRequest {
            number: number.to_owned(),
            default_region: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .answers_forgotten
}

#[tokio::test]
async fn a_paid_answer_survives_a_restart_for_lookups_streams_and_jobs() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = server(&sim, dir.path(), "").await;
    let paid = line_outcome(&first, line_status(NUMBER)).await;
    assert!(paid.billable && !paid.cached);
    let info = cache_info(&first).await;
    assert!(info.store_enabled && !info.store_degraded, "{info:?}");
    first.stop().await.unwrap();
    assert_eq!(calls(&sim), 1);

    let second = server(&sim, dir.path(), "").await;
    let again = line_outcome(&second, line_status(NUMBER)).await;
    assert!(again.cached && !again.billable, "{again:?}");
    assert_eq!(again.fetched_at, paid.fetched_at, "the stored fetch time");
    // A stream finds it too.
    let (results, summary) = check_numbers(
        &second,
        vec![pb::CheckNumbersRequest {
            request_id: "1".into(),
            number: format!("+86 {NUMBER}"),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        }],
    )
    .await;
    assert_eq!(
        (results.len(), summary.cache_hits, summary.billable_calls),
        (1, 1, 0)
    );
    // And a job.
    let mut jobs = jobs_client(&second);
    let job = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            file_name: "numbers.txt".into(),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        },
        format!("{NUMBER}\n").as_bytes(),
        1024,
    )
    .await
    .unwrap();
    let done = finished_job(&mut jobs, &job.id).await;
    let progress = done.progress.unwrap();
    assert_eq!((progress.billable_calls, progress.cache_hits), (0, 1));
    assert_eq!(calls(&sim), 1, "paid once, whoever asked and however often");

    let info = cache_info(&second).await;
    assert_eq!(info.stored_answers, 1, "{info:?}");
    assert!(info.oldest_answer_time.is_some() && info.store_bytes > 0);
    assert!(info.hits >= 3 && info.hit_rate > 0.0, "{info:?}");

    // `max_cache_age` zero still asks the vendor.
    let mut fresh = line_status(NUMBER);
    fresh.options = Some(pb::CheckOptions {
        max_cache_age: Some(prost_types::Duration::default()),
        ..Default::default()
    });
    let o = line_outcome(&second, fresh).await;
    assert!(o.billable && !o.cached);
    assert_eq!(calls(&sim), 2);
}

#[tokio::test]
async fn a_stored_answer_expires_by_its_check_ttl_after_a_restart() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = server(&sim, dir.path(), "").await;
    line_outcome(&first, line_status(NUMBER)).await;
    first.stop().await.unwrap();

    // The answer is older than the TTL the next start is configured with: it is not served.
    let second = server(&sim, dir.path(), r#"line_status = "1ms""#).await;
    let o = line_outcome(&second, line_status(NUMBER)).await;
    assert!(o.billable && !o.cached, "{o:?}");
    assert_eq!(calls(&sim), 2);
}

#[tokio::test]
async fn a_damaged_or_missing_store_is_rebuilt_without_a_crash() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join(phonecheck::store::ANSWERS_FILE);
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(&store, b"not a database, not even close".repeat(1000)).unwrap();

    let first = server(&sim, dir.path(), "").await;
    assert!(line_outcome(&first, line_status(NUMBER)).await.billable);
    assert!(line_outcome(&first, line_status(NUMBER)).await.cached);
    first.stop().await.unwrap();

    // The rebuilt store works: the answer is there after a restart.
    let second = server(&sim, dir.path(), "").await;
    assert!(line_outcome(&second, line_status(NUMBER)).await.cached);
    second.stop().await.unwrap();

    // Gone: paid again, no crash.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let path = file.unwrap().path();
        if path.to_string_lossy().contains("answers.db") {
            // The stopped server's SQLite connections may still be closing, removing their own
            // -wal and -shm files meanwhile.
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{path:?}: {e}"),
                _ => {}
            }
        }
    }
    let third = server(&sim, dir.path(), "").await;
    assert!(line_outcome(&third, line_status(NUMBER)).await.billable);
    assert_eq!(calls(&sim), 2);
}

#[tokio::test]
async fn a_forgotten_number_is_gone_from_memory_and_disk() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = server(&sim, dir.path(), "").await;
    line_outcome(&first, line_status(NUMBER)).await;
    line_outcome(&first, line_status("13800138078")).await;
    assert_eq!(forget(&first, &format!("+86{NUMBER}")).await, 1);
    let info = cache_info(&first).await;
    assert_eq!((info.stored_answers, info.hot_answers), (1, 1), "{info:?}");
    first.stop().await.unwrap();

    let second = server(&sim, dir.path(), "").await;
    assert!(
        line_outcome(&second, line_status(NUMBER)).await.billable,
        "forgotten: asked again"
    );
    assert!(
        line_outcome(&second, line_status("13800138078"))
            .await
            .cached
    );
    assert_eq!(calls(&sim), 3);
    // Not a number: refused.
    let refused = pb::admin_service_client::AdminServiceClient::new(second.channel())
        .forget_number(pb::ForgetNumberRequest {
            number: "hello".into(),
            default_region: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn deleting_a_job_keeps_the_answers_it_paid_for() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server(&sim, dir.path(), "").await;
    let mut jobs = jobs_client(&server);
    let job = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            file_name: "numbers.txt".into(),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        },
        b"13800138071\n13800138072\n",
        1024,
    )
    .await
    .unwrap();
    finished_job(&mut jobs, &job.id).await;
    line_outcome(&server, line_status("13800138073")).await;
    assert_eq!(cache_info(&server).await.stored_answers, 3);
    jobs.delete_batch_job(pb::DeleteBatchJobRequest {
        job_id: job.id.clone(),
    })
    .await
    .unwrap();
    // The job's rows are gone; the answers (perhaps others' too) are forgotten only by
    // ForgetNumber.
    let info = cache_info(&server).await;
    assert_eq!(info.stored_answers, 3, "{info:?}");
    let again = line_outcome(&server, line_status("13800138071")).await;
    assert!(again.cached && !again.billable, "{again:?}");
}

#[tokio::test]
async fn a_full_store_degrades_to_memory_and_answers_are_still_returned() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = server(&sim, dir.path(), r#"max_disk = "64KiB""#).await;
    let items = items(1, 3_000);
    let (results, summary) = check_numbers(&server, items).await;
    assert_eq!(results.len(), 3_000);
    assert_eq!(summary.errors, 0, "{summary:?}");
    let info = cache_info(&server).await;
    assert!(info.store_degraded, "{info:?}");
    assert!(info.stored_answers < 3_000, "{info:?}");
    // The recorder is process-wide and other tests' healthy stores set the degraded gauge too:
    // the failed writes, a counter, are this test's to see.
    let metrics = phonecheck::metrics::install().unwrap().render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("phonecheck_answer_store_writes_total{result=\"failed\"}")),
        "{metrics}"
    );
    // What was paid is still served from memory.
    let (_, again) = check_numbers(&server, items_again()).await;
    assert_eq!(again.billable_calls, 0, "{again:?}");
}

/// The first ten of `items(1, 3_000)`, asked again.
fn items_again() -> Vec<pb::CheckNumbersRequest> {
    items(1, 10)
}
