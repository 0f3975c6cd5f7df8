//! Jobs against a live vendor (the Thinksms simulator): a server killed with SIGKILL mid-job
//! resumes with no number lost and none paid twice; cancel stops the vendor calls; numbers a
//! vendor answers later are collected in later passes.

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::SimConfig;
use tonic::transport::Channel;

fn client(url: &str) -> pb::batch_job_service_client::BatchJobServiceClient<Channel> {
    pb::batch_job_service_client::BatchJobServiceClient::new(
        Channel::from_shared(url.to_owned()).unwrap().connect_lazy(),
    )
}

/// 300 distinct numbers, 100 of them written twice (another spelling).
fn numbers() -> Vec<u8> {
    let mut text = String::from("phone\n");
    for i in 0..300 {
        text.push_str(&format!("1380000{i:04}\n"));
    }
    for i in 0..100 {
        text.push_str(&format!("+86 138 0000 {i:04}\n"));
    }
    text.into_bytes()
}

async fn progress_of(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
) -> pb::BatchJobProgress {
    get_job(client, id).await.progress.unwrap()
}

#[tokio::test]
async fn a_killed_server_resumes_the_job_without_loss_or_double_billing() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("phonecheck.toml");
    std::fs::write(&config, thinksms_toml(&sim, dir.path(), 100, "")).unwrap();

    let (mut first, url) = spawn_server(&config);
    let mut jobs = client(&url);
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let job = create_job(&mut jobs, spec, &numbers(), 1000).await.unwrap();
    assert_eq!(job.progress.as_ref().unwrap().numbers_total, 300);

    // Mid-job: hold the vendor's door, let every answer already given be committed, then kill.
    sim.stats()
        .wait_until(|s| s["thinksms"].billable >= 100)
        .await;
    let answered = hold_vendor_once_committed(&sim, &mut jobs, &job.id).await;
    first.kill().unwrap();
    first.wait().unwrap();
    // The calls held at the door lose their client: the vendor never processes them.
    sim.stats().wait_for_held(|held| held == 0).await;
    sim.stats().hold(false);
    assert_eq!(sim.stats().vendor("thinksms").billable, answered);
    assert!(
        answered < 300,
        "killed mid-job ({answered} of 300 answered)"
    );

    let (mut second, url) = spawn_server(&config);
    let mut jobs = client(&url);
    let done = finished_job(&mut jobs, &job.id).await;
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    let p = done.progress.unwrap();
    assert_eq!((p.numbers_done, p.rows_done), (300, 400), "none lost");
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        300,
        "each number paid once across the kill"
    );
    assert_eq!(p.billable_calls, 300);
    let counted: i64 = p.line_status_counts.iter().map(|c| c.count).sum();
    assert_eq!(counted, 400);
}

#[tokio::test]
async fn cancel_stops_the_vendor_calls() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&thinksms_toml(&sim, dir.path(), 50, "")).unwrap();
    let server = TestServer::start_in(config, &dir.path().join("data")).await;
    let mut jobs = jobs_client(&server);
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let job = create_job(&mut jobs, spec, &numbers(), 1000).await.unwrap();
    sim.stats()
        .wait_until(|s| s["thinksms"].billable >= 10)
        .await;

    let cancelled = jobs
        .cancel_batch_job(pb::CancelBatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(cancelled.state, pb::BatchJobState::Cancelled as i32);
    let calls_at_cancel = sim.stats().vendor("thinksms").calls;
    // A live lookup after the cancel: the vendor's next calls are this one and at most the
    // job's calls already past the quota when it was cancelled.
    let report = report(
        &server,
        pb::LookupNumberRequest {
            number: "13900139000".into(),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        },
    )
    .await;
    assert!(outcome(&report, pb::Check::LineStatus).billable);
    let after = sim.stats().vendor("thinksms").calls;
    assert!(
        after <= calls_at_cancel + 3,
        "{} calls after the cancel",
        after - calls_at_cancel
    );
    let p = progress_of(&mut jobs, &job.id).await;
    assert!(p.numbers_done < 300, "stopped early");
    // The results so far are kept and exported.
    let rows = csv_rows(
        &export_job(
            &mut jobs,
            &job.id,
            pb::ExportFormat::Csv,
            pb::LineStatus::Unspecified,
        )
        .await,
    );
    assert_eq!(rows.len(), 401);
}

#[tokio::test]
async fn numbers_a_vendor_answers_later_are_collected_in_later_passes() {
    let config = Config::from_toml(
        "[sandbox]\nasync_delay = \"500ms\"\n[jobs]\nretry_after = \"300ms\"\nmax_passes = 20",
    )
    .unwrap();
    let server = TestServer::start(config).await;
    let mut jobs = jobs_client(&server);
    let job = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            numbers: (0..5).map(|i| format!("1390013900{i}")).collect(),
            checks: vec![pb::Check::SpamLabels as i32],
            ..Default::default()
        },
        b"",
        1,
    )
    .await
    .unwrap();
    let done = finished_job(&mut jobs, &job.id).await;
    let p = done.progress.unwrap();
    assert_eq!(done.state, pb::BatchJobState::Succeeded as i32);
    assert_eq!((p.numbers_done, p.numbers_pending), (5, 0));
    let rows = csv_rows(
        &export_job(
            &mut jobs,
            &job.id,
            pb::ExportFormat::Csv,
            pb::LineStatus::Unspecified,
        )
        .await,
    );
    let pending = rows[0]
        .iter()
        .position(|c| c == "spam_labels_pending")
        .unwrap();
    assert!(rows[1..].iter().all(|r| r[pending] == "false"), "{rows:?}");
}
