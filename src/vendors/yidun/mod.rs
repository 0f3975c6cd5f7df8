//! NetEase Yidun `phone/multiple/query`: risk profiles of up to 100 Chinese mobile numbers per
//! call. Form-encoded, signed over the sorted parameters with MD5, SHA1, SHA256 or SM3.
//! Wire contract: docs/providers.md §4.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::{
    Check, CheckData, NumberInfo, NumberType, Risk, RiskLevel, RiskLocation, RiskProfile, Under18,
};
use crate::providers::signing::SignatureMethod;
use crate::providers::{
    Answer, Clock, CodeClass, ErrorReason, Provider, ProviderError, ProviderInfo, Query, Setup,
    fail_all, http_or, send,
};

pub mod sim;
mod vendor;

pub use vendor::{
    SANDBOX_BUSINESS_ID, SANDBOX_SECRET_ID, SANDBOX_SECRET_KEY, VENDOR, YidunSettings, sign,
};

/// The vendor's base URL.
pub const DEFAULT_BASE_URL: &str = "https://rp.dun.163.com";
/// The request path.
pub const PATH: &str = "/v1/profile/phone/multiple/query";
/// At most this many numbers per call.
pub const BATCH_SIZE: usize = 100;

/// `code` comes as a number or a string (serde_with reads either).
#[serde_with::serde_as]
#[derive(Deserialize)]
struct Response {
    #[serde_as(as = "serde_with::PickFirst<(_, serde_with::DisplayFromStr)>")]
    code: i64,
    #[serde(default)]
    msg: String,
    data: Option<Data>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    risk_details: Vec<Detail>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    phone: Option<String>,
    /// The older documents' name for `phone`.
    account: Option<String>,
    #[serde(default)]
    risk_info_list: Vec<RiskInfo>,
    #[serde(default)]
    prop_details: Option<PropDetails>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RiskInfo {
    risk_level: i64,
    risk_type: i64,
    #[serde(default)]
    risk_score: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropDetails {
    under18: Option<Under18Wire>,
    /// Current name; older documents call it `location`.
    #[serde(alias = "location")]
    phone_location: Option<LocationWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Under18Wire {
    #[serde(default)]
    score: f64,
    #[serde(default)]
    is_under18: i64,
}

#[derive(Deserialize)]
struct LocationWire {
    #[serde(default)]
    carrier: String,
    #[serde(default)]
    province: String,
    #[serde(default)]
    city: String,
}

impl Detail {
    fn key(&self) -> Option<&str> {
        self.phone.as_deref().or(self.account.as_deref())
    }

    fn profile(&self) -> RiskProfile {
        let props = self.prop_details.as_ref();
        RiskProfile {
            risks: self
                .risk_info_list
                .iter()
                .map(|r| Risk {
                    level: match r.risk_level {
                        i64::MIN..=0 => RiskLevel::Low,
                        1 => RiskLevel::Medium,
                        _ => RiskLevel::High,
                    },
                    risk_type: i32::try_from(r.risk_type).unwrap_or(i32::MAX),
                    score: r.risk_score,
                })
                .collect(),
            under18: props.and_then(|p| p.under18.as_ref()).map(|u| Under18 {
                is_under18: u.is_under18 == 1,
                confidence: u.score,
            }),
            location: props
                .and_then(|p| p.phone_location.as_ref())
                .map(|l| RiskLocation {
                    carrier: l.carrier.clone(),
                    province: l.province.clone(),
                    city: l.city.clone(),
                }),
        }
    }
}

/// How each `code` is treated (docs/providers.md §4: only 200 is billable; 411 and 503 are
/// retryable; 420 means fix the clock; 430, a reused nonce, succeeds with a fresh one).
pub fn classify_code(code: i64) -> CodeClass {
    let (reason, retryable) = match code {
        400 | 401 | 410 => (ErrorReason::AuthFailed, false),
        402 | 404 => (ErrorReason::QuotaExhausted, false),
        411 => (ErrorReason::RateLimited, true),
        503 => (ErrorReason::Unavailable, true),
        430 => (ErrorReason::Rejected, true),
        _ => (ErrorReason::Rejected, false),
    };
    CodeClass {
        reason,
        retryable,
        billable: false,
    }
}

/// Decodes a response body into one result per asked phone, in order.
pub fn decode(
    body: &[u8],
    phones: &[&str],
) -> Result<Vec<Result<Answer, ProviderError>>, ProviderError> {
    let response: Response = serde_json::from_slice(body)
        .map_err(|e| ProviderError::BadResponse(format!("not a Yidun answer: {e}")))?;
    let code = response.code;
    if code != 200 {
        return Err(ProviderError::Vendor {
            class: classify_code(code),
            code: code.to_string(),
            message: response.msg,
        });
    }
    let data = response
        .data
        .ok_or_else(|| ProviderError::BadResponse("success without data".to_owned()))?;
    if data.success == Some(false) {
        return Err(ProviderError::BadResponse(
            "data.success is false".to_owned(),
        ));
    }
    let by_phone: HashMap<&str, &Detail> = data
        .risk_details
        .iter()
        .filter_map(|d| Some((d.key()?, d)))
        .collect();
    // Yidun bills the call (code 200), not each number in it: the charge is carried once, by the
    // first number answered, as caih's submissions carry theirs, so that the billable answers of
    // a batch add up to what the vendor bills (and the usage ledger to the invoice).
    let mut charge = true;
    Ok(phones
        .iter()
        .map(|phone| {
            by_phone
                .get(phone)
                .map(|d| Answer::Ready {
                    data: CheckData::RiskProfile(d.profile()),
                    billable: std::mem::take(&mut charge),
                })
                .ok_or_else(|| {
                    ProviderError::BadResponse("no risk detail for this number".to_owned())
                })
        })
        .collect())
}

/// The Yidun client.
#[derive(Debug)]
pub struct YidunProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    endpoint: reqwest::Url,
    secret_id: String,
    business_id: String,
    secret_key: SecretString,
    method: SignatureMethod,
    clock: Arc<dyn Clock>,
}

impl YidunProvider {
    /// Builds the client from its settings and its (resolved) secret key.
    pub fn new(
        setup: Setup<'_>,
        settings: &YidunSettings,
        secret_key: SecretString,
    ) -> Result<Self, String> {
        let method = SignatureMethod::parse(&settings.signature_method)
            .ok_or_else(|| format!("unknown signature_method {:?}", settings.signature_method))?;
        Ok(YidunProvider {
            endpoint: setup.endpoint(PATH)?,
            http: setup.ctx.http.clone(),
            clock: setup.ctx.clock.clone(),
            info: setup.info,
            secret_id: settings.secret_id.clone(),
            business_id: settings.business_id.clone(),
            secret_key,
            method,
        })
    }

    /// The signed form of one call.
    pub fn form(&self, phones: &[&str]) -> Vec<(&'static str, String)> {
        let mut params: Vec<(&'static str, String)> = vec![
            ("secretId", self.secret_id.clone()),
            ("businessId", self.business_id.clone()),
            ("version", "v1".to_owned()),
            ("timestamp", self.clock.now().timestamp_millis().to_string()),
            ("nonce", self.clock.nonce()),
            // serde_json writes arrays without spaces, as the vendor signs them.
            (
                "phones",
                serde_json::to_string(phones).unwrap_or_else(|_| "[]".to_owned()),
            ),
        ];
        if self.method != SignatureMethod::Md5 {
            params.push(("signatureMethod", self.method.as_str().to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signature = sign(&borrowed, self.secret_key.expose_secret(), self.method);
        params.push(("signature", signature));
        params
    }
}

#[async_trait]
impl Provider for YidunProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        let mobile = matches!(
            number.number_type,
            NumberType::Mobile | NumberType::DataCard | NumberType::Iot
        );
        if number.region_code == "CN" && mobile && number.national_number.len() == 11 {
            Ok(())
        } else {
            Err("Yidun profiles 11-digit Chinese mobile numbers only".to_owned())
        }
    }

    async fn call(&self, _check: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
        let phones: Vec<&str> = batch
            .iter()
            .map(|q| q.number.national_number.as_str())
            .collect();
        let form = self.form(&phones);
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(serde_urlencoded::to_string(&form).unwrap_or_default());
        let result = match send(request).await {
            Ok((status, body)) => http_or(status, decode(&body, &phones)),
            Err(e) => Err(e),
        };
        result.unwrap_or_else(|e| fail_all(batch.len(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendor page's example (seeds/003): unknown risk types, `location`, a detail keyed by
    /// `account`.
    const SEED: &str = r#"{"code":200,"msg":"成功","data":{"riskDetails":[{"riskInfoList":[{"riskLevel":1,"riskType":11002,"riskScore":0.6},{"riskLevel":2,"riskType":11001,"riskScore":0.4}],"propDetails":{"location":{"province":"广东","city":"珠海","carrier":"中国移动网络"},"under18":{"score":1.0,"isUnder18":0}},"phone":"123456"},{"riskInfoList":[{"riskLevel":2,"riskType":11001,"riskScore":0.4}],"propDetails":{"location":{"province":"广东","city":"珠海","carrier":"中国移动网络"}},"account":"123"}],"success":true,"taskId":"12912d9a88e8497ab5f88fc3e8e82216"}}"#;

    fn profile(answer: &Result<Answer, ProviderError>) -> RiskProfile {
        match answer {
            Ok(Answer::Ready {
                data: CheckData::RiskProfile(p),
                ..
            }) => p.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_seed_example_decodes() {
        let results = decode(SEED.as_bytes(), &["123456", "123"]).unwrap();
        let first = profile(&results[0]);
        assert_eq!(first.risks.len(), 2);
        assert_eq!(
            (first.risks[0].level, first.risks[0].risk_type),
            (RiskLevel::Medium, 11002)
        );
        assert_eq!(first.risks[1].level, RiskLevel::High);
        assert_eq!(
            first.under18,
            Some(Under18 {
                is_under18: false,
                confidence: 1.0
            })
        );
        assert_eq!(first.location.as_ref().unwrap().city, "珠海");
        let second = profile(&results[1]);
        assert_eq!(second.risks.len(), 1);
        assert!(second.under18.is_none());
        // One call, one charge: carried by the first number.
        let billed: Vec<bool> = results
            .iter()
            .map(|r| r.as_ref().is_ok_and(Answer::billable))
            .collect();
        assert_eq!(billed, [true, false]);
    }

    #[test]
    fn phone_location_and_empty_details() {
        let body = r#"{"code":200,"msg":"ok","data":{"success":true,"taskId":"t","riskDetails":[{"phone":"13800138000","riskInfoList":[],"propDetails":{}},{"phone":"13900139000","riskInfoList":[{"riskLevel":0,"riskType":14003,"riskScore":0.2}],"propDetails":{"phoneLocation":{"carrier":"移动","province":"北京","city":"北京"}}}]}}"#;
        let results = decode(
            body.as_bytes(),
            &["13800138000", "13900139000", "13700137000"],
        )
        .unwrap();
        assert_eq!(profile(&results[0]), RiskProfile::default());
        let second = profile(&results[1]);
        assert_eq!(
            (second.risks[0].level, second.risks[0].type_name()),
            (RiskLevel::Low, "fake registration")
        );
        assert_eq!(second.location.unwrap().province, "北京");
        assert_eq!(
            results[2].as_ref().unwrap_err().reason(),
            ErrorReason::BadResponse
        );
    }

    #[test]
    fn codes_are_classified() {
        for (code, reason, retryable) in [
            (400, ErrorReason::AuthFailed, false),
            (401, ErrorReason::AuthFailed, false),
            (410, ErrorReason::AuthFailed, false),
            (402, ErrorReason::QuotaExhausted, false),
            (411, ErrorReason::RateLimited, true),
            (503, ErrorReason::Unavailable, true),
            (420, ErrorReason::Rejected, false),
            (414, ErrorReason::Rejected, false),
        ] {
            let body = format!(r#"{{"code":{code},"msg":"m"}}"#);
            let err = decode(body.as_bytes(), &["1"]).unwrap_err();
            assert_eq!(
                (err.reason(), err.retryable(), err.billable()),
                (reason, retryable, false),
                "{code}"
            );
        }
        for body in [
            &b""[..],
            b"{}",
            br#"{"code":200}"#,
            br#"{"code":200,"data":{"success":false}}"#,
        ] {
            assert_eq!(
                decode(body, &["1"]).unwrap_err().reason(),
                ErrorReason::BadResponse
            );
        }
    }
}
