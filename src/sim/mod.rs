//! Wire-faithful simulators of the vendors, served over real HTTP at each vendor's own paths.
//! They check signatures exactly as the vendors do, answer with the vendors' own codes, and derive
//! a stable answer from the number itself (the "magic numbers" in the README select each status).
//!
//! `phonecheck sim` serves them standalone; `phonecheck serve` in sandbox mode runs them
//! in-process on loopback. `GET /_sim/stats` counts calls, numbers and billable calls per vendor.

pub mod aliyun;
pub mod caih;
pub mod faults;
pub mod thinksms;
pub mod tongdun;
pub mod yidun;

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

use crate::providers::signing::SignatureMethod;
use crate::providers::{Clock, SystemClock};

/// The Thinksms account the sandbox simulator knows.
pub const SANDBOX_THINKSMS_HASHCODE: &str = "sandbox0thinksms0hashcode0000000";
/// The Thinksms private key of the sandbox account. Public on purpose: it only opens the simulator.
pub const SANDBOX_THINKSMS_PRIVATE_KEY: &str = "sandbox-thinksms-private-key";

/// The Aliyun AccessKey id of the sandbox.
pub const SANDBOX_ALIYUN_ACCESS_KEY_ID: &str = "LTAI5tSandboxAliyunAccessKey";
/// The Aliyun AccessKey secret of the sandbox. Public on purpose: it only opens the simulator.
pub const SANDBOX_ALIYUN_ACCESS_KEY_SECRET: &str = "sandbox-aliyun-access-key-secret";
/// The 号码百科 authorization code (`AuthCode`) of the sandbox.
pub const SANDBOX_ALIYUN_AUTH_CODE: &str = "sandbox-aliyun-auth-code";

/// The caih account of the sandbox.
pub const SANDBOX_CAIH_USER_KEY: &str = "5a1db0c0sandbox0caih0userkey0001";
/// The caih app id of the sandbox.
pub const SANDBOX_CAIH_APP_ID: &str = "5a1db0c0sandbox0caih00appid00001";
/// The caih secret key of the sandbox.
pub const SANDBOX_CAIH_SECRET_KEY: &str = "sandbox-caih-secret-key";
/// The TongDun partner code of the sandbox.
pub const SANDBOX_TONGDUN_PARTNER_CODE: &str = "sandbox_partner";
/// The TongDun partner key of the sandbox.
pub const SANDBOX_TONGDUN_PARTNER_KEY: &str = "sandbox-tongdun-partner-key";
/// The Yidun secret id of the sandbox.
pub const SANDBOX_YIDUN_SECRET_ID: &str = "sandbox0yidun0secret0id000000001";
/// The Yidun business id of the sandbox.
pub const SANDBOX_YIDUN_BUSINESS_ID: &str = "sandbox0yidun0business0id0000001";
/// The Yidun secret key of the sandbox.
pub const SANDBOX_YIDUN_SECRET_KEY: &str = "sandbox-yidun-secret-key";

/// The providers of the sandbox, by name, in the order the engine is given them (so the default
/// route of line status is Thinksms, then Aliyun), with the check each serves.
pub const SANDBOX_PROVIDERS: [(&str, crate::domain::Check); 5] = [
    ("thinksms", crate::domain::Check::LineStatus),
    ("aliyun", crate::domain::Check::LineStatus),
    ("caih", crate::domain::Check::SpamLabels),
    ("tongdun", crate::domain::Check::AccountPresence),
    ("yidun", crate::domain::Check::RiskProfile),
];

/// What the sandbox's providers charge per billed call, by name, in the billing currency: made-up
/// prices of the vendors' order of magnitude, so that the sandbox shows costs, estimates and
/// budgets in money. A real deployment writes its contract's prices in `[providers.NAME.prices]`.
pub const SANDBOX_PRICES: [(&str, &str); 5] = [
    ("thinksms", "0.03"),
    ("aliyun", "0.04"),
    ("caih", "0.05"),
    ("tongdun", "0.30"),
    ("yidun", "0.10"),
];

