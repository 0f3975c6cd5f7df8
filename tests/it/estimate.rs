//! Estimates before paying and `max_cost`: a dry run's estimate counts what the run then bills
//! (duplicates, invalid rows, numbers answered before and numbers no provider covers are free);
//! `StartBatchJob` runs an estimated job from its stored rows and refuses any other; `max_cost`
//! pauses a job before it passes the amount, and raising it resumes the job; both survive a
//! restart.

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::pb::batch_job_service_client::BatchJobServiceClient;
use phonecheck::pb::google_type::Money;
use phonecheck::sim::{SimConfig, SimServer};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

type Jobs = BatchJobServiceClient<Channel>;

/// Thinksms against `sim` at `quota` calls/s, line status priced 0.03 CNY, state under `dir`.
fn config(sim: &SimServer, dir: &std::path::Path, quota: u32) -> Config {
    let prices = "[providers.thinksms.prices]\nline_status = \"0.03\"";
    Config::from_toml(&thinksms_toml(sim, dir, quota, prices)).unwrap()
}

fn cny(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "CNY".into(),
        units,
        nanos,
    }
}

fn line_status_spec(dry_run: bool, max_cost: Option<Money>) -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        dry_run,
        max_cost,
        ..Default::default()
    }
}

/// 100 distinct valid mobiles (`1380000` 1000..1099), 10 of them written again in another
/// spelling, 3 rows without a number, 2 invalid numbers and 1 number Thinksms does not cover.
fn list() -> Vec<u8> {
    let mut text = String::new();
    for i in 1000..1100 {
        text.push_str(&format!("1380000{i}\n"));
    }
    for i in 1000..1010 {
        text.push_str(&format!("+86 138 0000 {i}\n"));
    }
    text.push_str("hello\nn/a\n??\n15412345678\n1380013800\n+65 9123 4567\n");
    text.into_bytes()
}

async fn start(
    jobs: &mut Jobs,
    id: &str,
    max_cost: Option<Money>,
) -> Result<pb::BatchJob, tonic::Status> {
    Ok(jobs
        .start_batch_job(pb::StartBatchJobRequest {
            job_id: id.to_owned(),
            max_cost,
        })
        .await?
        .into_inner()
        .job
        .expect("a job"))
}

fn bad_field(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations[0]
        .field
        .clone()
}

fn nanos(m: &Option<Money>) -> i64 {
    let m = m.clone().expect("an amount");
    assert_eq!(m.currency_code, "CNY");
    m.units * 1_000_000_000 + i64::from(m.nanos)
}

