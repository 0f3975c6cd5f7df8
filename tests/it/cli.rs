//! The command-line clients against a live server: `lookup`, `check` (and `usage` after it), and
//! a `check` killed mid-stream (a client that goes away takes its outstanding work with it).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Secrets, TestServer, start_sim, vendors_config};
use phonecheck::sim::SimConfig;

fn phonecheck() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phonecheck"));
    command.env("RUST_LOG", "warn").stdin(Stdio::null());
    command
}

#[tokio::test]
async fn lookup_prints_a_readable_report_and_json() {
    let server = TestServer::sandbox().await;
    let url = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        phonecheck()
            .args([
                "lookup",
                "138-0000-0002",
                "--check",
                "line-status",
                "--server",
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("+8613800000002"), "{text}");
    assert!(text.contains("line status empty"), "{text}");
    assert!(text.contains("China Mobile"), "{text}");

    let url = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        phonecheck()
            .args(["lookup", "bogus!", "--server", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!output.status.success(), "a bad number is a failed command");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("InvalidArgument")
            || String::from_utf8_lossy(&output.stderr).contains("invalid")
    );
}

/// A CSV row by column name.
type Row = std::collections::HashMap<String, String>;

/// Runs `phonecheck check FILE --check line-status` against `server`; the CSV's header and rows,
/// and what it said on standard error.
async fn check_file(
    server: &TestServer,
    input: &std::path::Path,
    extra: &[&str],
) -> (Vec<String>, Vec<Row>, String) {
    let out = input.with_extension("results.csv");
    let url = format!("http://{}", server.addr);
    let (input_arg, out_arg) = (input.to_owned(), out.clone());
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        phonecheck()
            .arg("check")
            .arg(&input_arg)
            .args(["--check", "line-status", "--server", &url, "--out"])
            .arg(&out_arg)
            .args(extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let headers = reader.headers().unwrap().clone();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, c)| (h.to_owned(), c.to_owned()))
                .collect()
        })
        .collect();
    (headers.iter().map(str::to_owned).collect(), rows, stderr)
}

#[tokio::test]
async fn check_streams_a_file_and_writes_csv() {
    let server = TestServer::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("numbers.csv");
    let mut list = String::from("phone,name\n");
    for i in 0..40 {
        list.push_str(&format!("1391{i:03}5678,n{i}\n"));
    }
    list.push_str("13800000002,dup\n13800000002,dup\nnot a number,x\n");
    std::fs::write(&input, list).unwrap();
    let (columns, rows, summary) = check_file(&server, &input, &[]).await;
    assert!(
        summary.contains("43 rows: 42 reports, 1 errors (1 without a readable number)"),
        "{summary}"
    );
    assert!(
        summary.contains("41 billable vendor calls costing 1.23 CNY"),
        "duplicates are paid once, at the sandbox's Thinksms price: {summary}"
    );

    // The usage ledger says the same, as CSV and as a table.
    let url = format!("http://{}", server.addr);
    // From three days back (China time): all of it, even across a month's end.
    let from = ((chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
        - chrono::Duration::days(3))
    .to_string();
    let usage = |format: &'static str| {
        let (url, from) = (url.clone(), from.clone());
        tokio::task::spawn_blocking(move || {
            phonecheck()
                .args(["usage", "--by", "month", "--from", &from])
                .args(["--format", format, "--server", &url])
                .output()
                .unwrap()
        })
    };
    let csv = usage("csv").await.unwrap();
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "period,tenant,provider,check,billable_calls,cost,currency,cache_hits,joined_calls,failures"
        )
    );
    let row: Vec<&str> = lines.next().expect("one row").split(',').collect();
    assert_eq!(
        row[1..7],
        ["anonymous", "thinksms", "line-status", "41", "1.23", "CNY"],
        "{csv}"
    );
    // The duplicate shared the first one's call, or (arriving after it) its cached answer.
    let free: u32 = row[7].parse::<u32>().unwrap() + row[8].parse::<u32>().unwrap();
    assert_eq!((free, row[9]), (1, "0"), "{csv}");
    let table = usage("table").await.unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("cost (CNY)"), "{table}");
    let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(total[..3], ["total", "41", "1.23"], "{table}");

    // The result columns are a job export's, under the same names.
    let mut expected = vec!["row", "input"];
    expected.extend(phonecheck::jobs::export::result_columns(&[
        phonecheck::pb::Check::LineStatus as i32,
    ]));
    assert_eq!(columns, expected);
    assert_eq!(rows.len(), 43, "one row per number, the header skipped");
    let lines: std::collections::HashSet<&str> = rows.iter().map(|r| r["row"].as_str()).collect();
    assert_eq!(lines.len(), 43, "every input line once");
    assert!(lines.contains("2") && lines.contains("44") && !lines.contains("1"));
    let bad = rows.iter().find(|r| r["input"] == "not a number").unwrap();
    assert_eq!(bad["row"], "44");
    assert!(bad["error"].contains("number"), "{bad:?}");
    let dup = rows.iter().find(|r| r["input"] == "13800000002").unwrap();
    assert_eq!(
        (dup["e164"].as_str(), dup["line_status"].as_str()),
        ("+8613800000002", "empty")
    );
}