/// A Thinksms account the simulator accepts.
#[derive(Debug, Clone)]
pub struct ThinksmsAccount {
    /// `hashcode`.
    pub hashcode: String,
    /// The private key it signs with.
    pub private_key: String,
}

/// An Aliyun account the simulator accepts.
#[derive(Debug, Clone)]
pub struct AliyunAccount {
    /// The AccessKey id.
    pub access_key_id: String,
    /// The AccessKey secret.
    pub access_key_secret: String,
    /// The approved application's `AuthCode`.
    pub auth_code: String,
}

/// A caih account the simulator accepts.
#[derive(Debug, Clone)]
pub struct CaihAccount {
    /// `userkey`.
    pub user_key: String,
    /// `appid`.
    pub app_id: String,
    /// The secret key.
    pub secret_key: String,
}

/// A TongDun account the simulator accepts.
#[derive(Debug, Clone)]
pub struct TongdunAccount {
    /// `partner_code`.
    pub partner_code: String,
    /// `partner_key`.
    pub partner_key: String,
}

/// A Yidun account the simulator accepts.
#[derive(Debug, Clone)]
pub struct YidunAccount {
    /// `secretId`.
    pub secret_id: String,
    /// `businessId`.
    pub business_id: String,
    /// The secret key.
    pub secret_key: String,
}

/// How the simulators behave.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The Thinksms account.
    pub thinksms: ThinksmsAccount,
    /// Further Thinksms accounts the simulator accepts (routes spread over several accounts).
    /// Each account has its own quota ([`faults::Faults::quota_per_second`]), as at the vendor.
    pub thinksms_accounts: Vec<ThinksmsAccount>,
    /// The Aliyun account.
    pub aliyun: AliyunAccount,
    /// The caih account.
    pub caih: CaihAccount,
    /// The TongDun account.
    pub tongdun: TongdunAccount,
    /// The Yidun account.
    pub yidun: YidunAccount,
    /// How long caih takes to label an added number (about two hours in real life).
    pub caih_label_delay: Duration,
    /// Added to every answer.
    pub latency: Duration,
    /// Injected faults.
    pub faults: faults::Faults,
    /// The simulators' clock (signature dates, timestamp windows).
    pub clock: Arc<dyn Clock>,
    /// The simulated world's day: Thinksms answers a number by a hash of the number and this,
    /// so moving it on changes some numbers' line status as days do (numbers go empty, come
    /// back). Shared, so that a test can move it on while the simulator runs.
    pub answer_epoch: Arc<AtomicU64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            thinksms: ThinksmsAccount {
                hashcode: SANDBOX_THINKSMS_HASHCODE.to_owned(),
                private_key: SANDBOX_THINKSMS_PRIVATE_KEY.to_owned(),
            },
            thinksms_accounts: Vec::new(),
            aliyun: AliyunAccount {
                access_key_id: SANDBOX_ALIYUN_ACCESS_KEY_ID.to_owned(),
                access_key_secret: SANDBOX_ALIYUN_ACCESS_KEY_SECRET.to_owned(),
                auth_code: SANDBOX_ALIYUN_AUTH_CODE.to_owned(),
            },
            caih: CaihAccount {
                user_key: SANDBOX_CAIH_USER_KEY.to_owned(),
                app_id: SANDBOX_CAIH_APP_ID.to_owned(),
                secret_key: SANDBOX_CAIH_SECRET_KEY.to_owned(),
            },
            tongdun: TongdunAccount {
                partner_code: SANDBOX_TONGDUN_PARTNER_CODE.to_owned(),
                partner_key: SANDBOX_TONGDUN_PARTNER_KEY.to_owned(),
            },
            yidun: YidunAccount {
                secret_id: SANDBOX_YIDUN_SECRET_ID.to_owned(),
                business_id: SANDBOX_YIDUN_BUSINESS_ID.to_owned(),
                secret_key: SANDBOX_YIDUN_SECRET_KEY.to_owned(),
            },
            caih_label_delay: Duration::from_secs(10),
            latency: Duration::ZERO,
            faults: faults::Faults::default(),
            clock: Arc::new(SystemClock),
            answer_epoch: Arc::default(),
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

