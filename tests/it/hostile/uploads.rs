//! Hostile callers with a valid key, on uploads and exports: an upload that stops sending, places
//! for uploads, exports and watches, exports a spreadsheet would run, and a tenant that is gone.

use super::*;

#[tokio::test]
async fn an_upload_that_stops_sending_is_dropped_and_holds_nothing() {
    use pb::create_batch_job_request::Payload;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        config(
            &sim,
            dir.path(),
            "",
            "[jobs]\nupload_idle_timeout = \"300ms\"",
        ),
        dir.path(),
    )
    .await;
    let mut client = jobs(&server);
    let (send, messages) = tokio::sync::mpsc::channel(4);
    send.send(pb::CreateBatchJobRequest {
        payload: Some(Payload::Spec(line_status_spec())),
    })
    .await
    .unwrap();
    send.send(pb::CreateBatchJobRequest {
        payload: Some(Payload::Chunk(b"13800138000\n1380013".to_vec())),
    })
    .await
    .unwrap();
    let status = client
        .create_batch_job(tokio_stream::wrappers::ReceiverStream::new(messages))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    drop(send);
    let listed = client
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty());
    let spool = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(spool, 0, "no spool file left");
    // Its place is free again.
    create(&mut client, line_status_spec(), b"13800138000\n")
        .await
        .unwrap();
}

#[tokio::test]
async fn uploads_exports_and_watches_are_bounded_per_tenant() {
    use pb::create_batch_job_request::Payload;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&sim, dir.path(), "", "");
    config.server.max_uploads_per_tenant = 1;
    config.server.max_exports_per_tenant = 1;
    config.server.max_watches_per_tenant = 1;
    let server = TestServer::start_in(config, dir.path()).await;
    let mut client = jobs(&server);
    let quota_failure = |status: &tonic::Status| {
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let details = status.get_error_details();
        let violation = &details.quota_failure().expect("a QuotaFailure").violations[0];
        violation.description.clone()
    };

    // Offline only (free and fast): 3,000 rows make an export of several chunks.
    let spec = pb::BatchJobSpec {
        file_name: "numbers.txt".to_owned(),
        ..Default::default()
    };
    let job = create(&mut client, spec.clone(), &numbers("138002", 3_000))
        .await
        .unwrap();
    watch_until(&mut client, &job.id, |j| {
        j.state == pb::BatchJobState::Succeeded as i32
    })
    .await;

    // A watch holds its place while it is open (on a job kept running: the vendor holds it).
    sim.stats().hold(true);
    let running = create(&mut client, line_status_spec(), b"13800138000\n")
        .await
        .unwrap();
    let watch = |client: &mut BatchJobServiceClient<Keyed>| {
        let request = pb::WatchBatchJobRequest {
            job_id: running.id.clone(),
            interval: None,
        };
        let mut client = client.clone();
        async move { client.watch_batch_job(request).await }
    };
    let mut first = watch(&mut client).await.unwrap().into_inner();
    assert!(first.message().await.unwrap().is_some());
    let second = watch(&mut client).await.unwrap_err();
    assert!(quota_failure(&second).contains("max_watches"));
    sim.stats().hold(false);
    while first.message().await.unwrap().is_some() {}
    drop(first);

    // An export holds its place until its stream ends.
    let export = |client: &mut BatchJobServiceClient<Keyed>| {
        let request = pb::ExportBatchJobResultsRequest {
            job_id: job.id.clone(),
            format: pb::ExportFormat::Csv as i32,
            ..Default::default()
        };
        let mut client = client.clone();
        async move { client.export_batch_job_results(request).await }
    };
    let mut reading = export(&mut client).await.unwrap().into_inner();
    assert!(!reading.message().await.unwrap().unwrap().chunk.is_empty());
    let refused = export(&mut client).await.unwrap_err();
    assert!(quota_failure(&refused).contains("max_exports"));
    drop(reading);

    // An upload holds its place from its spec to its end. It is seen holding it by its spool
    // file, which the server makes once the place is taken.
    let (send, messages) = tokio::sync::mpsc::channel(4);
    send.send(pb::CreateBatchJobRequest {
        payload: Some(Payload::Spec(spec.clone())),
    })
    .await
    .unwrap();
    let mut holder = client.clone();
    let holding = tokio::spawn(async move {
        holder
            .create_batch_job(tokio_stream::wrappers::ReceiverStream::new(messages))
            .await
    });
    let spool = dir.path().join("uploads");
    let mut spooled = false;
    for _ in 0..1_000 {
        if std::fs::read_dir(&spool).unwrap().count() > 0 {
            spooled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(spooled, "the first upload is being received");
    let refused = create(&mut client, spec.clone(), b"").await.unwrap_err();
    assert!(quota_failure(&refused).contains("max_uploads"));
    send.send(pb::CreateBatchJobRequest {
        payload: Some(Payload::Chunk(b"13800138000\n".to_vec())),
    })
    .await
    .unwrap();
    drop(send);
    holding.await.unwrap().unwrap();
}

#[tokio::test]
async fn csv_exports_neutralise_formulas() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), "", ""), dir.path()).await;
    let mut client = jobs(&server);
    let file = "phone,note\n\
                +8613800138000,=HYPERLINK(\"http://evil.invalid\")\n\
                13800138001,@SUM(1+1)*cmd|' /C calc'!A0\n\
                13800138002,-2+3+cmd|' /C calc'!A0\n";
    let job = create(
        &mut client,
        pb::BatchJobSpec {
            file_name: "list.csv".to_owned(),
            ..Default::default()
        },
        file.as_bytes(),
    )
    .await
    .unwrap();
    watch_until(&mut client, &job.id, |j| {
        j.state == pb::BatchJobState::Succeeded as i32
    })
    .await;
    let mut export = client
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: job.id.clone(),
            format: pb::ExportFormat::Csv as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = export.message().await.unwrap() {
        bytes.extend(chunk.chunk);
    }
    let rows = csv_rows(&bytes);
    let all: Vec<&String> = rows.iter().flatten().collect();
    assert!(all.iter().any(|c| c.starts_with("'=HYPERLINK")), "{rows:?}");
    assert!(all.iter().any(|c| c.starts_with("'@SUM")), "{rows:?}");
    assert!(all.iter().any(|c| c.starts_with("'-2+3")), "{rows:?}");
    assert!(
        all.iter().any(|c| *c == "+8613800138000"),
        "a number keeps its +: {rows:?}"
    );
    for cell in all {
        assert!(
            !matches!(cell.chars().next(), Some('=' | '@' | '\t' | '\r')),
            "{cell:?}"
        );
    }
}

