//! Why a vendor call failed, in phonecheck's terms: the one classification of failures
//! (retryable, billable, and whether it counts against the vendor's health) that the circuit
//! breaker, `ListProviders` health, metrics and reports all read.

use std::time::Duration;

/// Why a vendor call failed, in phonecheck's terms. The `google.rpc.ErrorInfo` reason of the
/// check's outcome is [`ErrorReason::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The vendor refused the credentials or signature.
    AuthFailed,
    /// The account has no balance, is suspended, expired, or the service is not purchased.
    QuotaExhausted,
    /// The vendor's rate or volume limit was hit.
    RateLimited,
    /// The vendor could not be reached, timed out, or said it is unavailable.
    Unavailable,
    /// The vendor's answer could not be read.
    BadResponse,
    /// The vendor refused the request for another reason (a parameter, a number it will not take).
    Rejected,
    /// phonecheck's own state store failed.
    StateUnavailable,
}

impl ErrorReason {
    /// The `google.rpc.ErrorInfo` reason.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::AuthFailed => "PROVIDER_AUTH_FAILED",
            ErrorReason::QuotaExhausted => "PROVIDER_QUOTA_EXHAUSTED",
            ErrorReason::RateLimited => "PROVIDER_RATE_LIMITED",
            ErrorReason::Unavailable => "PROVIDER_UNAVAILABLE",
            ErrorReason::BadResponse => "PROVIDER_BAD_RESPONSE",
            ErrorReason::Rejected => "PROVIDER_REJECTED",
            ErrorReason::StateUnavailable => "STATE_UNAVAILABLE",
        }
    }

    /// The reason as a metric label or span field (`auth_failed`, `unavailable`, ...).
    pub fn label(self) -> &'static str {
        match self {
            ErrorReason::AuthFailed => "auth_failed",
            ErrorReason::QuotaExhausted => "quota_exhausted",
            ErrorReason::RateLimited => "rate_limited",
            ErrorReason::Unavailable => "unavailable",
            ErrorReason::BadResponse => "bad_response",
            ErrorReason::Rejected => "rejected",
            ErrorReason::StateUnavailable => "state_unavailable",
        }
    }
}

/// How a vendor's own error code is to be treated. Each vendor module keeps its table of these in
/// one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeClass {
    /// phonecheck's reason.
    pub reason: ErrorReason,
    /// Whether trying again later may succeed.
    pub retryable: bool,
    /// Whether the vendor bills for the failed call.
    pub billable: bool,
}

/// A failed vendor call. Messages are phonecheck's own words plus the vendor's code and text;
/// they never carry credentials or unmasked numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No connection to the vendor could be made (refused, DNS, TLS, connect timeout): the
    /// request was never sent, so trying again costs nothing.
    #[error("could not reach the vendor: {0}")]
    Transport(String),
    /// The request was sent, but its answer did not come back whole (the connection reset or
    /// failed mid-answer): the vendor may have taken, and billed, it, so it is not retried at
    /// once.
    #[error("the vendor's answer was cut off (the request may have been billed): {0}")]
    Interrupted(String),
    /// No answer within the configured timeout (a vendor that accepts and never answers, or
    /// answers a byte at a time): like [`ProviderError::Interrupted`], possibly billed.
    #[error("the vendor did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open after repeated failures: the call was not made.
    #[error("not called: the circuit breaker is open after repeated failures")]
    CircuitOpen,
    /// The vendor answered with an HTTP error status and no readable body.
    #[error("the vendor answered HTTP {0}")]
    Http(u16),
    /// The vendor's body could not be decoded.
    #[error("the vendor's answer could not be read: {0}")]
    BadResponse(String),
    /// phonecheck's own state (what was submitted to an asynchronous vendor) could not be read or
    /// written.
    #[error("phonecheck could not read or write its state: {0}")]
    State(String),
    /// The vendor took the request, and bills it, but phonecheck could not record it (an
    /// asynchronous vendor's submission not written to the pending store): a failure that costs.
    #[error("the vendor took (and bills) the request, but phonecheck could not record it: {0}")]
    Unrecorded(String),
    /// The vendor answered with one of its own error codes.
    #[error("the vendor answered code {code}: {message}")]
    Vendor {
        /// The vendor's code, as sent.
        code: String,
        /// The vendor's text, as sent.
        message: String,
        /// How the code is treated.
        class: CodeClass,
    },
}

impl ProviderError {
    /// How this failure is treated.
    pub fn class(&self) -> CodeClass {
        let class = |reason, retryable| CodeClass {
            reason,
            retryable,
            billable: false,
        };
        match self {
            ProviderError::Transport(_)
            | ProviderError::Interrupted(_)
            | ProviderError::Timeout(_)
            | ProviderError::CircuitOpen => class(ErrorReason::Unavailable, true),
            ProviderError::Http(429) => class(ErrorReason::RateLimited, true),
            ProviderError::Http(401 | 403) => class(ErrorReason::AuthFailed, false),
            ProviderError::Http(s) if *s >= 500 => class(ErrorReason::Unavailable, true),
            ProviderError::Http(_) => class(ErrorReason::Rejected, false),
            ProviderError::BadResponse(_) => class(ErrorReason::BadResponse, false),
            ProviderError::State(_) => class(ErrorReason::StateUnavailable, true),
            ProviderError::Unrecorded(_) => CodeClass {
                billable: true,
                ..class(ErrorReason::StateUnavailable, true)
            },
            ProviderError::Vendor { class, .. } => *class,
        }
    }

    /// phonecheck's reason for the failure.
    pub fn reason(&self) -> ErrorReason {
        self.class().reason
    }

    /// Whether trying again later may succeed.
    pub fn retryable(&self) -> bool {
        self.class().retryable
    }

    /// Whether the vendor bills for the failed call.
    pub fn billable(&self) -> bool {
        self.class().billable
    }

    /// Whether the request reached the vendor, which may have billed it, without phonecheck
    /// getting the answer: such a call is not retried blindly (a later pass may ask again).
    pub fn possibly_billed(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout(_) | ProviderError::Interrupted(_)
        )
    }

    /// The vendor's own code, when it sent one.
    pub fn vendor_code(&self) -> Option<&str> {
        match self {
            ProviderError::Vendor { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the failure says the vendor is not serving this account (down, answering
    /// garbage, refusing the credentials, out of balance) rather than something about the number
    /// asked (`Rejected`), phonecheck's own state (`StateUnavailable`) or a rate that retries and
    /// quotas handle (`RateLimited`). The one rule read by the circuit breaker and by the health
    /// `ListProviders` shows. The breaker's own fast failure is not a new failure of the vendor.
    pub fn counts_against_vendor(&self) -> bool {
        matches!(
            self.reason(),
            ErrorReason::Unavailable
                | ErrorReason::BadResponse
                | ErrorReason::AuthFailed
                | ErrorReason::QuotaExhausted
        ) && *self != ProviderError::CircuitOpen
    }
}