#[tokio::test]
async fn a_dry_runs_estimate_is_what_the_run_then_bills() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 100), dir.path()).await;
    // 20 of the list's numbers were paid for before, one at a time.
    for i in 1000..1020 {
        report(
            &server,
            lookup(&format!("1380000{i}"), &[pb::Check::LineStatus]),
        )
        .await;
    }
    assert_eq!(sim.stats().vendor("thinksms").billable, 20);

    let mut jobs = jobs_client(&server);
    let job = create_job(&mut jobs, line_status_spec(true, None), &list(), 256)
        .await
        .unwrap();
    assert_eq!(job.state, pb::BatchJobState::Estimated as i32);
    let estimate = job.estimate.clone().expect("an estimate");
    assert_eq!(estimate.rows, 116);
    assert_eq!(estimate.bad_rows, 3);
    assert_eq!(estimate.duplicate_rows, 10);
    assert_eq!(estimate.valid_numbers, 101);
    assert_eq!(estimate.invalid_numbers, 2);
    let line = &estimate.checks[0];
    assert_eq!(line.check, pb::Check::LineStatus as i32);
    assert_eq!(
        (line.answered, line.not_covered, line.paid),
        (20, 1, 80),
        "{line:?}"
    );
    assert_eq!(nanos(&line.price_ceiling), 30_000_000);
    assert_eq!(nanos(&estimate.cost), 80 * 30_000_000, "80 × 0.03");
    // 80 numbers at the bulk share (80%) of 100 calls/s.
    let took = std::time::Duration::try_from(estimate.duration.unwrap()).unwrap();
    assert_eq!(took, std::time::Duration::from_secs(1));
    assert!(estimate.valid_until.is_some(), "answers were counted free");
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        20,
        "a dry run calls no vendor"
    );

    // The estimate is kept with the job, and the job waits for a client, across a restart.
    server.stop().await.unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 100), dir.path()).await;
    let mut jobs = jobs_client(&server);
    let kept = get_job(&mut jobs, &job.id).await;
    assert_eq!(kept.state, pb::BatchJobState::Estimated as i32);
    assert_eq!(kept.estimate.as_ref(), Some(&estimate));
    let listed = jobs
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed[0].estimate.as_ref(), Some(&estimate));
    assert_eq!(sim.stats().vendor("thinksms").billable, 20);

    let started = start(&mut jobs, &job.id, None).await.unwrap();
    // Queued, or already taken up by the runner it woke.
    let taken = [
        pb::BatchJobState::Queued,
        pb::BatchJobState::Running,
        pb::BatchJobState::Succeeded,
    ];
    assert!(
        taken.iter().any(|s| *s as i32 == started.state),
        "{started:?}"
    );
    let done = finished_job(&mut jobs, &job.id).await;
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32, "{done:?}");
    let billed = sim.stats().vendor("thinksms").billable - 20;
    assert_eq!(
        billed as i64, line.paid,
        "the vendor billed what was estimated"
    );
    let progress = done.progress.clone().unwrap();
    assert_eq!(progress.billable_calls, 80);
    assert_eq!(progress.rows_done, 116);
    // One provider on the route: the bill is the estimate, to the nano.
    assert_eq!(
        nanos(&done.progress.as_ref().unwrap().cost),
        nanos(&estimate.cost)
    );
    assert_eq!(
        done.estimate.as_ref(),
        Some(&estimate),
        "kept after the run"
    );

    // The report shows both.
    let html = export_job(
        &mut jobs,
        &job.id,
        pb::ExportFormat::Html,
        pb::LineStatus::Unspecified,
    )
    .await;
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains("2.40 CNY for 80 paid checks"),
        "estimate in the report"
    );
    assert!(html.contains("billed (spent)"), "billed in the report");
}

#[tokio::test]
async fn start_is_refused_for_a_job_that_is_not_waiting_to_start() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 0), dir.path()).await;
    let mut jobs = jobs_client(&server);
    let job = create_job(
        &mut jobs,
        line_status_spec(false, None),
        b"13800001000\n",
        64,
    )
    .await
    .unwrap();
    let done = finished_job(&mut jobs, &job.id).await;
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    let refused = start(&mut jobs, &job.id, None).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let failure = refused
        .get_details_precondition_failure()
        .expect("a PreconditionFailure");
    assert_eq!(failure.violations[0].r#type, "STATE");
    assert_eq!(
        failure.violations[0].subject,
        format!("phonecheck.v1.BatchJob/{}", job.id)
    );
    assert!(
        refused.message().contains("BATCH_JOB_STATE_SUCCEEDED"),
        "{}",
        refused.message()
    );

    // Started once, an estimated job is not started again.
    let estimated = create_job(
        &mut jobs,
        line_status_spec(true, None),
        b"13800001001\n",
        64,
    )
    .await
    .unwrap();
    start(&mut jobs, &estimated.id, None).await.unwrap();
    let again = start(&mut jobs, &estimated.id, None).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let missing = start(&mut jobs, "job_nope", None).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(
        bad_field(&start(&mut jobs, "", None).await.unwrap_err()),
        "job_id"
    );
    finished_job(&mut jobs, &estimated.id).await;
}