/// The vendors the simulator plays, by the name their counters go under.
const SIMULATED_VENDORS: [&str; 5] = ["aliyun", "caih", "thinksms", "tongdun", "yidun"];

/// Counters of every simulated vendor, by vendor name.
#[derive(Debug)]
pub struct Stats {
    vendors: BTreeMap<&'static str, VendorCounters>,
    changed: Notify,
    gate: Gate,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            vendors: SIMULATED_VENDORS
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
    pub(crate) async fn pass_gate(&self) {
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

    fn record_call(&self, vendor: &VendorCounters, numbers: u64) {
        vendor.calls.fetch_add(1, Ordering::Relaxed);
        vendor.numbers.fetch_add(numbers, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn record_billable(&self, vendor: &VendorCounters) {
        vendor.billable.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn record_over_limit(&self, vendor: &VendorCounters) {
        vendor.over_limit.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// The counters of `vendor`, one of the simulated vendors (a name that is not is a bug in
    /// the simulator, never counted as another vendor's).
    fn counters(&self, vendor: &str) -> &VendorCounters {
        self.vendors
            .get(vendor)
            .unwrap_or_else(|| panic!("the simulator plays no vendor named {vendor:?}"))
    }

    fn record_ready(&self, vendor: &VendorCounters, numbers: u64) {
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

/// Shared state of the simulators.
#[derive(Debug)]
pub struct SimState {
    config: SimConfig,
    stats: Arc<Stats>,
    sequence: AtomicU64,
    caih: caih::CaihState,
    yidun: yidun::YidunState,
    aliyun: aliyun::AliyunState,
    windows: faults::Windows,
    draws: faults::Draws,
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

/// A stable number in 0..100 derived from a number: the simulators' answers follow it.
pub(crate) fn bucket(number: &str) -> u8 {
    let digest = SignatureMethod::Md5.hex_digest(number.as_bytes());
    let value = u16::from_str_radix(&digest[..4], 16).unwrap_or(0);
    (value % 100) as u8
}

/// The last four digits, which select the magic answers.
pub(crate) fn suffix(number: &str) -> &str {
    &number[number.len().saturating_sub(4)..]
}

/// The simulators' HTTP routes.
pub fn router(config: SimConfig) -> (Router, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let draws = faults::Draws::new(&config.faults);
    let state = Arc::new(SimState {
        draws,
        config,
        stats: stats.clone(),
        sequence: AtomicU64::new(0),
        caih: caih::CaihState::default(),
        yidun: yidun::YidunState::default(),
        aliyun: aliyun::AliyunState::default(),
        windows: faults::Windows::default(),
    });
    let tongdun_path = crate::providers::tongdun::PATH;
    let router = Router::new()
        .route(crate::providers::thinksms::PATH, post(thinksms::handle))
        .route(crate::providers::caih::ADD_PATH, post(caih::add))
        .route(crate::providers::caih::SEARCH_PATH, post(caih::search))
        .route(tongdun_path, post(tongdun::handle))
        .route(
            &format!("/{{node}}{tongdun_path}"),
            post(tongdun::handle_node),
        )
        .route(crate::providers::yidun::PATH, post(yidun::handle))
        .route(
            crate::providers::aliyun::PATH,
            post(aliyun::handle).get(aliyun::handle),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            faults::inject,
        ))
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
        let stats = Stats::default();
        stats.record_billable(stats.counters("yidun"));
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot.keys().copied().collect::<Vec<_>>(),
            SIMULATED_VENDORS
        );
        assert_eq!(snapshot["yidun"].billable, 1);
        assert_eq!(snapshot["thinksms"].billable, 0);
    }

    #[test]
    #[should_panic(expected = "no vendor named")]
    fn an_unknown_vendor_is_never_counted_as_another() {
        Stats::default().counters("newvendor");
    }
}
