//! `CheckNumbers`: a bidirectional stream of numbers, answered in completion order.
//!
//! The server reads at most `window` items ahead of the answers it has sent: when the client or
//! the vendors are slow, reading stops, and HTTP/2 flow control pushes back on the client. After
//! the client half-closes, the outstanding items are answered and the summary is sent last. When
//! the client goes away, the response stream is dropped and with it every outstanding item.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt, stream};
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};

use super::convert;
use super::error::ApiError;
use crate::auth::Tenant;
use crate::engine::{Engine, LookupRequest};
use crate::pb;

/// The response stream.
pub type CheckNumbersStream =
    Pin<Box<dyn Stream<Item = Result<pb::CheckNumbersResponse, Status>> + Send>>;

#[derive(Default)]
struct Totals {
    items: i64,
    reports: i64,
    errors: i64,
    statuses: HashMap<i32, i64>,
    billable: i64,
    cache_hits: i64,
    cost: crate::domain::Money,
}

impl Totals {
    fn record(&mut self, result: &pb::CheckNumbersResult) {
        match &result.outcome {
            Some(pb::check_numbers_result::Outcome::Report(report)) => {
                self.reports += 1;
                if let Some(line) = &report.line_status {
                    *self.statuses.entry(line.status).or_default() += 1;
                }
                for o in &report.outcomes {
                    self.billable += i64::from(o.billable);
                    self.cache_hits += i64::from(o.cached);
                    if let Some(cost) = &o.cost {
                        self.cost +=
                            crate::domain::Money::from_units_and_nanos(cost.units, cost.nanos)
                                .unwrap_or_default();
                    }
                }
            }
            Some(pb::check_numbers_result::Outcome::Error(_)) | None => self.errors += 1,
        }
    }

    fn summary(&self, currency: crate::domain::Currency) -> pb::CheckNumbersSummary {
        let mut counts: Vec<pb::LineStatusCount> = self
            .statuses
            .iter()
            .map(|(&status, &count)| pb::LineStatusCount { status, count })
            .collect();
        counts.sort_by_key(|c| c.status);
        pb::CheckNumbersSummary {
            items_received: self.items,
            reports: self.reports,
            errors: self.errors,
            line_status_counts: counts,
            billable_calls: self.billable,
            cache_hits: self.cache_hits,
            cost: Some(convert::money_to_proto(self.cost, currency)),
        }
    }
}

/// Counts an item in [`crate::metrics::STREAM_ITEMS_IN_FLIGHT`] while it lives (dropped with
/// the stream when the client goes away).
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        metrics::gauge!(crate::metrics::STREAM_ITEMS_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::STREAM_ITEMS_IN_FLIGHT).decrement(1.0);
    }
}

/// Answers one item: a report, or a per-item error that does not end the stream.
async fn answer(
    engine: Arc<Engine>,
    tenant: &Tenant,
    item: pb::CheckNumbersRequest,
    deadline: Option<Instant>,
) -> pb::CheckNumbersResult {
    let mut request_id = item.request_id.clone();
    // Each item is one request of the tenant's rate: paced, not refused (a rate that cannot be
    // checked fails this item only).
    let outcome = match tenant.pace().await {
        Err(e) => Err(e.into()),
        Ok(()) => match to_lookup(tenant, item, deadline) {
            Ok(lookup) => super::lookup_for(&engine, tenant, &lookup)
                .await
                .map(|report| convert::report_to_proto(&report, engine.currency())),
            Err(e) => Err(e),
        },
    };
    // An over-long id is answered with its start, so the item's error is not lost.
    if request_id.len() > convert::max_len::REQUEST_ID {
        let mut end = convert::max_len::REQUEST_ID;
        while !request_id.is_char_boundary(end) {
            end -= 1;
        }
        request_id.truncate(end);
    }
    pb::CheckNumbersResult {
        request_id,
        outcome: Some(match outcome {
            Ok(report) => pb::check_numbers_result::Outcome::Report(report),
            Err(e) => pb::check_numbers_result::Outcome::Error(e.to_rpc_status()),
        }),
    }
}

fn to_lookup(
    tenant: &Tenant,
    item: pb::CheckNumbersRequest,
    deadline: Option<Instant>,
) -> Result<LookupRequest, ApiError> {
    convert::bounded("request_id", &item.request_id, convert::max_len::REQUEST_ID)?;
    super::lookup_request(
        tenant,
        item.number,
        item.default_region,
        &item.checks,
        item.options,
        deadline,
    )
}

