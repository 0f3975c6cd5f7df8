//! Prometheus metrics: the recorder, the admin endpoint (`GET /metrics`), the RPC layer, and the
//! names every part records under. Label values are bounded: method names, provider names,
//! vendors, outcomes, gRPC codes — never a phone number.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// RPCs by method and gRPC code.
pub const RPC_REQUESTS: &str = "phonecheck_rpc_requests_total";
/// RPC latency by method, to the end of the response (streams: the whole stream).
pub const RPC_DURATION: &str = "phonecheck_rpc_duration_seconds";
/// Vendor calls by provider, vendor, check and outcome (`ok` or the error reason).
pub const VENDOR_CALLS: &str = "phonecheck_vendor_calls_total";
/// Numbers answered by vendor calls, by provider and whether the vendor bills them.
pub const VENDOR_NUMBERS: &str = "phonecheck_vendor_numbers_total";
/// Vendor call latency by provider (one attempt).
pub const VENDOR_DURATION: &str = "phonecheck_vendor_call_duration_seconds";
/// Numbers per vendor call, by provider.
pub const VENDOR_BATCH: &str = "phonecheck_vendor_batch_size";
/// Answer cache lookups by provider and result (`hit`, `miss`).
pub const CACHE_LOOKUPS: &str = "phonecheck_cache_lookups_total";
/// Callers that joined a vendor call already in flight, by provider.
pub const SINGLE_FLIGHT_JOINS: &str = "phonecheck_single_flight_joins_total";
/// Time spent waiting for the vendor quota's token bucket, by provider.
pub const QUOTA_WAIT: &str = "phonecheck_quota_wait_seconds";
/// Numbers a route passed from one provider to the next, by check, `from`, `to` and reason
/// (`auth_failed`, `quota_exhausted`, `rate_limited`, `unavailable`, `circuit_open`).
pub const FAILOVERS: &str = "phonecheck_failovers_total";
/// 1 while a provider's circuit breaker is open.
pub const BREAKER_OPEN: &str = "phonecheck_breaker_open";
/// `CheckNumbers` items being worked on.
pub const STREAM_ITEMS_IN_FLIGHT: &str = "phonecheck_stream_items_in_flight";
/// Numbers checked by file jobs, by fate (`done`, `again`).
pub const JOB_NUMBERS: &str = "phonecheck_job_numbers_total";
/// File jobs running.
pub const JOBS_RUNNING: &str = "phonecheck_jobs_running";
/// Redis commands that failed, by what they were for (`quota`, `answers`, `pending`): while this
/// moves, paid calls fail closed and the cache and single-flight are the replica's own.
pub const SHARED_STATE_ERRORS: &str = "phonecheck_shared_state_errors_total";
/// Vendor calls paced by this replica's share of the quota because Redis could not be reached
/// (`[redis] on_unreachable = "local_share"`).
pub const QUOTA_LOCAL_SHARE: &str = "phonecheck_quota_local_share_total";
/// 1 while the answer store cannot be written (disk full, `cache.max_disk` reached, unusable
/// file): paid answers are then kept in memory only.
pub const ANSWER_STORE_DEGRADED: &str = "phonecheck_answer_store_degraded";
/// Answers written to the answer store, by result (`written`, `failed`).
pub const ANSWER_STORE_WRITES: &str = "phonecheck_answer_store_writes_total";
/// Answer cache hits by tier (`memory`, `store`).
pub const ANSWER_CACHE_HITS: &str = "phonecheck_answer_cache_hits_total";
/// Answers held in the in-memory hot tier.
pub const ANSWER_HOT_ENTRIES: &str = "phonecheck_answer_hot_entries";
/// Connections open on the gRPC listener.
pub const CONNECTIONS_OPEN: &str = "phonecheck_connections_open";
/// Connections closed as soon as they were accepted, by reason (`max_connections`, and
/// `max_connections_per_address` at the console), and accepts that failed for want of
/// descriptors or memory (`accept_failed`).
pub const CONNECTIONS_REFUSED: &str = "phonecheck_connections_refused_total";
/// Connections the server closed for doing nothing, by reason (`idle`, `no_request`, and
/// `write_stalled`: a console client that read nothing).
pub const CONNECTIONS_CLOSED: &str = "phonecheck_connections_closed_total";
/// Bytes of request messages begun but not yet complete, in the whole process.
pub const REQUEST_BYTES_PENDING: &str = "phonecheck_request_bytes_pending";
/// Requests refused while their messages arrived, by reason (`connection` or `process`: a cap
/// of unfinished bytes; `message_timeout`; `max_open_service_calls`, `max_open_service_streams`:
/// too many calls to the services open without a key).
pub const REQUESTS_REFUSED_IN_TRANSIT: &str = "phonecheck_requests_refused_in_transit_total";
/// Calls in flight to the services open without a key (health, reflection).
pub const OPEN_SERVICE_CALLS: &str = "phonecheck_open_service_calls";
/// What billed vendor calls cost, by provider and check, in the billing currency (a counter with
/// a decimal value; see [`count_vendor_cost`]).
pub const VENDOR_COST: &str = "phonecheck_vendor_cost_total";

