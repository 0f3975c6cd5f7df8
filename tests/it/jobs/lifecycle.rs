//! A job's life: limits that refuse an upload, paging and deleting, retention, tenant isolation
//! and the HTML report.

use super::*;

#[tokio::test]
async fn limits_refuse_an_upload_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml("[jobs]\nmax_upload_bytes = 10000\nmax_rows = 100").unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let mut client = jobs_client(&server);

    let big: Vec<u8> = (0..2000)
        .flat_map(|i| format!("1380000{i:04}\n").into_bytes())
        .collect();
    let refused = create_job(&mut client, spec("big.txt", &[]), &big, 1000)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(bad_request_field(&refused), "chunk");
    assert!(
        refused.message().contains("10000 bytes"),
        "{}",
        refused.message()
    );

    let rows: Vec<u8> = (0..101)
        .flat_map(|i| format!("1380000{i:04}\n").into_bytes())
        .collect();
    let refused = create_job(&mut client, spec("rows.txt", &[]), &rows, 1000)
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("more than 100 rows"),
        "{}",
        refused.message()
    );

    let list = client
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.jobs.is_empty());
    let spooled = std::fs::read_dir(dir.path().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(spooled, 0, "no upload is left in the spool");

    // Exactly at the limit is fine.
    let hundred: Vec<u8> = rows[..rows.len() - 12].to_vec();
    let job = create_job(&mut client, spec("rows.txt", &[]), &hundred, 1000)
        .await
        .unwrap();
    assert_eq!(progress(&job).rows_total, 100);
}

#[tokio::test]
async fn jobs_are_paged_and_deleted() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let mut ids = Vec::new();
    for i in 0..5 {
        let job = create_job(
            &mut client,
            pb::BatchJobSpec {
                numbers: vec![format!("1380013800{i}")],
                ..spec("", &[])
            },
            b"",
            1,
        )
        .await
        .unwrap();
        ids.push(job.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_batch_jobs(pb::ListBatchJobsRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");

    client
        .delete_batch_job(pb::DeleteBatchJobRequest {
            job_id: ids[0].clone(),
        })
        .await
        .unwrap();
    let gone = client
        .get_batch_job(pb::GetBatchJobRequest {
            job_id: ids[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let bad_token = client
        .list_batch_jobs(pb::ListBatchJobsRequest {
            page_size: 2,
            page_token: "garbage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_field(&bad_token), "page_token");
}

#[tokio::test]
async fn finished_jobs_are_deleted_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(Config::from_toml("").unwrap(), dir.path()).await;
    let mut client = jobs_client(&server);
    let job = create_job(
        &mut client,
        pb::BatchJobSpec {
            numbers: vec!["13800138000".into()],
            ..spec("", &[])
        },
        b"",
        1,
    )
    .await
    .unwrap();
    let job = finished_job(&mut client, &job.id).await;
    assert!(
        job.expire_time.is_some(),
        "a finished job says when it goes"
    );
    server.stop().await.unwrap();

    let config = Config::from_toml("[jobs]\nretention = \"0s\"").unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let gone = jobs_client(&server)
        .get_batch_job(pb::GetBatchJobRequest { job_id: job.id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn a_job_belongs_to_its_tenant() {
    let (key_a, key_b) = ("pck_tenant_a_key", "pck_tenant_b_key");
    let config = Config::from_toml(&format!(
        "[tenants.a]\nkey_sha256 = [\"{}\"]\n[tenants.b]\nkey_sha256 = [\"{}\"]\n",
        phonecheck::auth::key_hash(key_a),
        phonecheck::auth::key_hash(key_b)
    ))
    .unwrap();
    let server = TestServer::start(config).await;
    let (mut a, mut b) = (
        jobs_client_as(&server, key_a),
        jobs_client_as(&server, key_b),
    );
    use pb::create_batch_job_request::Payload;
    let job = a
        .create_batch_job(tokio_stream::iter(vec![pb::CreateBatchJobRequest {
            payload: Some(Payload::Spec(pb::BatchJobSpec {
                numbers: vec!["13800138000".into()],
                ..Default::default()
            })),
        }]))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let id = job.id.clone();
    let not_found =
        |r: Result<(), tonic::Status>| assert_eq!(r.unwrap_err().code(), Code::NotFound);
    not_found(
        b.get_batch_job(pb::GetBatchJobRequest { job_id: id.clone() })
            .await
            .map(drop),
    );
    not_found(
        b.cancel_batch_job(pb::CancelBatchJobRequest { job_id: id.clone() })
            .await
            .map(drop),
    );
    not_found(
        b.delete_batch_job(pb::DeleteBatchJobRequest { job_id: id.clone() })
            .await
            .map(drop),
    );
    not_found(
        b.watch_batch_job(pb::WatchBatchJobRequest {
            job_id: id.clone(),
            interval: None,
        })
        .await
        .map(drop),
    );
    not_found(
        b.export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: id.clone(),
            ..Default::default()
        })
        .await
        .map(drop),
    );
    let listed = b
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty());
    // The owner sees it; a caller without a key sees nothing at all.
    a.get_batch_job(pb::GetBatchJobRequest { job_id: id.clone() })
        .await
        .unwrap();
    let anonymous = jobs_client(&server)
        .get_batch_job(pb::GetBatchJobRequest { job_id: id })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn the_html_report_is_self_contained_and_renders() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let job = create_job(
        &mut client,
        spec("客户.csv", &[pb::Check::LineStatus]),
        &gbk_csv(),
        4096,
    )
    .await
    .unwrap();
    let job = finished_job(&mut client, &job.id).await;
    let html = export_job(
        &mut client,
        &job.id,
        pb::ExportFormat::Html,
        pb::LineStatus::Unspecified,
    )
    .await;
    let html = String::from_utf8(html).unwrap();
    for needle in [
        "<svg",
        "empty 空号",
        "中国移动",
        "Rows without a readable number (2)",
    ] {
        assert!(html.contains(needle), "{needle} missing");
    }
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "nothing fetched"
    );

    // Rendered by a real browser when one is installed (CI installs Debian's chromium).
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("PHONECHECK_REQUIRE_CHROMIUM").is_none(),
            "chromium is required here but not installed"
        );
        eprintln!("chromium not installed: the report was checked as text only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let png = dir.path().join("report.png");
    std::fs::write(&page, &html).unwrap();
    let output = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,1600",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let image = std::fs::read(&png).unwrap();
    assert!(image.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        image.len() > 20_000,
        "a page with content, not a blank one ({} bytes)",
        image.len()
    );
    if let Some(keep) = std::env::var_os("PHONECHECK_REPORT_PNG") {
        std::fs::copy(&png, keep).unwrap();
    }
}
