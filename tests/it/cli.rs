//! The command-line clients against a live server: `lookup`, `check`, and a `check` killed
//! mid-stream (a client that goes away takes its outstanding work with it).

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

#[tokio::test]
async fn check_streams_a_file_and_writes_csv() {
    let server = TestServer::sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("numbers.csv");
    let out = dir.path().join("results.csv");
    let mut list = String::from("phone,name\n");
    for i in 0..40 {
        list.push_str(&format!("1391{i:03}5678,n{i}\n"));
    }
    list.push_str("13800000002,dup\n13800000002,dup\nnot a number,x\n");
    std::fs::write(&input, list).unwrap();
    let url = format!("http://{}", server.addr);
    let (input_arg, out_arg) = (input.clone(), out.clone());
    let output = tokio::task::spawn_blocking(move || {
        phonecheck()
            .arg("check")
            .arg(&input_arg)
            .args(["--check", "line-status", "--server", &url, "--out"])
            .arg(&out_arg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(
        summary.contains("43 numbers: 42 reports, 1 errors"),
        "{summary}"
    );
    assert!(
        summary.contains("41 billable vendor calls"),
        "duplicates are paid once: {summary}"
    );

    let mut rows = csv::Reader::from_path(&out).unwrap();
    let headers = rows.headers().unwrap().clone();
    assert_eq!(&headers[0], "line");
    let rows: Vec<csv::StringRecord> = rows.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        43,
        "one row per number, the header line skipped"
    );
    let lines: std::collections::HashSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(lines.len(), 43, "every input line once");
    let bad = rows.iter().find(|r| &r[1] == "not a number").unwrap();
    assert!(bad[15].contains("number"), "{bad:?}");
    let dup = rows.iter().find(|r| &r[1] == "13800000002").unwrap();
    assert_eq!((&dup[2], &dup[8]), ("+8613800000002", "empty"));
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
