//! TongDun `phoneverify`: social-account presence and KYC signals for Indonesian, Singaporean and
//! Pakistani numbers, one number per call, at the regional node of the number's country.
//! Wire contract: docs/providers.md §3. Credentials travel in the query string: never log the URL.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_with::{DefaultOnError, DisplayFromStr, PickFirst, serde_as};

use crate::domain::{
    AccountPresence, AccountProfile, Activity, Check, CheckData, KycInput, NumberInfo, Presence,
    QueryHistory, Registration,
};
use crate::providers::{
    Answer, CodeClass, ErrorReason, Provider, ProviderError, ProviderInfo, Query, Setup, http_or,
    send,
};

pub mod sim;
mod vendor;

pub use vendor::{SANDBOX_PARTNER_CODE, SANDBOX_PARTNER_KEY, TongdunSettings, VENDOR};

/// The request path on every node.
pub const PATH: &str = "/verification/kyc/phoneverify/v1";
/// The countries TongDun serves, with their nodes.
pub const COUNTRIES: &[(&str, &str)] = &[
    ("ID", "https://id.apitd.net"),
    ("SG", "https://sg.apitd.net"),
    ("PK", "https://pk.apitd.net"),
];
/// The vendor's "not available" marker.
const NOT_AVAILABLE: i64 = -999;

#[derive(Serialize)]
struct Request<'a> {
    country: &'a str,
    phone_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

// The vendor sends its numbers as numbers or as strings (`"score": "35"`), and `-999` or `""`
// for a value it does not have: each number field is read as either form by serde_with
// (`PickFirst<(_, DisplayFromStr)>`), and a value of any other shape reads as absent
// (`DefaultOnError`) rather than failing the whole answer. `-999` is dropped by `available`.

#[serde_as]
#[derive(Deserialize)]
struct Response {
    #[serde_as(as = "PickFirst<(_, DisplayFromStr)>")]
    code: i64,
    #[serde(default)]
    message: String,
    phone_detection: Option<Detection>,
}

#[derive(Deserialize)]
struct Detection {
    account_info: Option<AccountInfo>,
    history_info: Option<HistoryInfo>,
}

#[serde_as]
#[derive(Deserialize)]
struct AccountInfo {
    #[serde(default)]
    valid: Value,
    #[serde(default)]
    carrier: Value,
    #[serde(default)]
    active: Value,
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    score: Option<f64>,
    #[serde(default, rename = "type")]
    line_type: Value,
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    total_registered: Option<f64>,
    #[serde(default)]
    registration_detail: Vec<BTreeMap<String, Value>>,
}

#[serde_as]
#[derive(Deserialize)]
struct HistoryInfo {
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    hits_time: Option<f64>,
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    customer_hits_time: Option<f64>,
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    first_seen: Option<f64>,
    #[serde_as(as = "DefaultOnError<Option<PickFirst<(_, DisplayFromStr)>>>")]
    #[serde(default)]
    last_seen: Option<f64>,
}

/// A value unless it is absent, null, or the vendor's `-999`.
fn available(v: &Value) -> Option<&Value> {
    match v {
        Value::Null => None,
        Value::Number(n) if n.as_f64() == Some(NOT_AVAILABLE as f64) => None,
        Value::String(s) if s.trim() == "-999" || s.trim().is_empty() => None,
        other => Some(other),
    }
}

