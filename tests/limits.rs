//! Request limits: a tenant's concurrent streams are capped and one more is refused with
//! `RESOURCE_EXHAUSTED` and a `QuotaFailure`; a message over 4 MiB is refused.

mod common;

use common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn streams_past_the_limit_are_refused_not_absorbed() {
    let config = Config::from_toml("[server]\nmax_streams_per_tenant = 1").unwrap();
    let server = TestServer::start(config).await;
    let (first_items, first_rx) = tokio::sync::mpsc::channel(4);
    let mut first = server
        .client()
        .check_numbers(tokio_stream::wrappers::ReceiverStream::new(first_rx))
        .await
        .unwrap()
        .into_inner();
    first_items
        .send(pb::CheckNumbersRequest {
            request_id: "a".into(),
            number: "13800138000".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        first.message().await.unwrap().is_some(),
        "the first stream works"
    );

    let refused = server
        .client()
        .check_numbers(tokio_stream::iter(Vec::<pb::CheckNumbersRequest>::new()))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let quota = refused.get_details_quota_failure().expect("a QuotaFailure");
    assert_eq!(quota.violations[0].subject, "tenant:anonymous");

    // Once the first stream ends, a new one is accepted.
    drop(first_items);
    while first.message().await.unwrap().is_some() {}
    let (results, summary) = check_numbers(
        &server,
        vec![pb::CheckNumbersRequest {
            request_id: "b".into(),
            number: "13900139000".into(),
            ..Default::default()
        }],
    )
    .await;
    assert_eq!((results.len(), summary.items_received), (1, 1));
}

#[tokio::test]
async fn an_oversized_message_is_refused() {
    let server = TestServer::sandbox().await;
    let huge = pb::LookupNumberRequest {
        number: "1".repeat(5 * 1024 * 1024),
        ..Default::default()
    };
    let refused = server.client().lookup_number(huge).await.unwrap_err();
    // tonic refuses a message over `max_decoding_message_size` (4 MiB) with OUT_OF_RANGE.
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    assert!(refused.message().contains("4194304"));
    // The server is still there.
    server
        .client()
        .lookup_number(pb::LookupNumberRequest {
            number: "13800138000".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}
