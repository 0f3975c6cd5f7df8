//! The engine under load, on loopback: the server as a child process (its memory measured from
//! /proc), the vendor simulators and the load generator in this process.
//!
//!     cargo bench --bench engine                 # every scenario
//!     cargo bench --bench engine -- stream quota # some of: lookup stream quota savings baseline
//!                                                # replicas
//!
//! Scenarios (BENCHMARKS.md has the results and their reading):
//! - lookup: LookupNumber offline only, line status uncached, line status cached: requests/s,
//!   p50/p99.
//! - stream: CheckNumbers of 1,000,000 distinct numbers (quota off, simulator latency 0, the
//!   default cache settings): numbers/s, the server's RSS every 100k and its peak, bytes per hot
//!   answer; then a restart on the same data directory: time to the first cached answer.
//! - quota: 10,000 numbers against a simulator enforcing 100 calls/s: achieved/allowed rate and
//!   over-limit answers.
//! - savings: 100,000 rows with 30% duplicates, run twice: billable vendor calls per run.
//! - baseline: the vendor's documented way (one signed request per number, sequential) against
//!   CheckNumbers, at simulator latency 20 ms.
//! - replicas: what sharing state through Redis costs and saves (needs `redis-server`): one
//!   replica alone, a replica with Redis on new numbers, another replica on the same numbers, and
//!   both replicas on one new list at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phonecheck::pb;
use phonecheck::pb::check_numbers_response::Response;
use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::sim::faults::Faults;
use phonecheck::sim::{SimConfig, SimServer};
use tokio::net::TcpListener;
use tonic::transport::Channel;

mod support;
use support::{Server, rss_of};

async fn sim(latency: Duration, faults: Faults) -> SimServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    phonecheck::vendors::simulator(
        listener,
        SimConfig {
            latency,
            faults,
            ..SimConfig::default()
        },
    )
    .unwrap()
}