#[tokio::test]
async fn a_bad_max_cost_is_refused_by_field() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 0), dir.path()).await;
    let mut jobs = jobs_client(&server);
    let file = b"13800001000\n";
    let negative = create_job(
        &mut jobs,
        line_status_spec(false, Some(cny(-1, 0))),
        file,
        64,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_field(&negative), "spec.max_cost");
    let dollars = Money {
        currency_code: "USD".into(),
        units: 5,
        nanos: 0,
    };
    let foreign = create_job(
        &mut jobs,
        line_status_spec(false, Some(dollars.clone())),
        file,
        64,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_field(&foreign), "spec.max_cost.currency_code");
    assert!(foreign.message().contains("CNY"), "{}", foreign.message());
    let estimated = create_job(&mut jobs, line_status_spec(true, None), file, 64)
        .await
        .unwrap();
    let refused = start(&mut jobs, &estimated.id, Some(dollars))
        .await
        .unwrap_err();
    assert_eq!(bad_field(&refused), "max_cost.currency_code");
    let refused = start(&mut jobs, &estimated.id, Some(cny(0, -5)))
        .await
        .unwrap_err();
    assert_eq!(bad_field(&refused), "max_cost");
    assert_eq!(
        get_job(&mut jobs, &estimated.id).await.state,
        pb::BatchJobState::Estimated as i32,
        "a refused start leaves the job as it was"
    );
    assert_eq!(sim.stats().vendor("thinksms").billable, 0);
}

#[tokio::test]
async fn max_cost_pauses_a_job_and_raising_it_resumes_the_job_across_a_restart() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 0), dir.path()).await;
    let mut jobs = jobs_client(&server);
    let file: String = (0..50)
        .map(|i| format!("1390000{:04}\n", 2000 + i))
        .collect();
    // 0.30 CNY at 0.03 a number: ten numbers.
    let job = create_job(
        &mut jobs,
        line_status_spec(false, Some(cny(0, 300_000_000))),
        file.as_bytes(),
        256,
    )
    .await
    .unwrap();
    assert_eq!(nanos(&job.max_cost), 300_000_000);
    let paused = finished_or_paused(&mut jobs, &job.id).await;
    assert_eq!(paused.state, pb::BatchJobState::Paused as i32, "{paused:?}");
    assert!(
        paused.error.contains("max_cost 0.30 CNY") && paused.error.contains("0.30 CNY spent"),
        "{}",
        paused.error
    );
    assert_eq!(sim.stats().vendor("thinksms").billable, 10, "0.30 / 0.03");
    assert_eq!(nanos(&paused.progress.as_ref().unwrap().cost), 300_000_000);
    assert_eq!(paused.progress.as_ref().unwrap().numbers_done, 10);

    // A restart keeps the limit and what was spent, and does not resume the job by itself.
    server.stop().await.unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), 0), dir.path()).await;
    let mut jobs = jobs_client(&server);
    let kept = get_job(&mut jobs, &job.id).await;
    assert_eq!(kept.state, pb::BatchJobState::Paused as i32);
    assert_eq!(kept.error, paused.error);
    assert_eq!(nanos(&kept.progress.as_ref().unwrap().cost), 300_000_000);
    assert_eq!(nanos(&kept.max_cost), 300_000_000);
    // Waiting for a client that may never come, it is kept for the retention from its pause (it
    // has not ended).
    assert!(kept.end_time.is_none());
    assert!(kept.expire_time.is_some(), "{kept:?}");

    // Resuming needs a higher max_cost.
    let refused = start(&mut jobs, &job.id, None).await.unwrap_err();
    assert_eq!(bad_field(&refused), "max_cost");
    let refused = start(&mut jobs, &job.id, Some(cny(0, 300_000_000)))
        .await
        .unwrap_err();
    assert_eq!(bad_field(&refused), "max_cost");
    assert!(
        refused.message().contains("0.30 CNY"),
        "{}",
        refused.message()
    );

    // Raised by three numbers: it pauses again at the new limit.
    start(&mut jobs, &job.id, Some(cny(0, 390_000_000)))
        .await
        .unwrap();
    let paused = finished_or_paused(&mut jobs, &job.id).await;
    assert_eq!(paused.state, pb::BatchJobState::Paused as i32, "{paused:?}");
    assert_eq!(sim.stats().vendor("thinksms").billable, 13);
    assert_eq!(nanos(&paused.progress.as_ref().unwrap().cost), 390_000_000);

    // Raised enough: it runs to the end, and every number was paid once.
    start(&mut jobs, &job.id, Some(cny(10, 0))).await.unwrap();
    let done = finished_or_paused(&mut jobs, &job.id).await;
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32, "{done:?}");
    assert!(done.end_time.is_some());
    assert_eq!(sim.stats().vendor("thinksms").billable, 50);
    assert_eq!(
        nanos(&done.progress.as_ref().unwrap().cost),
        50 * 30_000_000
    );
    assert_eq!(done.progress.unwrap().numbers_done, 50);
}

