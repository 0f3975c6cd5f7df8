//! The web console in a real headless Chromium (Debian's `chromium` through `chromedriver`):
//! sign in, upload a GBK CSV and an XLSX, pick a column, estimate, start, watch the job finish,
//! download the empty-number CSV and the report, sign out; another tenant cannot open the job by
//! URL; hostile file names and cells show as text; a cross-site form post is refused.
//! Screenshots of every page at 1366×768 and 390×844 are kept in
//! `$CARGO_TARGET_DIR/console-screenshots/` for review.

use std::time::Duration;

use serde_json::json;

use crate::common::console::{KEY_A, KEY_B, config, gbk_csv, xlsx};
use crate::common::webdriver::{Browser, browsers, screenshot_dir};
use crate::common::*;

const WAIT: Duration = Duration::from_secs(60);

async fn sign_in(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/signin")).await;
    browser.type_into("#key", key).await;
    browser.click("#signin").await;
    browser
        .wait_for(
            "the jobs page",
            "return !!document.getElementById('new-job')",
            WAIT,
        )
        .await;
}

/// Uploads `path` from the new-job page and waits for what was read.
async fn upload(browser: &Browser, base: &str, path: &std::path::Path) {
    browser.goto(&format!("{base}/jobs/new")).await;
    browser
        .type_into("#file", &path.display().to_string())
        .await;
    browser.click("#upload").await;
    browser
        .wait_for(
            "the preview",
            "return !!document.getElementById('preview-table') || !document.getElementById('upload-error').hidden",
            WAIT,
        )
        .await;
    let error = browser
        .run("return document.getElementById('upload-error').hidden ? '' : document.getElementById('upload-error').textContent", json!([]))
        .await;
    assert_eq!(error, json!(""), "the upload failed");
}

