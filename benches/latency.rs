//! Latency under an open-loop load: requests are sent on a fixed schedule and each one's latency
//! is counted from when it was due, so a stall shows in full instead of slowing the generator.
//!
//!     cargo bench --bench latency                      # every kind at every rate
//!     cargo bench --bench latency -- uncached direct   # some of: offline cached uncached direct
//!     PHONECHECK_BENCH_SECONDS=10 cargo bench --bench latency   # longer runs per rate
//!
//! The server runs as a child process (`phonecheck serve`, release build) in front of the
//! Thinksms simulator (latency 0, quota off), which runs in this process with the generator.
//! Kinds: `offline` (LookupNumber without checks), `cached` (line status of numbers answered
//! before), `uncached` (line status of numbers never asked: one vendor call each), and `direct`
//! (the same signed vendor request sent straight to the simulator: the baseline the gateway adds
//! to). Rates: 50, 200, 1,000 and 5,000 requests/s. The gateway's overhead is `uncached` minus
//! `direct`. Answers that are failures (none are expected: the numbers avoid the simulator's
//! failure suffixes) are counted apart and left out of the percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use phonecheck::pb;
use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::providers::signing::thinksms_sign;
use phonecheck::sim::{self, SimConfig, SimServer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Channel;

mod support;
use support::Server;

const RATES: [u32; 4] = [50, 200, 1_000, 5_000];
const KINDS: [&str; 4] = ["offline", "cached", "uncached", "direct"];
/// Client connections the generator spreads its requests over.
const CONNECTIONS: usize = 8;
/// Numbers answered before the `cached` runs, asked again round robin.
const CACHED_NUMBERS: u64 = 2_000;

/// A number that is none of the simulator's magic ones (their last four digits are below 1000).
fn number(n: u64) -> String {
    format!("139{:04}{:04}", (n / 8_000) % 10_000, 1_000 + n % 8_000)
}

/// One request of `kind`; `Ok(true)` when it was answered, `Ok(false)` for a failed answer.
#[derive(Clone)]
struct Target {
    clients: Arc<Vec<PhoneCheckServiceClient<Channel>>>,
    http: reqwest::Client,
    sim_url: String,
    fresh: Arc<AtomicU64>,
}

impl Target {
    async fn send(&self, kind: &str, i: u64) -> bool {
        let mut client = self.clients[i as usize % CONNECTIONS].clone();
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
        let sign = thinksms_sign(
            sim::SANDBOX_THINKSMS_HASHCODE,
            mobile,
            sim::SANDBOX_THINKSMS_PRIVATE_KEY,
            &today,
        );
        let body = serde_json::json!({
            "mobile": mobile,
            "hashcode": sim::SANDBOX_THINKSMS_HASHCODE,
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
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = SimServer::spawn(listener, SimConfig::default()).unwrap();
        let server = Server::start(&sim, 0, 1_000_000);
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            clients.push(
                PhoneCheckServiceClient::connect(format!("http://{}", server.addr))
                    .await
                    .unwrap(),
            );
        }
        let target = Target {
            clients: Arc::new(clients),
            http: reqwest::Client::new(),
            sim_url: format!("{}/HrmApi/emptyStatusQuery", sim.base_url()),
            // Past the cached numbers, and far from them.
            fresh: Arc::new(AtomicU64::new(1_000_000)),
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
            for &kind in &kinds {
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
                p50.insert(
                    (kind, rate),
                    (percentile(l, 50.0), percentile(l, 99.0)),
                );
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
        sim.shutdown().await.unwrap();
    });
}
