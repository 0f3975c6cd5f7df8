//! What every vendor client is, whichever the vendor: the [`Provider`] trait, what it is asked
//! ([`Query`]) and answers ([`Answer`]), the settings every vendor shares ([`SharedConfig`]:
//! `base_url`, `limits`, `prices`) resolved with the vendor's defaults into a [`Setup`], and the
//! HTTP and signing helpers the vendors' clients share. The vendors themselves live in their own
//! folders above this layer (`crate::vendors`); nothing here names one.

pub mod limits;
mod setup;
pub mod signing;

use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::domain::{Check, CheckData, KycInput, Money, NumberInfo, PerCheck};
pub use crate::domain::{CodeClass, ErrorReason, ProviderError};
use crate::store::PendingStore;

pub use crate::clock::{Clock, FixedClock, SystemClock};
pub use limits::{Limits, LimitsConfig, QuotaConfig};
pub use setup::{Defaults, SHARED_FIELDS, Setup, SharedConfig};

impl ProviderError {
    /// Reads an HTTP client error.
    pub fn from_reqwest(err: &reqwest::Error) -> ProviderError {
        if err.is_decode() {
            return ProviderError::BadResponse(err.to_string());
        }
        // reqwest's Display names the URL, which may carry credentials in its query (TongDun):
        // keep only the kind of failure.
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_request() {
            "request failed"
        } else if err.is_body() {
            "body failed"
        } else {
            "HTTP error"
        };
        let source = std::error::Error::source(err)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        // Only a failed connection (refused, DNS, TLS, the connect timeout) says the request was
        // never sent; anything later may have reached the vendor.
        if err.is_connect() {
            ProviderError::Transport(format!("{kind}{source}"))
        } else {
            ProviderError::Interrupted(format!("{kind}{source}"))
        }
    }
}

/// What a vendor is asked about one number.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The number, analysed.
    pub number: NumberInfo,
    /// Optional KYC inputs (account presence).
    pub kyc: Option<KycInput>,
    /// The tenant whose call this is when each tenant's answers are its own
    /// (`cache.share = "tenant"`); `None` when answers are shared. A vendor client that
    /// remembers calls itself (an asynchronous submission) keeps them apart by it.
    pub scope: Option<std::sync::Arc<str>>,
}

impl From<NumberInfo> for Query {
    fn from(number: NumberInfo) -> Query {
        Query {
            number,
            kyc: None,
            scope: None,
        }
    }
}

/// A successful vendor answer for one number.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The answer is here.
    Ready {
        /// The decoded answer.
        data: CheckData,
        /// Whether the vendor bills for it.
        billable: bool,
    },
    /// An asynchronous vendor has the number and will answer later.
    Pending {
        /// Whether the vendor bills for the submission.
        billable: bool,
    },
}

impl Answer {
    /// Whether the vendor bills for it.
    pub fn billable(&self) -> bool {
        match self {
            Answer::Ready { billable, .. } | Answer::Pending { billable } => *billable,
        }
    }
}

/// What a provider is and what it does, as listed by `ListProviders`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderInfo {
    /// The configured name.
    pub name: Arc<str>,
    /// The vendor protocol (`thinksms`, ...).
    pub vendor: &'static str,
    /// Checks served.
    pub checks: Vec<Check>,
    /// Numbers per vendor call.
    pub batch_size: usize,
    /// Whether answers come later.
    pub asynchronous: bool,
    /// The limits phonecheck keeps to with this vendor account.
    pub limits: Limits,
    /// Whether it calls a simulator.
    pub sandbox: bool,
    /// What one billed call costs, per check.
    pub prices: Prices,
}

/// `[providers.NAME.prices]`: the price of one billed call per check, in the billing currency,
/// written as a decimal string under the check's key (`line_status = "0.03"`). A check without a
/// price costs nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prices(PerCheck<Option<Money>>);

impl<'de> Deserialize<'de> for Prices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let table = std::collections::BTreeMap::<String, Money>::deserialize(deserializer)?;
        let mut prices = Prices::default();
        for (key, price) in table {
            let check = Check::named(&key)
                .filter(|c| c.key() == key)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "unknown field `{key}`, expected one of {}",
                        Check::keys()
                    ))
                })?;
            prices.set(check, price);
        }
        Ok(prices)
    }
}

impl Prices {
    /// The price of one billed call for `check` (nothing when none is configured).
    pub fn of(&self, check: Check) -> Money {
        self.get(check).unwrap_or_default()
    }

    /// Sets the price of `check`.
    pub fn set(&mut self, check: Check, price: Money) {
        self.0[check] = Some(price);
    }

    /// The configured price of `check`, if any.
    pub fn get(&self, check: Check) -> Option<Money> {
        self.0[check]
    }

    /// Prices given for checks the provider does not serve.
    pub fn problems(&self, serves: &[Check]) -> Vec<String> {
        Check::ALL
            .into_iter()
            .filter(|check| self.get(*check).is_some() && !serves.contains(check))
            .map(|check| {
                format!(
                    "prices.{}: the provider does not serve {check}",
                    check.key()
                )
            })
            .collect()
    }
}

