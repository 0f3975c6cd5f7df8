//! The web console: file jobs, usage and single lookups for people without a terminal, served by
//! `phonecheck serve` itself on its own listener (`[console] listen`; the sandbox serves it on a
//! printed loopback address).
//!
//! The console is a layer above the gRPC services and adds no business logic: every page is a
//! call of the server's own `BatchJobService`, `UsageService` or `PhoneCheckService`, made
//! in-process through the same auth layer as a network client's, with the signed-in tenant's API
//! key as its `authorization` metadata ([`backend`]). Tenant isolation, rates, concurrency
//! places, budgets, `max_cost` and the bounded importer therefore apply exactly as for any
//! client, and an upload streams chunk by chunk into `CreateBatchJob`.
//!
//! Pages are server-rendered askama templates (every value escaped) with one small embedded
//! JavaScript file and one stylesheet; nothing is fetched from outside. Sessions live in memory
//! ([`session`]); the browser holds only a random session id in an `HttpOnly`, `SameSite=Strict`
//! cookie. [`guard`] adds the security headers, the CSRF and origin checks and the rate limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::{info, warn};

pub mod backend;
mod connections;
pub mod guard;
pub mod i18n;
mod jobs;
mod pages;
pub mod session;
mod upload;
mod usage;
mod view;

pub use backend::Backend;

/// `[console]`: the web console.
///
/// ```toml
/// [console]
/// listen = "127.0.0.1:8080"     # off when absent (the sandbox serves it on 127.0.0.1, a free port)
/// session_ttl = "8h"            # a session ends this long after sign-in
/// # secure_cookie = true        # default: true when [server.tls] is set
/// max_sessions = 10000
/// max_sessions_per_key = 100    # past it the key's own session closest to its end is dropped
/// requests_per_minute = 600     # per session
/// sign_ins_per_minute = 10      # per client address
/// max_connections = 1024        # open at once; past it a new one is closed at once
/// max_connections_per_address = 128  # from one client address (a proxy counts as one)
/// first_request_timeout = "10s" # a connection that has begun no request by then is closed
/// idle_timeout = "60s"          # one with no request in flight for this long is closed
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address to serve the console on; off when absent, except in sandbox mode, where it is
    /// served on 127.0.0.1 at a free port (printed at start).
    #[serde(default)]
    pub listen: Option<String>,
    /// How long a session lasts after sign-in.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Marks the session cookie `Secure` (sent over HTTPS only). Unset: when `[server.tls]` is
    /// set (the console is then served over TLS with the same certificate).
    #[serde(default)]
    pub secure_cookie: Option<bool>,
    /// Sessions held at once; past it the session closest to its end is dropped.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Sessions one API key holds at once; past it that key's session closest to its end is
    /// dropped, so that signing in again and again ends no one else's session.
    #[serde(default = "default_max_sessions_per_key")]
    pub max_sessions_per_key: usize,
    /// Requests one session may make per minute (bursts up to a tenth of it); past it, 429.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
    /// Sign-in attempts (and other requests without a session) one client address may make per
    /// minute; past it, 429.
    #[serde(default = "default_sign_ins_per_minute")]
    pub sign_ins_per_minute: u32,
    /// Connections open at once; past it a new one is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections one client address may hold at once; past it a new one is closed as soon as
    /// it is accepted. Behind a reverse proxy every user is the proxy's address.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// A connection that has not begun a request this long after it was accepted (TLS
    /// handshake included) is closed.
    #[serde(default = "default_first_request_timeout", with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_max_sessions() -> usize {
    10_000
}

fn default_max_sessions_per_key() -> usize {
    100
}

fn default_requests_per_minute() -> u32 {
    600
}

fn default_sign_ins_per_minute() -> u32 {
    10
}

fn default_max_connections() -> usize {
    1_024
}

fn default_max_connections_per_address() -> usize {
    128
}

