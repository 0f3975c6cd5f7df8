//! What the benches share: `phonecheck serve` as a child process in front of a simulator, and
//! its memory read from /proc. Each bench includes this module (`mod support;`).

#![allow(dead_code)] // each bench uses part of it

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::sim::SimServer;
use tonic::transport::Channel;

/// The server binaries to measure, named: another build's first when
/// `PHONECHECK_BENCH_BASELINE` names it (to compare side by side in one run), then this build's.
pub fn server_binaries() -> Vec<(String, std::path::PathBuf)> {
    let mut servers = Vec::new();
    if let Ok(baseline) = std::env::var("PHONECHECK_BENCH_BASELINE") {
        servers.push(("baseline".to_owned(), baseline.into()));
    }
    servers.push((
        "this build".to_owned(),
        env!("CARGO_BIN_EXE_phonecheck").into(),
    ));
    servers
}

/// The server as a child process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    _dir: Arc<tempfile::TempDir>,
}

impl Server {
    /// Starts `phonecheck serve` against `sim`, Thinksms limited to `quota` calls/s (0: off).
    pub fn start(sim: &SimServer, quota: u32, cache_entries: u64) -> Server {
        Self::start_with(sim, quota, cache_entries, "")
    }

    /// Like `start`, with more configuration (TOML tables) after the rest.
    pub fn start_with(sim: &SimServer, quota: u32, cache_entries: u64, extra: &str) -> Server {
        let cache = format!("max_entries = {cache_entries}");
        Self::start_in(
            Arc::new(tempfile::tempdir().unwrap()),
            sim,
            quota,
            &cache,
            extra,
        )
    }

    /// Starts a server with its state in `dir` (a second start finds the first one's answers),
    /// `cache` the `[cache]` table's lines (empty: the defaults).
    pub fn start_in(
        dir: Arc<tempfile::TempDir>,
        sim: &SimServer,
        quota: u32,
        cache: &str,
        extra: &str,
    ) -> Server {
        Self::start_bin(
            std::path::Path::new(env!("CARGO_BIN_EXE_phonecheck")),
            dir,
            sim,
            quota,
            cache,
            extra,
        )
    }

    /// Like `start_in`, running the server binary `bin` (another build of phonecheck, to
    /// compare with).
    pub fn start_bin(
        bin: &std::path::Path,
        dir: Arc<tempfile::TempDir>,
        sim: &SimServer,
        quota: u32,
        cache: &str,
        extra: &str,
    ) -> Server {
        let key = dir.path().join("thinksms.key");
        std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
        let config = dir.path().join("phonecheck.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                [storage]
                data_dir = "{data}"
                [cache]
                {cache}
                [providers.thinksms]
                type = "thinksms"
                base_url = "{base}"
                hashcode = "{hashcode}"
                private_key = {{ file = "{key}" }}
                limits = {{ quota = {{ requests_per_second = {quota}, burst = 1 }}, concurrency = 256 }}
                {extra}
                "#,
                data = dir.path().join("data").display(),
                base = sim.base_url(),
                hashcode = phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
                key = key.display(),
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_owned();
        Server {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Stops the server as a deployment does (SIGTERM, then waits for it to exit).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub async fn client(&self) -> PhoneCheckServiceClient<Channel> {
        PhoneCheckServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// (current RSS, peak RSS) in MiB.
    pub fn rss(&self) -> (f64, f64) {
        rss_of(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (current RSS, peak RSS) of process `pid` in MiB.
pub fn rss_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
