//! Signed webhooks of jobs' state changes, received by the project's Python receiver
//! (`examples/webhooks/receiver.py`, which verifies each signature) on loopback: every event type
//! delivered and verified, in order per job; events pending when the server is killed delivered
//! after the restart, with the ids they had; a receiver answering 500 then 200 served after
//! back-off; a receiver that never answers bounded by the timeout and the event failed at its
//! maximum age; a redirect not followed; a loopback target refused unless allowed; two replicas on PostgreSQL sending each
//! event once.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use phonecheck::store::{EventKind, JobState, JobStore, SqliteStore, Subscriptions};
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const ACME: &str = "pck_acme_webhook_key_for_tests_only";
const BETA: &str = "pck_beta_webhook_key_for_tests_only";
const SECRET: &str = "whsec_test_0123456789abcdef";

/// The Python receiver, killed on drop; its output lines as JSON.
struct Receiver {
    child: Child,
    port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    fn start(args: &[&str]) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webhooks/receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--max-seconds", "300"])
            .args(args)
            .env("WEBHOOK_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Receiver { child, port, lines }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/phonecheck", self.port)
    }

    /// The next line within 30 s.
    async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
            .await
            .expect("the receiver hears within 30 s")
            .expect("the receiver runs")
    }

    /// The next `n` verified events (signature checked by the receiver), with the lines before
    /// them; a rejected delivery fails the test.
    async fn verified(&mut self, n: usize) -> (Vec<Value>, Vec<Value>) {
        let (mut events, mut others) = (Vec::new(), Vec::new());
        while events.len() < n {
            let line = self.next().await;
            assert!(
                line.get("rejected").is_none(),
                "a delivery was rejected: {line}"
            );
            if line["verified"] == true {
                assert_eq!(line["header_event_id"], line["event"]["eventId"]);
                assert_eq!(line["duplicate"], false, "sent twice: {line}");
                events.push(line);
            } else {
                others.push(line);
            }
        }
        (events, others)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `phonecheck serve` process, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Thinksms at 0.03 a number against `sim`, tenants `acme` (with a webhook to `url`) and `beta`
/// (without), quick retries; `webhooks` adds `[webhooks]` keys, `storage` `[storage]` keys.
fn toml(sim: &SimServer, dir: &Path, url: &str, webhooks: &str, storage: &str) -> String {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let more = format!(
        r#"{storage}
[providers.thinksms.prices]
line_status = "0.03"
[webhooks]
poll = "50ms"
first_retry = "200ms"
max_retry = "1s"
timeout = "2s"
allow_http = true
{webhooks}
[tenants.acme]
key_sha256 = ["{acme}"]
[tenants.acme.webhook]
url = "{url}"
secret = {{ file = "{secret}" }}
[tenants.beta]
key_sha256 = ["{beta}"]
"#,
        acme = key_hash(ACME),
        beta = key_hash(BETA),
        secret = secret.display(),
    );
    thinksms_toml(sim, dir, 1000, &more)
}

const LOOPBACK: &str = "allow_addresses = [\"loopback\"]";

#[derive(Clone)]
struct Key(&'static str);

impl tonic::service::Interceptor for Key {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(request)
    }
}

type Jobs = pb::batch_job_service_client::BatchJobServiceClient<InterceptedService<Channel, Key>>;
type Hooks = pb::webhook_service_client::WebhookServiceClient<InterceptedService<Channel, Key>>;

fn clients(channel: Channel, key: &'static str) -> (Jobs, Hooks) {
    (
        pb::batch_job_service_client::BatchJobServiceClient::with_interceptor(
            channel.clone(),
            Key(key),
        ),
        pb::webhook_service_client::WebhookServiceClient::with_interceptor(channel, Key(key)),
    )
}

fn spec(dry_run: bool, max_cost_nanos: Option<i32>) -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: vec![pb::Check::LineStatus as i32],
        dry_run,
        max_cost: max_cost_nanos.map(|nanos| pb::google_type::Money {
            currency_code: "CNY".into(),
            units: 0,
            nanos,
        }),
        ..Default::default()
    }
}

/// `n` distinct mobiles under `prefix`, one a line.
fn file(prefix: u32, n: u32) -> Vec<u8> {
    (0..n)
        .map(|i| format!("139{prefix:04}{i:04}\n"))
        .collect::<String>()
        .into_bytes()
}

async fn deliveries(hooks: &mut Hooks, job_id: &str) -> Vec<pb::WebhookDelivery> {
    hooks
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            job_id: job_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Lists a job's deliveries until `done` holds (at most 30 s).
async fn deliveries_until(
    hooks: &mut Hooks,
    job_id: &str,
    done: impl Fn(&[pb::WebhookDelivery]) -> bool,
) -> Vec<pb::WebhookDelivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(hooks, job_id).await;
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "not within 30 s: {listed:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_type(line: &Value) -> &str {
    line["event"]["type"].as_str().unwrap()
}

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
