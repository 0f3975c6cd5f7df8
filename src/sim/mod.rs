//! The simulators' common ground: what every simulated vendor shares (its counters, the gate
//! that holds calls, injected faults, the simulated latency and clock, extra accounts) and the
//! HTTP server they run in. Each vendor's simulator lives in its vendor's folder
//! (`crate::vendors`), which assembles them; nothing here names a vendor.
//!
//! `phonecheck sim` serves them standalone; `phonecheck serve` in sandbox mode runs them
//! in-process on loopback. `GET /_sim/stats` counts calls, numbers and billable calls per vendor.

pub mod faults;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::providers::signing::SignatureMethod;

/// One more account a simulated vendor accepts beside its sandbox account: `id` is the vendor's
/// account id (Thinksms' `hashcode`, an AccessKey id, ...) and `secret` its key; the account's
/// other fields are the sandbox account's. Each account has its own quota
/// ([`faults::Faults::quota_per_second`]), as at the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimAccount {
    /// The vendor's name (`type` in `[providers.NAME]`).
    pub vendor: String,
    /// The account id.
    pub id: String,
    /// The account's key.
    pub secret: String,
}

/// An account a simulated vendor accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account id (Thinksms' `hashcode`, an AccessKey id, caih's `userkey`, ...).
    pub id: String,
    /// The key it signs with (or sends, for TongDun).
    pub secret: String,
    /// Its second identifier, where the vendor has one (Aliyun's `AuthCode`, caih's `appid`,
    /// Yidun's `businessId`); empty otherwise.
    pub scope: String,
}

impl Account {
    /// An account.
    pub fn new(id: &str, secret: &str, scope: &str) -> Account {
        Account {
            id: id.to_owned(),
            secret: secret.to_owned(),
            scope: scope.to_owned(),
        }
    }

    /// The account among `accounts` with this id and scope.
    pub fn find<'a>(accounts: &'a [Account], id: &str, scope: &str) -> Option<&'a Account> {
        accounts.iter().find(|a| a.id == id && a.scope == scope)
    }
}

/// How the simulators behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Further accounts the simulated vendors accept (routes spread over several accounts).
    pub extra_accounts: Vec<SimAccount>,
    /// How long an asynchronous vendor takes to finish a submitted number (caller-ID labels take
    /// about two hours in real life).
    pub async_delay: Duration,
    /// Added to every answer.
    pub latency: Duration,
    /// Injected faults.
    pub faults: faults::Faults,
    /// The simulators' clock (signature dates, timestamp windows).
    pub clock: Arc<dyn Clock>,
    /// The simulated world's day: a line-status simulator answers a number by a hash of the
    /// number and this, so moving it on changes some numbers' line status as days do (numbers go
    /// empty, come back). Shared, so that a test can move it on while the simulator runs.
    pub answer_epoch: Arc<AtomicU64>,
    /// How long a vendor that refuses repeated queries of one number (a carrier's per-number
    /// frequency limit) refuses them for, per action; `None`: each such vendor's own window;
    /// zero: it never refuses.
    pub repeat_window: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            extra_accounts: Vec::new(),
            async_delay: Duration::from_secs(10),
            latency: Duration::ZERO,
            faults: faults::Faults::default(),
            clock: Arc::new(SystemClock),
            answer_epoch: Arc::default(),
            repeat_window: None,
        }
    }
}

/// Counters of one simulated vendor.
#[derive(Debug, Default)]
pub struct VendorCounters {
    calls: AtomicU64,
    numbers: AtomicU64,
    billable: AtomicU64,
    ready: AtomicU64,
    over_limit: AtomicU64,
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
    /// Numbers an asynchronous vendor finished (caih labelled).
    pub ready: u64,
    /// Calls answered "over limit" because the simulator's quota was exceeded.
    pub over_limit: u64,
}

/// Counters of every simulated vendor, by vendor name.
#[derive(Debug)]
pub struct Stats {
    vendors: BTreeMap<&'static str, VendorCounters>,
    changed: Notify,
    gate: Gate,
}

impl Stats {
    /// Counters for the vendors named.
    pub fn new(vendors: impl IntoIterator<Item = &'static str>) -> Stats {
        Stats {
            vendors: vendors
                .into_iter()
                .map(|name| (name, VendorCounters::default()))
                .collect(),
            changed: Notify::default(),
            gate: Gate::default(),
        }
    }
}

