//! Accepting connections: `TCP_NODELAY`, the connection cap, back-off when descriptors run out,
//! and closing connections that do nothing.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;
use tracing::{debug, info, warn};

use super::ConnectionsConfig;
use crate::metrics::{CONNECTIONS_CLOSED, CONNECTIONS_OPEN, CONNECTIONS_REFUSED};

/// The first pause after an accept that failed for want of resources; it doubles up to
/// [`MAX_BACKOFF`] while accepts keep failing.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest pause between accepts while descriptors (or memory) are exhausted.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The listener's accepted connections, as a stream for tonic's `serve_with_incoming`.
pub struct Incoming {
    listener: TcpListener,
    open: Arc<Semaphore>,
    idle_timeout: Duration,
    first_request_timeout: Duration,
    write_timeout: Option<Duration>,
    /// The cap per client address, and each address's open connections.
    per_address: Option<(usize, OpenPerAddress)>,
    backoff: Option<Pin<Box<Sleep>>>,
    next_backoff: Duration,
}

/// The open connections of each client address.
type OpenPerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// A connection's place among its address's connections, given back when it closes.
struct AddressPlace {
    address: IpAddr,
    open: OpenPerAddress,
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.address);
            }
        }
    }
}

impl Incoming {
    /// Accepts on `listener` within `config`'s connection bounds.
    pub fn new(listener: TcpListener, config: &ConnectionsConfig) -> Incoming {
        Incoming {
            listener,
            open: Arc::new(Semaphore::new(config.max)),
            idle_timeout: config.idle_timeout,
            first_request_timeout: config.first_request_timeout,
            write_timeout: None,
            per_address: None,
            backoff: None,
            next_backoff: FIRST_BACKOFF,
        }
    }

    /// Fails a write the peer makes no room for (it reads nothing) for `timeout`, which closes
    /// the connection; without this, writes wait. gRPC has HTTP/2 flow control and its
    /// messages' own timers; the console, over HTTP/1.1, asks for it.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Incoming {
        self.write_timeout = Some(timeout);
        self
    }

    /// Holds at most `max` connections from one client address; past it a new one is closed as
    /// soon as it is accepted. gRPC does not ask for it (its clients come through shared NATs
    /// and load balancers); the console does.
    pub fn with_max_per_address(mut self, max: usize) -> Incoming {
        self.per_address = Some((max, Arc::default()));
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A place for one more connection from `address`, or none when it holds its cap (always
    /// one without a cap).
    fn address_place(&self, address: IpAddr) -> Option<Option<AddressPlace>> {
        let Some((max, open)) = &self.per_address else {
            return Some(None);
        };
        let mut counts = open.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.entry(address).or_default();
        if *held >= *max {
            return None;
        }
        *held += 1;
        Some(Some(AddressPlace {
            address,
            open: open.clone(),
        }))
    }

    fn connection(
        &self,
        stream: TcpStream,
        remote: SocketAddr,
        permit: OwnedSemaphorePermit,
        address: Option<AddressPlace>,
    ) -> Connection {
        // gRPC answers in several small writes (headers, message, trailers): without this the
        // later ones wait for the client's delayed acknowledgement of the first.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %e, "TCP_NODELAY could not be set");
        }
        metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
        let activity = Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicBool::new(false),
            last_change_ms: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        });
        let idle = Box::pin(tokio::time::sleep(self.first_request_timeout));
        Connection {
            io: stream,
            info: ConnectionInfo {
                remote,
                activity,
                pending: Arc::new(AtomicUsize::new(0)),
            },
            idle,
            idle_timeout: self.idle_timeout,
            first_request_timeout: self.first_request_timeout,
            write_timeout: self.write_timeout,
            write_stall: None,
            _permit: permit,
            _address: address,
        }
    }
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(backoff) = &mut this.backoff {
                std::task::ready!(backoff.as_mut().poll(cx));
                this.backoff = None;
            }
            match this.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok((stream, remote))) => {
                    if this.next_backoff != FIRST_BACKOFF {
                        info!("accepting connections again");
                        this.next_backoff = FIRST_BACKOFF;
                    }
                    // Past a cap the connection is closed at once: the client sees a reset
                    // rather than a connection that never answers.
                    let Ok(permit) = this.open.clone().try_acquire_owned() else {
                        metrics::counter!(CONNECTIONS_REFUSED, "reason" => "max_connections")
                            .increment(1);
                        drop(stream);
                        continue;
                    };
                    let Some(address) = this.address_place(remote.ip()) else {
                        metrics::counter!(
                            CONNECTIONS_REFUSED, "reason" => "max_connections_per_address"
                        )
                        .increment(1);
                        drop(stream);
                        continue;
                    };
                    let connection = this.connection(stream, remote, permit, address);
                    return Poll::Ready(Some(Ok(connection)));
                }
                Poll::Ready(Err(e)) if is_connection_error(&e) => {
                    debug!(error = %e, "a connection failed while being accepted");
                }
                Poll::Ready(Err(e)) => {
                    // Out of descriptors or memory: the pending connection stays in the backlog
                    // and every retry fails at once, so retrying without a pause spins a core.
                    if this.next_backoff == FIRST_BACKOFF {
                        warn!(error = %e, "cannot accept connections; retrying with back-off");
                    }
                    metrics::counter!(CONNECTIONS_REFUSED, "reason" => "accept_failed")
                        .increment(1);
                    this.backoff = Some(Box::pin(tokio::time::sleep(this.next_backoff)));
                    this.next_backoff = (this.next_backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Errors of one connection (gone before it was accepted), not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// What a connection is doing, shared by the connection (which closes it when idle) and the
/// requests on it (which mark it busy).
#[derive(Debug)]
pub struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    begun: AtomicBool,
    /// When the last request ended, in milliseconds after `accepted`.
    last_change_ms: AtomicU64,
    waker: AtomicWaker,
}

impl Activity {
    /// Marks a request in flight until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> RequestInFlight {
        self.begun.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestInFlight(self.clone())
    }

    /// When the connection becomes idle, or `None` while a request is in flight.
    fn idle_at(&self, idle_timeout: Duration, first_request_timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if !self.begun.load(Ordering::Relaxed) {
            return Some(self.accepted + first_request_timeout);
        }
        let last = Duration::from_millis(self.last_change_ms.load(Ordering::Relaxed));
        Some(self.accepted + last + idle_timeout)
    }
}

