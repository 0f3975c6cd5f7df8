//! The console's connections, bounded as the gRPC server's are (`crate::transport`): at most
//! `max_connections` at once and `max_connections_per_address` from one client address (past
//! them a new one is closed as soon as it is accepted, so that the console can never take the
//! descriptors the gRPC server needs, nor one address every place), closed when no request has
//! begun `first_request_timeout` after the accept (a client that connects and says nothing, or
//! trickles a request's head byte by byte), and closed when none has been in flight for
//! `idle_timeout`. A request is in flight from its head to the last byte of its answer, so a
//! long import or a long download is never cut for being quiet; but a request whose body stops
//! arriving, or an answer whose client stops reading, for `idle_timeout` fails, which ends the
//! request and closes the connection: no client holds a place by going silent mid-request.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use http_body::Frame;
use tokio::time::Sleep;
use tonic::transport::server::Connected;

use super::ConsoleConfig;
use super::guard::Peer;
use crate::transport::{Connection, ConnectionsConfig, InFlightBody, Incoming};

/// The console's listener: `listener` within `config`'s connection bounds.
pub fn incoming(listener: tokio::net::TcpListener, config: &ConsoleConfig) -> Incoming {
    let bounds = ConnectionsConfig {
        max: config.max_connections,
        idle_timeout: config.idle_timeout,
        first_request_timeout: config.first_request_timeout,
        ..ConnectionsConfig::default()
    };
    Incoming::new(listener, &bounds)
        .with_write_timeout(config.idle_timeout)
        .with_max_per_address(config.max_connections_per_address)
}

/// The next connection within the bounds, with its peer's address.
pub(super) async fn next(incoming: &mut Incoming) -> (Connection, SocketAddr) {
    loop {
        match incoming.next().await {
            Some(Ok(connection)) => {
                let remote = connection.connect_info().remote;
                return (connection, remote);
            }
            // Accept errors are handled (backed off, counted) inside.
            Some(Err(_)) => continue,
            None => std::future::pending().await,
        }
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        next(self).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Incoming::local_addr(self)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Peer {
        Peer::of(stream.io())
    }
}

/// Keeps the request's connection busy (not idle) until the last byte of its answer is sent,
/// and lets its body wait at most `quiet` (`idle_timeout`) for each piece.
pub(super) async fn in_flight(
    State(quiet): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let request = request.map(|body| Body::new(Paced::new(body, quiet)));
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<Peer>>().cloned() else {
        return next.run(request).await;
    };
    let busy = peer.activity.begin();
    next.run(request)
        .await
        .map(|body| Body::new(InFlightBody::keeping(body, busy)))
}

/// A request body that fails when it has been waited on for its timeout without a piece coming.
struct Paced {
    inner: Body,
    quiet: Duration,
    /// Since when the handler has waited for the next piece.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl Paced {
    fn new(inner: Body, quiet: Duration) -> Paced {
        Paced {
            inner,
            quiet,
            waiting: None,
        }
    }
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let quiet = this.quiet;
                let waiting = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(quiet)));
                std::task::ready!(waiting.as_mut().poll(cx));
                Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request's body stopped arriving",
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
