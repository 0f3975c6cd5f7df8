//! CheckNumbers: exactly one answer per item, per-item errors, summary, bounded work, deadline.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{Secrets, TestServer, start_sim, vendors_config};
use phonecheck::pb;
use phonecheck::pb::check_numbers_response::Response as Item;
use phonecheck::pb::check_numbers_result::Outcome;
use phonecheck::sim::SimConfig;
use tonic_types::RpcStatusExt;

fn item(id: usize, number: &str) -> pb::CheckNumbersRequest {
    pb::CheckNumbersRequest {
        request_id: format!("r{id}"),
        number: number.to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    }
}

#[tokio::test]
async fn every_item_is_answered_once_and_bad_items_do_not_end_the_stream() {
    let server = TestServer::sandbox().await;
    let numbers: Vec<String> = (0..600)
        .map(|i| match i % 6 {
            0 => "not a number".to_owned(),
            1 => "13800000001".to_owned(),
            2 => "13800000002".to_owned(),
            3 => format!("1391{i:03}5678"),
            4 => "15412345678".to_owned(), // unassigned: INVALID, decided locally
            _ => format!("+86 186 {i:04} 7777"),
        })
        .collect();
    let items: Vec<_> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| item(i, n))
        .collect();
    let mut responses = server
        .client()
        .check_numbers(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();

    let mut seen: HashMap<String, Outcome> = HashMap::new();
    let mut summary = None;
    while let Some(message) = responses.message().await.unwrap() {
        assert!(summary.is_none(), "the summary comes last");
        match message.response.unwrap() {
            Item::Result(r) => {
                let previous = seen.insert(r.request_id.clone(), r.outcome.unwrap());
                assert!(previous.is_none(), "{} answered twice", r.request_id);
            }
            Item::Summary(s) => summary = Some(s),
        }
    }
    assert_eq!(seen.len(), 600, "every item answered");
    let summary = summary.expect("a summary");
    assert_eq!(
        (summary.items_received, summary.reports, summary.errors),
        (600, 500, 100)
    );

    for (i, number) in numbers.iter().enumerate() {
        let outcome = &seen[&format!("r{i}")];
        match (i % 6, outcome) {
            (0, Outcome::Error(status)) => {
                assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
                let bad = status.get_details_bad_request().expect("BadRequest");
                assert_eq!(bad.field_violations[0].field, "number");
            }
            (0, other) => panic!("{number}: {other:?}"),
            (_, Outcome::Report(report)) => {
                assert_eq!(
                    report.info.as_ref().unwrap().input,
                    *number,
                    "results carry their own item"
                );
            }
            (_, other) => panic!("{number}: {other:?}"),
        }
    }
    let count = |status: pb::LineStatus| {
        summary
            .line_status_counts
            .iter()
            .find(|c| c.status() == status)
            .map_or(0, |c| c.count)
    };
    assert_eq!(count(pb::LineStatus::Invalid), 100);
    assert!(
        count(pb::LineStatus::Empty) >= 100,
        "the 0002 items, and some hashed ones"
    );
    assert!(count(pb::LineStatus::Active) >= 100);
    let total: i64 = summary.line_status_counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 500);
    // Invalid numbers are decided locally, for free; a number asked a hundred times is paid once.
    assert_eq!(summary.billable_calls, 1 + 1 + 100 + 100);
    assert!(summary.cache_hits > 0);
}

#[tokio::test]
async fn an_empty_stream_gets_just_a_summary() {
    let server = TestServer::sandbox().await;
    let mut responses = server
        .client()
        .check_numbers(tokio_stream::iter(Vec::new()))
        .await
        .unwrap()
        .into_inner();
    let Some(Item::Summary(s)) = responses.message().await.unwrap().unwrap().response else {
        panic!("summary expected")
    };
    assert_eq!(s.items_received, 0);
    assert!(responses.message().await.unwrap().is_none());
}

/// With slow vendors, the server works on at most `stream_window` items at a time.
#[tokio::test]
async fn work_is_bounded_by_the_window() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(&sim, dir.path(), &Secrets::right(), "MD5");
    config.server.stream_window = 8;
    let server = TestServer::start_in(config, dir.path()).await;

    // An endless supply of items; the client reads no answers.
    let items = tokio_stream::iter((0..).map(|i| item(i, &format!("139{i:08}"))));
    let mut client = server.client();
    let in_flight =
        tokio::spawn(async move { client.check_numbers(items).await.map(|r| r.into_inner()) });
    sim.stats().wait_for_calls(8).await;
    assert_eq!(
        sim.stats().vendor("thinksms").calls,
        8,
        "no ninth item before one of eight is done"
    );
    in_flight.abort();
    let _ = in_flight.await;
    drop(server);
}

#[tokio::test]
async fn the_deadline_ends_the_stream() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_secs(5),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        vendors_config(&sim, dir.path(), &Secrets::right(), "MD5"),
        dir.path(),
    )
    .await;
    let mut request = tonic::Request::new(tokio_stream::iter(vec![
        item(0, "13912345678"),
        item(1, "13912345679"),
    ]));
    // The header alone, so that the server's deadline is tested, not the client's own timer.
    request
        .metadata_mut()
        .insert("grpc-timeout", "300m".parse().unwrap());
    let started = std::time::Instant::now();
    let result = async {
        let mut responses = server.client().check_numbers(request).await?.into_inner();
        while responses.message().await?.is_some() {}
        Ok::<_, tonic::Status>(())
    }
    .await;
    let status = result.expect_err("the deadline passes first");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "not waiting for the vendors"
    );
}

/// A client that sends a long list but never reads an answer: once the answers it does not read
/// fill the HTTP/2 windows, the server stops reading its items, so the work done (and the memory
/// held) stays bounded instead of following the list.
#[tokio::test]
async fn a_client_that_stops_reading_stops_the_server_reading() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(&sim, dir.path(), &Secrets::right(), "MD5");
    crate::common::set_limits(
        &mut config,
        phonecheck::providers::LimitsConfig {
            quota: Some(phonecheck::providers::QuotaConfig {
                requests_per_second: 0.0,
                burst: 1,
            }),
            ..Default::default()
        },
    );
    let server = TestServer::start_in(config, dir.path()).await;
    let pulled = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = pulled.clone();
    let items = tokio_stream::iter((0u64..200_000).map(move |i| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        item(i as usize, &format!("135{:07}7", i))
    }));
    let mut client = server.client();
    // The response stream is opened and then never read.
    let _unread = client.check_numbers(items).await.unwrap().into_inner();
    sim.stats().wait_for_calls(100).await;
    // A measurement interval, not a wait for readiness: unbounded, the server would go through
    // thousands of items a second here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = sim.stats().vendor("thinksms").calls;
    let taken = pulled.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        calls < 5_000,
        "the server kept working for a client that reads nothing: {calls} calls"
    );
    // What the client could push sits in its own send buffer and the kernel's socket buffers
    // (items are ~35 bytes); it is pushed back long before the end of the list.
    assert!(
        taken < 100_000,
        "the client was let to push {taken} of 200,000 items"
    );
}
