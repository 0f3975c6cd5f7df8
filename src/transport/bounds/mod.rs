//! The bytes of request messages in transit: how many a connection and the process may hold
//! before a message is complete, and how long one message may take to arrive.
//!
//! A gRPC message is a 5-byte prefix (a flag and a big-endian length) and its body. tonic buffers
//! a message until it is whole, up to the service's `max_decoding_message_size`, and reserves the
//! declared length as soon as the prefix is read; a client that declares large messages on many
//! streams and never finishes them would otherwise hold that much memory per stream for as long
//! as it likes. The layer reads the framing as the bytes pass (it copies nothing) and counts each
//! unfinished message against the caps: its whole declared length from its prefix on (what tonic
//! reserves), or, for a length past every service's limit (refused by tonic unread), the bytes
//! that came.
//!
//! The services open without a key (health and reflection, [`is_open_service`]) count against a
//! pool of their own, so that anonymous clients cannot take the room of authenticated ones; their
//! calls in flight are capped, and the first message of each must arrive whole within the message
//! timeout of the call's start (a call that sends its headers and nothing else is cut then).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::Status;

use super::ConnectionsConfig;
use super::incoming::{ConnectionInfo, RequestInFlight};
use super::open::{HEALTH_CHECK, OpenCall, OpenServices, is_open_service};
use crate::metrics::{REQUEST_BYTES_PENDING, REQUESTS_REFUSED_IN_TRANSIT};

/// The largest messages the services decode (their `max_decoding_message_size`): a declared
/// length up to it is reserved by tonic from the prefix on, and counted so from there.
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// The largest of the services that need a key.
    pub services: usize,
    /// The largest of the open services (health, reflection).
    pub open_services: usize,
}

/// A count of bytes of unfinished request messages (the process's, or the open services'), with
/// its caps.
#[derive(Debug, Clone)]
pub struct PendingBytes {
    total: Arc<AtomicUsize>,
    max_per_connection: usize,
    max: usize,
    /// Declared lengths up to this are counted whole from the prefix.
    max_message: usize,
    message_timeout: Duration,
    /// The setting that names `max` in a refusal.
    setting: &'static str,
}

impl PendingBytes {
    /// Empty, with `config`'s caps, for services decoding messages up to `max_message`.
    pub fn new(config: &ConnectionsConfig, max_message: usize) -> PendingBytes {
        PendingBytes {
            total: Arc::new(AtomicUsize::new(0)),
            max_per_connection: config.max_pending_bytes_per_connection,
            max: config.max_pending_bytes,
            max_message,
            message_timeout: config.message_timeout,
            setting: "max_pending_bytes",
        }
    }

    /// The open services' own pool: room for every open call in flight to hold one whole
    /// message of `max_message` bytes.
    fn for_open_services(config: &ConnectionsConfig, max_message: usize) -> PendingBytes {
        PendingBytes {
            max: config
                .max_open_service_calls
                .saturating_mul(max_message.saturating_add(5)),
            setting: "max_open_service_calls",
            ..PendingBytes::new(config, max_message)
        }
    }

    /// Bytes of unfinished messages held now, in the whole process.
    pub fn held(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Takes `n` more bytes for a connection holding `connection`, or says which cap refused.
    fn take(&self, connection: &AtomicUsize, n: usize) -> Result<(), &'static str> {
        if !reserve(connection, n, self.max_per_connection) {
            return Err("connection");
        }
        if !reserve(&self.total, n, self.max) {
            connection.fetch_sub(n, Ordering::AcqRel);
            return Err("process");
        }
        metrics::gauge!(REQUEST_BYTES_PENDING).increment(n as f64);
        Ok(())
    }

    fn give_back(&self, connection: &AtomicUsize, n: usize) {
        if n > 0 {
            connection.fetch_sub(n, Ordering::AcqRel);
            self.total.fetch_sub(n, Ordering::AcqRel);
            metrics::gauge!(REQUEST_BYTES_PENDING).decrement(n as f64);
        }
    }
}

/// Adds `n` to `counter` unless that would pass `cap`.
fn reserve(counter: &AtomicUsize, n: usize, cap: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(n).filter(|&after| after <= cap)
        })
        .is_ok()
}

/// Marks each request in flight on its connection (for the idle timeout) and bounds its
/// unfinished messages (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestBoundsLayer {
    pending: PendingBytes,
    open_pending: PendingBytes,
    open: OpenServices,
}

impl RequestBoundsLayer {
    /// With `config`'s bounds, for services that decode messages up to `limits`.
    pub fn new(config: &ConnectionsConfig, limits: MessageLimits) -> RequestBoundsLayer {
        RequestBoundsLayer {
            pending: PendingBytes::new(config, limits.services),
            open_pending: PendingBytes::for_open_services(config, limits.open_services),
            open: OpenServices::new(config),
        }
    }

