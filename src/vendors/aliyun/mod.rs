//! Aliyun 号码百科 (Dytnsapi 2020-02-17), one Chinese mobile number per call:
//! `PhoneNumberStatusForPublic` (line status and the current carrier after porting), and, in
//! [`actions`], `DescribePhoneNumberOnlineTime` (tenure), `DescribePhoneTwiceTelVerify`
//! (reassigned) and `DescribePhoneNumberOperatorAttribute` (current carrier), each with its own
//! quota inside the client (`action_quotas`).
//!
//! Wire contract: docs/providers.md §5, checked against the vendor's Python SDK
//! (`alibabacloud-dytnsapi20200217` 3.4.0): `POST /?AuthCode=..&InputNumber=..&Mask=..` with an
//! empty body, the `x-acs-*` headers, and Alibaba Cloud's V3 signature (`ACS3-HMAC-SHA256`, in
//! [`signing`]). The answer is `{"RequestId", "Code", "Message", "Data": {"Status",
//! "Carrier"}}`; gateway refusals come as HTTP 4xx/5xx with the same `Code`/`Message` shape.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Sandbox, Vendor, VendorSettings, read_settings};
use crate::providers::signing::{SignatureMethod, sha256_hex};
use crate::providers::{
    Answer, Clock, CodeClass, Defaults, ErrorReason, OneNumberPerCall, Provider, ProviderError,
    ProviderInfo, Query, QuotaConfig, Setup, chinese_mobile, http_or, send,
};
use signing::{Acs3Request, authorization};

pub mod actions;
pub mod signing;
pub mod sim;
use crate::domain::{
    Check, CheckData, CurrentCarrier, LineStatus, LineStatusResult, NetworkType, NumberInfo,
};
use crate::number::segments::Operator;

/// The vendor's production endpoint.
pub const DEFAULT_BASE_URL: &str = "https://dytnsapi.aliyuncs.com";
/// The API action (`x-acs-action`).
pub const ACTION: &str = "PhoneNumberStatusForPublic";
/// The API version (`x-acs-version`).
pub const VERSION: &str = "2020-02-17";
/// The request path: RPC-style APIs take everything in the query of `/`.
pub const PATH: &str = "/";
/// The format of `x-acs-date`: UTC, to the second.
pub const DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// The vendor's published limit: 300 queries per second per account. A burst of one spaces calls
/// evenly, so no one-second window ever holds more than 300.
pub const DEFAULT_QUOTA: QuotaConfig = QuotaConfig {
    requests_per_second: 300.0,
    burst: 1,
};

/// How the number is sent (`Mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mask {
    /// The 11-digit number in clear.
    #[default]
    Normal,
    /// MD5 of the 11-digit number, 32 lower-case hex characters.
    Md5,
    /// SHA-256 of the 11-digit number, 64 lower-case hex characters.
    Sha256,
    /// SM3 of the 11-digit number, 64 lower-case hex characters.
    Sm3,
}

impl Mask {
    /// Every mask.
    pub const ALL: [Mask; 4] = [Mask::Normal, Mask::Md5, Mask::Sha256, Mask::Sm3];

    /// The wire name (upper case; the vendor accepts no other case).
    pub fn as_str(self) -> &'static str {
        match self {
            Mask::Normal => "NORMAL",
            Mask::Md5 => "MD5",
            Mask::Sha256 => "SHA256",
            Mask::Sm3 => "SM3",
        }
    }

    /// Reads a wire name, exactly.
    pub fn parse(name: &str) -> Option<Mask> {
        Mask::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// The hash behind a hash mask.
    pub fn hash(self) -> Option<SignatureMethod> {
        match self {
            Mask::Normal => None,
            Mask::Md5 => Some(SignatureMethod::Md5),
            Mask::Sha256 => Some(SignatureMethod::Sha256),
            Mask::Sm3 => Some(SignatureMethod::Sm3),
        }
    }

    /// `InputNumber` for an 11-digit national number. **Decision**: hashes are sent as lower-case
    /// hex of the UTF-8 digits, no country code; the vendor says hashes are case-insensitive.
    pub fn encode(self, national_number: &str) -> String {
        match self.hash() {
            None => national_number.to_owned(),
            Some(hash) => hash.hex_digest(national_number.as_bytes()),
        }
    }
}