fn text(v: &Value) -> Option<String> {
    match available(v)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number unless it is the vendor's `-999`.
fn number(n: Option<f64>) -> Option<f64> {
    n.filter(|&n| n != NOT_AVAILABLE as f64)
}

fn flag(v: &Value) -> Option<bool> {
    match available(v)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" => Some(true),
            "false" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

fn profile(detail: &BTreeMap<String, Value>) -> Option<AccountProfile> {
    let get = |k: &str| detail.get(k).and_then(text);
    let p = AccountProfile {
        account_name: get("account_name"),
        full_name: get("full_name"),
        profile_photo: get("profile_photo"),
        last_seen: get("last_seen"),
        country: get("account_country"),
        state: get("account_state"),
        city: get("account_city"),
        account_id: get("account_id"),
        language: get("account_language"),
        gender: get("profile_gender"),
        age: get("profile_age"),
        bio: get("profile_bio"),
        about: get("profile_about"),
        handle: get("profile_handle"),
    };
    (!p.is_empty()).then_some(p)
}

fn timestamp(secs: Option<f64>) -> Option<std::time::SystemTime> {
    let secs = number(secs)?;
    (secs >= 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
}

/// How each `code` is treated (docs/providers.md §3: only 200 is billable). A parameter error
/// about `partner_code` or `partner_key` means the credentials are wrong.
pub fn classify(code: i64, message: &str) -> CodeClass {
    let lower = message.to_ascii_lowercase();
    let about_credentials = lower.contains("partner_code") || lower.contains("partner_key");
    let (reason, retryable) = match code {
        300 | 11350 => (ErrorReason::Unavailable, true),
        301..=305 => (ErrorReason::QuotaExhausted, false),
        11301 | 11340 if about_credentials => (ErrorReason::AuthFailed, false),
        _ => (ErrorReason::Rejected, false),
    };
    CodeClass {
        reason,
        retryable,
        billable: false,
    }
}

/// Decodes a response body.
pub fn decode(body: &[u8]) -> Result<Answer, ProviderError> {
    let response: Response = serde_json::from_slice(body)
        .map_err(|e| ProviderError::BadResponse(format!("not a TongDun answer: {e}")))?;
    let code = response.code;
    if code != 200 {
        return Err(ProviderError::Vendor {
            class: classify(code, &response.message),
            code: code.to_string(),
            message: response.message,
        });
    }
    let detection = response
        .phone_detection
        .ok_or_else(|| ProviderError::BadResponse("success without phone_detection".to_owned()))?;
    let account = detection
        .account_info
        .ok_or_else(|| ProviderError::BadResponse("success without account_info".to_owned()))?;
    let registrations = account
        .registration_detail
        .iter()
        .filter_map(|detail| {
            let platform = detail
                .get("account_type")
                .and_then(text)?
                .to_ascii_lowercase();
            let registered = match detail.get("registered").and_then(flag) {
                Some(true) => Presence::Registered,
                Some(false) => Presence::NotRegistered,
                None => Presence::Unknown,
            };
            Some(Registration {
                platform,
                registered,
                profile: profile(detail),
            })
        })
        .collect();
    let active = match text(&account.active)
        .map(|a| a.to_ascii_uppercase())
        .as_deref()
    {
        Some("YES") => Activity::Active,
        Some("NO") => Activity::Inactive,
        _ => Activity::Unknown,
    };
    let history = detection.history_info.map(|h| QueryHistory {
        hits: number(h.hits_time).unwrap_or(0.0) as i64,
        customer_hits: number(h.customer_hits_time).unwrap_or(0.0) as i64,
        first_seen: timestamp(h.first_seen),
        last_seen: timestamp(h.last_seen),
    });
    Ok(Answer::Ready {
        data: CheckData::AccountPresence(AccountPresence {
            valid: flag(&account.valid).unwrap_or(false),
            active,
            fraud_score: number(account.score).map(|s| s.round().clamp(0.0, 999.0) as i32),
            carrier: text(&account.carrier).unwrap_or_default(),
            line_type: text(&account.line_type)
                .unwrap_or_default()
                .to_ascii_lowercase(),
            registrations,
            total_registered: number(account.total_registered).unwrap_or(0.0) as i32,
            history,
        }),
        billable: true,
    })
}

/// The TongDun client.
#[derive(Debug)]
pub struct TongdunProvider {
    info: ProviderInfo,
    http: reqwest::Client,
    /// Endpoint per country, without credentials.
    endpoints: BTreeMap<String, reqwest::Url>,
    partner_code: String,
    partner_key: SecretString,
}

impl TongdunProvider {
    /// Builds the client from its settings and its (resolved) partner key.
    pub fn new(
        setup: Setup<'_>,
        settings: &TongdunSettings,
        partner_key: SecretString,
    ) -> Result<Self, String> {
        let mut endpoints = BTreeMap::new();
        for (country, base) in settings.nodes(setup.base_url.as_ref()) {
            let base = reqwest::Url::parse(&base).map_err(|e| format!("nodes.{country}: {e}"))?;
            // Keep a path prefix on the base (`http://sim/id` + PATH).
            let url =
                reqwest::Url::parse(&format!("{}{PATH}", base.as_str().trim_end_matches('/')))
                    .map_err(|e| format!("nodes.{country}: {e}"))?;
            endpoints.insert(country, url);
        }
        Ok(TongdunProvider {
            http: setup.ctx.http.clone(),
            info: setup.info,
            endpoints,
            partner_code: settings.partner_code.clone(),
            partner_key,
        })
    }

    async fn query(
        &self,
        number: &NumberInfo,
        kyc: Option<&KycInput>,
    ) -> Result<Answer, ProviderError> {
        let country = number.region_code.as_str();
        let endpoint = self
            .endpoints
            .get(country)
            .ok_or_else(|| ProviderError::BadResponse(format!("no node for {country}")))?;
        let body = Request {
            country,
            phone_number: number.e164.trim_start_matches('+').to_owned(),
            id_type: kyc.and_then(|k| k.id_type),
            id_number: kyc.and_then(|k| k.id_number.as_deref()),
            name: kyc.and_then(|k| k.name.as_deref()),
            email: kyc.and_then(|k| k.email.as_deref()),
        };
        let request = self
            .http
            .post(endpoint.clone())
            .query(&[
                ("partner_code", self.partner_code.as_str()),
                ("partner_key", self.partner_key.expose_secret()),
            ])
            .json(&body);
        let (status, body) = send(request).await?;
        http_or(status, decode(&body))
    }
}

#[async_trait]
impl Provider for TongdunProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    fn covers(&self, number: &NumberInfo) -> Result<(), String> {
        if self.endpoints.contains_key(&number.region_code)
            && number.e164.len() > 1
            && number.e164.len() <= 20
        {
            Ok(())
        } else {
            let served: Vec<&str> = self.endpoints.keys().map(String::as_str).collect();
            Err(format!(
                "TongDun serves numbers of {} only, not {}",
                served.join(", "),
                if number.region_code.is_empty() {
                    "this number"
                } else {
                    &number.region_code
                }
            ))
        }
    }

    async fn call(&self, _check: Check, batch: &[Query]) -> Vec<Result<Answer, ProviderError>> {
        let mut results = Vec::with_capacity(batch.len());
        for query in batch {
            results.push(self.query(&query.number, query.kyc.as_ref()).await);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vendor page's success example (seeds/002).
    const SEED_SUCCESS: &str = r#"{"code":200,"phone_detection":{"account_info":{"score":150.0,"active":"YES","valid":true,"carrier":"China Unicom","total_registered":1,"phone_number":"86176****5618","type":"MOBILE","registration_detail":[{"account_type":"bukalapak","registered":-999},{"account_type":"linkedin","registered":-999},{"account_type":"amazon","registered":-999},{"account_type":"whatsapp","last_seen":-999,"profile_photo":-999,"profile_about":-999,"registered":false},{"account_type":"skype","account_language":-999,"profile_photo":-999,"profile_gender":-999,"registered":false,"profile_bio":-999,"profile_handle":-999,"account_id":-999,"profile_age":-999,"account_name":-999,"account_city":-999,"account_country":-999,"account_state":-999},{"account_type":"twitter","registered":false},{"account_type":"facebook","registered":false},{"account_type":"telegram","last_seen":-999,"profile_photo":-999,"registered":false},{"account_type":"google","account_id":-999,"full_name":-999,"registered":true},{"account_type":"instagram","registered":false},{"account_type":"microsoft","registered":false},{"account_type":"viber","last_seen":-999,"profile_photo":-999,"account_name":-999,"registered":false}]},"history_info":{"customer_hits_time":1,"first_seen":1710842026,"hits_time":1,"last_seen":1710842026}},"sequence_id":"1710842026384800G104C24D38339515","message":"success"}"#;

    #[test]
    fn the_seed_success_decodes() {
        let Answer::Ready {
            data: CheckData::AccountPresence(p),
            billable,
        } = decode(SEED_SUCCESS.as_bytes()).unwrap()
        else {
            panic!("not account presence")
        };
        assert!(billable && p.valid);
        assert_eq!(
            (p.active, p.fraud_score, p.total_registered),
            (Activity::Active, Some(150), 1)
        );
        assert_eq!(
            (p.carrier.as_str(), p.line_type.as_str()),
            ("China Unicom", "mobile")
        );
        assert_eq!(p.registrations.len(), 12);
        let by = |name: &str| p.registrations.iter().find(|r| r.platform == name).unwrap();
        assert_eq!(by("google").registered, Presence::Registered);
        assert_eq!(
            by("bukalapak").registered,
            Presence::Unknown,
            "-999 is unknown, never a value"
        );
        assert_eq!(by("skype").registered, Presence::NotRegistered);
        assert!(
            p.registrations.iter().all(|r| r.profile.is_none()),
            "-999 extras are absent"
        );
        let h = p.history.unwrap();
        assert_eq!((h.hits, h.customer_hits), (1, 1));
        assert_eq!(
            h.first_seen,
            Some(UNIX_EPOCH + Duration::from_secs(1_710_842_026))
        );
    }

    #[test]
    fn the_seed_failure_decodes() {
        let body = r#"{"code":11340,"sequence_id":"1720072040470369I30BC3538833****","message":"Country error"}"#;
        let err = decode(body.as_bytes()).unwrap_err();
        assert_eq!(
            (err.reason(), err.billable(), err.vendor_code()),
            (ErrorReason::Rejected, false, Some("11340"))
        );
    }

    #[test]
    fn numbers_not_available_or_of_no_shape_are_absent_not_a_failure() {
        for (score, wanted) in [
            ("-999", None),
            ("\"-999\"", None),
            ("\"\"", None),
            ("null", None),
            ("{\"x\":1}", None),
            ("\"35.4\"", Some(35)),
            ("35.6", Some(36)),
        ] {
            let body = format!(
                r#"{{"code":200,"phone_detection":{{"account_info":{{"score":{score},"total_registered":"2"}},"history_info":{{"hits_time":"-999","first_seen":"abc"}}}}}}"#
            );
            let Answer::Ready {
                data: CheckData::AccountPresence(p),
                ..
            } = decode(body.as_bytes()).unwrap()
            else {
                panic!()
            };
            assert_eq!((p.fraud_score, p.total_registered), (wanted, 2), "{score}");
            let h = p.history.unwrap();
            assert_eq!((h.hits, h.first_seen), (0, None));
        }
    }

    #[test]
    fn scores_as_strings_types_in_any_case_and_profiles() {
        let body = r#"{"code":"200","phone_detection":{"account_info":{"score":"999","active":"no","valid":"true","type":"Fixed Line","registration_detail":[{"account_type":"Skype","registered":true,"account_name":"budi","profile_age":31}]}}}"#;
        let Answer::Ready {
            data: CheckData::AccountPresence(p),
            ..
        } = decode(body.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (p.fraud_score, p.active, p.line_type.as_str()),
            (Some(999), Activity::Inactive, "fixed line")
        );
        let skype = &p.registrations[0];
        assert_eq!(skype.platform, "skype");
        let profile = skype.profile.as_ref().unwrap();
        assert_eq!(
            (profile.account_name.as_deref(), profile.age.as_deref()),
            (Some("budi"), Some("31"))
        );
        assert!(p.history.is_none());
    }

    #[test]
    fn kyc_inputs_travel_in_the_body_and_absent_ones_are_left_out() {
        let kyc = KycInput {
            id_type: Some("passport"),
            id_number: Some("A1234567".into()),
            name: None,
            email: Some("budi@example.com".into()),
            ..KycInput::default()
        };
        let body = Request {
            country: "ID",
            phone_number: "6281234567890".into(),
            id_type: kyc.id_type,
            id_number: kyc.id_number.as_deref(),
            name: kyc.name.as_deref(),
            email: kyc.email.as_deref(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"country": "ID", "phone_number": "6281234567890", "id_type": "passport",
                               "id_number": "A1234567", "email": "budi@example.com"})
        );
    }

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            classify(303, "Not enough balance").reason,
            ErrorReason::QuotaExhausted
        );
        assert_eq!(classify(305, "").reason, ErrorReason::QuotaExhausted);
        assert!(classify(300, "").retryable);
        assert!(classify(11350, "").retryable);
        assert_eq!(
            classify(11340, "partner_key error").reason,
            ErrorReason::AuthFailed
        );
        assert_eq!(
            classify(11301, "phone_number empty").reason,
            ErrorReason::Rejected
        );
        for body in [
            &b"nope"[..],
            br#"{"code":200}"#,
            br#"{"code":"x"}"#,
            br#"{"code":200,"phone_detection":{}}"#,
        ] {
            assert_eq!(decode(body).unwrap_err().reason(), ErrorReason::BadResponse);
        }
    }
}