/// Watches a job until it is paused or has ended.
async fn finished_or_paused(jobs: &mut Jobs, id: &str) -> pb::BatchJob {
    let watching = async {
        let mut updates = watch(jobs, id).await;
        while let Some(update) = updates.message().await.unwrap() {
            let job = update.job.unwrap();
            let paused = job.state == pb::BatchJobState::Paused as i32;
            let ended = matches!(
                pb::BatchJobState::try_from(job.state),
                Ok(pb::BatchJobState::Succeeded
                    | pb::BatchJobState::Cancelled
                    | pb::BatchJobState::Failed)
            );
            if paused || ended {
                return job;
            }
        }
        panic!("the watch ended before the job paused or ended");
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), watching)
        .await
        .expect("within 60 s")
}

#[tokio::test]
async fn with_a_dearer_provider_on_the_route_the_bill_stays_under_the_estimate() {
    // The sandbox routes line status over Thinksms (0.03), then Aliyun (0.04): the estimate
    // counts every paid number at 0.04, in case it fails over.
    let server = TestServer::sandbox().await;
    let mut jobs = jobs_client(&server);
    let file: String = (0..30)
        .map(|i| format!("1370000{:04}\n", 3000 + i))
        .collect();
    let job = create_job(
        &mut jobs,
        line_status_spec(true, None),
        file.as_bytes(),
        256,
    )
    .await
    .unwrap();
    let estimate = job.estimate.clone().unwrap();
    assert_eq!(estimate.checks[0].paid, 30);
    assert_eq!(nanos(&estimate.checks[0].price_ceiling), 40_000_000);
    assert_eq!(nanos(&estimate.cost), 30 * 40_000_000);
    start(&mut jobs, &job.id, None).await.unwrap();
    let done = finished_job(&mut jobs, &job.id).await;
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    assert_eq!(done.progress.as_ref().unwrap().billable_calls, 30);
    assert_eq!(
        nanos(&done.progress.as_ref().unwrap().cost),
        30 * 30_000_000,
        "Thinksms answered every number"
    );
    assert!(nanos(&done.progress.as_ref().unwrap().cost) <= nanos(&estimate.cost));
}