/// The job id the new-job page's script holds after an upload.
async fn job_id(browser: &Browser) -> String {
    browser
        .run(
            "return document.getElementById('upload-form').dataset.job",
            json!([]),
        )
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// Chooses the 1-based column `index` in the preview and reads the file again.
async fn pick_column(browser: &Browser, index: u32) {
    browser
        .run(
            "document.getElementById('reread-column').value = arguments[0]",
            json!([index.to_string()]),
        )
        .await;
    browser.click("#reread-submit").await;
}

/// Reads the file again with the 1-based column `index`, and waits for what was read.
async fn reread(browser: &Browser, index: u32) {
    let before = job_id(browser).await;
    pick_column(browser, index).await;
    browser
        .wait_for(
            "the file read again",
            &format!(
                "var f = document.getElementById('upload-form'); \
                 return f.dataset.job !== '{before}' && !!document.getElementById('preview-table')"
            ),
            WAIT,
        )
        .await;
}

/// Fetches `path` in the page (with the session's cookie): status and text.
async fn fetch(browser: &Browser, path: &str) -> (u64, String) {
    let answer = browser
        .run_async(
            "var done = arguments[arguments.length - 1]; \
             fetch(arguments[0], {credentials: 'same-origin'}) \
               .then(function (r) { return r.text().then(function (t) { done([r.status, t]); }); }) \
               .catch(function (e) { done([0, String(e)]); });",
            json!([path]),
        )
        .await;
    (
        answer[0].as_u64().unwrap(),
        answer[1].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_person_runs_a_job_from_upload_to_download() {
    let Some((chromium, driver)) = browsers() else {
        return;
    };
    let server = TestServer::with_console(config("")).await;
    let base = format!("http://{}", server.console.unwrap());
    let shots = screenshot_dir();
    let files = tempfile::tempdir().unwrap();
    let csv = files.path().join("客户名单-gbk.csv");
    std::fs::write(&csv, gbk_csv()).unwrap();
    let book = files.path().join("客户.xlsx");
    std::fs::write(&book, xlsx()).unwrap();
    let browser = Browser::start(&chromium, &driver).await;

    browser.goto(&format!("{base}/signin")).await;
    browser.screenshots(&shots, "signin").await;
    sign_in(&browser, &base, KEY_A).await;

    // The XLSX: its sheet and the phone column, detected.
    upload(&browser, &base, &book).await;
    assert_eq!(browser.text("#detected-format").await, "XLSX");
    assert!(browser.text("#detected-column").await.contains("电话号码"));
    assert!(browser.text("#preview-table").await.contains("13600000002"));

    // The GBK CSV: encoding and column detected; another column picked, then the right one.
    upload(&browser, &base, &csv).await;
    assert_eq!(browser.text("#detected-format").await, "CSV");
    let encoding = browser.text("#detected-encoding").await;
    assert!(
        encoding.to_ascii_uppercase().starts_with("GB"),
        "GBK read as GB18030: {encoding}"
    );
    assert!(browser.text("#detected-column").await.contains("手机号"));
    assert!(browser.text("#preview-table").await.contains("张三"));
    // A column without numbers is refused in words; the file is still there to send again.
    pick_column(&browser, 1).await;
    browser
        .wait_for(
            "the refusal",
            "return !document.getElementById('upload-error').hidden",
            WAIT,
        )
        .await;
    let refusal = browser.text("#upload-error").await;
    assert!(
        refusal.contains("holds a phone number in column 姓名"),
        "{refusal}"
    );
    browser.click("#upload-retry").await;
    browser
        .wait_for(
            "the preview",
            "return !!document.getElementById('preview-table')",
            WAIT,
        )
        .await;
    reread(&browser, 4).await;
    assert!(browser.text("#detected-column").await.contains("备用电话"));
    reread(&browser, 2).await;
    assert!(browser.text("#detected-column").await.contains("手机号"));
    browser.screenshots(&shots, "new-job").await;
    browser
        .run(
            "document.getElementById('read').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshots(&shots, "new-job-read").await;

    // The estimate, a limit, and start.
    let estimate = browser.text("#estimate-cost").await;
    assert!(estimate.contains("CNY"), "{estimate}");
    let id = job_id(&browser).await;
    browser.type_into("#start-max-cost", "100").await;
    browser.click("#start").await;
    browser
        .wait_for(
            "the job page",
            "return !!document.getElementById('live-body')",
            WAIT,
        )
        .await;
    browser.screenshots(&shots, "job-running").await;
    // The page follows the job until it ends, then shows the downloads.
    browser
        .wait_for(
            "the job to finish",
            "var b = document.getElementById('live-body'); \
             return !!b && b.dataset.final === 'true' && !!document.getElementById('downloads')",
            WAIT,
        )
        .await;
    assert!(browser.url().await.ends_with(&format!("/jobs/{id}")));
    assert!(browser.text("#job-state").await.contains("finished"));
    assert!(browser.text("#count-empty").await.contains('2'));
    browser.screenshots(&shots, "job-finished").await;

    // The empty-number CSV and the report, as the download links fetch them.
    let (status, empty) = fetch(
        &browser,
        &format!("/jobs/{id}/download?format=csv&status=empty"),
    )
    .await;
    assert_eq!(status, 200);
    let rows = csv_rows(empty.as_bytes());
    assert_eq!(
        rows.len(),
        3,
        "a header and the two empty numbers: {rows:?}"
    );
    assert!(
        rows.iter()
            .skip(1)
            .all(|r| r.iter().any(|c| c.ends_with("0002")))
    );
    let (status, report) = fetch(&browser, &format!("/jobs/{id}/download?format=html")).await;
    assert_eq!(status, 200);
    assert!(report.contains("<svg") && report.contains("空号"));
    let link = browser
        .run("return document.querySelector('#downloads a[href*=\"status=empty\"]').getAttribute('href')", json!([]))
        .await;
    assert_eq!(
        link,
        json!(format!("/jobs/{id}/download?format=csv&status=empty"))
    );

    browser.goto(&format!("{base}/jobs")).await;
    assert!(browser.text("#jobs").await.contains("客户名单-gbk.csv"));
    browser.screenshots(&shots, "jobs").await;
    browser.goto(&format!("{base}/usage")).await;
    browser
        .wait_for(
            "the chart",
            "return !!document.getElementById('usage-chart')",
            WAIT,
        )
        .await;
    // The job's line-status calls, in today's bar.
    let parts = browser
        .run("return Array.from(document.querySelectorAll('#usage-chart rect title')).map(function (t) { return t.textContent; })", json!([]))
        .await;
    let parts = parts.to_string();
    assert!(
        parts.contains("Line status") && parts.contains("CNY"),
        "{parts}"
    );
    assert!(browser.text("#usage-table").await.contains("thinksms"));
    browser.screenshots(&shots, "usage").await;
    browser.goto(&format!("{base}/lookup")).await;
    browser.type_into("#number", "13800000002").await;
    browser.click("#lookup").await;
    browser
        .wait_for(
            "the report",
            "return !!document.getElementById('report')",
            WAIT,
        )
        .await;
    assert!(
        browser
            .text("#report-e164")
            .await
            .contains("+8613800000002")
    );
    browser.screenshots(&shots, "lookup").await;
    // Chinese, switched by the link.
    browser.click("#lang-zh").await;
    browser
        .wait_for(
            "Chinese",
            "return document.documentElement.lang === 'zh-CN'",
            WAIT,
        )
        .await;
    assert!(browser.text("#nav-new").await.contains("新建任务"));
    browser.screenshots(&shots, "jobs-zh").await;
    browser.click("#lang-en").await;

    // Sign out: the session is gone, the pages ask to sign in again.
    browser.click("#signout").await;
    browser
        .wait_for(
            "the sign-in page",
            "return !!document.getElementById('signin-form')",
            WAIT,
        )
        .await;
    browser.goto(&format!("{base}/jobs/{id}")).await;
    assert!(browser.url().await.ends_with("/signin"));

    // Another tenant: the job's URL is "not found".
    sign_in(&browser, &base, KEY_B).await;
    browser.goto(&format!("{base}/jobs/{id}")).await;
    assert!(browser.text("#error-title").await.contains("Not found"));
    browser.screenshots(&shots, "not-found").await;
    browser.quit().await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn hostile_names_and_cells_show_as_text_and_cross_site_posts_are_refused() {
    let Some((chromium, driver)) = browsers() else {
        return;
    };
    let server = TestServer::with_console(config("")).await;
    let base = format!("http://{}", server.console.unwrap());
    let files = tempfile::tempdir().unwrap();
    // A file name cannot hold `/`; the cells hold the whole script element.
    let name = "\"><img src=x onerror=window.__xss=1><script>window.__xss=2<.csv";
    let path = files.path().join(name);
    let cells = "phone,note\n13800000001,<script>window.__xss=3</script>\n13800000002,\"\"\"><img src=x onerror=window.__xss=4>\"\n";
    std::fs::write(&path, cells).unwrap();
    let browser = Browser::start(&chromium, &driver).await;
    sign_in(&browser, &base, KEY_A).await;
    upload(&browser, &base, &path).await;
    let preview = browser.text("#preview-table").await;
    assert!(
        preview.contains("<script>window.__xss=3</script>"),
        "{preview}"
    );
    assert!(
        preview.contains("\"><img src=x onerror=window.__xss=4>"),
        "{preview}"
    );
    assert_eq!(
        browser.run("return typeof window.__xss", json!([])).await,
        json!("undefined")
    );
    let id = job_id(&browser).await;
    browser.goto(&format!("{base}/jobs/{id}")).await;
    assert_eq!(browser.text("#job-title").await, name);
    assert_eq!(
        browser.run("return typeof window.__xss", json!([])).await,
        json!("undefined")
    );
    assert_eq!(
        browser
            .run("return document.querySelectorAll('img').length", json!([]))
            .await,
        json!(0)
    );
    browser.screenshots(&screenshot_dir(), "hostile-job").await;

    // A page of another site posts a form to the console (the session cookie is the browser's).
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_addr = evil.local_addr().unwrap();
    let target = format!("{base}/jobs/{id}/delete");
    let page = format!(
        "<!DOCTYPE html><form id=f method=post action=\"{target}\"><input name=csrf value=guess>\
         </form><button id=go onclick=\"document.getElementById('f').submit()\">go</button>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    let evil_task = tokio::spawn(async move { axum::serve(evil, app).await });
    // `localhost` is another site than `127.0.0.1`.
    browser
        .goto(&format!("http://localhost:{}/", evil_addr.port()))
        .await;
    browser.click("#go").await;
    browser
        .wait_for(
            "the refusal",
            "return location.pathname.endsWith('/delete') && document.readyState === 'complete'",
            WAIT,
        )
        .await;
    let refusal = browser
        .run("return document.body.innerText", json!([]))
        .await;
    let refusal = refusal.as_str().unwrap_or_default();
    assert!(refusal.contains("Refused"), "{refusal}");
    browser.screenshots(&screenshot_dir(), "refused").await;
    // The job is still there.
    browser.goto(&format!("{base}/jobs/{id}")).await;
    assert_eq!(browser.text("#job-title").await, name);
    evil_task.abort();
    browser.quit().await;
    server.stop().await.unwrap();
}
