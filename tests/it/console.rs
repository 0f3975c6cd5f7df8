//! The web console over plain HTTP (no browser): security headers and cookie attributes,
//! sign-in and sign-out, CSRF and cross-site refusals, session expiry, rate limits, tenant
//! isolation, escaping, upload errors shown in words, a pause at `max_cost`, TLS, a dropped
//! upload, and the sandbox's printed address. The browser flows are in `console_browser`.

use std::time::Duration;

use crate::common::console::*;
use crate::common::*;
use phonecheck::pb;
use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;

#[tokio::test]
async fn pages_carry_the_security_headers_and_the_session_cookie_its_attributes() {
    let server = TestServer::with_console(config("")).await;
    let mut web = Web::new(&server);
    let page = web.get("/signin").await;
    assert_eq!(page.status(), StatusCode::OK);
    let h = page.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    // Over plain HTTP: no HSTS (a browser would ignore it), no `__Host-` cookie (it needs Secure).
    assert!(h.get("strict-transport-security").is_none());
    // Without a session every page sends the browser to sign in.
    let jobs = web.get("/jobs").await;
    assert_eq!(jobs.status(), StatusCode::SEE_OTHER);
    assert_eq!(jobs.headers()["location"], "/signin");

    // A wrong key: said in words, no session.
    let wrong = web.sign_in("pck_wrong").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("This API key is not valid.")
    );
    assert!(web.cookie("pc_session").is_none());

    let signed = web.sign_in(KEY_A).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let set: Vec<_> = signed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("pc_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "no TLS here: {session}");
    assert!(
        !session.contains(KEY_A),
        "the key never goes to the browser"
    );
    let id = web.cookie("pc_session").unwrap();
    assert_eq!(id.len(), 64, "256 random bits");
    let jobs = web.get("/jobs").await;
    assert_eq!(jobs.status(), StatusCode::OK);
    assert_eq!(jobs.headers()["cache-control"], "no-store");
    let body = jobs.text().await.unwrap();
    assert!(!body.contains(KEY_A));
    // The assets are embedded and fetch nothing else.
    let script = web.get("/assets/console.js").await.text().await.unwrap();
    assert!(!script.contains("http://") && !script.contains("https://"));
    // Chinese when the browser asks for it, or the cookie says so.
    let zh = web.get("/lang/zh").await;
    assert_eq!(zh.status(), StatusCode::SEE_OTHER);
    let page = web.get("/jobs").await.text().await.unwrap();
    assert!(
        page.contains("新建任务") && page.contains("lang=\"zh-CN\""),
        "{page}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn state_changes_need_the_token_and_the_same_origin() {
    let server = TestServer::with_console(config("")).await;
    let mut web = Web::new(&server);
    // Sign-in itself is checked: no token cookie, or a foreign origin.
    let refused = web.post("/signin", &[("key", KEY_A), ("csrf", "x")]).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(web.sign_in(KEY_A).await.status(), StatusCode::SEE_OTHER);
    let csrf = web.csrf().await;
    let created = web.upload("a.csv", "checks=line-status", gbk_csv()).await;
    let id = created_job(created).await;
    let path = format!("/jobs/{id}/delete");
    // No token; a wrong token; a foreign origin; a cross-site fetch: all refused, in words.
    for (form, origin, site) in [
        (vec![], Some(web.base.clone()), Some("same-origin")),
        (
            vec![("csrf", "0".repeat(64))],
            Some(web.base.clone()),
            Some("same-origin"),
        ),
        (
            vec![("csrf", csrf.clone())],
            Some("http://evil.example".to_owned()),
            None,
        ),
        (vec![("csrf", csrf.clone())], None, Some("cross-site")),
        (vec![("csrf", csrf.clone())], None, Some("same-site")),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = web.post_from(&path, &form, origin.as_deref(), site).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(answer.text().await.unwrap().contains("Refused"));
    }
    // A form past its bound is refused while it is read.
    let big = "k".repeat(100_000);
    let answer = web
        .post(
            "/signout",
            &[("csrf", csrf.as_str()), ("pad", big.as_str())],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // An upload without the token header.
    let bare = http()
        .build()
        .unwrap()
        .post(format!("{}/jobs/upload?name=a.csv", web.base))
        .header(
            "cookie",
            format!("pc_session={}", web.cookie("pc_session").unwrap()),
        )
        .body("13800000001\n")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::FORBIDDEN);
    // The job is still there; with the token it goes.
    assert_eq!(
        web.get(&format!("/jobs/{id}")).await.status(),
        StatusCode::OK
    );
    let deleted = web.post(&path, &[("csrf", &csrf)]).await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        web.get(&format!("/jobs/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sessions_end_at_sign_out_and_at_their_expiry() {
    let server = TestServer::with_console(config("session_ttl = \"2s\"")).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let old = web.cookie("pc_session").unwrap();
    let csrf = web.csrf().await;
    let out = web.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        out.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie is worth nothing now.
    web.cookies.push(("pc_session".to_owned(), old));
    assert_eq!(web.get("/jobs").await.status(), StatusCode::SEE_OTHER);

    web.sign_in(KEY_A).await;
    // The session opened before the sign-in was answered: it has ended 2 s (its ttl) after that.
    let answered = tokio::time::Instant::now();
    assert_eq!(web.get("/jobs").await.status(), StatusCode::OK);
    tokio::time::sleep_until(answered + Duration::from_secs(2)).await;
    assert_eq!(web.get("/jobs").await.status(), StatusCode::SEE_OTHER);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn requests_past_the_rates_are_refused() {
    let server =
        TestServer::with_console(config("requests_per_minute = 60\nsign_ins_per_minute = 3")).await;
    // Sign-ins count against the client's address: one that works, then guesses.
    let mut other = Web::new(&server);
    assert_eq!(other.sign_in(KEY_A).await.status(), StatusCode::SEE_OTHER);
    let mut web = Web::new(&server);
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(web.sign_in("pck_guess").await.status());
    }
    assert_eq!(
        codes,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A session's own rate: a burst of a tenth of a minute's requests, then 429.
    let statuses: Vec<_> = futures::future::join_all((0..12).map(|_| {
        let (url, cookie) = (format!("{}/jobs", other.base), other.cookie_header());
        async move {
            http()
                .build()
                .unwrap()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    }))
    .await;
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_past_the_bounds_are_refused_in_words_and_jobs_stay_their_tenants() {
    let server = TestServer::with_console(config("[jobs]\nmax_upload_bytes = 10000")).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let big: Vec<u8> = (0..4000)
        .flat_map(|i| format!("1380000{i:04}\n").into_bytes())
        .collect();
    let refused = web.upload("big.txt", "checks=line-status", big).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error = refused.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("larger than 10000 bytes"), "{error}");
    let bad_check = web.upload("a.csv", "checks=nope", gbk_csv()).await;
    assert_eq!(bad_check.status(), StatusCode::BAD_REQUEST);

    // Escaped everywhere: the file name, the label, the cells.
    let hostile = "<script>window.__xss=1</script>\"><img src=x onerror=window.__xss=2>";
    let file = format!("phone,note\n13800000001,{}\n", hostile.replace('"', "\"\""));
    let created = web
        .upload(
            &format!("{hostile}.csv"),
            "checks=line-status",
            file.into_bytes(),
        )
        .await;
    let id = created_job(created).await;
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/preview"),
        "/jobs".to_owned(),
    ] {
        let page = web.get(&path).await.text().await.unwrap();
        assert!(
            page.contains("&#60;script&#62;window.__xss=1&#60;/script&#62;"),
            "{path}: {page}"
        );
        assert!(
            !page.contains("<script>window") && !page.contains("<img src=x"),
            "{path}"
        );
    }

    // Another tenant does not see it, by URL or in its list.
    let mut other = Web::new(&server);
    other.sign_in(KEY_B).await;
    for path in [
        format!("/jobs/{id}"),
        format!("/jobs/{id}/live"),
        format!("/jobs/{id}/preview"),
        format!("/jobs/{id}/download?format=csv"),
    ] {
        assert_eq!(
            other.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    assert!(!other.get("/jobs").await.text().await.unwrap().contains(&id));
    let csrf = other.csrf().await;
    let start = other
        .post(&format!("/jobs/{id}/start"), &[("csrf", &csrf)])
        .await;
    assert_eq!(start.status(), StatusCode::NOT_FOUND);
    server.stop().await.unwrap();
}

/// Waits, on the job's own `WatchBatchJob` stream (as tenant A), until it is in `state`
/// (within a minute); then the live part of its page.
async fn live_at(server: &TestServer, web: &mut Web, id: &str, state: pb::BatchJobState) -> String {
    let mut jobs = jobs_client_as(server, KEY_A);
    let mut updates = jobs
        .watch_batch_job(pb::WatchBatchJobRequest {
            job_id: id.to_owned(),
            interval: None,
        })
        .await
        .unwrap()
        .into_inner();
    let reached = async {
        while let Some(update) = updates.message().await.unwrap() {
            if update.job.is_some_and(|job| job.state == state as i32) {
                return;
            }
        }
        panic!("the watch ended before {state:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), reached)
        .await
        .unwrap_or_else(|_| panic!("waited a minute for {state:?}"));
    web.get(&format!("/jobs/{id}/live"))
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_job_paused_at_its_max_cost_shows_why_and_goes_on_when_raised() {
    let server = TestServer::with_console(config("")).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let id = created_job(
        web.upload("list.csv", "checks=line-status", gbk_csv())
            .await,
    )
    .await;
    let csrf = web.csrf().await;
    let start = web
        .post(
            &format!("/jobs/{id}/start"),
            &[("csrf", &csrf), ("max_cost", "0.01")],
        )
        .await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let paused = live_at(&server, &mut web, &id, pb::BatchJobState::Paused).await;
    assert!(paused.contains("data-state=\"paused\""), "{paused}");
    let page = web.get(&format!("/jobs/{id}")).await.text().await.unwrap();
    assert!(
        page.contains("id=\"job-error\"") && page.contains("max_cost"),
        "{page}"
    );
    assert!(page.contains("id=\"raise-form\""), "{page}");
    // A limit below what is spent is refused in words; a higher one lets it finish.
    let raised = web
        .post(
            &format!("/jobs/{id}/start"),
            &[("csrf", &csrf), ("max_cost", "-1")],
        )
        .await;
    assert_eq!(raised.status(), StatusCode::BAD_REQUEST);
    let raised = web
        .post(
            &format!("/jobs/{id}/start"),
            &[("csrf", &csrf), ("max_cost", "10")],
        )
        .await;
    assert_eq!(raised.status(), StatusCode::SEE_OTHER);
    let done = live_at(&server, &mut web, &id, pb::BatchJobState::Succeeded).await;
    assert!(done.contains("data-final=\"true\""), "{done}");
    assert!(done.contains("data-state=\"succeeded\""), "{done}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn with_tls_the_console_is_https_and_its_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let mut config = config("");
    config.server.tls = Some(phonecheck::config::TlsConfig {
        cert,
        key,
        client_ca: None,
    });
    let server = TestServer::with_console(config).await;
    let port = server.console.unwrap().port();
    let trusted = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap();
    let mut web = Web::over(
        format!("https://localhost:{port}"),
        http().tls_certs_only([trusted]),
    );
    let signed = web.sign_in(KEY_A).await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-pc_session="))
        .expect("a Secure cookie bound to this host: __Host-");
    assert!(
        cookie.contains("; Secure") && cookie.contains("; Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain="), "{cookie}");
    let jobs = web.get("/jobs").await;
    assert_eq!(jobs.status(), StatusCode::OK);
    assert_eq!(
        jobs.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    // Plain HTTP is not served there.
    let plain = http()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}/signin"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_dropped_upload_creates_no_job() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::with_console(config("")).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let csrf = web.csrf().await;
    // Half of a file, then the connection is gone.
    let mut socket = tokio::net::TcpStream::connect(server.console.unwrap())
        .await
        .unwrap();
    let head = format!(
        "POST /jobs/upload?name=half.txt&checks=line-status HTTP/1.1\r\nhost: {}\r\n\
         cookie: pc_session={}\r\nx-csrf-token: {csrf}\r\ncontent-length: 100000\r\n\r\n",
        server.console.unwrap(),
        web.cookie("pc_session").unwrap()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
        .write_all(&b"13800000001\n".repeat(100))
        .await
        .unwrap();
    drop(socket);
    // The same upload made again, whole, is the only job.
    let file = b"13800000001\n".repeat(100);
    let id = created_job(web.upload("whole.txt", "checks=line-status", file).await).await;
    let jobs = web.get("/jobs").await.text().await.unwrap();
    assert!(jobs.contains(&id) && jobs.contains("whole.txt"));
    assert!(!jobs.contains("half.txt"), "{jobs}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_sandbox_serves_the_console_at_a_printed_loopback_address() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phonecheck.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &file,
        format!("[storage]\ndata_dir = {:?}\n", data.display().to_string()),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_phonecheck"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        lines.push(line.trim().to_owned());
    }
    let url = lines[1]
        .strip_prefix("phonecheck console at ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let page = http()
        .build()
        .unwrap()
        .get(format!("{url}signin"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    // No tenants: the API needs no key, and neither does the console.
    assert!(page.text().await.unwrap().contains("leave the key empty"));
}

/// `PreviewBatchJob`, the API call the new-job page shows, as any gRPC client sees it.
#[tokio::test]
async fn preview_batch_job_gives_the_first_rows_and_the_number_column_to_its_tenant_only() {
    let server = TestServer::with_console(config("")).await;
    let mut client = jobs_client_as(&server, KEY_A);
    let spec = phonecheck::pb::BatchJobSpec {
        file_name: "list.csv".to_owned(),
        dry_run: true,
        ..Default::default()
    };
    let job = create_job(&mut client, spec, &gbk_csv(), 7).await.unwrap();
    let preview = |rows| phonecheck::pb::PreviewBatchJobRequest {
        job_id: job.id.clone(),
        rows,
    };
    let got = client
        .preview_batch_job(preview(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.columns, ["姓名", "手机号", "备注", "备用电话"]);
    assert_eq!(got.number_column_index, 1);
    assert_eq!(got.sheets, 1);
    assert_eq!(got.rows.len(), 2);
    assert_eq!(got.rows[0].row, 2, "the header is line 1");
    assert_eq!(got.rows[0].cells[..2], ["张三", "13800000001"]);
    let all = client
        .preview_batch_job(preview(0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.rows.len(), 4, "10 by default; the file has 4");
    let negative = client.preview_batch_job(preview(-1)).await.unwrap_err();
    assert_eq!(negative.code(), tonic::Code::InvalidArgument);
    let other = jobs_client_as(&server, KEY_B)
        .preview_batch_job(preview(1))
        .await
        .unwrap_err();
    assert_eq!(other.code(), tonic::Code::NotFound);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_upload_form_names_the_registration_time_column() {
    let server = TestServer::with_console(config("")).await;
    let mut web = Web::new(&server);
    web.sign_in(KEY_A).await;
    let file = b"phone,name,signed\n13800000001,a,2021-03-04\n".to_vec();
    let query = "checks=reassigned&registered_at_column=C";
    let id = created_job(web.upload("signups.csv", query, file.clone()).await).await;
    let preview = web
        .get(&format!("/jobs/{id}/preview"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        preview.contains(r#"<b id="detected-registered-at-column">signed (C)</b>"#),
        "{preview}"
    );
    // Not named, and no header named like one: refused in words, naming the field.
    let refused = web.upload("signups.csv", "checks=reassigned", file).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error = refused.json::<serde_json::Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.contains("registered_at_column"), "{error}");
}