/// Holds every vendor call at the door while closed (tests: to kill a client while its calls
/// are provably unanswered and unbilled).
#[derive(Debug)]
struct Gate {
    closed: tokio::sync::watch::Sender<bool>,
    held: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            closed: tokio::sync::watch::Sender::new(false),
            held: AtomicU64::new(0),
        }
    }
}

/// Counts a held call until it passes the gate or is dropped (its client went away).
struct Held<'a>(&'a Stats);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.gate.held.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

impl Stats {
    /// Closes (true) or opens the gate: while closed, vendor calls wait before any processing
    /// or billing; a call whose client disconnects meanwhile is never processed.
    pub fn hold(&self, closed: bool) {
        self.gate.closed.send_replace(closed);
    }

    /// Calls waiting at the closed gate.
    pub fn held(&self) -> u64 {
        self.gate.held.load(Ordering::SeqCst)
    }

    /// Waits at the gate while it is closed.
    pub async fn pass_gate(&self) {
        let mut closed = self.gate.closed.subscribe();
        if !*closed.borrow() {
            return;
        }
        self.gate.held.fetch_add(1, Ordering::SeqCst);
        let _held = Held(self);
        self.changed.notify_waiters();
        let _ = closed.wait_for(|closed| !closed).await;
    }

    /// Waits until the number of calls held at the gate satisfies `done` (for at most
    /// [`Stats::WAIT_LIMIT`]).
    pub async fn wait_for_held(&self, done: impl Fn(u64) -> bool) {
        self.wait(
            || done(self.held()),
            || format!("calls held at the gate: {}", self.held()),
        )
        .await;
    }

