//! Request limits: a tenant's concurrent streams are capped and one more is refused with
//! `RESOURCE_EXHAUSTED` and a `QuotaFailure`; a message over 4 MiB is refused.

use crate::common::*;
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

#[tokio::test]
async fn a_tenants_items_in_flight_are_bounded_across_its_streams() {
    use phonecheck::sim::SimConfig;
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("thinksms.key");
    std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
    let mut config = thinksms_config(
        &sim.base_url(),
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        &key,
    );
    config.server.max_items_in_flight_per_tenant = 2;
    let server = TestServer::start_in(config, dir.path()).await;
    sim.stats().hold(true);
    // Two streams of three items each: at most two items are at the vendor at any time.
    let streams: Vec<_> = (0..2)
        .map(|s| {
            let items: Vec<_> = (0..3)
                .map(|i| pb::CheckNumbersRequest {
                    request_id: format!("{s}-{i}"),
                    number: format!("1380013{s}{i:03}"),
                    checks: vec![pb::Check::LineStatus as i32],
                    ..Default::default()
                })
                .collect();
            let mut client = server.client();
            tokio::spawn(async move {
                let mut responses = client
                    .check_numbers(tokio_stream::iter(items))
                    .await
                    .unwrap()
                    .into_inner();
                let mut n = 0;
                while responses.message().await.unwrap().is_some() {
                    n += 1;
                }
                n
            })
        })
        .collect();
    sim.stats().wait_for_held(|held| held >= 2).await;
    // Give a third item every chance to get through if the bound did not hold.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sim.stats().held(), 2);
    sim.stats().hold(false);
    for stream in streams {
        assert_eq!(
            stream.await.unwrap(),
            3 + 1,
            "three results and the summary"
        );
    }
    assert_eq!(sim.stats().vendor("thinksms").billable, 6);
}