/// Webhook delivery attempts by outcome (`delivered`, `http_error`, `timeout`, `connect_error`,
/// `refused`, `request_error`, `no_target`).
pub const WEBHOOK_ATTEMPTS: &str = "phonecheck_webhook_attempts_total";
/// Webhook events that left the outbox, by result (`delivered`, `failed`: not delivered within
/// `webhooks.max_age`).
pub const WEBHOOK_EVENTS: &str = "phonecheck_webhook_events_total";
/// Webhook events waiting for delivery (counted every minute or so).
pub const WEBHOOK_PENDING: &str = "phonecheck_webhook_pending_events";
/// Webhook delivery attempt latency.
pub const WEBHOOK_DURATION: &str = "phonecheck_webhook_delivery_duration_seconds";
/// Failed reads and writes of the webhook outbox.
pub const WEBHOOK_STORE_ERRORS: &str = "phonecheck_webhook_store_errors_total";

/// The cost of billed vendor calls so far, in nanos of the billing currency, by (provider,
/// check). Kept here rather than in the `metrics` recorder, whose counters are whole numbers:
/// counting nanos there would export nanos, and a float gauge would say `gauge` and drift as it
/// adds up prices in binary floating point. The exact sum is rendered after the recorder's
/// metrics as a Prometheus counter with a decimal value, which the text format allows.
static VENDOR_COSTS: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), i64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Adds `nanos` (10⁻⁹ of the billing currency's unit) to [`VENDOR_COST`] for `provider` and
/// `check`.
pub fn count_vendor_cost(provider: &str, check: &'static str, nanos: i64) {
    let mut costs = VENDOR_COSTS.lock().unwrap_or_else(|e| e.into_inner());
    let total = costs.entry((provider.to_owned(), check)).or_default();
    *total = total.saturating_add(nanos);
}

/// [`VENDOR_COST`] in the Prometheus text format (nothing before the first billed call).
pub fn render_vendor_cost() -> String {
    let costs = VENDOR_COSTS.lock().unwrap_or_else(|e| e.into_inner());
    if costs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "# HELP {VENDOR_COST} Cost of billed vendor calls, in the billing currency ([billing] currency).\n\
         # TYPE {VENDOR_COST} counter\n"
    );
    for ((provider, check), nanos) in costs.iter() {
        // Provider names are configuration keys; escaped as the format asks all the same.
        let provider = provider
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        out.push_str(&format!(
            "{VENDOR_COST}{{provider=\"{provider}\",check=\"{check}\"}} {}.{:09}\n",
            nanos / 1_000_000_000,
            nanos % 1_000_000_000
        ));
    }
    out
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1_000.0, 10_000.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the process-wide recorder once and returns its handle (`None` if another recorder
/// was installed first, in which case metrics go there).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(VENDOR_BATCH.into()), BATCH_BUCKETS)
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => {
                    // Histograms keep their samples until upkeep folds them in: without it (no
                    // admin listener, or no scrape) memory would grow with every vendor call.
                    let upkept = handle.clone();
                    let started = std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_EVERY);
                                upkept.run_upkeep();
                            }
                        });
                    if let Err(e) = started {
                        tracing::warn!(error = %e, "metrics upkeep not started");
                    }
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// The admin HTTP endpoints: `GET /metrics` (Prometheus text format) and `GET /healthz`.
pub fn admin_router(handle: PrometheusHandle) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render() + &render_vendor_cost(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
}