    pub fn record_call(&self, vendor: &VendorCounters, numbers: u64) {
        vendor.calls.fetch_add(1, Ordering::Relaxed);
        vendor.numbers.fetch_add(numbers, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn record_billable(&self, vendor: &VendorCounters) {
        vendor.billable.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    pub fn record_over_limit(&self, vendor: &VendorCounters) {
        vendor.over_limit.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// The counters of `vendor`, one of the simulated vendors (a name that is not is a bug in
    /// the simulator, never counted as another vendor's).
    pub fn counters(&self, vendor: &str) -> &VendorCounters {
        self.vendors
            .get(vendor)
            .unwrap_or_else(|| panic!("the simulator plays no vendor named {vendor:?}"))
    }

    pub fn record_ready(&self, vendor: &VendorCounters, numbers: u64) {
        vendor.ready.fetch_add(numbers, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// A snapshot of every vendor's counters, by vendor name.
    pub fn snapshot(&self) -> BTreeMap<&'static str, VendorStats> {
        let read = |c: &VendorCounters| VendorStats {
            calls: c.calls.load(Ordering::Relaxed),
            numbers: c.numbers.load(Ordering::Relaxed),
            billable: c.billable.load(Ordering::Relaxed),
            ready: c.ready.load(Ordering::Relaxed),
            over_limit: c.over_limit.load(Ordering::Relaxed),
        };
        self.vendors
            .iter()
            .map(|(name, counters)| (*name, read(counters)))
            .collect()
    }

    /// One vendor's counters.
    pub fn vendor(&self, vendor: &str) -> VendorStats {
        self.snapshot().get(vendor).copied().unwrap_or_default()
    }

    /// Calls received by all vendors together.
    pub fn total_calls(&self) -> u64 {
        self.snapshot().values().map(|s| s.calls).sum()
    }

    /// Waits until all vendors together have received at least `calls` calls.
    pub async fn wait_for_calls(&self, calls: u64) {
        self.wait_until(|s| s.values().map(|v| v.calls).sum::<u64>() >= calls)
            .await;
    }

    /// Waits until the counters satisfy `done`, for at most [`Stats::WAIT_LIMIT`]; panics with
    /// the counters after that, so that a test waiting on the simulator can never hang.
    pub async fn wait_until(&self, done: impl Fn(&BTreeMap<&'static str, VendorStats>) -> bool) {
        self.wait(
            || done(&self.snapshot()),
            || format!("counters: {:?}", self.snapshot()),
        )
        .await;
    }

    /// Waits until `done` holds, re-checking whenever a counter changes; panics after
    /// [`Stats::WAIT_LIMIT`] with `state`.
    async fn wait(&self, done: impl Fn() -> bool, state: impl Fn() -> String) {
        let waiting = async {
            loop {
                let changed = self.changed.notified();
                if done() {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(Self::WAIT_LIMIT, waiting)
            .await
            .is_err()
        {
            panic!(
                "the simulators did not get there in {:?}; {}",
                Self::WAIT_LIMIT,
                state()
            );
        }
    }

    /// The longest [`Stats::wait_until`] waits.
    pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
}

/// What every simulated vendor shares.
#[derive(Debug)]
pub struct SimState {
    /// How the simulators behave.
    pub config: SimConfig,
    /// The counters.
    pub stats: Arc<Stats>,
    sequence: AtomicU64,
    windows: faults::Windows,
    draws: faults::Draws,
}

impl SimState {
    /// The state of simulators of the vendors named.
    pub fn new(config: SimConfig, vendors: impl IntoIterator<Item = &'static str>) -> SimState {
        SimState {
            draws: faults::Draws::new(&config.faults),
            config,
            stats: Arc::new(Stats::new(vendors)),
            sequence: AtomicU64::new(0),
            windows: faults::Windows::default(),
        }
    }

    /// A vendor-style unique id for a response.
    pub fn next_id(&self) -> u64 {
        let n = self.sequence.fetch_add(1, Ordering::Relaxed);
        328_176_434_679_906_304 + n
    }

    /// Waits the simulated latency.
    pub async fn delay(&self) {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
    }

    /// The accounts `vendor`'s simulator accepts: `sandbox`, then its extra accounts (with the
    /// sandbox account's scope).
    pub fn accounts(&self, vendor: &str, sandbox: Account) -> Vec<Account> {
        let extras: Vec<Account> = self
            .config
            .extra_accounts
            .iter()
            .filter(|a| a.vendor == vendor)
            .map(|a| Account::new(&a.id, &a.secret, &sandbox.scope))
            .collect();
        std::iter::once(sandbox).chain(extras).collect()
    }
}

/// One simulated vendor's state: what all share, and its own.
#[derive(Debug)]
pub struct VendorSim<T> {
    /// What every simulated vendor shares.
    pub common: Arc<SimState>,
    /// The vendor's own state (its accounts, submissions, ...).
    pub own: T,
}

impl<T> std::ops::Deref for VendorSim<T> {
    type Target = SimState;

    fn deref(&self) -> &SimState {
        &self.common
    }
}

/// A stable number in 0..100 derived from a number: the simulators' answers follow it.
pub fn bucket(number: &str) -> u8 {
    let digest = SignatureMethod::Md5.hex_digest(number.as_bytes());
    let value = u16::from_str_radix(&digest[..4], 16).unwrap_or(0);
    (value % 100) as u8
}

/// The last four digits, which select the magic answers.
pub fn suffix(number: &str) -> &str {
    &number[number.len().saturating_sub(4)..]
}

/// One simulated vendor's routes, with what the fault injector needs to know of it.
#[derive(Debug)]
pub struct SimRoutes {
    /// The vendor's paths, with their state.
    pub router: Router,
    /// Its over-limit answer and how its calls name their account.
    pub faults: faults::VendorFaults,
    /// The paths it serves, as `phonecheck sim` lists them.
    pub paths: Vec<String>,
}

/// The simulators' HTTP server: each vendor's routes behind the fault injector, and
/// `/_sim/stats`.
pub fn router(state: &Arc<SimState>, vendors: Vec<SimRoutes>) -> Router {
    let mut router = Router::new();
    for vendor in vendors {
        router = router.merge(
            vendor
                .router
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::new(faults::Guard::new(state.clone(), vendor.faults)),
                    faults::inject,
                )),
        );
    }
    router.merge(
        Router::new()
            .route("/_sim/stats", get(stats_handler))
            .with_state(state.stats.clone()),
    )
}

async fn stats_handler(
    State(stats): State<Arc<Stats>>,
) -> axum::Json<BTreeMap<&'static str, VendorStats>> {
    axum::Json(stats.snapshot())
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
    /// Serves `router` on `listener` until [`SimServer::shutdown`] or drop; `stats` are its
    /// counters.
    pub fn spawn(
        listener: TcpListener,
        router: Router,
        stats: Arc<Stats>,
    ) -> std::io::Result<SimServer> {
        let addr = listener.local_addr()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vendor_counts_under_its_own_name() {
        let stats = Stats::new(["a", "b", "c"]);
        stats.record_billable(stats.counters("c"));
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot.keys().copied().collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!(snapshot["c"].billable, 1);
        assert_eq!(snapshot["a"].billable, 0);
    }

    #[test]
    #[should_panic(expected = "no vendor named")]
    fn an_unknown_vendor_is_never_counted_as_another() {
        Stats::new(["a"]).counters("newvendor");
    }
}