/// A request in flight on a connection; dropped when its response has been sent (or abandoned).
#[derive(Debug)]
pub struct RequestInFlight(Arc<Activity>);

impl Drop for RequestInFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let since = u64::try_from(activity.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_change_ms.store(since, Ordering::Relaxed);
        if activity.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The connection re-arms its idle timer from now.
            activity.waker.wake();
        }
    }
}

/// What requests learn of their connection (in their extensions, from tonic).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: SocketAddr,
    /// Whether requests are in flight, for the idle timeout.
    pub activity: Arc<Activity>,
    /// Bytes of unfinished request messages on this connection.
    pub pending: Arc<AtomicUsize>,
}

/// An accepted connection within the bounds: it holds its place under the connection cap and
/// ends itself (a read error, which closes it) once idle past its timeout.
pub struct Connection {
    io: TcpStream,
    info: ConnectionInfo,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    first_request_timeout: Duration,
    write_timeout: Option<Duration>,
    /// Since when a write has waited for the peer to make room.
    write_stall: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
    _address: Option<AddressPlace>,
}

impl Connection {
    /// `written`, or an error once writes have waited past `write_timeout` for a peer that
    /// reads nothing.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let Some(timeout) = self.write_timeout else {
            return written;
        };
        if written.is_ready() {
            self.write_stall = None;
            return written;
        }
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        std::task::ready!(stall.as_mut().poll(cx));
        metrics::counter!(CONNECTIONS_CLOSED, "reason" => "write_stalled").increment(1);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "connection closed: the peer read nothing past its timeout",
        )))
    }

    /// `Ready` with an error once the connection has been idle past its timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let activity = &self.info.activity;
        // Registered before the state is read: a request that ends after the read wakes us.
        activity.waker.register(cx.waker());
        let Some(due) = activity.idle_at(self.idle_timeout, self.first_request_timeout) else {
            return Poll::Pending;
        };
        if self.idle.deadline() != due {
            self.idle.as_mut().reset(due);
        }
        std::task::ready!(self.idle.as_mut().poll(cx));
        let reason = if activity.begun.load(Ordering::Relaxed) {
            "idle"
        } else {
            "no_request"
        };
        metrics::counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection closed: {reason} past its timeout"),
        ))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

impl Connected for Connection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        self.info.clone()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        // The server always has a read waiting on an open connection, which is where an idle
        // one is noticed.
        this.poll_idle(cx).map(Err)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection accepted by the default bounds as `bounded` sets them, from a peer
    /// (returned, to keep it open) that reads nothing, with a small receive buffer.
    async fn unread(bounded: impl FnOnce(Incoming) -> Incoming) -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = bounded(Incoming::new(listener, &ConnectionsConfig::default()));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let peer = socket.connect(addr).await.unwrap();
        let connection = futures::StreamExt::next(&mut incoming)
            .await
            .unwrap()
            .unwrap();
        (connection, peer)
    }

    /// Writes 64 KiB at a time, at most 256 MiB (the buffers on the way hold a few MiB); the
    /// first error.
    async fn write_until_refused(connection: &mut Connection) -> Option<io::Error> {
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..4096 {
            if let Err(e) = connection.write_all(&chunk).await {
                return Some(e);
            }
        }
        None
    }

    #[tokio::test]
    async fn a_write_the_peer_reads_nothing_of_fails_after_the_write_timeout() {
        let (mut connection, _peer) =
            unread(|incoming| incoming.with_write_timeout(Duration::from_millis(200))).await;
        let failed = tokio::time::timeout(
            Duration::from_secs(20),
            write_until_refused(&mut connection),
        )
        .await
        .expect("the write fails within its timeout")
        .expect("a peer that reads nothing cannot take 256 MiB");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn without_a_write_timeout_a_write_waits() {
        let (mut connection, _peer) = unread(|incoming| incoming).await;
        let writing = write_until_refused(&mut connection);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), writing)
                .await
                .is_err(),
            "still waiting for the peer"
        );
    }
}