/// The response stream for `inbound`.
pub fn check_numbers(
    engine: Arc<Engine>,
    tenant: Arc<Tenant>,
    permit: tokio::sync::OwnedSemaphorePermit,
    inbound: Streaming<pb::CheckNumbersRequest>,
    window: usize,
    deadline: Option<Instant>,
) -> CheckNumbersStream {
    let totals = Arc::new(Mutex::new(Totals::default()));
    let counted = totals.clone();
    let currency = engine.currency();
    let results = inbound
        .map(move |item| {
            let engine = engine.clone();
            let tenant = tenant.clone();
            let counted = counted.clone();
            async move {
                match item {
                    Ok(item) => {
                        counted.lock().unwrap_or_else(|e| e.into_inner()).items += 1;
                        // The tenant's items in flight over all its streams are bounded too.
                        let _room = tenant.item_permit().await;
                        let _in_flight = InFlight::new();
                        let result = answer(engine, &tenant, item, deadline).await;
                        counted
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .record(&result);
                        Ok(pb::CheckNumbersResponse {
                            response: Some(pb::check_numbers_response::Response::Result(result)),
                        })
                    }
                    // The client's stream broke (reset, undecodable message): end ours too.
                    Err(status) => Err(status),
                }
            }
        })
        .buffer_unordered(window.max(1));
    let summary = stream::once(async move {
        // The stream counts against the tenant's open streams until its summary is sent.
        drop(permit);
        let summary = totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .summary(currency);
        Ok(pb::CheckNumbersResponse {
            response: Some(pb::check_numbers_response::Response::Summary(summary)),
        })
    });
    let all = results.chain(summary);
    match deadline {
        None => Box::pin(all),
        Some(deadline) => Box::pin(until_deadline(all, deadline)),
    }
}

/// Ends `inner` with `DEADLINE_EXCEEDED` when the caller's deadline passes.
fn until_deadline<S>(
    inner: S,
    deadline: Instant,
) -> impl Stream<Item = Result<pb::CheckNumbersResponse, Status>>
where
    S: Stream<Item = Result<pb::CheckNumbersResponse, Status>> + Send,
{
    let sleep = Box::pin(tokio::time::sleep_until(deadline));
    stream::unfold(
        (Box::pin(inner), sleep, false),
        |(mut inner, mut sleep, expired)| async move {
            if expired {
                return None;
            }
            tokio::select! {
                item = inner.next() => item.map(|item| (item, (inner, sleep, false))),
                () = &mut sleep => {
                    let status = Status::new(Code::DeadlineExceeded, "the call's deadline passed before every item was answered");
                    Some((Err(status), (inner, sleep, true)))
                }
            }
        },
    )
}

/// The longest deadline honoured: a longer `grpc-timeout` is clamped to it.
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// The caller's deadline from its `grpc-timeout` header, clamped to [`MAX_DEADLINE`] from now.
pub fn deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    grpc_timeout(metadata).map(|timeout| Instant::now() + timeout)
}

/// Reads the `grpc-timeout` header (`<digits><unit>`, units H M S m u n), clamped to
/// [`MAX_DEADLINE`] (the gRPC spec allows 8 digits of hours: more than a lifetime).
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Past u64 is past the clamp anyway.
    let n: u64 = digits.parse().unwrap_or(u64::MAX);
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Some(timeout.min(MAX_DEADLINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let mut m = tonic::metadata::MetadataMap::new();
        for (v, d) in [
            ("5S", Duration::from_secs(5)),
            ("250m", Duration::from_millis(250)),
            ("1H", Duration::from_secs(3600)),
        ] {
            m.insert("grpc-timeout", v.parse().unwrap());
            assert_eq!(grpc_timeout(&m), Some(d));
        }
        // Beyond any sensible deadline: clamped, never an overflow.
        for huge in [
            "99999999H",
            "9999999999999999999S",
            "99999999999999999999999999n",
        ] {
            m.insert("grpc-timeout", huge.parse().unwrap());
            assert_eq!(grpc_timeout(&m), Some(MAX_DEADLINE), "{huge}");
            assert!(deadline(&m).is_some());
        }
        for bad in ["5x", "S", "-5S", "+5S", "1.5S"] {
            m.insert("grpc-timeout", bad.parse().unwrap());
            assert_eq!(grpc_timeout(&m), None, "{bad}");
        }
    }
}
