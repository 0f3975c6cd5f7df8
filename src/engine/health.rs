//! What the engine remembers of each provider's recent calls, for `ListProviders`.

use crate::providers::ProviderError;

/// A provider's health as last seen.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Consecutive failed calls.
    pub consecutive_failures: u32,
    /// The most recent failure while failing.
    pub last_error: Option<ProviderError>,
    /// Whether the circuit breaker fails calls fast now (routes then fail over past it).
    pub circuit_open: bool,
}

impl Health {
    /// Failing after this many consecutive failed calls.
    pub const FAILING_AFTER: u32 = 3;

    /// Whether recent calls failed.
    pub fn failing(&self) -> bool {
        self.consecutive_failures >= Self::FAILING_AFTER
    }
}
