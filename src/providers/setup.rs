//! The settings every vendor shares, `base_url`, `limits` and `prices` of `[providers.NAME]`,
//! and what a vendor's client is built from once they are resolved with the vendor's defaults.

use std::time::Duration;

use serde::Deserialize;

use super::{BuildContext, Limits, LimitsConfig, Prices, ProviderInfo, QuotaConfig, url_problem};
use crate::domain::Check;

/// The fields of `[providers.NAME]` that every vendor has; the rest of the table is the vendor's
/// own settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedConfig {
    /// Where the vendor is reached; its production endpoint by default.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Timeout, quota, concurrency, retries, circuit breaker, batch linger.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What one billed call costs, per check.
    #[serde(default)]
    pub prices: Prices,
}

/// The field names of [`SharedConfig`], which a vendor's own settings never use.
pub const SHARED_FIELDS: [&str; 3] = ["base_url", "limits", "prices"];

/// What a vendor publishes and phonecheck keeps to unless told otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// The production endpoint, where the vendor has one (a vendor with an endpoint per region
    /// names them in its own settings).
    pub base_url: Option<&'static str>,
    /// The account's published quota.
    pub quota: QuotaConfig,
    /// Time allowed for one call.
    pub timeout: Duration,
    /// Numbers one call carries.
    pub batch_size: usize,
    /// Whether answers come later (a submission, then a search).
    pub asynchronous: bool,
}

impl SharedConfig {
    /// Every problem with these settings, for a vendor that serves `checks`.
    pub fn problems(&self, checks: &[Check]) -> Vec<String> {
        let mut problems: Vec<String> = self
            .base_url
            .as_deref()
            .and_then(|url| url_problem("base_url", url))
            .into_iter()
            .collect();
        problems.extend(self.limits.problems());
        problems.extend(self.prices.problems(checks));
        problems
    }
}

/// A vendor client's surroundings and shared settings, every value decided.
#[derive(Debug, Clone)]
pub struct Setup<'a> {
    /// The configured name (`[providers.NAME]`).
    pub name: &'a str,
    /// The base URL, parsed: the configured one, else the vendor's.
    pub base_url: Option<reqwest::Url>,
    /// What the provider is, as `ListProviders` shows it.
    pub info: ProviderInfo,
    /// The shared HTTP client, clock and stores.
    pub ctx: &'a BuildContext,
}

impl<'a> Setup<'a> {
    /// Resolves `shared` with the defaults of `vendor`, which serves `checks`.
    pub fn new(
        name: &'a str,
        vendor: &'static str,
        checks: &[Check],
        defaults: &Defaults,
        shared: &SharedConfig,
        ctx: &'a BuildContext,
    ) -> Result<Setup<'a>, String> {
        let base_url = shared
            .base_url
            .as_deref()
            .or(defaults.base_url)
            .map(|url| reqwest::Url::parse(url).map_err(|e| format!("base_url: {e}")))
            .transpose()?;
        let limits: Limits = shared.limits.resolve(defaults.quota, defaults.timeout);
        Ok(Setup {
            name,
            base_url,
            info: ProviderInfo {
                name: name.into(),
                vendor,
                checks: checks.to_vec(),
                batch_size: defaults.batch_size,
                asynchronous: defaults.asynchronous,
                limits,
                sandbox: ctx.sandbox,
                prices: shared.prices,
            },
            ctx,
        })
    }

    /// The URL of `path` at the vendor.
    pub fn endpoint(&self, path: &str) -> Result<reqwest::Url, String> {
        self.base_url
            .as_ref()
            .ok_or("base_url is not set")?
            .join(path)
            .map_err(|e| format!("base_url: {e}"))
    }
}
