//! Delivery: back-off after 500s, a receiver that never answers, a redirect, a refused target,
//! and two replicas sending each event once.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::SimConfig;
#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_the_event_after_back_off() {
    let sim = start_sim(SimConfig::default()).await;
    let mut receiver = Receiver::start(&["--fail-first", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml(&toml(&sim, dir.path(), &receiver.url(), LOOPBACK, "")).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let (mut jobs, mut hooks) = clients(server.channel(), ACME);
    let job = create_job(&mut jobs, spec(true, None), &file(6, 2), 64)
        .await
        .unwrap();
    let (events, failures) = receiver.verified(1).await;
    assert_eq!(failures.len(), 2, "{failures:?}");
    let id = events[0]["event"]["eventId"].clone();
    assert!(
        failures.iter().all(|f| f["event_id"] == id),
        "the same event each time"
    );
    // 200 ms after the first failure, then twice that (each up to a tenth more).
    let t = |v: &Value| v["t"].as_f64().unwrap();
    let (t1, t2, t3) = (t(&failures[0]), t(&failures[1]), t(&events[0]));
    assert!(t2 - t1 >= 0.2, "{}", t2 - t1);
    assert!(t3 - t2 >= 0.4, "{}", t3 - t2);
    let listed = deliveries_until(&mut hooks, &job.id, |d| {
        d.first()
            .is_some_and(|d| d.state == pb::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!((listed[0].attempts, listed[0].last_http_status), (3, 204));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_bounded_by_the_timeout_until_the_max_age() {
    let sim = start_sim(SimConfig::default()).await;
    let receiver = Receiver::start(&["--hang"]);
    let dir = tempfile::tempdir().unwrap();
    let settings = format!("{LOOPBACK}\nmax_age = \"2s\"");
    let text = toml(&sim, dir.path(), &receiver.url(), &settings, "")
        .replace("timeout = \"2s\"", "timeout = \"300ms\"");
    let config = Config::from_toml(&text).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let (mut jobs, mut hooks) = clients(server.channel(), ACME);
    let started = Instant::now();
    let job = create_job(&mut jobs, spec(true, None), &file(7, 2), 64)
        .await
        .unwrap();
    let listed = deliveries_until(&mut hooks, &job.id, |d| {
        d.first()
            .is_some_and(|d| d.state == pb::WebhookDeliveryState::Failed as i32)
    })
    .await;
    let failed = &listed[0];
    assert!(
        failed.last_error.contains("no answer within 300ms"),
        "{failed:?}"
    );
    assert_eq!(failed.last_http_status, 0);
    assert!(failed.attempts >= 2, "{failed:?}");
    // 2 s of age, the last wait and one timeout, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    // The server is unharmed.
    assert_eq!(
        jobs.get_batch_job(pb::GetBatchJobRequest {
            job_id: job.id.clone()
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
        .state,
        pb::BatchJobState::Estimated as i32
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_loopback_target_is_refused_unless_allowed() {
    let sim = start_sim(SimConfig::default()).await;
    let mut receiver = Receiver::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // `allow_http`, but no address class allowed: the defaults.
    let config = Config::from_toml(&toml(&sim, dir.path(), &receiver.url(), "", "")).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let (mut jobs, mut hooks) = clients(server.channel(), ACME);
    let job = create_job(&mut jobs, spec(true, None), &file(8, 2), 64)
        .await
        .unwrap();
    let listed = deliveries_until(&mut hooks, &job.id, |d| {
        d.first().is_some_and(|d| d.attempts >= 2)
    })
    .await;
    let refused = &listed[0];
    assert_eq!(refused.state, pb::WebhookDeliveryState::Pending as i32);
    assert!(
        refused
            .last_error
            .starts_with("refused address 127.0.0.1: a loopback address"),
        "{refused:?}"
    );
    assert_eq!(refused.last_http_status, 0);
    // Nothing reached the receiver.
    assert!(receiver.lines.try_recv().is_err());
    server.stop().await.unwrap();

    // `https` only unless `allow_http`: the configuration is refused at start-up.
    let mut toml_text = toml(&sim, dir.path(), &receiver.url(), "", "");
    toml_text = toml_text.replace("allow_http = true", "");
    let err = Config::from_toml(&toml_text).unwrap_err().to_string();
    assert!(
        err.contains("tenants.acme.webhook.url: http is refused"),
        "{err}"
    );
}

#[tokio::test]
async fn two_replicas_on_postgres_send_each_event_once() {
    let pg = crate::postgres::Postgres::start();
    let db = pg.database("webhooks").await;
    let sim = start_sim(SimConfig::default()).await;
    let mut receiver = Receiver::start(&[]);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = |dir: &Path| {
        let storage = format!(
            "database_url = {{ file = \"{}\" }}",
            crate::postgres::url_file(dir, &db).display()
        );
        let path = dir.join("phonecheck.toml");
        std::fs::write(&path, toml(&sim, dir, &receiver.url(), LOOPBACK, &storage)).unwrap();
        path
    };
    let (a, url_a) = spawn_server_with(&replica(dir_a.path()), &[("HOSTNAME", "replica-a")]);
    let _a = Process(a);
    let (b, url_b) = spawn_server_with(&replica(dir_b.path()), &[("HOSTNAME", "replica-b")]);
    let _b = Process(b);
    let mut ids = Vec::new();
    for i in 0..6u32 {
        // Jobs created and cancelled on both replicas: both write events, both deliver.
        let url = if i % 2 == 0 { &url_a } else { &url_b };
        let (mut jobs, _) = clients(channel_to(url), ACME);
        let job = create_job(&mut jobs, spec(true, None), &file(10 + i, 2), 64)
            .await
            .unwrap();
        jobs.cancel_batch_job(pb::CancelBatchJobRequest {
            job_id: job.id.clone(),
        })
        .await
        .unwrap();
        ids.push(job.id);
    }
    let (events, others) = receiver.verified(12).await;
    assert!(others.is_empty(), "{others:?}");
    for id in &ids {
        let types: Vec<_> = events
            .iter()
            .filter(|e| e["event"]["jobId"] == id.as_str())
            .map(event_type)
            .collect();
        assert_eq!(
            types,
            ["JOB_EVENT_TYPE_ESTIMATED", "JOB_EVENT_TYPE_CANCELLED"]
        );
    }
    // Once every event is recorded delivered no replica may send it again (a claim needs it
    // pending): whatever the receiver heard by then is all it hears.
    let (_, mut hooks) = clients(channel_to(&url_b), ACME);
    let listed = deliveries_until(&mut hooks, "", |d| {
        d.len() == 12
            && d.iter()
                .all(|d| d.state == pb::WebhookDeliveryState::Delivered as i32)
    })
    .await;
    assert!(listed.iter().all(|d| d.attempts == 1), "{listed:?}");
    if let Ok(line) = receiver.lines.try_recv() {
        panic!("more than once: {line}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let sim = start_sim(SimConfig::default()).await;
    let mut elsewhere = Receiver::start(&[]);
    let mut redirecting = Receiver::start(&["--redirect-to", &elsewhere.url()]);
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::from_toml(&toml(&sim, dir.path(), &redirecting.url(), LOOPBACK, "")).unwrap();
    let server = TestServer::start_in(config, dir.path()).await;
    let (mut jobs, mut hooks) = clients(server.channel(), ACME);
    let job = create_job(&mut jobs, spec(true, None), &file(9, 2), 64)
        .await
        .unwrap();
    assert_eq!(redirecting.next().await["redirected"], 1);
    let listed = deliveries_until(&mut hooks, &job.id, |d| {
        d.first().is_some_and(|d| d.attempts >= 1)
    })
    .await;
    assert_eq!(listed[0].state, pb::WebhookDeliveryState::Pending as i32);
    assert_eq!(listed[0].last_http_status, 307);
    assert_eq!(
        listed[0].last_error,
        "HTTP 307 (redirects are not followed)"
    );
    // The attempt is recorded after the answer: had it been followed, the other receiver would
    // have heard by then.
    assert!(elsewhere.lines.try_recv().is_err());
    server.stop().await.unwrap();
}