fn default_first_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: None,
            session_ttl: default_ttl(),
            secure_cookie: None,
            max_sessions: default_max_sessions(),
            max_sessions_per_key: default_max_sessions_per_key(),
            requests_per_minute: default_requests_per_minute(),
            sign_ins_per_minute: default_sign_ins_per_minute(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            first_request_timeout: default_first_request_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl ConsoleConfig {
    /// What is wrong with this section, for `Config::validate`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(listen) = &self.listen
            && listen.parse::<SocketAddr>().is_err()
        {
            problems.push(format!(
                "console.listen: {listen:?} is not an IP address with a port"
            ));
        }
        if self.session_ttl < Duration::from_secs(1)
            || self.session_ttl > Duration::from_secs(7 * 86_400)
        {
            problems.push("console.session_ttl must be between 1s and 7days".to_owned());
        }
        if self.max_sessions == 0 || self.max_sessions > 1_000_000 {
            problems.push("console.max_sessions must be between 1 and 1000000".to_owned());
        }
        if self.max_sessions_per_key == 0 || self.max_sessions_per_key > self.max_sessions {
            problems.push(
                "console.max_sessions_per_key must be between 1 and console.max_sessions"
                    .to_owned(),
            );
        }
        if self.requests_per_minute == 0 {
            problems.push("console.requests_per_minute must be at least 1".to_owned());
        }
        if self.sign_ins_per_minute == 0 {
            problems.push("console.sign_ins_per_minute must be at least 1".to_owned());
        }
        if self.max_connections == 0 || self.max_connections > 65_536 {
            problems.push("console.max_connections must be between 1 and 65536".to_owned());
        }
        if self.max_connections_per_address == 0 {
            problems.push("console.max_connections_per_address must be at least 1".to_owned());
        }
        for (name, timeout) in [
            ("first_request_timeout", self.first_request_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(3600) {
                problems.push(format!("console.{name} must be between 100ms and 1h"));
            }
        }
        problems
    }

    /// The address to bind: `listen`, or in sandbox mode a free loopback port; none: off.
    pub fn address(&self, sandbox: bool) -> Option<String> {
        match &self.listen {
            Some(listen) => Some(listen.clone()),
            None if sandbox => Some("127.0.0.1:0".to_owned()),
            None => None,
        }
    }
}

/// Why the console could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The request has no live session: the answer sends the browser to sign in.
    #[error("not signed in")]
    NotSignedIn,
    /// A state change without the session's CSRF token or from another site.
    #[error("refused: {0}")]
    Forbidden(&'static str),
    /// More requests than the rate allows.
    #[error("too many requests; wait a moment")]
    TooManyRequests,
    /// A request the console cannot read (a form past its size, a bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// A gRPC call was refused or failed; its status is shown in words.
    #[error("{}", .0.message())]
    Api(#[from] tonic::Status),
    /// The console's listener or TLS could not be set up.
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

/// What the handlers share.
pub(crate) struct App {
    pub(crate) backend: Backend,
    pub(crate) sessions: session::Sessions,
    pub(crate) limits: guard::Limits,
    pub(crate) secure_cookie: bool,
    /// Served over HTTPS (`[server.tls]`).
    pub(crate) tls: bool,
    /// No tenants: the API needs no key, and neither does signing in.
    pub(crate) open: bool,
}

impl App {
    /// The name cookie `name` is sent under: with `__Host-` before it where cookies are `Secure`
    /// (the browser then keeps it to this host and path `/`, and neither a sibling domain nor a
    /// plain-HTTP page can set it).
    pub(crate) fn cookie(&self, name: &str) -> String {
        if self.secure_cookie {
            format!("__Host-{name}")
        } else {
            name.to_owned()
        }
    }
}

/// The console's routes over `backend`.
pub fn router(config: &ConsoleConfig, backend: Backend, tls: bool, open: bool) -> Router {
    let app = Arc::new(App {
        backend,
        sessions: session::Sessions::new(
            config.session_ttl,
            config.max_sessions,
            config.max_sessions_per_key,
        ),
        limits: guard::Limits::new(config.requests_per_minute, config.sign_ins_per_minute),
        secure_cookie: config.secure_cookie.unwrap_or(tls),
        tls,
        open,
    });
    Router::new()
        .route("/", get(pages::home))
        .route("/signin", get(pages::signin_page).post(pages::signin))
        .route("/signout", post(pages::signout))
        .route("/lang/{lang}", get(pages::set_lang))
        .route("/jobs", get(jobs::list))
        .route("/jobs/new", get(jobs::new_job))
        .route("/jobs/upload", post(upload::upload))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/live", get(jobs::live))
        .route("/jobs/{id}/preview", get(jobs::preview))
        .route("/jobs/{id}/start", post(jobs::start))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/jobs/{id}/delete", post(jobs::delete))
        .route("/jobs/{id}/download", get(jobs::download))
        .route("/usage", get(usage::usage))
        .route("/lookup", get(usage::lookup_page).post(usage::lookup))
        .route("/assets/console.js", get(pages::script))
        .route("/assets/console.css", get(pages::style))
        .fallback(pages::not_found)
        // Forms are read within this while they arrive; an upload's body is not read by an
        // extractor but streamed to the importer, which has its own bounds.
        .layer(axum::extract::DefaultBodyLimit::max(pages::MAX_FORM))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        // Outermost: the connection is busy from the request's head to its answer's last byte.
        .layer(axum::middleware::from_fn_with_state(
            config.idle_timeout,
            connections::in_flight,
        ))
        .with_state(app)
}

/// Starts the console on `listener` over the server's `routes` (its gRPC services behind their
/// auth layer), served over HTTPS with the server's certificate and key when `tls` names them;
/// `open` when no tenants are configured. It stops when `stop` completes.
pub fn start(
    listener: TcpListener,
    config: &ConsoleConfig,
    routes: backend::Routes,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    open: bool,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    let tls = match tls {
        Some((cert, key)) => Some(guard::tls_config(
            &std::fs::read(cert)?,
            &std::fs::read(key)?,
        )?),
        None => None,
    };
    let router = router(config, Backend::new(routes), tls.is_some(), open);
    info!(addr = %listener.local_addr()?, "web console serving");
    let incoming = connections::incoming(listener, config);
    tokio::spawn(serve(incoming, router, tls, stop));
    Ok(())
}

/// Serves the console on `listener` until `stop` completes.
pub async fn serve(
    listener: crate::transport::Incoming,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let addr = listener.local_addr().ok();
    let app = router.into_make_service_with_connect_info::<guard::Peer>();
    let served = match tls {
        None => {
            info!(addr = ?addr, "console serving over HTTP");
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(tls) => {
            info!(addr = ?addr, "console serving over HTTPS");
            axum::serve(guard::TlsListener::new(listener, tls), app)
                .with_graceful_shutdown(stop)
                .await
        }
    };
    if let Err(e) = served {
        warn!(error = %e, "console failed");
    }
}
