//! What the engine remembers of each provider's recent calls, for `ListProviders`.

use std::sync::{Arc, Mutex};

use crate::providers::{Answer, ErrorReason, Provider, ProviderError};

/// A provider's health as last seen.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Consecutive failed calls.
    pub consecutive_failures: u32,
    /// The most recent failure while failing.
    pub last_error: Option<ProviderError>,
}

impl Health {
    /// Failing after this many consecutive failed calls.
    pub const FAILING_AFTER: u32 = 3;

    /// Whether recent calls failed.
    pub fn failing(&self) -> bool {
        self.consecutive_failures >= Self::FAILING_AFTER
    }
}

/// A provider with its health.
#[derive(Debug)]
pub(super) struct Registered {
    pub(super) provider: Arc<dyn Provider>,
    health: Mutex<Health>,
}

impl Registered {
    pub(super) fn new(provider: Arc<dyn Provider>) -> Registered {
        Registered {
            provider,
            health: Mutex::new(Health::default()),
        }
    }

    pub(super) fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records one vendor call's results: any success resets the failure count; a call whose
    /// results all failed for the vendor's sake (not a refused number) counts as one failure.
    pub(super) fn record(&self, results: &[Result<Answer, ProviderError>]) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if results.iter().any(Result::is_ok) {
            *health = Health::default();
            return;
        }
        let vendor_failure = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| e.reason() != ErrorReason::Rejected);
        if let Some(error) = vendor_failure {
            health.consecutive_failures = health.consecutive_failures.saturating_add(1);
            health.last_error = Some(error.clone());
        }
    }
}
