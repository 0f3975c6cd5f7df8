//! Latency under an open-loop load: requests are sent on a fixed schedule and each one's latency
//! is counted from when it was due, so a stall shows in full instead of slowing the generator.
//!
//!     cargo bench --bench latency                      # every kind at every rate
//!     cargo bench --bench latency -- uncached direct   # some of: offline cached uncached direct
//!     PHONECHECK_BENCH_SECONDS=10 cargo bench --bench latency   # longer runs per rate
//!     PHONECHECK_BENCH_BASELINE=/path/to/phonecheck cargo bench --bench latency
//!
//! With `PHONECHECK_BENCH_BASELINE` (another build's `phonecheck` binary), the same runs are made
//! against that server first, then against this build's, in the same process and run: the
//! tables side by side.
//!
//! The server runs as a child process (`phonecheck serve`, release build) in front of the
//! Thinksms simulator (latency 0, quota off), which runs in this process with the generator.
//! Kinds: `offline` (LookupNumber without checks), `cached` (line status of numbers answered
//! before), `uncached` (line status of numbers never asked: one vendor call each), `stream` (the
//! same as `uncached`, one item at a time on a `CheckNumbers` stream per connection, each item's
//! latency from its due time to its result), and `direct`
//! (the same signed vendor request sent straight to the simulator: the baseline the gateway adds
//! to). Rates: 50, 200, 1,000 and 5,000 requests/s. The gateway's overhead is `uncached` minus
//! `direct`. Answers that are failures (none are expected: the numbers avoid the simulator's
//! failure suffixes) are counted apart and left out of the percentiles.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phonecheck::pb;
use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::sim::{SimConfig, SimServer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Channel;

mod support;
use support::Server;

const RATES: [u32; 4] = [50, 200, 1_000, 5_000];
const KINDS: [&str; 5] = ["offline", "cached", "uncached", "stream", "direct"];
/// Client connections the generator spreads its requests over.
const CONNECTIONS: usize = 8;
/// Numbers answered before the `cached` runs, asked again round robin.
const CACHED_NUMBERS: u64 = 2_000;

/// A number that is none of the simulator's magic ones (their last four digits are below 1000).
fn number(n: u64) -> String {
    format!("139{:04}{:04}", (n / 8_000) % 10_000, 1_000 + n % 8_000)
}

/// Items waiting for their result on one `CheckNumbers` stream, by request id.
type Waiting = Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<bool>>>>;

/// One long-lived `CheckNumbers` stream: items go in as they are due, results come back in
/// any order and are matched by request id.
struct Lane {
    items: tokio::sync::mpsc::UnboundedSender<pb::CheckNumbersRequest>,
    waiting: Waiting,
}

impl Lane {
    async fn open(mut client: PhoneCheckServiceClient<Channel>) -> Lane {
        let (items, rx) = tokio::sync::mpsc::unbounded_channel();
        let waiting: Waiting = Arc::default();
        let mut results = client
            .check_numbers(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let answered = waiting.clone();
        tokio::spawn(async move {
            while let Ok(Some(response)) = results.message().await {
                if let Some(pb::check_numbers_response::Response::Result(result)) =
                    response.response
                {
                    let ok = matches!(
                        &result.outcome,
                        Some(pb::check_numbers_result::Outcome::Report(r))
                            if r.outcomes.iter().all(|o| o.error.is_none())
                    );
                    let waiter = answered.lock().unwrap().remove(&result.request_id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(ok);
                    }
                }
            }
        });
        Lane { items, waiting }
    }

    async fn check(&self, number: String, i: u64) -> bool {
        let (done, result) = tokio::sync::oneshot::channel();
        let id = i.to_string();
        self.waiting.lock().unwrap().insert(id.clone(), done);
        let item = pb::CheckNumbersRequest {
            request_id: id,
            number,
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        };
        self.items.send(item).is_ok() && result.await.unwrap_or(false)
    }
}

/// One request of `kind`; `Ok(true)` when it was answered, `Ok(false)` for a failed answer.
#[derive(Clone)]
struct Target {
    clients: Arc<Vec<PhoneCheckServiceClient<Channel>>>,
    lanes: Arc<Vec<Lane>>,
    http: reqwest::Client,
    sim_url: String,
    fresh: Arc<AtomicU64>,
}

impl Target {
    async fn send(&self, kind: &str, i: u64) -> bool {
        let lane = i as usize % CONNECTIONS;
        let mut client = self.clients[lane].clone();
        let (number, checks) = match kind {
            "offline" => (number(i), vec![]),
            "cached" => (
                number(i % CACHED_NUMBERS),
                vec![pb::Check::LineStatus as i32],
            ),
            "uncached" => (
                number(self.fresh.fetch_add(1, Ordering::Relaxed)),
                vec![pb::Check::LineStatus as i32],
            ),
            "stream" => {
                let number = number(self.fresh.fetch_add(1, Ordering::Relaxed));
                return self.lanes[lane].check(number, i).await;
            }
            _ => {
                return self
                    .direct(&number(self.fresh.fetch_add(1, Ordering::Relaxed)))
                    .await;
            }
        };
        let request = pb::LookupNumberRequest {
            number,
            checks,
            ..Default::default()
        };
        match client.lookup_number(request).await {
            Ok(response) => response
                .into_inner()
                .report
                .is_some_and(|r| r.outcomes.iter().all(|o| o.error.is_none())),
            Err(_) => false,
        }
    }

    /// The vendor's documented request, signed, straight to the simulator.
    async fn direct(&self, mobile: &str) -> bool {
        // The vendor's day is China's.
        let today = (chrono::Utc::now() + chrono::Duration::hours(8))
            .format("%Y%m%d")
            .to_string();
        let sign = phonecheck::vendors::thinksms::sign(
            phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
            mobile,
            phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
            &today,
        );
        let body = serde_json::json!({
            "mobile": mobile,
            "hashcode": phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
            "sign": sign,
        });
        let answer = self.http.post(&self.sim_url).json(&body).send().await;
        match answer {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|v| v["errorRes"]["err_code"] == "200"),
            Err(_) => false,
        }
    }
}

struct Run {
    latencies: Vec<Duration>,
    failed: usize,
}

/// Sends `rate` requests a second for `seconds`, each at its due time, whatever the ones before
/// are doing.
async fn open_loop(target: &Target, kind: &'static str, rate: u32, seconds: f64) -> Run {
    let total = (f64::from(rate) * seconds).round() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        tokio::time::sleep_until(due).await;
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let ok = target.send(kind, i).await;
            (due.elapsed(), ok)
        }));
    }
    let mut run = Run {
        latencies: Vec::with_capacity(tasks.len()),
        failed: 0,
    };
    for task in tasks {
        let (took, ok) = task.await.unwrap();
        if ok {
            run.latencies.push(took);
        } else {
            run.failed += 1;
        }
    }
    run.latencies.sort();
    run
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let kinds: Vec<&'static str> = KINDS
        .into_iter()
        .filter(|k| wanted.is_empty() || wanted.iter().any(|w| w == k))
        .collect();
    let seconds: f64 = std::env::var("PHONECHECK_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let servers = support::server_binaries();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = phonecheck::vendors::simulator(listener, SimConfig::default()).unwrap();
        for (index, (name, bin)) in (0u64..).zip(&servers) {
            println!("\n== {name}: {}", bin.display());
            measure(&sim, bin, index, &kinds, seconds).await;
        }
        sim.shutdown().await.unwrap();
    });
}

