//! The services served without a key (health and reflection): how many of their calls may be in
//! flight at once.
//!
//! Anyone who can reach the port can call them, so what one of their calls holds (an h2 stream,
//! a decoder, a response the client may never read) must be bounded by a count, not by a key.
//! Calls are capped as a whole (`max_open_service_calls`) and per peer address
//! (`max_open_service_calls_per_peer`), and the calls that may last (health `Watch`, reflection
//! streams) have a smaller cap of their own (`max_open_service_streams`), so that streams held
//! open leave room for the short `Health/Check` that probes send, and one client (one address)
//! cannot take every place. A `Health/Check` holds its place only while its request arrives
//! (bounded by the message timeout, to its end of stream); its one-message answer does not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tonic::Status;

use super::ConnectionsConfig;
use crate::metrics::{OPEN_SERVICE_CALLS, REQUESTS_REFUSED_IN_TRANSIT};

/// The health check that probes call: one message in, one out.
pub(super) const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Whether `path` belongs to a service served without a key.
pub fn is_open_service(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Open-service calls in flight by peer address; an address with none has no entry.
type Peers = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The counts of open-service calls and streams in flight, with their caps.
#[derive(Debug, Clone)]
pub(super) struct OpenServices {
    calls: Arc<AtomicUsize>,
    streams: Arc<AtomicUsize>,
    /// Calls in flight by peer address; an address with none has no entry.
    peers: Peers,
    max_calls: usize,
    max_streams: usize,
    max_per_peer: usize,
}

impl OpenServices {
    pub(super) fn new(config: &ConnectionsConfig) -> OpenServices {
        OpenServices {
            calls: Arc::new(AtomicUsize::new(0)),
            streams: Arc::new(AtomicUsize::new(0)),
            peers: Arc::default(),
            max_calls: config.max_open_service_calls,
            max_streams: config.max_open_service_streams,
            max_per_peer: config.max_open_service_calls_per_peer,
        }
    }

    /// Counts a call from `peer` on the open service `path`, or refuses it when a cap is
    /// reached.
    pub(super) fn enter(&self, path: &str, peer: IpAddr) -> Result<OpenCall, Status> {
        let stream = path != HEALTH_CHECK;
        {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            let calls = peers.entry(peer).or_default();
            if *calls >= self.max_per_peer {
                return Err(refuse("max_open_service_calls_per_peer"));
            }
            *calls += 1;
        }
        // From here every refusal gives back what was taken, by the drop of `call`.
        let mut call = OpenCall {
            calls: None,
            streams: None,
            peer: Some((self.peers.clone(), peer)),
        };
        if !take(&self.calls, self.max_calls) {
            return Err(refuse("max_open_service_calls"));
        }
        metrics::gauge!(OPEN_SERVICE_CALLS).increment(1.0);
        call.calls = Some(self.calls.clone());
        if stream {
            if !take(&self.streams, self.max_streams) {
                return Err(refuse("max_open_service_streams"));
            }
            call.streams = Some(self.streams.clone());
        }
        Ok(call)
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

/// One open-service call in flight, holding what it was counted in until dropped.
#[derive(Debug)]
pub(super) struct OpenCall {
    calls: Option<Arc<AtomicUsize>>,
    streams: Option<Arc<AtomicUsize>>,
    peer: Option<(Peers, IpAddr)>,
}

impl Drop for OpenCall {
    fn drop(&mut self) {
        if let Some(calls) = &self.calls {
            calls.fetch_sub(1, Ordering::AcqRel);
            metrics::gauge!(OPEN_SERVICE_CALLS).decrement(1.0);
        }
        if let Some(streams) = &self.streams {
            streams.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some((peers, peer)) = &self.peer {
            let mut peers = peers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(calls) = peers.get_mut(peer) {
                *calls -= 1;
                if *calls == 0 {
                    peers.remove(peer);
                }
            }
        }
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

    const WATCH: &str = "/grpc.health.v1.Health/Watch";

    fn peer(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    #[test]
    fn streams_leave_room_for_checks_and_slots_come_back() {
        let open = OpenServices::new(&ConnectionsConfig {
            max_open_service_calls: 3,
            max_open_service_streams: 1,
            ..ConnectionsConfig::default()
        });
        let watch = open.enter(WATCH, peer(1)).unwrap();
        let refused = open.enter(WATCH, peer(1)).unwrap_err();
        assert!(refused.message().contains("max_open_service_streams"));
        let checks = [
            open.enter(HEALTH_CHECK, peer(1)).unwrap(),
            open.enter(HEALTH_CHECK, peer(2)).unwrap(),
        ];
        let refused = open.enter(HEALTH_CHECK, peer(3)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("max_open_service_calls"));
        drop(watch);
        drop(checks);
        assert_eq!(open.calls.load(Ordering::Relaxed), 0);
        assert_eq!(open.streams.load(Ordering::Relaxed), 0);
        assert!(
            open.peers.lock().unwrap().is_empty(),
            "refusals kept nothing"
        );
        open.enter(WATCH, peer(1)).unwrap();
    }

    #[test]
    fn one_peer_cannot_take_every_place() {
        let open = OpenServices::new(&ConnectionsConfig {
            max_open_service_calls: 10,
            max_open_service_calls_per_peer: 2,
            ..ConnectionsConfig::default()
        });
        let held = [
            open.enter(HEALTH_CHECK, peer(1)).unwrap(),
            open.enter(HEALTH_CHECK, peer(1)).unwrap(),
        ];
        let refused = open.enter(HEALTH_CHECK, peer(1)).unwrap_err();
        assert!(
            refused
                .message()
                .contains("max_open_service_calls_per_peer")
        );
        let _other = open.enter(HEALTH_CHECK, peer(2)).unwrap();
        drop(held);
        open.enter(HEALTH_CHECK, peer(1)).unwrap();
    }
}
