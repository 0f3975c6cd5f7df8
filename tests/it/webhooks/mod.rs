//! Signed webhooks of jobs' state changes, received by the project's Python receiver
//! (`examples/webhooks/receiver.py`, which verifies each signature) on loopback: every event type
//! delivered and verified, in order per job; events pending when the server is killed delivered
//! after the restart, with the ids they had; a receiver answering 500 then 200 served after
//! back-off; a receiver that never answers bounded by the timeout and the event failed at its
//! maximum age; a redirect not followed; a loopback target refused unless allowed; two replicas
//! on PostgreSQL sending each event once. The tests are in `events` and `delivery`; here, the
//! receiver and the helpers they share.

mod delivery;
mod events;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::pb;
use phonecheck::sim::SimServer;
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub(super) const ACME: &str = "pck_acme_webhook_key_for_tests_only";
pub(super) const BETA: &str = "pck_beta_webhook_key_for_tests_only";
pub(super) const SECRET: &str = "whsec_test_0123456789abcdef";

/// The Python receiver, killed on drop; its output lines as JSON.
pub(super) struct Receiver {
    child: Child,
    port: u16,
    pub(super) lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    pub(super) fn start(args: &[&str]) -> Receiver {
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

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/phonecheck", self.port)
    }

    /// The next line within 30 s.
    pub(super) async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(30), self.lines.recv())
            .await
            .expect("the receiver hears within 30 s")
            .expect("the receiver runs")
    }

    /// The next `n` verified events (signature checked by the receiver), with the lines before
    /// them; a rejected delivery fails the test.
    pub(super) async fn verified(&mut self, n: usize) -> (Vec<Value>, Vec<Value>) {
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
pub(super) struct Process(pub(super) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Thinksms at 0.03 a number against `sim`, tenants `acme` (with a webhook to `url`) and `beta`
/// (without), quick retries; `webhooks` adds `[webhooks]` keys, `storage` `[storage]` keys.
pub(super) fn toml(
    sim: &SimServer,
    dir: &Path,
    url: &str,
    webhooks: &str,
    storage: &str,
) -> String {
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

pub(super) const LOOPBACK: &str = "allow_addresses = [\"loopback\"]";

use crate::common::ApiKey as Key;

pub(super) type Jobs =
    pb::batch_job_service_client::BatchJobServiceClient<InterceptedService<Channel, Key>>;
pub(super) type Hooks =
    pb::webhook_service_client::WebhookServiceClient<InterceptedService<Channel, Key>>;

pub(super) fn clients(channel: Channel, key: &'static str) -> (Jobs, Hooks) {
    (
        pb::batch_job_service_client::BatchJobServiceClient::with_interceptor(
            channel.clone(),
            Key(key),
        ),
        pb::webhook_service_client::WebhookServiceClient::with_interceptor(channel, Key(key)),
    )
}

pub(super) fn spec(dry_run: bool, max_cost_nanos: Option<i32>) -> pb::BatchJobSpec {
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
pub(super) fn file(prefix: u32, n: u32) -> Vec<u8> {
    (0..n)
        .map(|i| format!("139{prefix:04}{i:04}\n"))
        .collect::<String>()
        .into_bytes()
}

pub(super) async fn deliveries(hooks: &mut Hooks, job_id: &str) -> Vec<pb::WebhookDelivery> {
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
pub(super) async fn deliveries_until(
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

pub(super) fn event_type(line: &Value) -> &str {
    line["event"]["type"].as_str().unwrap()
}
