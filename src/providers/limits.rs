//! How hard phonecheck may push one vendor account: `[providers.NAME.limits]`, the same table for
//! every vendor, with the vendor's published quota as default.

use std::time::Duration;

use serde::Deserialize;

pub use crate::quota::QuotaConfig;

/// `[providers.NAME.limits]`, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time allowed for one vendor call (one attempt).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The account's quota; the vendor's published one by default.
    pub quota: Option<QuotaConfig>,
    /// Vendor calls in flight at once.
    pub concurrency: Option<usize>,
    /// Retries of a failed call that is retryable and was not billed.
    pub retries: Option<u32>,
    /// First back-off before a retry; doubles each time, with jitter.
    #[serde(default, with = "humantime_serde")]
    pub retry_backoff: Option<Duration>,
    /// Consecutive failed calls that open the circuit breaker.
    pub breaker_failures: Option<u32>,
    /// How long an open breaker fails calls fast before letting one probe through.
    #[serde(default, with = "humantime_serde")]
    pub breaker_cooldown: Option<Duration>,
    /// How long a batch waits to fill before it is sent (batch vendors).
    #[serde(default, with = "humantime_serde")]
    pub batch_linger: Option<Duration>,
}

/// The limits in force, every value decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Per attempt.
    pub timeout: Duration,
    /// The account's quota.
    pub quota: QuotaConfig,
    /// Calls in flight.
    pub concurrency: usize,
    /// Retries.
    pub retries: u32,
    /// First back-off.
    pub retry_backoff: Duration,
    /// Failures that open the breaker.
    pub breaker_failures: u32,
    /// Breaker cool-down.
    pub breaker_cooldown: Duration,
    /// Batch linger.
    pub batch_linger: Duration,
}

impl LimitsConfig {
    /// The limits, with `quota` and `timeout` defaulting to the vendor's.
    pub fn resolve(&self, vendor_quota: QuotaConfig, vendor_timeout: Duration) -> Limits {
        Limits {
            timeout: self.timeout.unwrap_or(vendor_timeout),
            quota: self.quota.unwrap_or(vendor_quota),
            concurrency: self.concurrency.unwrap_or(64),
            retries: self.retries.unwrap_or(2),
            retry_backoff: self.retry_backoff.unwrap_or(Duration::from_millis(100)),
            breaker_failures: self.breaker_failures.unwrap_or(5),
            breaker_cooldown: self.breaker_cooldown.unwrap_or(Duration::from_secs(30)),
            batch_linger: self.batch_linger.unwrap_or(Duration::from_millis(10)),
        }
    }

    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timeout.is_some_and(|t| t.is_zero()) {
            problems.push("limits.timeout must be above zero".to_owned());
        }
        if let Some(q) = self.quota {
            if !(q.requests_per_second >= 0.0 && q.requests_per_second.is_finite()) {
                problems.push("limits.quota.requests_per_second must be zero or more".to_owned());
            }
            if q.requests_per_second > 0.0 && q.burst == 0 {
                problems.push("limits.quota.burst must be at least 1".to_owned());
            }
        }
        if self.concurrency == Some(0) {
            problems.push("limits.concurrency must be at least 1".to_owned());
        }
        if self.breaker_failures == Some(0) {
            problems.push("limits.breaker_failures must be at least 1".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let vendor = QuotaConfig {
            requests_per_second: 100.0,
            burst: 10,
        };
        let limits = LimitsConfig::default().resolve(vendor, Duration::from_secs(5));
        assert_eq!(
            (limits.quota, limits.timeout, limits.retries),
            (vendor, Duration::from_secs(5), 2)
        );
        let bad = LimitsConfig {
            concurrency: Some(0),
            quota: Some(QuotaConfig {
                requests_per_second: -1.0,
                burst: 0,
            }),
            ..Default::default()
        };
        assert_eq!(bad.problems().len(), 2);
    }
}
