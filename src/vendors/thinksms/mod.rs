//! Thinksms `emptyStatusQuery`: line status (空号检测) of one Chinese mobile number per call.
//!
//! Wire contract: docs/providers.md §1. `POST {base}/HrmApi/emptyStatusQuery` with
//! `{"mobile", "hashcode", "sign"}`, `sign = UPPER(md5(hashcode + mobile + private_key +
//! yyyyMMdd))` in China time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Sandbox, Vendor, VendorSettings, read_settings};
use crate::domain::{Check, CheckData, LineStatus, LineStatusResult, NumberInfo};
use crate::providers::signing::SignatureMethod;
use crate::providers::{
    Answer, Clock, CodeClass, Defaults, ErrorReason, OneNumberPerCall, Provider, ProviderError,
    ProviderInfo, Query, QuotaConfig, Setup, chinese_mobile, http_or, send,
};

pub mod sim;

/// The vendor's production base URL.
pub const DEFAULT_BASE_URL: &str = "http://api.thinksms.cn";
/// The request path.
pub const PATH: &str = "/HrmApi/emptyStatusQuery";
/// The vendor's published limit: 100 queries per second per account. A burst of one spaces calls
/// evenly, so no one-second window ever holds more than 100.
pub const DEFAULT_QUOTA: QuotaConfig = QuotaConfig {
    requests_per_second: 100.0,
    burst: 1,
};

/// The vendor, as the registry lists it.
pub const VENDOR: Vendor = Vendor {
    name: "thinksms",
    checks: &[Check::LineStatus],
    defaults: Defaults {
        base_url: Some(DEFAULT_BASE_URL),
        quota: DEFAULT_QUOTA,
        timeout: Duration::from_secs(5),
        batch_size: 1,
        asynchronous: false,
    },
    secret_field: "private_key",
    settings: read_settings::<ThinksmsSettings>,
    sandbox: Sandbox {
        settings: &[("hashcode", SANDBOX_HASHCODE)],
        secret: SANDBOX_PRIVATE_KEY,
        prices: &[(Check::LineStatus, "0.03")],
    },
    simulator: sim::routes,
};

/// The Thinksms account the sandbox simulator knows.
pub const SANDBOX_HASHCODE: &str = "sandbox0thinksms0hashcode0000000";
/// The private key of the sandbox account. Public on purpose: it only opens the simulator.
pub const SANDBOX_PRIVATE_KEY: &str = "sandbox-thinksms-private-key";

/// `[providers.NAME]` with `type = "thinksms"`: the account id; the private key is in
/// `private_key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThinksmsSettings {
    /// The account id (`hashcode`).
    pub hashcode: String,
}

