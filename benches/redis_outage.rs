//! How long a new number's lookup takes while Redis is away: the release server with `[redis]`
//! configured (`timeout = "500ms"`, the default) and Thinksms limited to 100 calls/s, one number
//! looked up with Redis running, then Redis killed and new numbers looked up one after another.
//!
//!     cargo bench --bench redis_outage
//!     PHONECHECK_BENCH_BASELINE=/path/to/old/phonecheck cargo bench --bench redis_outage
//!
//! With `PHONECHECK_BENCH_BASELINE` (another build's binary) the same steps run against it first,
//! in the same run. Needs `redis-server` on the PATH (Debian's `redis-server`).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use tokio::net::TcpListener;

mod support;
use support::Server;

/// New numbers looked up after Redis is gone (the old build took about 28 s each).
const LOOKUPS: u64 = 3;

/// A `redis-server` on a free loopback port, killed on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on the PATH (Debian package redis-server)");
        let mut log = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = log
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("Ready to accept connections"));
        assert!(ready, "redis-server did not start");
        std::thread::spawn(move || log.for_each(drop));
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One lookup of `number`'s line status: how long it took and the outcome's state (or the
/// RPC's error code).
async fn lookup(server: &Server, number: String) -> (Duration, String) {
    let mut client = server.client().await;
    let request = pb::LookupNumberRequest {
        number,
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    };
    let started = Instant::now();
    let answer = client.lookup_number(request).await;
    let took = started.elapsed();
    let state = match answer {
        Ok(response) => response
            .into_inner()
            .report
            .and_then(|r| r.outcomes.first().map(|o| format!("{:?}", o.state())))
            .unwrap_or_default(),
        Err(status) => format!("{:?}", status.code()),
    };
    (took, state)
}

async fn measure(sim: &SimServer, bin: &std::path::Path, index: u64) {
    let redis = Redis::start();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let hash_key = dir.path().join("redis-hash.key");
    std::fs::write(&hash_key, "replicas-share-this-hash-key").unwrap();
    let extra = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}/0\"\nhash_key = {{ file = \"{}\" }}\ntimeout = \"500ms\"",
        redis.port,
        hash_key.display()
    );
    let server = Server::start_bin(bin, dir, sim, 100, "", &extra);
    // Distinct numbers per server, none of the simulator's magic ones.
    let number = |n: u64| format!("1390{index}00{:04}", 1_000 + n);
    let (took, state) = lookup(&server, number(0)).await;
    println!("  Redis running:   {:>9.3} s  {state}", took.as_secs_f64());
    drop(redis);
    for n in 1..=LOOKUPS {
        let (took, state) = lookup(&server, number(n)).await;
        println!(
            "  Redis gone, #{n}:  {:>9.3} s  {state}",
            took.as_secs_f64()
        );
    }
    let (took, state) = lookup(&server, number(0)).await;
    println!(
        "  Redis gone, the first number again: {:.3} s  {state}",
        took.as_secs_f64()
    );
}

fn main() {
    let servers = support::server_binaries();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = phonecheck::vendors::simulator(listener, SimConfig::default()).unwrap();
        for (index, (name, bin)) in (0u64..).zip(&servers) {
            println!("\n== {name}: {}", bin.display());
            measure(&sim, bin, index).await;
        }
        sim.shutdown().await.unwrap();
    });
}
