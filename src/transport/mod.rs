//! The edge below gRPC: accepted connections and the bytes of requests not yet complete.
//!
//! Everything here holds before a request is authenticated, so it is what stands between an
//! anonymous client and the process's memory, descriptors and CPU:
//! - [`Incoming`] accepts connections with `TCP_NODELAY` set (gRPC writes a response as
//!   several small frames; with Nagle's algorithm a later one waits for the peer's delayed
//!   acknowledgement, up to 40 ms), refuses connections past [`ConnectionsConfig::max`] at once,
//!   backs off when the process or system is out of descriptors instead of retrying in a loop, and
//!   closes connections that have had no request in flight for [`ConnectionsConfig::idle_timeout`]
//!   (or that sent no request within [`ConnectionsConfig::first_request_timeout`]).
//! - [`RequestBoundsLayer`] counts the bytes of every request message that has begun to arrive
//!   but is not complete, per connection and in the whole process, refuses a message that would go
//!   past either cap, and gives each message [`ConnectionsConfig::message_timeout`] to arrive whole.
//!   A complete message leaves the count: it is decoded at once and handled by the services, whose
//!   own bounds apply from there. The services open without a key (health, reflection) have a
//!   pool of their own and a cap on their calls in flight ([`is_open_service`]).
//!
//! HTTP/2 settings (keepalive pings, streams per connection, header-list size) are tonic's and
//! hyper's own; their values live in [`ConnectionsConfig`] too, so that one table states every
//! transport bound.

mod bounds;
mod incoming;
mod open;

use std::time::Duration;

use serde::Deserialize;

pub use bounds::{InFlightBody, MessageLimits, PendingBytes, RequestBoundsLayer};
pub use incoming::{Activity, Connection, ConnectionInfo, Incoming, RequestInFlight};
pub use open::is_open_service;

/// `[server.connections]`: the bounds of connections and of requests in transit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionsConfig {
    /// Connections open at once; a connection past it is closed as soon as it is accepted.
    pub max: usize,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection that has not begun a request this long after it was accepted (TLS
    /// handshake included) is closed.
    #[serde(with = "humantime_serde")]
    pub first_request_timeout: Duration,
    /// How long one request message may take to arrive whole, from its first byte.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// Bytes of unfinished request messages one connection may have buffered.
    pub max_pending_bytes_per_connection: usize,
    /// Bytes of unfinished request messages the whole process may have buffered, for the
    /// services that need a key.
    pub max_pending_bytes: usize,
    /// Calls to the services open without a key (health, reflection) in flight at once; their
    /// unfinished messages have a pool of their own, room for one whole message per call.
    pub max_open_service_calls: usize,
    /// Of those, the calls that may last (health `Watch`, reflection streams).
    pub max_open_service_streams: usize,
    /// Of those, the calls from one peer address.
    pub max_open_service_calls_per_peer: usize,
    /// Interval of HTTP/2 keepalive pings sent to an otherwise quiet connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// A connection whose peer does not answer a keepalive ping within this is closed.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,

    /// The largest header list (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`) a request may carry.
    pub max_header_list_size: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 4_096,
            idle_timeout: Duration::from_secs(300),
            first_request_timeout: Duration::from_secs(10),
            message_timeout: Duration::from_secs(30),
            max_pending_bytes_per_connection: 16 * 1024 * 1024,
            max_pending_bytes: 128 * 1024 * 1024,
            max_open_service_calls: 1_024,
            max_open_service_streams: 256,
            max_open_service_calls_per_peer: 64,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),

            max_header_list_size: 16 * 1024,
        }
    }
}

impl ConnectionsConfig {
    /// Every problem with these settings, for the configuration's one report.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let positive = [
            ("max", self.max == 0),
            ("idle_timeout", self.idle_timeout.is_zero()),
            (
                "first_request_timeout",
                self.first_request_timeout.is_zero(),
            ),
            ("message_timeout", self.message_timeout.is_zero()),
            (
                "max_pending_bytes_per_connection",
                self.max_pending_bytes_per_connection == 0,
            ),
            ("max_pending_bytes", self.max_pending_bytes == 0),
            ("max_open_service_calls", self.max_open_service_calls == 0),
            (
                "max_open_service_streams",
                self.max_open_service_streams == 0,
            ),
            (
                "max_open_service_calls_per_peer",
                self.max_open_service_calls_per_peer == 0,
            ),
            ("keepalive_interval", self.keepalive_interval.is_zero()),
            ("keepalive_timeout", self.keepalive_timeout.is_zero()),
            ("max_header_list_size", self.max_header_list_size == 0),
        ];
        for (name, zero) in positive {
            if zero {
                problems.push(format!("server.connections.{name} must be above zero"));
            }
        }
        if self.max_pending_bytes_per_connection > self.max_pending_bytes {
            problems.push(
                "server.connections.max_pending_bytes_per_connection must not be above max_pending_bytes"
                    .to_owned(),
            );
        }
        if self.max_open_service_streams > self.max_open_service_calls {
            problems.push(
                "server.connections.max_open_service_streams must not be above max_open_service_calls"
                    .to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_zeroes_are_named() {
        assert!(ConnectionsConfig::default().problems().is_empty());
        let zero = ConnectionsConfig {
            max: 0,
            message_timeout: Duration::ZERO,
            ..ConnectionsConfig::default()
        };
        let problems = zero.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("server.connections.max "));
        assert!(problems[1].contains("message_timeout"));
    }

    #[test]
    fn a_connection_cap_above_the_process_cap_is_refused() {
        let config = ConnectionsConfig {
            max_pending_bytes_per_connection: 2,
            max_pending_bytes: 1,
            ..ConnectionsConfig::default()
        };
        assert_eq!(config.problems().len(), 1);
    }
}