/// The vendor, as the registry lists it.
pub const VENDOR: Vendor = Vendor {
    name: "aliyun",
    checks: &[
        Check::LineStatus,
        Check::Tenure,
        Check::Reassigned,
        Check::CurrentCarrier,
    ],
    defaults: Defaults {
        base_url: Some(DEFAULT_BASE_URL),
        quota: DEFAULT_QUOTA,
        timeout: Duration::from_secs(5),
        batch_size: 1,
        asynchronous: false,
    },
    secret_field: "access_key_secret",
    settings: read_settings::<AliyunSettings>,
    sandbox: Sandbox {
        settings: &[
            ("access_key_id", SANDBOX_ACCESS_KEY_ID),
            ("auth_code", SANDBOX_AUTH_CODE),
        ],
        secret: SANDBOX_ACCESS_KEY_SECRET,
        prices: &[
            (Check::LineStatus, "0.04"),
            (Check::Tenure, "0.03"),
            (Check::Reassigned, "0.05"),
            (Check::CurrentCarrier, "0.02"),
        ],
    },
    simulator: sim::routes,
};

/// The AccessKey id of the sandbox.
pub const SANDBOX_ACCESS_KEY_ID: &str = "LTAI5tSandboxAliyunAccessKey";
/// The AccessKey secret of the sandbox. Public on purpose: it only opens the simulator.
pub const SANDBOX_ACCESS_KEY_SECRET: &str = "sandbox-aliyun-access-key-secret";
/// The 号码百科 authorization code (`AuthCode`) of the sandbox.
pub const SANDBOX_AUTH_CODE: &str = "sandbox-aliyun-auth-code";

/// `[providers.NAME]` with `type = "aliyun"`; the AccessKey secret is in `access_key_secret`
/// (never sent).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunSettings {
    /// The AccessKey id (sent as the `Credential`).
    pub access_key_id: String,
    /// The authorization code of the approved 号码百科 application (`AuthCode`).
    pub auth_code: String,
    /// How the number is sent: `NORMAL` (default), `MD5`, `SHA256` or `SM3`.
    #[serde(default)]
    pub mask: Mask,
    /// Per-action limits over the defaults of [`actions::ACTIONS`], keyed by check
    /// (`tenure = { requests_per_second = 50, burst = 1 }`): the vendor counts each action's
    /// queries per second apart from the account's limit.
    #[serde(default)]
    pub action_quotas: HashMap<String, QuotaConfig>,
}

impl VendorSettings for AliyunSettings {
    fn problems(&self) -> Vec<String> {
        [
            ("access_key_id", &self.access_key_id),
            ("auth_code", &self.auth_code),
        ]
        .into_iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(field, _)| format!("{field} is empty"))
        .chain(actions::quota_problems(&self.action_quotas))
        .collect()
    }

    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String> {
        Ok(Arc::new(AliyunProvider::new(setup, self, secret)?))
    }
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Carrier")]
    carrier: Option<String>,
}

/// How each vendor code is treated, gateway (HTTP 4xx/5xx) and business (HTTP 200) alike.
/// **Decision** (the vendor publishes the gateway codes and `OperatorLimit` /
/// `RequestFrequencyLimit`, not a full business table): refused credentials or authorization
/// code are auth failures; an expired date is a clock to fix (not retried); a reused nonce is
/// retried with a fresh one; throttling is retried, the carrier's per-number frequency limit
/// (`RequestFrequencyLimit`) is not (the same number soon after would be refused again: it is a
/// back-off for that number, rate-limited, which never trips the breaker); `isp.*` and 5xx codes
/// are the vendor's own trouble; the codes about the number asked (`PortabilityNumberNotSupported`,
/// `RequestNumberNotSupported` for 192 and MVNO numbers, `InvalidParameter`,
/// `PhoneNumberNotfound`), every other `isv.*` and any unknown code are refusals. None is billed.
pub fn classify_code(code: &str) -> CodeClass {
    let (reason, retryable) = match code {
        "InvalidAccessKeyId.NotFound"
        | "InvalidAccessKeyId.Inactive"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "Forbidden.RAM"
        | "Ram.PermissionDeny"
        | "Permission.NotAuthorized"
        | "isv.AUTH_CODE_NOT_EXIST" => (ErrorReason::AuthFailed, false),
        "Product.Unsubscript" | "isv.OUT_OF_SERVICE" | "isv.PRODUCT_UNSUBSCRIBE" => {
            (ErrorReason::QuotaExhausted, false)
        }
        "Throttling" | "Throttling.User" | "Throttling.Api" | "System.LimitControl" => {
            (ErrorReason::RateLimited, true)
        }
        "RequestFrequencyLimit" | "isv.BUSINESS_LIMIT_CONTROL" => (ErrorReason::RateLimited, false),
        "SignatureNonceUsed" => (ErrorReason::Rejected, true),
        "PortabilityNumberNotSupported"
        | "RequestNumberNotSupported"
        | "InvalidParameter"
        | "PhoneNumberNotfound" => (ErrorReason::Rejected, false),
        "InternalError" | "ServiceUnavailable" => (ErrorReason::Unavailable, true),
        c if c.starts_with("isp.") => (ErrorReason::Unavailable, true),
        _ => (ErrorReason::Rejected, false),
    };
    CodeClass {
        reason,
        retryable,
        billable: false,
    }
}