/// The i-th of ten million distinct valid mobiles; none ends like a magic number.
fn number(i: u64) -> String {
    format!("135{:07}7", i % 10_000_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn lookup_scenario() {
    let sim = sim(Duration::ZERO, Faults::default()).await;
    let server = Server::start(&sim, 0, 1_000_000);
    let client = server.client().await;
    println!("\n## lookup: 64 concurrent callers over 8 connections, 5 s each mode");
    println!("| mode | requests/s | p50 | p99 | vendor calls |");
    println!("|---|---:|---:|---:|---:|");
    // Warm the cached set.
    for i in 0..1000 {
        let mut c = client.clone();
        let request = pb::LookupNumberRequest {
            number: number(9_000_000 + i),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        };
        c.lookup_number(request).await.unwrap();
    }
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for (mode, checks, cached) in [
        ("offline only", vec![], false),
        (
            "line status, uncached",
            vec![pb::Check::LineStatus as i32],
            false,
        ),
        (
            "line status, cached",
            vec![pb::Check::LineStatus as i32],
            true,
        ),
    ] {
        let calls_before = sim.stats().vendor("thinksms").calls;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(server.client().await);
        }
        let workers = (0..64).map(|w| {
            let mut c = clients[w % clients.len()].clone();
            let checks = checks.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let n = if cached {
                        number(9_000_000 + i % 1000)
                    } else {
                        number(i)
                    };
                    let request = pb::LookupNumberRequest {
                        number: n,
                        checks: checks.clone(),
                        ..Default::default()
                    };
                    let started = Instant::now();
                    c.lookup_number(request).await.unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        });
        // Spawn them all before waiting for any.
        let workers: Vec<_> = workers.collect();
        let mut latencies: Vec<Duration> = Vec::new();
        for w in workers {
            latencies.extend(w.await.unwrap());
        }
        latencies.sort();
        let calls = sim.stats().vendor("thinksms").calls - calls_before;
        println!(
            "| {mode} | {:.0} | {:.2} ms | {:.2} ms | {calls} |",
            latencies.len() as f64 / 5.0,
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
    }
}

/// Streams `numbers` through CheckNumbers; calls `progress` every 100,000 answers.
async fn stream(
    client: &mut PhoneCheckServiceClient<Channel>,
    numbers: impl Iterator<Item = String> + Send + 'static,
    mut progress: impl FnMut(u64),
) -> pb::CheckNumbersSummary {
    let items = tokio_stream::iter(numbers.enumerate().map(|(i, n)| pb::CheckNumbersRequest {
        request_id: i.to_string(),
        number: n,
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    }));
    let mut responses = client.check_numbers(items).await.unwrap().into_inner();
    let mut answered = 0u64;
    while let Some(message) = responses.message().await.unwrap() {
        match message.response.unwrap() {
            Response::Result(_) => {
                answered += 1;
                if answered.is_multiple_of(100_000) {
                    progress(answered);
                }
            }
            Response::Summary(s) => return s,
        }
    }
    panic!("no summary")
}

async fn stream_scenario() {
    const N: u64 = 1_000_000;
    let sim = sim(Duration::ZERO, Faults::default()).await;
    // The default cache settings: every answer is kept (hot tier bounded by cache.max_memory,
    // the rest in the answer store on disk).
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let server = Server::start_in(dir.clone(), &sim, 0, "", "");
    let mut client = server.client().await;
    let (idle, _) = server.rss();
    println!(
        "\n## stream: CheckNumbers of 1,000,000 distinct numbers, quota off, simulator latency 0, default cache settings"
    );
    println!("server RSS at start: {idle:.1} MiB");
    println!("| answered | elapsed | numbers/s | server RSS | server peak RSS |");
    println!("|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let pid = server.child.id();
    let summary = stream(&mut client, (0..N).map(number), move |n| {
        let t = started.elapsed().as_secs_f64();
        let (rss, peak) = rss_of(pid);
        println!(
            "| {n} | {t:.1} s | {:.0} | {rss:.1} MiB | {peak:.1} MiB |",
            n as f64 / t
        );
    })
    .await;
    let info = answer_cache(&server).await;
    let (rss, peak) = server.rss();
    println!(
        "at the end: RSS {rss:.1} MiB, peak {peak:.1} MiB; hot tier {} answers ({:.1} MiB counted); store {} answers, {:.1} MiB on disk",
        info.hot_answers,
        info.hot_bytes as f64 / 1048576.0,
        info.stored_answers,
        info.store_bytes as f64 / 1048576.0,
    );
    println!(
        "summary: {} reports, {} billable, {} errors",
        summary.reports, summary.billable_calls, summary.errors
    );
    println!(
        "RSS above start per hot answer: {:.0} bytes (peak: {:.0}); counted by the hot tier: {:.0} bytes; store on disk per answer: {:.0} bytes",
        (rss - idle) * 1048576.0 / info.hot_answers.max(1) as f64,
        (peak - idle) * 1048576.0 / info.hot_answers.max(1) as f64,
        info.hot_bytes as f64 / info.hot_answers.max(1) as f64,
        info.store_bytes as f64 / info.stored_answers.max(1) as f64,
    );

    // Restart on the same data directory: how long until the first paid answer is served from
    // the store (process start to the first cached reply), and then the stream again.
    server.stop();
    let started = Instant::now();
    let server = Server::start_in(dir, &sim, 0, "", "");
    let spawned = started.elapsed().as_secs_f64();
    let mut client = server.client().await;
    let first = client
        .lookup_number(pb::LookupNumberRequest {
            number: number(0),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first_answer = started.elapsed().as_secs_f64();
    let cached = first
        .report
        .unwrap()
        .outcomes
        .first()
        .is_some_and(|o| o.cached);
    println!("\n## restart on the same data directory (1,000,000 stored answers)");
    println!("| step | since start | |");
    println!("|---|---:|---|");
    println!(
        "| server listening (address printed) | {:.0} ms | |",
        spawned * 1e3
    );
    println!(
        "| first answer served | {:.0} ms | cached: {cached} |",
        first_answer * 1e3
    );
    let billed = sim.stats().vendor("thinksms").billable;
    let started = Instant::now();
    let again = stream(&mut client, (0..100_000).map(number), |_| {}).await;
    let t = started.elapsed().as_secs_f64();
    let (rss, peak) = server.rss();
    println!(
        "| 100,000 of them streamed again | {t:.1} s ({:.0}/s) | {} cache hits, {} billable, simulator billed {} more; RSS {rss:.1} MiB, peak {peak:.1} MiB |",
        100_000.0 / t,
        again.cache_hits,
        again.billable_calls,
        sim.stats().vendor("thinksms").billable - billed,
    );
}

/// (current RSS, peak RSS) in MiB of a process.
async fn answer_cache(server: &Server) -> pb::AnswerCacheInfo {
    server
        .client()
        .await
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .answer_cache
        .unwrap_or_default()
}

async fn quota_scenario() {
    let sim = sim(
        Duration::ZERO,
        Faults {
            quota_per_second: Some(100),
            ..Faults::default()
        },
    )
    .await;
    let server = Server::start(&sim, 100, 1_000_000);
    let mut client = server.client().await;
    let started = Instant::now();
    let summary = stream(
        &mut client,
        (0..10_000).map(|i| number(20_000_000 + i)),
        |_| {},
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = sim.stats().vendor("thinksms");
    let achieved = stats.calls as f64 / elapsed;
    println!("\n## quota: 10,000 numbers, simulator enforcing 100 calls/s (sliding 1 s window)");
    println!(
        "| elapsed | vendor calls | achieved calls/s | achieved / allowed | over-limit answers | reports |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {elapsed:.1} s | {} | {achieved:.1} | {:.3} | {} | {} |",
        stats.calls,
        achieved / 100.0,
        stats.over_limit,
        summary.reports
    );
}

async fn savings_scenario() {
    let sim = sim(Duration::ZERO, Faults::default()).await;
    let server = Server::start(&sim, 0, 1_000_000);
    let mut client = server.client().await;
    // 70,000 distinct numbers; 30,000 more rows repeat some of them.
    let list: Vec<String> = (0..100_000u64)
        .map(|i| number(30_000_000 + if i < 70_000 { i } else { i * 7919 % 70_000 }))
        .collect();
    println!("\n## savings: 100,000 rows, 70,000 distinct (30% duplicates), run twice");
    println!(
        "| run | rows | billable vendor calls | cache hits | simulator billable (cumulative) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for run in ["first", "second"] {
        let summary = stream(&mut client, list.clone().into_iter(), |_| {}).await;
        println!(
            "| {run} | {} | {} | {} | {} |",
            summary.items_received,
            summary.billable_calls,
            summary.cache_hits,
            sim.stats().vendor("thinksms").billable
        );
    }
}

async fn baseline_scenario() {
    let latency = Duration::from_millis(20);
    let sim = sim(latency, Faults::default()).await;
    let n = 500u64;
    // The vendor's sample code: build, sign and send one request per number, one after another.
    let http = reqwest::Client::new();
    let url = format!("{}/HrmApi/emptyStatusQuery", sim.base_url());
    let started = Instant::now();
    for i in 0..n {
        let mobile = number(40_000_000 + i);
        let date = (chrono::Utc::now() + chrono::Duration::hours(8))
            .format("%Y%m%d")
            .to_string();
        let sign = phonecheck::vendors::thinksms::sign(
            phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
            &mobile,
            phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
            &date,
        );
        let body = serde_json::json!({"mobile": mobile, "hashcode": phonecheck::vendors::thinksms::SANDBOX_HASHCODE, "sign": sign});
        let answer: serde_json::Value = http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["errorRes"]["err_code"], "200");
    }
    let baseline = started.elapsed().as_secs_f64();
    println!("\n## baseline: {n} numbers, simulator latency 20 ms");
    println!("| way | elapsed | numbers/s |");
    println!("|---|---:|---:|");
    println!(
        "| vendor sample code: one signed request per number, sequential | {baseline:.2} s | {:.0} |",
        n as f64 / baseline
    );
    for (label, quota, offset) in [
        ("CheckNumbers, vendor quota 100/s", 100, 50_000_000),
        ("CheckNumbers, quota off", 0, 60_000_000),
    ] {
        let server = Server::start(&sim, quota, 1_000_000);
        let mut client = server.client().await;
        let started = Instant::now();
        stream(&mut client, (0..n).map(move |i| number(offset + i)), |_| {}).await;
        let t = started.elapsed().as_secs_f64();
        println!("| {label} | {t:.2} s | {:.0} |", n as f64 / t);
    }
}

/// A `redis-server` on a free loopback port, stopped on drop.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-server is installed (Debian package redis-server)");
        // It logs to standard output that it accepts connections once it listens.
        let mut log = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = log
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server did not start");
        std::thread::spawn(move || log.for_each(drop));
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn replicas_scenario() {
    const N: u64 = 100_000;
    let sim = sim(Duration::ZERO, Faults::default()).await;
    let redis = Redis::start();
    let hash_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(hash_key.path(), "a-benchmark-hash-key-of-length").unwrap();
    let shared = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}/0\"\nhash_key = {{ file = \"{}\" }}\n",
        redis.1,
        hash_key.path().display()
    );
    let alone = Server::start(&sim, 0, 1_000_000);
    let a = Server::start_with(&sim, 0, 1_000_000, &shared);
    let b = Server::start_with(&sim, 0, 1_000_000, &shared);
    println!(
        "\n## replicas: CheckNumbers of {N} distinct numbers, quota off, simulator latency 0, Redis on loopback"
    );
    println!(
        "| run | elapsed | numbers/s | billable | cache hits | simulator billable (this run) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |name: &str, elapsed: f64, s: &pb::CheckNumbersSummary, billed: u64| {
        println!(
            "| {name} | {elapsed:.1} s | {:.0} | {} | {} | {billed} |",
            s.items_received as f64 / elapsed,
            s.billable_calls,
            s.cache_hits
        );
    };
    let list = |base: u64| (0..N).map(move |i| number(base + i));
    let billed = || sim.stats().vendor("thinksms").billable;
    for (name, server, base) in [
        ("one replica, no Redis", &alone, 4_000_000),
        ("replica A with Redis, new numbers", &a, 5_000_000),
        (
            "replica B with Redis, the numbers A paid for",
            &b,
            5_000_000,
        ),
    ] {
        let before = billed();
        let started = Instant::now();
        let summary = stream(&mut server.client().await, list(base), |_| {}).await;
        row(
            name,
            started.elapsed().as_secs_f64(),
            &summary,
            billed() - before,
        );
    }
    let before = billed();
    let started = Instant::now();
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    let (sa, sb) = tokio::join!(
        stream(&mut ca, list(6_000_000), |_| {}),
        stream(&mut cb, list(6_000_000), |_| {})
    );
    let elapsed = started.elapsed().as_secs_f64();
    let both = pb::CheckNumbersSummary {
        items_received: sa.items_received + sb.items_received,
        billable_calls: sa.billable_calls + sb.billable_calls,
        cache_hits: sa.cache_hits + sb.cache_hits,
        ..Default::default()
    };
    row(
        "A and B at once, one new list",
        elapsed,
        &both,
        billed() - before,
    );
}

/// What holding a tenant's daily budget costs a stream: 100,000 new numbers per run, as the
/// anonymous caller (no budget) and as a tenant whose budget is kept in the store (SQLite); then
/// the same two on a replica sharing state through Redis (answers and single-flight in Redis too),
/// the budget kept in Redis.
async fn budgets_scenario() {
    const N: u64 = 100_000;
    const KEY: &str = "pck_benchmark_tenant_key";
    let sim = sim(Duration::ZERO, Faults::default()).await;
    let redis = Redis::start();
    let hash_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(hash_key.path(), "a-benchmark-hash-key-of-length").unwrap();
    let tenant = format!(
        "[providers.thinksms.prices]\nline_status = \"0.03\"\n\
         [tenants.bench]\nkey_sha256 = [\"{}\"]\ndaily_budget = \"1000000\"\n",
        phonecheck::auth::key_hash(KEY)
    );
    let redis_table = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}/0\"\nhash_key = {{ file = \"{}\" }}\n",
        redis.1,
        hash_key.path().display()
    );
    println!(
        "\n## budgets: CheckNumbers of {N} distinct numbers per run, quota off, simulator latency 0"
    );
    println!("| caller | budget kept in | elapsed | numbers/s | billable |");
    println!("|---|---|---:|---:|---:|");
    let runs = [
        ("anonymous", "nowhere (no budget)", String::new(), None),
        (
            "tenant with daily_budget",
            "the store (SQLite)",
            tenant.clone(),
            Some(KEY),
        ),
        (
            "anonymous, replica on Redis",
            "nowhere (no budget)",
            redis_table.clone(),
            None,
        ),
        (
            "tenant with daily_budget, replica on Redis",
            "Redis",
            format!("{tenant}{redis_table}"),
            Some(KEY),
        ),
    ];
    for (i, (caller, kept, extra, key)) in runs.into_iter().enumerate() {
        let server = Server::start_with(&sim, 0, 1_000_000, &extra);
        let mut client = server.client().await;
        let base = 7_000_000 + i as u64 * N;
        let items = tokio_stream::iter((0..N).map(move |j| pb::CheckNumbersRequest {
            request_id: j.to_string(),
            number: number(base + j),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        }));
        let mut request = tonic::Request::new(items);
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        let started = Instant::now();
        let mut responses = client.check_numbers(request).await.unwrap().into_inner();
        let mut summary = None;
        while let Some(message) = responses.message().await.unwrap() {
            if let Response::Summary(s) = message.response.unwrap() {
                summary = Some(s);
            }
        }
        let t = started.elapsed().as_secs_f64();
        let summary = summary.expect("a summary");
        println!(
            "| {caller} | {kept} | {t:.1} s | {:.0} | {} |",
            N as f64 / t,
            summary.billable_calls
        );
        server.stop();
    }
}

fn main() {
    let _ = phonecheck::providers::http_client();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    println!(
        "phonecheck engine benchmarks; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    runtime.block_on(async {
        if want("lookup") {
            lookup_scenario().await;
        }
        if want("stream") {
            stream_scenario().await;
        }
        if want("quota") {
            quota_scenario().await;
        }
        if want("savings") {
            savings_scenario().await;
        }
        if want("baseline") {
            baseline_scenario().await;
        }
        if want("replicas") {
            replicas_scenario().await;
        }
        if want("budgets") {
            budgets_scenario().await;
        }
    });
}
