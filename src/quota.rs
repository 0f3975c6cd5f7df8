//! A request quota as a token bucket: a vendor account's published limit, a tenant's request
//! rate. A leaf, so that whatever paces calls (providers, budgets, tenants, the shared state)
//! can name it without naming the others.

use std::time::Duration;

use serde::Deserialize;

/// A request quota (a token bucket): a vendor account's, or a tenant's request rate.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Sustained requests per second; zero disables the limit.
    pub requests_per_second: f64,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

impl QuotaConfig {
    /// The token bucket for this quota; `None` when unlimited.
    pub fn governor(self) -> Option<governor::Quota> {
        if !(self.requests_per_second > 0.0 && self.requests_per_second.is_finite()) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / self.requests_per_second);
        let burst = std::num::NonZeroU32::new(self.burst.max(1))?;
        governor::Quota::with_period(period).map(|q| q.allow_burst(burst))
    }
}