/// Maps the vendor's `Status` to the canonical status. `SUSPECTED_POWER_OFF` is read as powered
/// off (the same category, less sure: the raw code keeps the difference), and `BUSY` as active
/// (a line in a call is in use). A status the vendor adds later is read by its words, else as no
/// record.
pub fn map_status(status: &str) -> LineStatus {
    match status {
        "NORMAL" | "BUSY" => LineStatus::Active,
        "SHUTDOWN" => LineStatus::Suspended,
        "POWER_OFF" | "SUSPECTED_POWER_OFF" => LineStatus::PoweredOff,
        "NOT_EXIST" => LineStatus::Empty,
        "UNKNOWN" => LineStatus::NoRecord,
        other => LineStatus::from_vendor_words(other).unwrap_or(LineStatus::NoRecord),
    }
}

/// The English name of the network a number's segment belongs to: the operator, or for a virtual
/// operator's segment the host network.
fn segment_network(number: &NumberInfo) -> Option<&'static str> {
    let carrier = number.carrier.as_ref()?;
    match carrier.network_type {
        NetworkType::Virtual => carrier.host_network,
        _ => Some(carrier.name),
    }
}

/// The English and local names of a basic carrier the vendor names by code (`CMCC`), English
/// name (`China Mobile`) or local name (`中国移动`); `None` for any other (a virtual operator).
pub fn current_carrier_names(name: &str) -> Option<(&'static str, &'static str)> {
    let name = name.trim();
    if let Some(op) = Operator::from_code(name) {
        return Some(op.names());
    }
    [
        Operator::ChinaMobile,
        Operator::ChinaUnicom,
        Operator::ChinaTelecom,
        Operator::ChinaBroadnet,
    ]
    .into_iter()
    .map(Operator::names)
    .find(|(en, local)| name.eq_ignore_ascii_case(en) || name == *local)
}

/// The current carrier, and whether it differs from the segment's (the number was ported).
fn current_carrier(code: &str, number: &NumberInfo) -> (CurrentCarrier, bool) {
    let names = Operator::from_code(code).map(Operator::names);
    let (name, local_name) = names.unwrap_or_default();
    let ported = match (names, segment_network(number)) {
        (Some((current, _)), Some(segment)) => current != segment,
        _ => false,
    };
    let carrier = CurrentCarrier {
        code: code.to_owned(),
        name: name.to_owned(),
        local_name: local_name.to_owned(),
    };
    (carrier, ported)
}

/// Decodes a response body for `number`. Billable only when `Code` is `OK` and the status is not
/// `UNKNOWN` (the vendor's rule).
pub fn decode(body: &[u8], number: &NumberInfo) -> Result<Answer, ProviderError> {
    let data: Data = actions::envelope(body)?;
    let status = data
        .status
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ProviderError::BadResponse("OK without Data.Status".to_owned()))?;
    let mut result = LineStatusResult::new(map_status(&status), status.clone(), "");
    if let Some(code) = data.carrier.filter(|c| !c.is_empty()) {
        let (carrier, ported) = current_carrier(&code, number);
        result.current_carrier = Some(carrier);
        result.ported = ported;
    }
    Ok(Answer::Ready {
        data: CheckData::LineStatus(result),
        billable: status != "UNKNOWN",
    })
}

/// The Aliyun client.
#[derive(Debug)]
pub struct AliyunProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    endpoint: reqwest::Url,
    /// `host` as signed: the endpoint's host, with its port when not the scheme's default.
    host: String,
    access_key_id: String,
    access_key_secret: SecretString,
    auth_code: String,
    mask: Mask,
    clock: Arc<dyn Clock>,
    limiters: ActionLimiters,
}

/// The per-action token buckets ([`actions::limiters`]).
struct ActionLimiters(HashMap<Check, governor::DefaultDirectRateLimiter>);