    /// Bytes of unfinished messages to the services that need a key, held now.
    pub fn pending(&self) -> &PendingBytes {
        &self.pending
    }
}

impl<S> tower::Layer<S> for RequestBoundsLayer {
    type Service = RequestBounds<S>;

    fn layer(&self, inner: S) -> RequestBounds<S> {
        RequestBounds {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RequestBoundsLayer`].
#[derive(Debug, Clone)]
pub struct RequestBounds<S> {
    inner: S,
    layer: RequestBoundsLayer,
}

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for RequestBounds<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Send + Unpin + 'static,
{
    type Response = http::Response<InFlightBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let connection = request
            .extensions()
            .get::<ConnectionInfo>()
            .or_else(|| {
                request
                    .extensions()
                    .get::<tonic::transport::server::TlsConnectInfo<ConnectionInfo>>()
                    .map(|tls| tls.get_ref())
            })
            .cloned();
        let Some(connection) = connection else {
            // Served over a listener of someone else's (tests of the services alone).
            let future = self.inner.call(request);
            return Box::pin(async move {
                Ok(future
                    .await?
                    .map(|inner| InFlightBody::new(inner, None, None)))
            });
        };
        let in_flight = Arc::new(connection.activity.begin());
        let path = request.uri().path();
        let open = is_open_service(path);
        let timing = if !open {
            Timing::PerMessage
        } else if path.starts_with("/grpc.health.") {
            Timing::WholeRequest
        } else {
            Timing::FirstMessage
        };
        let check = path == HEALTH_CHECK;
        let mut open_call = if open {
            match self.layer.open.enter(path, connection.remote.ip()) {
                Ok(call) => Some(call),
                Err(status) => {
                    let refused = status
                        .into_http::<()>()
                        .map(|()| InFlightBody::refused(in_flight));
                    return Box::pin(async move { Ok(refused) });
                }
            }
        } else {
            None
        };
        let pending = if open {
            self.layer.open_pending.clone()
        } else {
            self.layer.pending.clone()
        };
        // An open service's call is timed from its start (see `Timing`); a call of the other
        // services (authenticated at its headers) may wait for its first stream item as long as
        // it likes.
        let timer = open.then(|| Box::pin(tokio::time::sleep(pending.message_timeout)));
        // A health check's place is held while its request arrives, not by its answer (which a
        // client that never opens its window would hold for ever).
        let request_call = if check { open_call.take() } else { None };
        let held_by_body = in_flight.clone();
        let request = request.map(|inner| {
            tonic::body::Body::new(BoundedBody {
                inner: Box::pin(inner),
                framing: Framing::default(),
                held: 0,
                connection: connection.pending,
                pending,
                timer,
                timing,
                open_call: request_call,
                _in_flight: held_by_body,
            })
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|inner| InFlightBody::new(inner, Some(in_flight), open_call)))
        })
    }
}

/// Where the gRPC framing of a request body stands.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current message's 5-byte prefix seen so far.
    prefix: [u8; 5],
    prefix_len: usize,
    /// Body bytes of the current message still to come (after a whole prefix).
    remaining: u64,
    /// Bytes of the current, unfinished message seen so far, prefix included.
    unfinished: usize,
    /// The current message's declared length, once its prefix is whole.
    declared: Option<u32>,
    /// Whether the last message was completed by the data just read and another has begun.
    restarted: bool,
    /// Messages read whole so far.
    completed: u64,
}

impl Framing {
    /// Reads `data`; afterwards `unfinished` counts the bytes of the message still incomplete.
    fn read(&mut self, mut data: &[u8]) {
        self.restarted = false;
        while !data.is_empty() {
            if self.prefix_len < 5 {
                if self.prefix_len == 0 && self.unfinished == 0 && self.remaining == 0 {
                    self.restarted = true;
                }
                let n = (5 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
                self.prefix_len += n;
                self.unfinished += n;
                data = &data[n..];
                if self.prefix_len == 5 {
                    let mut len = &self.prefix[1..5];
                    let declared = len.get_u32();
                    self.declared = Some(declared);
                    self.remaining = u64::from(declared);
                    if self.remaining == 0 {
                        self.finish();
                    }
                }
                continue;
            }
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            self.remaining -= n as u64;
            self.unfinished += n;
            data = &data[n..];
            if self.remaining == 0 {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        self.prefix_len = 0;
        self.remaining = 0;
        self.unfinished = 0;
        self.declared = None;
        self.completed += 1;
    }

    fn in_message(&self) -> bool {
        self.unfinished > 0
    }

    /// What the unfinished message holds in the decoder: its whole declared length once the
    /// prefix is read, if it is within `max_message` (tonic reserves it); else what arrived.
    fn claim(&self, max_message: usize) -> usize {
        match self.declared {
            Some(declared) if declared as usize <= max_message => 5 + declared as usize,
            _ => self.unfinished,
        }
    }
}

/// What a request's timer covers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Timing {
    /// Each message, from its first byte to its last (the services that need a key).
    PerMessage,
    /// From the call's start to its first message whole, then each message (reflection, a
    /// stream of requests).
    FirstMessage,
    /// From the call's start to the end of its request (health: one message, then the end).
    WholeRequest,
}

/// A request body whose unfinished message is counted and timed.
struct BoundedBody {
    inner: Pin<Box<tonic::body::Body>>,
    framing: Framing,
    /// Bytes this body holds against the caps now.
    held: usize,
    connection: Arc<AtomicUsize>,
    pending: PendingBytes,
    timer: Option<Pin<Box<Sleep>>>,
    timing: Timing,
    /// A health check's place among the open services' calls, given back with the request.
    open_call: Option<OpenCall>,
    _in_flight: Arc<RequestInFlight>,
}

impl BoundedBody {
    /// Brings the caps in line with the framing after a frame; an error when a cap refuses.
    fn account(&mut self) -> Result<(), Status> {
        let now = self.framing.claim(self.pending.max_message);
        if now > self.held {
            if let Err(which) = self.pending.take(&self.connection, now - self.held) {
                metrics::counter!(REQUESTS_REFUSED_IN_TRANSIT, "reason" => which).increment(1);
                let setting = if which == "connection" {
                    "max_pending_bytes_per_connection"
                } else {
                    self.pending.setting
                };
                return Err(Status::resource_exhausted(format!(
                    "request refused: the {which}'s bytes of unfinished request messages are at \
                     their cap (server.connections.{setting})"
                )));
            }
        } else {
            self.pending.give_back(&self.connection, self.held - now);
        }
        self.held = now;
        let from_start = match self.timing {
            Timing::PerMessage => false,
            Timing::FirstMessage => self.framing.completed == 0,
            Timing::WholeRequest => true,
        };
        if from_start {
            // The timer set at the call's start runs on.
        } else if !self.framing.in_message() {
            self.timer = None;
        } else if self.timer.is_none() || self.framing.restarted {
            self.timer = Some(Box::pin(tokio::time::sleep(self.pending.message_timeout)));
        }
        Ok(())
    }
}

impl BoundedBody {
    fn too_slow(&self) -> Status {
        metrics::counter!(REQUESTS_REFUSED_IN_TRANSIT, "reason" => "message_timeout").increment(1);
        Status::deadline_exceeded(format!(
            "a request message did not arrive whole within {} (server.connections.message_timeout)",
            humantime::format_duration(self.pending.message_timeout)
        ))
    }
}

impl Drop for BoundedBody {
    fn drop(&mut self) {
        self.pending.give_back(&self.connection, self.held);
    }
}

impl Body for BoundedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let this = &mut *self;
                    this.framing.read(data);
                    if let Err(status) = this.account() {
                        return Poll::Ready(Some(Err(status)));
                    }
                    // A message trickled in a byte at a time never leaves the body pending.
                    if this
                        .timer
                        .as_ref()
                        .is_some_and(|t| t.deadline() <= tokio::time::Instant::now())
                    {
                        return Poll::Ready(Some(Err(this.too_slow())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if let Some(timer) = &mut self.timer
                    && timer.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Some(Err(self.too_slow())));
                }
                Poll::Pending
            }
            Poll::Ready(None) => {
                self.timer = None;
                self.open_call = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request in flight (and an open service's call counted) until
/// the response is done; empty for a call refused here (its status is in the headers).
pub struct InFlightBody<B> {
    inner: Option<B>,
    _in_flight: Option<Arc<RequestInFlight>>,
    _open_call: Option<OpenCall>,
}

impl<B> InFlightBody<B> {
    fn new(
        inner: B,
        in_flight: Option<Arc<RequestInFlight>>,
        open_call: Option<OpenCall>,
    ) -> InFlightBody<B> {
        InFlightBody {
            inner: Some(inner),
            _in_flight: in_flight,
            _open_call: open_call,
        }
    }

    /// `inner`, keeping its request in flight (its connection busy) until it ends.
    pub fn keeping(inner: B, in_flight: RequestInFlight) -> InFlightBody<B> {
        InFlightBody::new(inner, Some(Arc::new(in_flight)), None)
    }

    fn refused(in_flight: Arc<RequestInFlight>) -> InFlightBody<B> {
        InFlightBody {
            inner: None,
            _in_flight: Some(in_flight),
            _open_call: None,
        }
    }
}

impl<B: Body + Unpin> Body for InFlightBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match &mut self.inner {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
mod tests;