#[tokio::test]
async fn check_reads_a_gbk_csv_and_a_workbook_as_jobs_do() {
    let server = TestServer::sandbox().await;
    let dir = tempfile::tempdir().unwrap();

    // GBK, as a Chinese spreadsheet exports CSV: a header, the number in column B.
    let mut text = String::from("姓名,手机号码,备注\r\n");
    for i in 0..30 {
        text.push_str(&format!("客户{i},139 1234 {i:04},第{i}行\r\n"));
    }
    text.push_str("无号码,,空\r\n");
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    let input = dir.path().join("客户.csv");
    std::fs::write(&input, &gbk).unwrap();
    let (_, rows, summary) = check_file(&server, &input, &[]).await;
    assert!(
        summary.contains("31 rows: 30 reports, 1 errors"),
        "{summary}"
    );
    assert_eq!(rows.len(), 31);
    let row7 = rows.iter().find(|r| r["row"] == "7").unwrap();
    assert_eq!(row7["input"], "139 1234 0005", "the number is column B");
    assert_eq!(row7["e164"], "+8613912340005");
    assert_eq!(row7["carrier"], "中国移动", "{row7:?}");
    let blank = rows.iter().find(|r| r["row"] == "32").unwrap();
    assert!(
        blank["error"].contains("no number in column B"),
        "{blank:?}"
    );

    // An XLSX with the numbers stored as numbers in column B of a named sheet.
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet().set_name("客户").unwrap();
    sheet.write_string(0, 0, "姓名").unwrap();
    sheet.write_string(0, 1, "手机号").unwrap();
    for i in 0..12u32 {
        sheet.write_string(i + 1, 0, format!("n{i}")).unwrap();
        sheet
            .write_number(i + 1, 1, 13_800_000_000.0 + f64::from(i))
            .unwrap();
    }
    let input = dir.path().join("customers.xlsx");
    std::fs::write(&input, book.save_to_buffer().unwrap()).unwrap();
    let (columns, rows, summary) = check_file(&server, &input, &["--sheet", "客户"]).await;
    assert_eq!(
        columns[..3],
        ["sheet", "row", "input"],
        "a workbook's rows name their sheet"
    );
    assert!(
        summary.contains("12 rows: 12 reports, 0 errors"),
        "{summary}"
    );
    let first = rows.iter().find(|r| r["row"] == "2").unwrap();
    assert_eq!(
        (first["sheet"].as_str(), first["input"].as_str()),
        ("客户", "13800000000")
    );
    assert_eq!(first["e164"], "+8613800000000");
    assert!(!first["line_status"].is_empty(), "{first:?}");
}

#[tokio::test]
async fn a_killed_client_takes_its_outstanding_work_with_it() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(&sim, dir.path(), &Secrets::right(), "MD5");
    config.server.stream_window = 8;
    let server = TestServer::start_in(config, dir.path()).await;
    let input = dir.path().join("numbers.txt");
    let list: String = (0..5_000).map(|i| format!("135{i:07}7\n")).collect();
    std::fs::write(&input, list).unwrap();

    let mut child = phonecheck()
        .arg("check")
        .arg(&input)
        .args([
            "--check",
            "line-status",
            "--server",
            &format!("http://{}", server.addr),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.stats().wait_for_calls(8).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // The eight calls already at the vendor finish; no other starts.
    sim.stats()
        .wait_until(|s| s["thinksms"].billable >= 8)
        .await;
    // A measurement interval: a stream still alive would start its next items at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.stats().vendor("thinksms").calls, 8);
}

#[test]
fn keys_new_prints_a_key_and_its_hash_line() {
    let output = phonecheck()
        .args(["keys", "new", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("pck_"))
        .expect("a key");
    assert!(text.contains("[tenants.acme]"), "{text}");
    assert!(
        text.contains(&phonecheck::auth::key_hash(key)),
        "the printed hash is the key's: {text}"
    );
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    // Refused before anything is bound.
    let output = phonecheck()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("refusing to listen on 0.0.0.0:0")
            && text.contains("--allow-unauthenticated"),
        "{text}"
    );
}

#[tokio::test]
async fn check_carries_tenure_reassigned_and_the_current_carrier() {
    let server = TestServer::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("numbers.csv");
    std::fs::write(&input, "phone\n13800000204\n13800000402\n13800000304\n").unwrap();
    let checks = ["tenure", "reassigned", "current-carrier"];
    let mut extra: Vec<&str> = checks.iter().flat_map(|c| ["--check", c]).collect();
    extra.extend(["--registered-at", "2021-03-04T05:06:07+08:00"]);
    let (columns, rows, stderr) = check_file(&server, &input, &extra).await;
    for column in [
        "tenure_months",
        "reassigned",
        "current_carrier",
        "ported",
        "mvno",
    ] {
        assert!(columns.iter().any(|c| c == column), "{column}: {columns:?}");
    }
    // Rows come in the order answered: found by the number as written.
    let cell = |input: &str, name: &str| {
        let row = rows.iter().find(|r| r["input"] == input).expect(input);
        row[name].clone()
    };
    assert_eq!(cell("13800000204", "tenure_months"), "3-6", "{stderr}");
    assert_eq!(cell("13800000402", "current_carrier"), "中国联通");
    assert_eq!(cell("13800000402", "ported"), "true");
    assert_eq!(cell("13800000304", "reassigned"), "deactivated");
}

#[tokio::test]
async fn check_reads_each_rows_registration_time_from_its_column() {
    let server = TestServer::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("signups.csv");
    let file = "手机号,注册时间\n13800000302,2021-03-04 05:06:07\n13800000303,2021/3/4\n\
                13800000305,someday\n";
    std::fs::write(&input, file).unwrap();
    // No --registered-at: each row's time is read from the column found by its header.
    let (_, rows, stderr) = check_file(&server, &input, &["--check", "reassigned"]).await;
    let row = |input: &str| rows.iter().find(|r| r["input"] == input).expect(input);
    assert_eq!(row("13800000302")["reassigned"], "recycled", "{stderr}");
    assert_eq!(row("13800000303")["reassigned"], "not_recycled");
    let refused = row("13800000305");
    assert_eq!(refused["reassigned"], "");
    assert!(
        refused["error"].starts_with("registration time in column B: \"someday\""),
        "{refused:?}"
    );
}