/// Every kind at every rate against a server started from `bin`, printed as one table.
async fn measure(
    sim: &SimServer,
    bin: &std::path::Path,
    index: u64,
    kinds: &[&'static str],
    seconds: f64,
) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let server = Server::start_bin(bin, dir, sim, 0, "max_entries = 1000000", "");
    let mut clients = Vec::new();
    let mut lanes = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = PhoneCheckServiceClient::connect(format!("http://{}", server.addr))
            .await
            .unwrap();
        lanes.push(Lane::open(client.clone()).await);
        clients.push(client);
    }
    let target = Target {
        clients: Arc::new(clients),
        lanes: Arc::new(lanes),
        // The gateway's own HTTP client for vendors: the baseline is like for like.
        http: phonecheck::providers::http_client().unwrap(),
        sim_url: format!("{}/HrmApi/emptyStatusQuery", sim.base_url()),
        // Past the cached numbers, and far from them; each server's own range, so that one
        // server's vendor calls are not the other's.
        fresh: Arc::new(AtomicU64::new(1_000_000 + 5_000_000 * index)),
    };
    // The cached kind's numbers, answered once; and every path warmed up.
    for i in 0..CACHED_NUMBERS {
        assert!(target.send("cached", i).await, "warm-up lookup failed");
    }
    for kind in KINDS {
        target.send(kind, 0).await;
    }
    println!(
        "phonecheck latency, open loop: {seconds} s per rate, {CONNECTIONS} connections, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "kind", "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "failed"
    );
    let mut p50 = std::collections::HashMap::new();
    for rate in RATES {
        for &kind in kinds {
            let run = open_loop(&target, kind, rate, seconds).await;
            let l = &run.latencies;
            println!(
                "{:<9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
                kind,
                rate,
                ms(percentile(l, 50.0)),
                ms(percentile(l, 90.0)),
                ms(percentile(l, 99.0)),
                ms(percentile(l, 99.9)),
                ms(l.last().copied().unwrap_or_default()),
                run.failed
            );
            p50.insert((kind, rate), (percentile(l, 50.0), percentile(l, 99.0)));
        }
    }
    if kinds.contains(&"uncached") && kinds.contains(&"direct") {
        println!("\ngateway overhead (uncached minus direct):");
        for rate in RATES {
            let (u50, u99) = p50[&("uncached", rate)];
            let (d50, d99) = p50[&("direct", rate)];
            println!(
                "  {rate:>5}/s: p50 {:+.2} ms, p99 {:+.2} ms",
                (u50.as_secs_f64() - d50.as_secs_f64()) * 1e3,
                (u99.as_secs_f64() - d99.as_secs_f64()) * 1e3
            );
        }
    }
    drop(server);
}