#[tokio::test]
async fn a_job_of_a_tenant_no_longer_configured_fails_instead_of_running_unbounded() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        config(&sim, dir.path(), "daily_billable_budget = 10", ""),
        dir.path(),
    )
    .await;
    let mut client = jobs(&server);
    let job = create(&mut client, line_status_spec(), &numbers("138002", 50))
        .await
        .unwrap();
    watch_until(&mut client, &job.id, |j| {
        j.state == pb::BatchJobState::Paused as i32
    })
    .await;
    server.stop().await.unwrap();

    // The tenant's key is revoked: at start-up, before the server answers anyone, its paused
    // job fails rather than run without the tenant's budget.
    let toml = thinksms_toml(&sim, dir.path(), 0, "");
    let server = TestServer::start_in(Config::from_toml(&toml).unwrap(), dir.path()).await;
    // Answered once the server is assembled (the jobs were looked at).
    report(&server, lookup("13800138000", &[])).await;
    let url = format!("sqlite://{}", dir.path().join("phonecheck.db").display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (state, error): (i64, String) =
        sqlx::query_as("SELECT state, error FROM batch_jobs WHERE id = $1")
            .bind(&job.id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(state, phonecheck::store::JobState::Failed as i64, "{error}");
    assert!(
        error.contains("tenant acme is no longer configured"),
        "{error}"
    );
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        10,
        "nothing more was paid"
    );
    server.stop().await.unwrap();
}
