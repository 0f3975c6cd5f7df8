//! Every event type delivered and verified, in order per job, through the API too; events pending
//! when the server is killed delivered after the restart with the ids they had.

use super::*;
use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::SimConfig;
use phonecheck::store::{EventKind, JobState, JobStore, SqliteStore, Subscriptions};
use tonic_types::StatusExt;
#[tokio::test]
async fn every_event_type_is_delivered_signed_and_in_order() {
    let sim = start_sim(SimConfig::default()).await;
    let mut receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&toml(&sim, dir.path(), &receiver.url(), LOOPBACK, "")).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let (mut jobs, mut hooks) = clients(server.channel(), ACME);

    // Estimated, then finished once started.
    let a = create_job(&mut jobs, spec(true, None), &file(1, 3), 64)
        .await
        .unwrap();
    jobs.start_batch_job(pb::StartBatchJobRequest {
        job_id: a.id.clone(),
        max_cost: None,
    })
    .await
    .unwrap();
    // Estimated, then cancelled.
    let b = create_job(&mut jobs, spec(true, None), &file(2, 3), 64)
        .await
        .unwrap();
    jobs.cancel_batch_job(pb::CancelBatchJobRequest {
        job_id: b.id.clone(),
    })
    .await
    .unwrap();
    // Paused at its max_cost: 0.06 CNY is two numbers of five.
    let c = create_job(&mut jobs, spec(false, Some(60_000_000)), &file(3, 5), 64)
        .await
        .unwrap();

    let (events, _) = receiver.verified(5).await;
    let of = |id: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["event"]["jobId"] == id)
            .collect()
    };
    let types = |id: &str| of(id).iter().map(|e| event_type(e)).collect::<Vec<_>>();
    assert_eq!(
        types(&a.id),
        ["JOB_EVENT_TYPE_ESTIMATED", "JOB_EVENT_TYPE_FINISHED"]
    );
    assert_eq!(
        types(&b.id),
        ["JOB_EVENT_TYPE_ESTIMATED", "JOB_EVENT_TYPE_CANCELLED"]
    );
    assert_eq!(types(&c.id), ["JOB_EVENT_TYPE_PAUSED"]);
    // In order per job, numbered from 1.
    for id in [&a.id, &b.id] {
        let seqs: Vec<_> = of(id)
            .iter()
            .map(|e| e["event"]["sequence"].clone())
            .collect();
        assert_eq!(seqs, ["1", "2"]);
    }
    let finished = &of(&a.id)[1]["event"];
    assert_eq!(finished["state"], "BATCH_JOB_STATE_SUCCEEDED");
    assert_eq!(finished["progress"]["numbersDone"], "3");
    assert_eq!(finished["progress"]["cost"]["currencyCode"], "CNY");
    assert_eq!(finished["progress"]["cost"]["nanos"], 90_000_000);
    let paused = &of(&c.id)[0]["event"];
    assert_eq!(paused["state"], "BATCH_JOB_STATE_PAUSED");
    let reason = paused["reason"].as_str().unwrap();
    assert!(
        reason.contains("max_cost 0.06 CNY"),
        "what it needs to go on: {reason}"
    );
    assert_eq!(paused["maxCost"]["nanos"], 60_000_000);

    // The deliveries as the API shows them, once recorded (the receiver may hear first).
    let listed = deliveries_until(&mut hooks, "", |d| {
        d.iter()
            .all(|d| d.state == pb::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!(listed.len(), 5);
    for d in &listed {
        assert_eq!(d.state, pb::WebhookDeliveryState::Delivered as i32, "{d:?}");
        assert_eq!((d.attempts, d.last_http_status), (1, 204), "{d:?}");
        assert!(d.deliver_time.is_some() && d.last_error.is_empty());
    }
    let of_a = deliveries(&mut hooks, &a.id).await;
    assert_eq!(of_a.len(), 2);
    let finished_id = of_a[0].event.as_ref().unwrap().event_id.clone();
    assert_eq!(
        finished_id,
        finished["eventId"].as_str().unwrap(),
        "newest first"
    );

    // Another tenant sees none of them and cannot re-send one.
    let (_, mut beta) = clients(server.channel(), BETA);
    assert!(deliveries(&mut beta, "").await.is_empty());
    let refused = beta
        .resend_webhook_event(pb::ResendWebhookEventRequest {
            event_id: finished_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);

    // A re-send delivers the same event (id and body) again.
    let resent = hooks
        .resend_webhook_event(pb::ResendWebhookEventRequest {
            event_id: finished_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(resent.state, pb::WebhookDeliveryState::Pending as i32);
    let again = receiver.next().await;
    assert_eq!(again["event"]["eventId"], finished_id.as_str());
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event"], *finished, "the same body");

    // Hostile requests are refused by field, before anything is read.
    let bad_field = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.get_details_bad_request().unwrap().field_violations[0]
            .field
            .clone()
    };
    let huge = hooks
        .resend_webhook_event(pb::ResendWebhookEventRequest {
            event_id: "e".repeat(100_000),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(huge), "event_id");
    let page = hooks
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            page_size: 5_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(page), "page_size");
    let token = hooks
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            page_token: "x".repeat(10_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(token), "page_token");
    // Pages: two of two, then one.
    let first = hooks
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.deliveries.len(), 2);
    let mut seen: Vec<_> = first
        .deliveries
        .iter()
        .map(|d| d.event.clone().unwrap().event_id)
        .collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let page = hooks
            .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.deliveries
                .iter()
                .map(|d| d.event.clone().unwrap().event_id),
        );
        token = page.next_page_token;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn events_pending_when_the_server_is_killed_are_delivered_after_the_restart() {
    let sim = start_sim(SimConfig::default()).await;
    // The first receiver answers 500 to everything: events stay pending.
    let mut refusing = Receiver::start(&["--fail-first", "1000000"]);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("phonecheck.toml");
    std::fs::write(
        &config_path,
        toml(&sim, dir.path(), &refusing.url(), LOOPBACK, ""),
    )
    .unwrap();
    let (child, url) = spawn_server(&config_path);
    let mut server = Process(child);
    let (mut jobs, mut hooks) = clients(channel_to(&url), ACME);
    let estimated = create_job(&mut jobs, spec(true, None), &file(4, 3), 64)
        .await
        .unwrap();
    // A job running when the server dies: its vendor holds every call.
    sim.stats().hold(true);
    let running = create_job(&mut jobs, spec(false, None), &file(5, 3), 64)
        .await
        .unwrap();
    sim.stats().wait_for_held(|held| held >= 1).await;
    let first = refusing.next().await;
    assert_eq!(first["failed_on_purpose"], 1, "{first}");
    let estimated_id = first["event_id"].as_str().unwrap().to_owned();
    // The failed attempt is recorded: the event waits for its next one.
    let pending = deliveries_until(&mut hooks, &estimated.id, |d| {
        d.first().is_some_and(|d| d.last_http_status == 500)
    })
    .await;
    assert_eq!(pending[0].state, pb::WebhookDeliveryState::Pending as i32);

    server.0.kill().unwrap();
    server.0.wait().unwrap();
    // What the runner does when the job store fails under a job: the job fails, in the store of
    // the dead server (the same transaction writes its event).
    let store = SqliteStore::open(&dir.path().join("data"))
        .await
        .unwrap()
        .with_webhooks(Subscriptions::new([(
            "acme".to_owned(),
            EventKind::ALL.to_vec(),
        )]));
    assert!(
        store
            .transition(
                &running.id,
                &[JobState::Running],
                JobState::Failed,
                "the job store failed; the server log has the details"
            )
            .await
            .unwrap()
    );
    drop(store);
    sim.stats().hold(false);

    let mut receiver = Receiver::start(&[]);
    std::fs::write(
        &config_path,
        toml(&sim, dir.path(), &receiver.url(), LOOPBACK, ""),
    )
    .unwrap();
    let (child, url) = spawn_server(&config_path);
    let _server = Process(child);
    let (_, mut hooks) = clients(channel_to(&url), ACME);
    let (events, _) = receiver.verified(2).await;
    let by_job = |id: &str| events.iter().find(|e| e["event"]["jobId"] == id).unwrap();
    // The event the dead server tried is sent with the id it had.
    assert_eq!(
        by_job(&estimated.id)["event"]["eventId"],
        estimated_id.as_str()
    );
    assert_eq!(
        event_type(by_job(&estimated.id)),
        "JOB_EVENT_TYPE_ESTIMATED"
    );
    let failed = &by_job(&running.id)["event"];
    assert_eq!(failed["type"], "JOB_EVENT_TYPE_FAILED");
    assert_eq!(failed["state"], "BATCH_JOB_STATE_FAILED");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("job store failed")
    );
    // Each once: the outbox has these two events, both delivered.
    let listed = deliveries_until(&mut hooks, "", |d| {
        d.iter()
            .all(|d| d.state == pb::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let attempts = listed
        .iter()
        .find(|d| d.event.as_ref().unwrap().event_id == estimated_id)
        .unwrap()
        .attempts;
    assert!(attempts >= 2, "tried before the kill and after: {attempts}");
}
