//! Hostile callers with a valid key: over-long fields and headers, budgets and rates on every
//! path (unary, stream items, job numbers), places for uploads, exports and watches, an upload
//! that stops sending, and exports a spreadsheet would run.

mod uploads;

use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::pb::batch_job_service_client::BatchJobServiceClient;
use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::sim::{SimConfig, SimServer};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const KEY: &str = "pck_hostile_tenant_key_for_tests_only";

type Keyed = InterceptedService<Channel, ApiKey>;

fn keyed(server: &TestServer) -> Keyed {
    InterceptedService::new(server.channel(), ApiKey(KEY))
}

fn client(server: &TestServer) -> PhoneCheckServiceClient<Keyed> {
    PhoneCheckServiceClient::new(keyed(server))
}

fn jobs(server: &TestServer) -> BatchJobServiceClient<Keyed> {
    BatchJobServiceClient::new(keyed(server))
}

/// Thinksms against `sim` (no quota), the tenant `acme` with `tenant` added to its table, and
/// `more` tables.
fn config(sim: &SimServer, dir: &std::path::Path, tenant: &str, more: &str) -> Config {
    let more = format!(
        "[tenants.acme]\nkey_sha256 = [\"{}\"]\nallowed_checks = [\"line-status\"]\n{tenant}\n{more}",
        key_hash(KEY)
    );
    Config::from_toml(&thinksms_toml(sim, dir, 0, &more)).unwrap()
}

fn bad_field(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations[0]
        .field
        .clone()
}

fn line_status_spec() -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: "numbers.txt".to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    }
}

/// Uploads `file` (in one chunk) as a job of the tenant.
async fn create(
    client: &mut BatchJobServiceClient<Keyed>,
    spec: pb::BatchJobSpec,
    file: &[u8],
) -> Result<pb::BatchJob, tonic::Status> {
    create_job(client, spec, file, file.len()).await
}