impl std::fmt::Debug for ActionLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl AliyunProvider {
    /// Builds the client from its setup, settings and (resolved) AccessKey secret.
    pub fn new(
        setup: Setup<'_>,
        settings: &AliyunSettings,
        access_key_secret: SecretString,
    ) -> Result<Self, String> {
        let endpoint = setup.endpoint(PATH)?;
        let host = match (endpoint.host_str(), endpoint.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err("base_url has no host".to_owned()),
        };
        Ok(AliyunProvider {
            http: setup.ctx.http.clone(),
            clock: setup.ctx.clock.clone(),
            info: setup.info,
            endpoint,
            host,
            access_key_id: settings.access_key_id.clone(),
            access_key_secret,
            auth_code: settings.auth_code.clone(),
            mask: settings.mask,
            limiters: ActionLimiters(actions::limiters(&settings.action_quotas)),
        })
    }

    /// The query parameters and headers (with `Authorization`) of the line-status call for one
    /// number.
    pub fn signed_request(&self, national_number: &str) -> SignedRequest {
        self.signed_action(ACTION, national_number, Vec::new())
    }

    /// The signed call of `action` for one number: `AuthCode`, `InputNumber` and `Mask`, then
    /// `extra` parameters (`StartTime`).
    pub fn signed_action(
        &self,
        action: &str,
        national_number: &str,
        extra: Vec<(&'static str, String)>,
    ) -> SignedRequest {
        let mut query = vec![
            ("AuthCode", self.auth_code.clone()),
            ("InputNumber", self.mask.encode(national_number)),
            ("Mask", self.mask.as_str().to_owned()),
        ];
        query.extend(extra);
        let headers = vec![
            ("host", self.host.clone()),
            ("x-acs-action", action.to_owned()),
            ("x-acs-version", VERSION.to_owned()),
            (
                "x-acs-date",
                self.clock.now().format(DATE_FORMAT).to_string(),
            ),
            ("x-acs-signature-nonce", self.clock.nonce()),
            ("x-acs-content-sha256", sha256_hex(b"")),
        ];
        let query_refs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let header_refs: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authorization = authorization(
            &Acs3Request {
                method: "POST",
                path: PATH,
                query: &query_refs,
                headers: &header_refs,
                payload_sha256: &sha256_hex(b""),
            },
            &self.access_key_id,
            self.access_key_secret.expose_secret(),
        );
        SignedRequest {
            query,
            headers,
            authorization,
        }
    }
}

/// One signed call: what goes in the query, the signed headers, and `Authorization`.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// `AuthCode`, `InputNumber`, `Mask`.
    pub query: Vec<(&'static str, String)>,
    /// The signed headers, `host` first.
    pub headers: Vec<(&'static str, String)>,
    /// The `Authorization` header.
    pub authorization: String,
}

#[async_trait]
impl OneNumberPerCall for AliyunProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        chinese_mobile(number, "Aliyun")
    }

    async fn query(&self, check: Check, query: &Query) -> Result<Answer, ProviderError> {
        let number = &query.number;
        let action = actions::for_check(check)
            .ok_or_else(|| ProviderError::BadResponse(format!("aliyun does not serve {check}")))?;
        let mut extra = Vec::new();
        if check == Check::Reassigned {
            // The API refuses a request without it; this is the vendor's refusal, made here.
            let Some(at) = query.kyc.as_ref().and_then(|k| k.registered_at) else {
                return Err(ProviderError::Vendor {
                    code: "MissingStartTime".to_owned(),
                    message: "the reassigned check needs the registration time".to_owned(),
                    class: classify_code("MissingStartTime"),
                });
            };
            extra.push(("StartTime", actions::start_time(at)));
        }
        if let Some(limiter) = self.limiters.0.get(&check) {
            limiter.until_ready().await;
        }
        let signed = self.signed_action(action.name, &number.national_number, extra);
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .query(&signed.query)
            .header(reqwest::header::AUTHORIZATION, signed.authorization)
            .header(reqwest::header::ACCEPT, "application/json");
        // `host` is signed as computed from the endpoint, which is also what the HTTP client
        // sends; it is left to the client so HTTP/2 carries it as `:authority`.
        for (name, value) in signed.headers.into_iter().filter(|(n, _)| *n != "host") {
            request = request.header(name, value);
        }
        let (status, body) = send(request).await?;
        // The vendor's JSON error (gateway refusals come as 4xx with a `Code`) is the better answer.
        let answer = match check {
            Check::Tenure => actions::decode_tenure(&body),
            Check::Reassigned => actions::decode_reassigned(&body),
            Check::CurrentCarrier => actions::decode_current_carrier(&body),
            _ => decode(&body, number),
        };
        http_or(status, answer)
    }
}

#[cfg(test)]
mod tests;