#[tokio::test]
async fn answers_that_expire_before_the_run_reaches_them_are_not_counted_free() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // Line-status answers live 10 minutes: less than the margin an estimate keeps.
    let more =
        "[providers.thinksms.prices]\nline_status = \"0.03\"\n[cache]\nline_status = \"10m\"";
    let config = Config::from_toml(&thinksms_toml(&sim, dir.path(), 0, more)).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    for i in 0..5 {
        report(
            &server,
            lookup(&format!("1350000{:04}", 4000 + i), &[pb::Check::LineStatus]),
        )
        .await;
    }
    let mut jobs = jobs_client(&server);
    let file: String = (0..10)
        .map(|i| format!("1350000{:04}\n", 4000 + i))
        .collect();
    let job = create_job(
        &mut jobs,
        line_status_spec(true, None),
        file.as_bytes(),
        256,
    )
    .await
    .unwrap();
    let line = &job.estimate.as_ref().unwrap().checks[0];
    assert_eq!((line.answered, line.paid), (0, 10), "{line:?}");
    assert!(job.estimate.as_ref().unwrap().valid_until.is_none());
    start(&mut jobs, &job.id, None).await.unwrap();
    let done = finished_job(&mut jobs, &job.id).await;
    // Run at once, the five answers were still there: the bill is under the estimate.
    assert_eq!(sim.stats().vendor("thinksms").billable, 5 + 5);
    assert_eq!(nanos(&done.progress.as_ref().unwrap().cost), 5 * 30_000_000);
}

#[tokio::test]
async fn the_cli_prints_the_estimate_and_starts_the_job() {
    use std::process::{Command, Stdio};
    let server = TestServer::sandbox().await;
    let url = format!("http://{}", server.addr);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.txt");
    let numbers: String = (0..30)
        .map(|i| format!("1370000{:04}\n", 5000 + i))
        .collect();
    std::fs::write(&file, format!("{numbers}13700005000\nhello\n")).unwrap();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_phonecheck"))
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .args(args)
                .output()
                .unwrap()
        })
    };
    let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let created = run(args(&[
        "job",
        "create",
        file.to_str().unwrap(),
        "--check",
        "line-status",
        "--dry-run",
        "--server",
        &url,
    ]))
    .await
    .unwrap();
    let text = String::from_utf8(created.stdout).unwrap();
    assert!(created.status.success(), "{text}");
    assert!(text.contains("estimate  1.20 CNY"), "{text}");
    assert!(text.contains("30 paid × 0.04 CNY = 1.20 CNY"), "{text}");
    assert!(text.contains("1 without a number, 1 duplicates"), "{text}");
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("run it with: phonecheck job start "))
        .expect("the start command")
        .to_owned();

    let started = run(args(&[
        "job",
        "start",
        &id,
        "--max-cost",
        "10",
        "--server",
        &url,
    ]))
    .await
    .unwrap();
    let text = String::from_utf8(started.stdout).unwrap();
    assert!(started.status.success(), "{text}");
    assert!(text.contains("state     succeeded"), "{text}");
    assert!(text.contains("spent     0.90 CNY"), "{text}");
    assert!(text.contains("max_cost  10.00 CNY"), "{text}");
}

#[tokio::test]
async fn the_tenants_rate_bounds_how_fast_the_run_goes() {
    const KEY: &str = "pck_estimate_rate_tenant_key_for_tests";
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let more = format!(
        "[providers.thinksms.prices]\nline_status = \"0.03\"\n[tenants.acme]\n\
         key_sha256 = [\"{}\"]\nrate_limit = {{ requests_per_second = 10, burst = 1 }}",
        phonecheck::auth::key_hash(KEY)
    );
    let config = Config::from_toml(&thinksms_toml(&sim, dir.path(), 0, &more)).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let keyed = tonic::service::interceptor::InterceptedService::new(
        server.channel(),
        |mut request: tonic::Request<()>| {
            let key = format!("Bearer {KEY}").parse().unwrap();
            request.metadata_mut().insert("authorization", key);
            Ok(request)
        },
    );
    let mut jobs = BatchJobServiceClient::new(keyed);
    let job = create_job(&mut jobs, line_status_spec(true, None), &list(), 256)
        .await
        .unwrap();
    // No vendor quota, but the tenant's 10 numbers a second: 103 numbers take over 10 s.
    let estimate = job.estimate.expect("an estimate");
    let took = estimate.duration.expect("a duration");
    assert!(took.seconds >= 10, "{took:?}");
}