impl VendorSettings for ThinksmsSettings {
    fn problems(&self) -> Vec<String> {
        if self.hashcode.trim().is_empty() {
            vec!["hashcode is empty".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn build(&self, setup: Setup<'_>, secret: SecretString) -> Result<Arc<dyn Provider>, String> {
        Ok(Arc::new(ThinksmsProvider::new(setup, self, secret)?))
    }
}

/// Thinksms: `UPPER(hex(md5(hashcode + mobile + private_key + yyyyMMdd)))`, the date in China
/// time. (The vendor's Go sample forgets to upper-case; the vendor accepts upper case only.)
pub fn sign(hashcode: &str, mobile: &str, private_key: &str, date_yyyymmdd: &str) -> String {
    let input = [hashcode, mobile, private_key, date_yyyymmdd].concat();
    SignatureMethod::Md5
        .hex_digest(input.as_bytes())
        .to_ascii_uppercase()
}

#[derive(Serialize)]
struct Request<'a> {
    mobile: &'a str,
    hashcode: &'a str,
    sign: &'a str,
}

#[derive(Deserialize)]
struct Response {
    mobileresult: Option<MobileResult>,
    #[serde(rename = "errorRes")]
    error_res: ErrorRes,
}

// `state` and `err_code` are integer codes the vendor sends as numbers or as strings (`"200"`):
// serde_with reads either.

#[serde_with::serde_as]
#[derive(Deserialize)]
struct MobileResult {
    #[serde_as(as = "serde_with::PickFirst<(_, serde_with::DisplayFromStr)>")]
    state: i64,
    #[serde(default)]
    desc: String,
}

#[serde_with::serde_as]
#[derive(Deserialize)]
struct ErrorRes {
    #[serde_as(as = "serde_with::PickFirst<(_, serde_with::DisplayFromStr)>")]
    err_code: i64,
    #[serde(default)]
    err_content: String,
}

/// How each `err_code` is treated. **Decision**: the vendor publishes only `"200"`; its codes
/// mirror HTTP status codes, so 401/403 are read as refused credentials, 429 as the rate limit, and
/// 5xx as unavailability. Any other code is a non-billable refusal; its text is kept.
pub fn classify_code(code: &str) -> CodeClass {
    let (reason, retryable) = match code {
        "401" | "403" => (ErrorReason::AuthFailed, false),
        "402" => (ErrorReason::QuotaExhausted, false),
        "429" => (ErrorReason::RateLimited, true),
        c if c.starts_with('5') && c.len() == 3 => (ErrorReason::Unavailable, true),
        _ => (ErrorReason::Rejected, false),
    };
    CodeClass {
        reason,
        retryable,
        billable: false,
    }
}

/// Maps the vendor's `state` to the canonical status: 1 active, 2 empty, 3 silent, 4 risk. Other
/// states are read by their description's words, else reported as no record.
pub fn map_state(state: &str, desc: &str) -> LineStatus {
    match state {
        "1" => LineStatus::Active,
        "2" => LineStatus::Empty,
        "3" => LineStatus::Silent,
        "4" => LineStatus::Risk,
        _ => LineStatus::from_vendor_words(desc).unwrap_or(LineStatus::NoRecord),
    }
}

/// Decodes a response body.
pub fn decode(body: &[u8]) -> Result<Answer, ProviderError> {
    let response: Response = serde_json::from_slice(body)
        .map_err(|e| ProviderError::BadResponse(format!("not a Thinksms answer: {e}")))?;
    let code = response.error_res.err_code.to_string();
    if code != "200" {
        return Err(ProviderError::Vendor {
            class: classify_code(&code),
            code,
            message: response.error_res.err_content,
        });
    }
    let result = response
        .mobileresult
        .ok_or_else(|| ProviderError::BadResponse("success without mobileresult".to_owned()))?;
    let state = result.state.to_string();
    Ok(Answer::Ready {
        data: CheckData::LineStatus(LineStatusResult::new(
            map_state(&state, &result.desc),
            state,
            result.desc,
        )),
        billable: true,
    })
}

/// The Thinksms client.
#[derive(Debug)]
pub struct ThinksmsProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    endpoint: reqwest::Url,
    hashcode: String,
    private_key: SecretString,
    clock: Arc<dyn Clock>,
}

impl ThinksmsProvider {
    /// Builds the client from its setup, settings and (resolved) private key.
    pub fn new(
        setup: Setup<'_>,
        settings: &ThinksmsSettings,
        private_key: SecretString,
    ) -> Result<Self, String> {
        Ok(ThinksmsProvider {
            endpoint: setup.endpoint(PATH)?,
            http: setup.ctx.http.clone(),
            clock: setup.ctx.clock.clone(),
            info: setup.info,
            hashcode: settings.hashcode.clone(),
            private_key,
        })
    }
}

#[async_trait]
impl OneNumberPerCall for ThinksmsProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        chinese_mobile(number, "Thinksms")
    }

    async fn query(&self, _check: Check, query: &Query) -> Result<Answer, ProviderError> {
        let number = &query.number;
        let mobile = number.national_number.as_str();
        let date = self.clock.now_china().format("%Y%m%d").to_string();
        let sign = sign(
            &self.hashcode,
            mobile,
            self.private_key.expose_secret(),
            &date,
        );
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json;charset=utf-8",
            )
            .json(&Request {
                mobile,
                hashcode: &self.hashcode,
                sign: &sign,
            });
        let (status, body) = send(request).await?;
        // The vendor's own error JSON, whatever the HTTP status, is the better answer.
        http_or(status, decode(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinksms_is_upper_case_md5_of_the_concatenation() {
        let sign = sign(
            "8c0354cebf53f09d33c90953161b3e",
            "13568889999",
            "secret",
            "20240310",
        );
        assert_eq!(
            sign,
            SignatureMethod::Md5
                .hex_digest(b"8c0354cebf53f09d33c90953161b3e13568889999secret20240310")
                .to_uppercase()
        );
        assert_eq!(sign.len(), 32);
        assert!(
            sign.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn decodes_the_vendor_example() {
        let body = r#"{"mobileresult":{"state":1,"desc":"活跃号"},"errorRes":{"err_code":"200","err_content":"success"},"err_TransCode":"328176434679906304"}"#;
        let answer = decode(body.as_bytes()).unwrap();
        assert_eq!(
            answer,
            Answer::Ready {
                data: CheckData::LineStatus(LineStatusResult::new(
                    LineStatus::Active,
                    "1",
                    "活跃号"
                )),
                billable: true
            }
        );
    }

    #[test]
    fn states_map_to_the_taxonomy() {
        assert_eq!(map_state("2", "空号"), LineStatus::Empty);
        assert_eq!(map_state("3", "沉默号码"), LineStatus::Silent);
        assert_eq!(map_state("4", "风险号"), LineStatus::Risk);
        assert_eq!(map_state("7", "停机"), LineStatus::Suspended);
        assert_eq!(map_state("9", "?"), LineStatus::NoRecord);
    }

    #[test]
    fn vendor_errors_are_classified_and_free() {
        let body = br#"{"mobileresult":null,"errorRes":{"err_code":"401","err_content":"sign error"},"err_TransCode":"1"}"#;
        let err = decode(body).unwrap_err();
        assert_eq!(err.reason(), ErrorReason::AuthFailed);
        assert!(!err.billable() && !err.retryable());
        assert_eq!(err.vendor_code(), Some("401"));
        let err = decode(br#"{"errorRes":{"err_code":"9999","err_content":"odd"}}"#).unwrap_err();
        assert_eq!(err.reason(), ErrorReason::Rejected);
        assert_eq!(classify_code("503").reason, ErrorReason::Unavailable);
        assert!(classify_code("429").retryable);
    }

    #[test]
    fn malformed_bodies_are_bad_responses() {
        for body in [
            &b""[..],
            b"{",
            b"<html>",
            br#"{"errorRes":{"err_code":"200"}}"#,
            br#"{"errorRes":{"err_code":[]}}"#,
        ] {
            let err = decode(body).unwrap_err();
            assert_eq!(
                err.reason(),
                ErrorReason::BadResponse,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
