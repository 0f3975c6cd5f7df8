//! Wire-faithful simulators of the vendors, served over real HTTP at each vendor's own paths.
//! They check signatures exactly as the vendors do, answer with the vendors' own codes, and derive
//! a stable answer from the number itself (the "magic numbers" in the README select each status).
//!
//! `phonecheck sim` serves them standalone; `phonecheck serve` in sandbox mode runs them
//! in-process on loopback. `GET /_sim/stats` counts calls, numbers and billable calls per vendor.

pub mod thinksms;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::providers::{Clock, SystemClock};

/// The Thinksms account the sandbox simulator knows.
pub const SANDBOX_THINKSMS_HASHCODE: &str = "sandbox0thinksms0hashcode0000000";
/// The Thinksms private key of the sandbox account. Public on purpose: it only opens the simulator.
pub const SANDBOX_THINKSMS_PRIVATE_KEY: &str = "sandbox-thinksms-private-key";

/// A vendor account the simulator accepts.
#[derive(Debug, Clone)]
pub struct ThinksmsAccount {
    /// `hashcode`.
    pub hashcode: String,
    /// The private key it signs with.
    pub private_key: String,
}

/// How the simulators behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The Thinksms account.
    pub thinksms: ThinksmsAccount,
    /// Added to every answer.
    pub latency: Duration,
    /// The simulators' clock (signature dates, timestamp windows).
    pub clock: Arc<dyn Clock>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            thinksms: ThinksmsAccount {
                hashcode: SANDBOX_THINKSMS_HASHCODE.to_owned(),
                private_key: SANDBOX_THINKSMS_PRIVATE_KEY.to_owned(),
            },
            latency: Duration::ZERO,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Counters of one simulated vendor.
#[derive(Debug, Default)]
pub struct VendorCounters {
    calls: AtomicU64,
    numbers: AtomicU64,
    billable: AtomicU64,
}

/// A snapshot of one vendor's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VendorStats {
    /// HTTP calls received.
    pub calls: u64,
    /// Numbers those calls carried.
    pub numbers: u64,
    /// Calls the vendor would bill.
    pub billable: u64,
}

/// Counters of every simulated vendor.
#[derive(Debug, Default)]
pub struct Stats {
    thinksms: VendorCounters,
    arrived: Notify,
}

impl Stats {
    fn record_call(&self, vendor: &VendorCounters, numbers: u64) {
        vendor.calls.fetch_add(1, Ordering::Relaxed);
        vendor.numbers.fetch_add(numbers, Ordering::Relaxed);
        self.arrived.notify_waiters();
    }

    fn record_billable(&self, vendor: &VendorCounters) {
        vendor.billable.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot of every vendor's counters, by vendor name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, VendorStats> {
        let read = |c: &VendorCounters| VendorStats {
            calls: c.calls.load(Ordering::Relaxed),
            numbers: c.numbers.load(Ordering::Relaxed),
            billable: c.billable.load(Ordering::Relaxed),
        };
        BTreeMap::from([("thinksms", read(&self.thinksms))])
    }

    /// Calls received by all vendors together.
    pub fn total_calls(&self) -> u64 {
        self.snapshot().values().map(|s| s.calls).sum()
    }

    /// Waits until all vendors together have received at least `calls` calls.
    pub async fn wait_for_calls(&self, calls: u64) {
        loop {
            let arrived = self.arrived.notified();
            if self.total_calls() >= calls {
                return;
            }
            arrived.await;
        }
    }
}

/// Shared state of the simulators.
#[derive(Debug)]
pub struct SimState {
    config: SimConfig,
    stats: Arc<Stats>,
    sequence: AtomicU64,
}

impl SimState {
    /// A vendor-style unique id for a response.
    fn next_id(&self) -> u64 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        328_176_434_679_906_304 + n
    }

    async fn delay(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }
}

/// The simulators' HTTP routes.
pub fn router(config: SimConfig) -> (Router, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let state = Arc::new(SimState {
        config,
        stats: stats.clone(),
        sequence: AtomicU64::new(0),
    });
    let router = Router::new()
        .route(crate::providers::thinksms::PATH, post(thinksms::handle))
        .route("/_sim/stats", get(stats_handler))
        .with_state(state);
    (router, stats)
}

async fn stats_handler(
    State(state): State<Arc<SimState>>,
) -> axum::Json<BTreeMap<&'static str, VendorStats>> {
    axum::Json(state.stats.snapshot())
}

/// A running simulator.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    /// Serves the simulators on `listener` until [`SimServer::shutdown`] or drop.
    pub fn spawn(listener: TcpListener, config: SimConfig) -> std::io::Result<SimServer> {
        let addr = listener.local_addr()?;
        let (router, stats) = router(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(SimServer {
            addr,
            stats,
            stop: Some(stop),
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops serving and waits for open connections to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