/// The method label of a gRPC path: known services only, so a scan of random paths cannot
/// create unbounded label values.
fn method_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/phonecheck.v1.PhoneCheckService/LookupNumber",
        "/phonecheck.v1.PhoneCheckService/CheckNumbers",
        "/phonecheck.v1.PhoneCheckService/ListProviders",
        "/phonecheck.v1.BatchJobService/CreateBatchJob",
        "/phonecheck.v1.BatchJobService/GetBatchJob",
        "/phonecheck.v1.BatchJobService/ListBatchJobs",
        "/phonecheck.v1.BatchJobService/CancelBatchJob",
        "/phonecheck.v1.BatchJobService/DeleteBatchJob",
        "/phonecheck.v1.BatchJobService/WatchBatchJob",
        "/phonecheck.v1.BatchJobService/ExportBatchJobResults",
        "/phonecheck.v1.BatchJobService/StartBatchJob",
        "/phonecheck.v1.UsageService/GetUsage",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    KNOWN
        .iter()
        .find(|k| **k == path)
        .map_or("other", |k| &k[1..])
}

fn code_label(value: Option<&http::HeaderValue>) -> &'static str {
    let code = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Unknown, tonic::Code::from_i32);
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts every RPC by method and final gRPC code, and times it to the end of its response.
#[derive(Debug, Clone, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

/// The service of [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body + Send + 'static,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let mut timer = Some(Finished { method, started });
            // A trailers-only response (an error before any message) carries the code here.
            if let Some(code) = response.headers().get("grpc-status")
                && let Some(t) = timer.take()
            {
                t.record(code_label(Some(code)));
            }
            Ok(response.map(|body| MetricsBody {
                inner: Box::pin(body),
                timer,
            }))
        })
    }
}

struct Finished {
    method: &'static str,
    started: Instant,
}

impl Finished {
    fn record(self, code: &'static str) {
        metrics::counter!(RPC_REQUESTS, "method" => self.method, "code" => code).increment(1);
        metrics::histogram!(RPC_DURATION, "method" => self.method)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// A response body that records the RPC when its trailers pass (or when it is dropped before:
/// the client went away).
pub struct MetricsBody<B> {
    inner: Pin<Box<B>>,
    timer: Option<Finished>,
}

impl<B> Drop for MetricsBody<B> {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.record("CANCELLED");
        }
    }
}

impl<B: http_body::Body> http_body::Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(timer) = this.timer.take()
        {
            timer.record(code_label(trailers.get("grpc-status")));
        }
        if let Poll::Ready(None) = &polled
            && let Some(timer) = this.timer.take()
        {
            timer.record("OK");
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            method_label("/phonecheck.v1.PhoneCheckService/LookupNumber"),
            "phonecheck.v1.PhoneCheckService/LookupNumber"
        );
        assert_eq!(method_label("/x/13800138000"), "other");
        assert_eq!(
            code_label(Some(&http::HeaderValue::from_static("5"))),
            "NOT_FOUND"
        );
        assert_eq!(code_label(None), "UNKNOWN");
    }

    #[test]
    fn vendor_cost_is_an_exact_decimal_counter() {
        // Process-wide: a provider name no other test uses.
        for _ in 0..3 {
            count_vendor_cost("metrics-test", "line-status", 30_000_000);
        }
        count_vendor_cost("metrics-test", "risk-profile", 1_500_000_000);
        let text = render_vendor_cost();
        assert!(
            text.contains(&format!("# TYPE {VENDOR_COST} counter\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{VENDOR_COST}{{provider=\"metrics-test\",check=\"line-status\"}} 0.090000000\n"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{VENDOR_COST}{{provider=\"metrics-test\",check=\"risk-profile\"}} 1.500000000\n"
            )),
            "{text}"
        );
    }
}