/// A vendor. Batch-shaped: one call carries up to `batch_size` numbers and yields one result per
/// number, in order.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug + 'static {
    /// What the provider is.
    fn info(&self) -> &ProviderInfo;

    /// Whether the vendor serves this number; `Err` says why not. Called before any vendor call,
    /// so numbers the vendor would refuse are never sent (nor billed).
    fn covers(&self, number: &NumberInfo) -> Result<(), String>;

    /// Runs `check` for every query of `batch` (at most `batch_size`, all covered). Returns one
    /// result per query, in the same order.
    async fn call(&self, check: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>>;
}

/// A vendor that takes one number per call (batch size 1): a [`Provider`] whose batches are sent
/// call by call.
#[async_trait]
pub trait OneNumberPerCall: Send + Sync + std::fmt::Debug + 'static {
    /// What the provider is.
    fn info(&self) -> &ProviderInfo;

    /// Whether the vendor serves this number; `Err` says why not.
    fn covers(&self, number: &NumberInfo) -> Result<(), String>;

    /// Runs `check` for one query.
    async fn query(&self, check: Check, query: &Query) -> Result<Answer, ProviderError>;
}

#[async_trait]
impl<T: OneNumberPerCall> Provider for T {
    fn info(&self) -> &ProviderInfo {
        OneNumberPerCall::info(self)
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        OneNumberPerCall::covers(self, number)
    }

    async fn call(&self, check: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
        let mut results = Vec::with_capacity(batch.len());
        for query in batch {
            results.push(self.query(check, query).await);
        }
        results
    }
}

/// Everything a provider needs from its surroundings.
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// The clock for signatures.
    pub clock: Arc<dyn Clock>,
    /// Whether the provider is pointed at a simulator.
    pub sandbox: bool,
    /// Where asynchronous vendors remember what they submitted.
    pub pending: Arc<dyn PendingStore>,
}

/// Checks a configured URL, for start-up validation.
pub fn url_problem(field: &str, url: &str) -> Option<String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => None,
        Ok(_) => Some(format!("{field} {url:?} must be an http or https URL")),
        Err(e) => Some(format!("{field} {url:?} is not a URL: {e}")),
    }
}

/// Sends a prepared request and returns the body, mapping transport failures. (The time allowed
/// is the engine's timeout layer's business.)
pub async fn send(
    request: reqwest::RequestBuilder,
) -> Result<(reqwest::StatusCode, bytes::Bytes), ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::from_reqwest(&e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| ProviderError::from_reqwest(&e))?;
    Ok((status, body))
}

/// Prefers the HTTP status over a decoding failure when the vendor answered an HTTP error.
pub fn http_or<T>(
    status: reqwest::StatusCode,
    decoded: Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    match decoded {
        Err(ProviderError::BadResponse(_)) if !status.is_success() => {
            Err(ProviderError::Http(status.as_u16()))
        }
        other => other,
    }
}

/// Whether `number` is an 11-digit Chinese mobile-like number (mobile, data card, IoT,
/// satellite): what the line-status vendors check; the refusal names `vendor`.
pub fn chinese_mobile(number: &NumberInfo, vendor: &str) -> Result<(), String> {
    use crate::domain::NumberType;
    let mobile_like = matches!(
        number.number_type,
        NumberType::Mobile | NumberType::DataCard | NumberType::Iot | NumberType::Satellite
    );
    if number.region_code == "CN" && mobile_like && number.national_number.len() == 11 {
        Ok(())
    } else {
        Err(format!(
            "{vendor} checks 11-digit Chinese mobile numbers only"
        ))
    }
}

/// The same failure for every query of a batch (a whole call failed).
pub fn fail_all(batch_len: usize, error: ProviderError) -> Vec<Result<Answer, ProviderError>> {
    vec![Err(error); batch_len]
}

/// The HTTP client every provider shares: rustls with the `ring` provider, pooled connections.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Fails only when another provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .user_agent(concat!("phonecheck/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        // A connection not made by then is a connect failure (never sent, retried); the
        // provider's `limits.timeout` bounds the whole attempt, a trickling answer included.
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// The longest wait for a connection to a vendor (DNS, TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_the_vendor_took_but_phonecheck_lost_is_billed() {
        // A caih submission the vendor charged whose record could not be written: the charge
        // counts (ledger, budgets), and it is not retried at once (that would pay again).
        let e = ProviderError::Unrecorded("store full".into());
        assert!(e.billable() && e.retryable());
        assert_eq!(e.reason(), ErrorReason::StateUnavailable);
        let free = ProviderError::State("store full".into());
        assert!(!free.billable());
    }

    #[test]
    fn transport_failures_are_retryable_and_free() {
        let e = ProviderError::Transport("connection refused".into());
        assert_eq!(
            (e.reason(), e.retryable(), e.billable()),
            (ErrorReason::Unavailable, true, false)
        );
        assert_eq!(ProviderError::Http(429).reason(), ErrorReason::RateLimited);
        assert_eq!(ProviderError::Http(503).reason(), ErrorReason::Unavailable);
        assert_eq!(ProviderError::Http(401).reason(), ErrorReason::AuthFailed);
        assert_eq!(ProviderError::Http(404).reason(), ErrorReason::Rejected);
        assert!(!ProviderError::BadResponse("eof".into()).retryable());
    }
}
