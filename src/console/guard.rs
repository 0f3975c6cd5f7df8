//! What every console request passes: the security headers, the cross-site check of state
//! changes, the rate limits, and (with `[server.tls]`) the TLS listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{App, ConsoleError};
use crate::transport::{Connection, Incoming};

/// The Content-Security-Policy of every page: only the console's own script and stylesheet, no
/// inline code, no frames, forms posting only to the console.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Client addresses whose sign-in rate is tracked at once; past it the idlest are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// A token bucket: `capacity` requests at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn full(capacity: f64) -> Bucket {
        Bucket {
            tokens: capacity,
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn take(&mut self, capacity: f64, per_second: f64) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * per_second;
        self.tokens = (self.tokens + refill).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The console's rates: per session, and per client address for requests without one.
pub(crate) struct Limits {
    /// Per session: burst and refill per second.
    pub(crate) session: (f64, f64),
    address: (f64, f64),
    addresses: Mutex<HashMap<IpAddr, Bucket>>,
}

impl Limits {
    pub(crate) fn new(requests_per_minute: u32, sign_ins_per_minute: u32) -> Limits {
        let rate = |per_minute: u32, burst_share: f64| {
            let per_minute = f64::from(per_minute);
            ((per_minute * burst_share).max(1.0), per_minute / 60.0)
        };
        Limits {
            session: rate(requests_per_minute, 0.1),
            address: rate(sign_ins_per_minute, 1.0),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request without a session (sign-in, assets) against its client address.
    pub(crate) fn admit_address(&self, ip: IpAddr) -> bool {
        let (capacity, per_second) = self.address;
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if addresses.len() >= MAX_TRACKED_ADDRESSES && !addresses.contains_key(&ip) {
            // A full bucket is the same as no bucket: forget those first, then the idlest.
            let refill = Duration::from_secs_f64(capacity / per_second);
            addresses.retain(|_, b| b.last.elapsed() < refill);
            if addresses.len() >= MAX_TRACKED_ADDRESSES
                && let Some(idlest) = addresses
                    .iter()
                    .min_by_key(|(_, b)| b.last)
                    .map(|(k, _)| *k)
            {
                addresses.remove(&idlest);
            }
        }
        addresses
            .entry(ip)
            .or_insert_with(|| Bucket::full(capacity))
            .take(capacity, per_second)
    }
}

/// The client's address, from the listener (TCP or TLS), and what its connection is doing.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its connection's requests in flight, for the connection's idle timeout.
    pub(crate) activity: Arc<crate::transport::Activity>,
}

impl Peer {
    /// The peer of an accepted connection.
    pub(crate) fn of(connection: &Connection) -> Peer {
        let info = tonic::transport::server::Connected::connect_info(connection);
        Peer {
            addr: info.remote,
            activity: info.activity,
        }
    }
}

/// Adds the security headers to every answer and refuses cross-site state changes before any
/// handler reads the request.
pub(crate) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD);
    let mut response = if app.open && !loopback_host(request.headers()) {
        // Without keys anyone who reaches the console is signed in: only a page loaded from a
        // loopback name may use it, or another site could rebind its own name to 127.0.0.1
        // (DNS rebinding) and drive the console from the visitor's browser.
        ConsoleError::Forbidden("not a loopback host").into_response()
    } else if changes_state && !same_origin(request.headers()) {
        ConsoleError::Forbidden("cross-site request").into_response()
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    let cached = headers.contains_key(header::CACHE_CONTROL);
    // A download that sets its own (stricter, sandboxed) policy keeps it.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // `same-origin`, not `no-referrer`: with `no-referrer` Chrome sends `Origin: null` on form
    // posts, and the origin check needs the real one. Nothing leaves for another site either way.
    set(header::REFERRER_POLICY, "same-origin");
    if app.tls {
        // Served over HTTPS: the browser keeps to HTTPS for this host for a year.
        set(header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    }
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    // Pages hold personal data: nothing is kept by the browser or a proxy. The embedded assets
    // may be cached (they carry no data).
    if !cached {
        set(header::CACHE_CONTROL, "no-store");
    }
    response
}

/// A state change must come from a console page: `Sec-Fetch-Site` (sent by every current
/// browser) must be `same-origin`, and `Origin`, when sent, must name the host the request was
/// sent to. A request with neither (not a browser) still needs the session's CSRF token.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = origin.to_str().ok().and_then(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
    });
    matches!((origin, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Whether the request's `Host` is a loopback name: `localhost` or a loopback IP address, with
/// any port.
pub(crate) fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The client's IP address, from the connection.
pub(crate) fn client_ip(info: Option<&ConnectInfo<Peer>>) -> IpAddr {
    info.map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| {
        peer.addr.ip()
    })
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer::of(stream.io().get_ref().0)
    }
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past it new connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;

/// A listener that completes TLS handshakes off the accept loop (a slow client holds up no one)
/// and hands over the established streams.
pub struct TlsListener {
    local: std::io::Result<SocketAddr>,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<Connection>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` (within its connection bounds) with `config`.
    pub fn new(mut listener: Incoming, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = listener.local_addr();
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let places = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(place) = places.clone().acquire_owned().await else {
                    return;
                };
                // Out of descriptors, or past the connection cap: handled (backed off, closed at
                // once) by the bounded listener.
                let (stream, addr) = super::connections::next(&mut listener).await;
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _place = place;
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        let _ = tx.send((tls, addr)).await;
                    }
                });
            }
        });
        TlsListener { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<Connection>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (the runtime is stopping): wait for the shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(addr) => Ok(*addr),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}

/// The console's TLS settings: the server's certificate and key (`[server.tls]`), HTTP/1.1.
pub fn tls_config(cert: &[u8], key: &[u8]) -> Result<Arc<rustls::ServerConfig>, ConsoleError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str| ConsoleError::Io(std::io::Error::other(format!("TLS {what}")));
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("certificate: not PEM"))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| bad("key: not PEM"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn an_open_console_answers_loopback_hosts_only() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(loopback_host(&headers(&[("host", ok)])), "{ok}");
        }
        // A rebound name resolves to 127.0.0.1 but is not a loopback name.
        for bad in [
            "attacker.example:8080",
            "10.0.0.1:8080",
            "[::2]:80",
            "localhost.evil",
        ] {
            assert!(!loopback_host(&headers(&[("host", bad)])), "{bad}");
        }
        assert!(!loopback_host(&HeaderMap::new()), "no Host at all");
    }

    #[test]
    fn only_same_origin_state_changes_pass() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
    }

    #[test]
    fn buckets_refuse_past_their_burst() {
        let limits = Limits::new(600, 3);
        let ip = IpAddr::from([10, 0, 0, 1]);
        assert!((0..3).all(|_| limits.admit_address(ip)));
        assert!(!limits.admit_address(ip));
        assert!(limits.admit_address(IpAddr::from([10, 0, 0, 2])));
    }
}