/// Watches job `id` until `until` holds for it (at most 60 s).
async fn watch_until(
    client: &mut BatchJobServiceClient<Keyed>,
    id: &str,
    until: impl Fn(&pb::BatchJob) -> bool,
) -> pb::BatchJob {
    let watching = async {
        let mut updates = client
            .watch_batch_job(pb::WatchBatchJobRequest {
                job_id: id.to_owned(),
                interval: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(update) = updates.message().await.unwrap() {
            let job = update.job.unwrap();
            if until(&job) {
                return job;
            }
        }
        panic!("the watch ended before the job got there");
    };
    tokio::time::timeout(Duration::from_secs(60), watching)
        .await
        .expect("within 60 s")
}

/// Streams `items` through `CheckNumbers` with the tenant's key; the results and the summary.
async fn stream(
    server: &TestServer,
    items: Vec<pb::CheckNumbersRequest>,
) -> (Vec<pb::CheckNumbersResult>, pb::CheckNumbersSummary) {
    use pb::check_numbers_response::Response;
    let mut responses = client(server)
        .check_numbers(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let (mut results, mut summary) = (Vec::new(), None);
    while let Some(message) = responses.message().await.unwrap() {
        match message.response.unwrap() {
            Response::Result(r) => results.push(r),
            Response::Summary(s) => summary = Some(s),
        }
    }
    (results, summary.expect("a summary"))
}

fn numbers(prefix: &str, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| format!("{prefix}{i:05}\n"))
        .collect::<String>()
        .into_bytes()
}

#[tokio::test]
async fn a_job_stops_at_its_tenants_daily_budget_and_goes_on_when_it_is_raised() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        config(&sim, dir.path(), "daily_billable_budget = 50", ""),
        dir.path(),
    )
    .await;
    let mut client = jobs(&server);
    let job = create(&mut client, line_status_spec(), &numbers("138001", 300))
        .await
        .unwrap();
    let paused = watch_until(&mut client, &job.id, |j| {
        j.state == pb::BatchJobState::Paused as i32
    })
    .await;
    assert!(paused.error.contains("budget of 50"), "{}", paused.error);
    let thinksms = sim.stats().vendor("thinksms");
    assert_eq!(
        thinksms.billable, 50,
        "the vendor billed the budget, no more"
    );
    let progress = paused.progress.unwrap();
    assert_eq!(progress.billable_calls, 50);
    assert_eq!(progress.numbers_done, 50);
    // Every path draws on the same budget: a unary call is refused now.
    let refused = client_lookup(&server, "13900139000").await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // Raised (a new configuration, read at start-up): the job goes on from where it was, and
    // what the tenant spent today survived the restart (the store keeps it), so 70 more.
    server.stop().await.unwrap();
    let server = TestServer::start_in(
        config(&sim, dir.path(), "daily_billable_budget = 120", ""),
        dir.path(),
    )
    .await;
    let mut client = jobs(&server);
    let paused = watch_until(&mut client, &job.id, |j| {
        j.state == pb::BatchJobState::Paused as i32
            && j.progress.as_ref().unwrap().numbers_done > 50
    })
    .await;
    assert_eq!(paused.progress.unwrap().numbers_done, 120);
    assert_eq!(sim.stats().vendor("thinksms").billable, 120);
    // A paused job can be cancelled.
    let cancelled = client
        .cancel_batch_job(pb::CancelBatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(cancelled.state, pb::BatchJobState::Cancelled as i32);
}

async fn client_lookup(
    server: &TestServer,
    number: &str,
) -> Result<pb::NumberReport, tonic::Status> {
    Ok(client(server)
        .lookup_number(lookup(number, &[pb::Check::LineStatus]))
        .await?
        .into_inner()
        .report
        .unwrap())
}

#[tokio::test]
async fn stream_items_and_job_numbers_are_paced_by_the_tenants_rate() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let rate = "rate_limit = { requests_per_second = 20, burst = 1 }";
    let server = TestServer::start_in(config(&sim, dir.path(), rate, ""), dir.path()).await;

    // A job's numbers: the upload takes the one token, then 20 numbers at 20/s take at least
    // 20 × 50 ms (seen at the simulator: no RPC competes for the tokens meanwhile).
    let started = Instant::now();
    create(
        &mut jobs(&server),
        line_status_spec(),
        &numbers("139001", 20),
    )
    .await
    .unwrap();
    sim.stats().wait_for_calls(20).await;
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );

    // Stream items: 30 offline items in one stream are paced, none refused: at least 29 × 50 ms.
    // The stream's own call is one request too, refused with RetryInfo while the job's last
    // numbers hold the tokens.
    let items: Vec<_> = (0..30)
        .map(|i| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number: format!("138001{i:05}"),
            ..Default::default()
        })
        .collect();
    let mut responses = None;
    for _ in 0..20 {
        match client(&server)
            .check_numbers(tokio_stream::iter(items.clone()))
            .await
        {
            Ok(r) => {
                responses = Some(r.into_inner());
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted);
                let wait = status
                    .get_details_retry_info()
                    .unwrap()
                    .retry_delay
                    .unwrap();
                tokio::time::sleep(wait).await;
            }
        }
    }
    let started = Instant::now();
    let mut responses = responses.expect("the stream is accepted once a token is free");
    let mut reports = 0;
    while let Some(message) = responses.message().await.unwrap() {
        if let Some(pb::check_numbers_response::Response::Summary(s)) = message.response {
            reports = s.reports;
        }
    }
    assert_eq!(reports, 30, "paced, not refused");
    assert!(
        started.elapsed() >= Duration::from_millis(1_400),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn over_long_fields_are_refused_by_name_without_being_echoed() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), "", ""), dir.path()).await;
    let long = "1".repeat(100_000);
    let mut c = client(&server);
    for (request, field) in [
        (lookup(&long, &[]), "number"),
        (
            pb::LookupNumberRequest {
                default_region: "X".repeat(10_000),
                ..lookup("13800138000", &[])
            },
            "default_region",
        ),
        (
            pb::LookupNumberRequest {
                checks: vec![pb::Check::LineStatus as i32; 100_000],
                ..lookup("13800138000", &[])
            },
            "checks",
        ),
    ] {
        let status = c.lookup_number(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(bad_field(&status), field);
        assert!(
            status.message().len() < 200,
            "not echoed: {}",
            status.message()
        );
    }

    // In a stream, the bad item gets its error and the next one its report.
    let (results, summary) = stream(
        &server,
        vec![
            pb::CheckNumbersRequest {
                request_id: "r".repeat(10_000),
                number: "13800138000".to_owned(),
                ..Default::default()
            },
            pb::CheckNumbersRequest {
                request_id: "ok".to_owned(),
                number: long.clone(),
                ..Default::default()
            },
            pb::CheckNumbersRequest {
                request_id: "fine".to_owned(),
                number: "13800138000".to_owned(),
                ..Default::default()
            },
        ],
    )
    .await;
    assert_eq!((summary.reports, summary.errors), (1, 2));
    for result in &results {
        assert!(result.request_id.len() <= 128);
        if let Some(pb::check_numbers_result::Outcome::Error(e)) = &result.outcome {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert!(e.message.len() < 200, "not echoed: {}", e.message);
        }
    }

    let mut jobs = jobs(&server);
    let label = pb::BatchJobSpec {
        label: "L".repeat(100_000),
        ..line_status_spec()
    };
    let column = pb::BatchJobSpec {
        registered_at_column: "C".repeat(100_000),
        ..line_status_spec()
    };
    for (field, spec) in [("spec.label", label), ("spec.registered_at_column", column)] {
        let status = create(&mut jobs, spec, b"13800138000\n").await.unwrap_err();
        assert_eq!(bad_field(&status), field);
    }
}

#[tokio::test]
async fn an_absurd_grpc_timeout_is_clamped_not_a_crash() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), "", ""), dir.path()).await;
    let mut c = client(&server);
    for timeout in [
        "9999999999999999999S",
        "99999999H",
        "184467440737095516150n",
    ] {
        let mut request = tonic::Request::new(lookup("13800138000", &[pb::Check::LineStatus]));
        request
            .metadata_mut()
            .insert("grpc-timeout", timeout.parse().unwrap());
        let report = c.lookup_number(request).await.unwrap().into_inner();
        assert!(report.report.is_some(), "{timeout}");
        let mut stream = tonic::Request::new(tokio_stream::iter(vec![pb::CheckNumbersRequest {
            request_id: "1".to_owned(),
            number: "13800138001".to_owned(),
            ..Default::default()
        }]));
        stream
            .metadata_mut()
            .insert("grpc-timeout", timeout.parse().unwrap());
        let mut responses = c.check_numbers(stream).await.unwrap().into_inner();
        let mut n = 0;
        while responses.message().await.unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 2, "a result and the summary");
    }
}
