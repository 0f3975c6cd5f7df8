//! The services served without a key (health and reflection): how many of their calls may be in
//! flight at once.
//!
//! Anyone who can reach the port can call them, so what one of their calls holds (an h2 stream,
//! a decoder, a response the client may never read) must be bounded by a count, not by a key.
//! Calls are capped as a whole (`max_open_service_calls`), and the calls that may last (health
//! `Watch`, reflection streams) have a smaller cap of their own (`max_open_service_streams`), so
//! that streams held open by one client always leave room for the short `Health/Check` that
//! probes send.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::Status;

use super::ConnectionsConfig;
use crate::metrics::{OPEN_SERVICE_CALLS, REQUESTS_REFUSED_IN_TRANSIT};

/// The health check that probes call: one message in, one out.
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Whether `path` belongs to a service served without a key.
pub fn is_open_service(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// The counts of open-service calls and streams in flight, with their caps.
#[derive(Debug, Clone)]
pub(super) struct OpenServices {
    calls: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    max_calls: usize,
    max_streams: usize,
}

impl OpenServices {
    pub(super) fn new(config: &ConnectionsConfig) -> OpenServices {
        OpenServices {
            calls: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            max_calls: config.max_open_service_calls,
            max_streams: config.max_open_service_streams,
        }
    }

    /// Counts a call on the open service `path`, or refuses it when a cap is reached.
    pub(super) fn enter(&self, path: &str) -> Result<OpenCall, Status> {
        let stream = path != HEALTH_CHECK;
        if !take(&self.calls, self.max_calls) {
            return Err(refuse("max_open_service_calls"));
        }
        if stream && !take(&self.streams, self.max_streams) {
            self.calls.fetch_sub(1, Ordering::AcqRel);
            return Err(refuse("max_open_service_streams"));
        }
        metrics::gauge!(OPEN_SERVICE_CALLS).increment(1.0);
        Ok(OpenCall {
            calls: self.calls.clone(),
            streams: stream.then(|| self.streams.clone()),
        })
    }
}

fn take(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

fn refuse(setting: &'static str) -> Status {
    metrics::counter!(REQUESTS_REFUSED_IN_TRANSIT, "reason" => setting).increment(1);
    Status::resource_exhausted(format!(
        "too many calls to the services open without a key are in flight \
         (server.connections.{setting}); try again shortly"
    ))
}

/// One open-service call in flight; counted until dropped (when its response is done).
#[derive(Debug)]
pub(super) struct OpenCall {
    calls: Arc<AtomicUsize>,
    streams: Option<Arc<AtomicUsize>>,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        self.calls.fetch_sub(1, Ordering::AcqRel);
        if let Some(streams) = &self.streams {
            streams.fetch_sub(1, Ordering::AcqRel);
        }
        metrics::gauge!(OPEN_SERVICE_CALLS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_paths_are_health_and_reflection_only() {
        assert!(is_open_service(HEALTH_CHECK));
        assert!(is_open_service("/grpc.health.v1.Health/Watch"));
        assert!(is_open_service(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_open_service(
            "/phonecheck.v1.PhoneCheckService/LookupNumber"
        ));
        assert!(!is_open_service("/grpc.healthz/Check"));
    }

    #[test]
    fn streams_leave_room_for_checks_and_slots_come_back() {
        let open = OpenServices::new(&ConnectionsConfig {
            max_open_service_calls: 3,
            max_open_service_streams: 1,
            ..ConnectionsConfig::default()
        });
        let watch = open.enter("/grpc.health.v1.Health/Watch").unwrap();
        let refused = open.enter("/grpc.health.v1.Health/Watch").unwrap_err();
        assert!(refused.message().contains("max_open_service_streams"));
        let checks = [
            open.enter(HEALTH_CHECK).unwrap(),
            open.enter(HEALTH_CHECK).unwrap(),
        ];
        let refused = open.enter(HEALTH_CHECK).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("max_open_service_calls"));
        drop(watch);
        drop(checks);
        assert_eq!(open.calls.load(Ordering::Relaxed), 0);
        assert_eq!(open.streams.load(Ordering::Relaxed), 0);
        open.enter("/grpc.health.v1.Health/Watch").unwrap();
    }
}
