//! Prometheus metrics on the admin endpoint: every metric named in the docs is present and moves
//! when the service works, and no label value is a phone number.

// The metrics recorder is process-wide: gauges read here must not see other tests' work, so
// this area has a binary of its own.
#[path = "it/common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// `name{labels}` → value, from the Prometheus text format.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn total(metrics: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(series, _)| {
            (series.as_str() == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test]
async fn metrics_are_served_and_move() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml("[sandbox]\nlatency = \"150ms\"").unwrap();
    config.storage.data_dir = dir.path().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(phonecheck::serve_with_admin(
        listener,
        Some(admin),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    let mut client = pb::phone_check_service_client::PhoneCheckServiceClient::new(channel.clone());
    let lookup = |number: &str| pb::LookupNumberRequest {
        number: number.to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    // Five callers at once for one number: one vendor call, four joins.
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let mut c = client.clone();
            let request = lookup("13800138000");
            tokio::spawn(async move { c.lookup_number(request).await.unwrap() })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    client.lookup_number(lookup("13800138000")).await.unwrap(); // a cache hit
    client
        .lookup_number(lookup("not a number"))
        .await
        .unwrap_err();
    let items = (0..20)
        .map(|i| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number: format!("1390013{i:04}"),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        })
        .collect::<Vec<_>>();
    let mut responses = client
        .check_numbers(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    while responses.message().await.unwrap().is_some() {}
    let mut jobs = pb::batch_job_service_client::BatchJobServiceClient::new(channel);
    let job = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            numbers: vec!["13700137000".into(), "13700137001".into()],
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        },
        b"",
        1,
    )
    .await
    .unwrap();
    finished_job(&mut jobs, &job.id).await;

    let text = reqwest::get(format!("http://{admin_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = parse(&text);
    let lookup_method = "method=\"phonecheck.v1.PhoneCheckService/LookupNumber\"";
    assert!(
        total(
            &m,
            "phonecheck_rpc_requests_total",
            &[lookup_method, "code=\"OK\""]
        ) >= 6.0,
        "{text}"
    );
    assert!(
        total(
            &m,
            "phonecheck_rpc_requests_total",
            &[lookup_method, "code=\"INVALID_ARGUMENT\""]
        ) >= 1.0
    );
    assert!(
        total(
            &m,
            "phonecheck_rpc_requests_total",
            &["CheckNumbers", "code=\"OK\""]
        ) >= 1.0
    );
    assert!(
        total(
            &m,
            "phonecheck_rpc_duration_seconds_count",
            &[lookup_method]
        ) >= 7.0
    );
    assert!(
        total(
            &m,
            "phonecheck_vendor_calls_total",
            &["provider=\"thinksms\"", "outcome=\"ok\""]
        ) >= 22.0
    );
    assert!(
        total(
            &m,
            "phonecheck_vendor_numbers_total",
            &["billable=\"true\""]
        ) >= 22.0
    );
    assert!(
        total(
            &m,
            "phonecheck_vendor_call_duration_seconds_count",
            &["thinksms"]
        ) >= 22.0
    );
    assert!(total(&m, "phonecheck_vendor_batch_size_count", &[]) >= 22.0);
    assert!(total(&m, "phonecheck_cache_lookups_total", &["result=\"hit\""]) >= 1.0);
    assert!(total(&m, "phonecheck_cache_lookups_total", &["result=\"miss\""]) >= 22.0);
    assert!(
        total(&m, "phonecheck_single_flight_joins_total", &[]) >= 1.0,
        "{text}"
    );
    assert!(total(&m, "phonecheck_quota_wait_seconds_count", &["thinksms"]) >= 22.0);
    // The sandbox's Thinksms price, 0.03 CNY per billed call: an exact decimal counter.
    assert!(
        text.contains("# TYPE phonecheck_vendor_cost_total counter"),
        "{text}"
    );
    let cost = total(
        &m,
        "phonecheck_vendor_cost_total",
        &["provider=\"thinksms\"", "check=\"line-status\""],
    );
    let billed = total(
        &m,
        "phonecheck_vendor_numbers_total",
        &["provider=\"thinksms\"", "billable=\"true\""],
    );
    assert!(
        billed >= 22.0 && (cost - billed * 0.03).abs() < 1e-6,
        "{cost} for {billed} calls"
    );
    assert!(text.contains("phonecheck_breaker_open{provider=\"thinksms\"} 0"));
    assert!(
        text.contains("phonecheck_stream_items_in_flight 0"),
        "every item done"
    );
    assert!(total(&m, "phonecheck_job_numbers_total", &["fate=\"done\""]) >= 2.0);
    assert!(text.contains("phonecheck_jobs_running 0"));
    // Label values are bounded: no phone number, nor any long digit run, anywhere.
    for series in m.keys() {
        let digits = series
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(digits < 7, "{series}");
    }
    let health = reqwest::get(format!("http://{admin_addr}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success());
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
