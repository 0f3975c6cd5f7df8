//! The 号码百科 actions behind each check, and how the answers of the three beyond line status
//! are read: `DescribePhoneNumberOnlineTime` (tenure), `DescribePhoneTwiceTelVerify`
//! (reassigned) and `DescribePhoneNumberOperatorAttribute` (current carrier). All are RPC style,
//! `POST /` with the parameters in the query, version 2020-02-17, signed like line status
//! (checked against the vendor's Python SDK 3.4.0: `client.py` and `models/`).

use std::collections::HashMap;

use chrono::TimeZone;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{classify_code, current_carrier_names};
use crate::domain::{
    Check, CheckData, CurrentCarrierResult, Reassigned, ReassignedResult, TenureResult,
    TenureStatus,
};
use crate::providers::{Answer, ProviderError, QuotaConfig};

/// One action: the check it answers, its name (`x-acs-action`) and its default quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Action {
    /// The check it answers.
    pub check: Check,
    /// `x-acs-action`.
    pub name: &'static str,
    /// The per-action limit phonecheck keeps to unless `action_quotas` says otherwise.
    /// **Decision**: 100 queries per second for each of the three newer actions (a conservative
    /// reading of the per-action QPS the vendor's quota page lists; accounts differ, so it is
    /// configurable); line status has none of its own (the account's 300 applies).
    pub quota: QuotaConfig,
}

const UNLIMITED: QuotaConfig = QuotaConfig {
    requests_per_second: 0.0,
    burst: 1,
};
const HUNDRED: QuotaConfig = QuotaConfig {
    requests_per_second: 100.0,
    burst: 1,
};

/// Every action, one per check Aliyun serves.
pub const ACTIONS: [Action; 4] = [
    Action {
        check: Check::LineStatus,
        name: super::ACTION,
        quota: UNLIMITED,
    },
    Action {
        check: Check::Tenure,
        name: "DescribePhoneNumberOnlineTime",
        quota: HUNDRED,
    },
    Action {
        check: Check::Reassigned,
        name: "DescribePhoneTwiceTelVerify",
        quota: HUNDRED,
    },
    Action {
        check: Check::CurrentCarrier,
        name: "DescribePhoneNumberOperatorAttribute",
        quota: HUNDRED,
    },
];

/// The action answering `check`, if Aliyun serves it.
pub fn for_check(check: Check) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.check == check)
}

/// The action named `name`.
pub fn named(name: &str) -> Option<&'static Action> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// The per-action token buckets, from `action_quotas` (keyed by check key) over the defaults.
pub fn limiters(
    overrides: &HashMap<String, QuotaConfig>,
) -> HashMap<Check, governor::DefaultDirectRateLimiter> {
    ACTIONS
        .iter()
        .filter_map(|a| {
            let quota = overrides.get(a.check.key()).copied().unwrap_or(a.quota);
            quota
                .governor()
                .map(|q| (a.check, governor::RateLimiter::direct(q)))
        })
        .collect()
}

/// The problems of `action_quotas`: keys that are no check Aliyun serves.
pub fn quota_problems(overrides: &HashMap<String, QuotaConfig>) -> Vec<String> {
    let mut keys: Vec<&String> = overrides.keys().collect();
    keys.sort();
    keys.into_iter()
        .filter(|k| ACTIONS.iter().all(|a| a.check.key() != k.as_str()))
        .map(|k| {
            let known: Vec<&str> = ACTIONS.iter().map(|a| a.check.key()).collect();
            format!(
                "action_quotas.{k} is not a check of aliyun (one of {})",
                known.join(", ")
            )
        })
        .collect()
}

/// `StartTime` of `DescribePhoneTwiceTelVerify`: `yyyy-MM-dd HH:mm:ss`. **Decision**: in
/// Beijing time (UTC+8), the vendor's own zone, since the SDK names none.
pub fn start_time(unix_seconds: i64) -> String {
    crate::clock::china_offset()
        .timestamp_opt(unix_seconds, 0)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct Envelope<D> {
    #[serde(rename = "Code")]
    code: Option<String>,
    #[serde(rename = "Message", default)]
    message: String,
    #[serde(rename = "Data")]
    data: Option<D>,
}

/// Reads the envelope every action shares (`{"RequestId", "Code", "Message", "Data"}`): a
/// `Code` other than `OK` is the vendor's error, and `OK` must come with `Data`.
pub(super) fn envelope<D: DeserializeOwned>(body: &[u8]) -> Result<D, ProviderError> {
    let response: Envelope<D> = serde_json::from_slice(body)
        .map_err(|e| ProviderError::BadResponse(format!("not an Aliyun answer: {e}")))?;
    let code = response
        .code
        .ok_or_else(|| ProviderError::BadResponse("no Code in the answer".to_owned()))?;
    if code != "OK" {
        return Err(ProviderError::Vendor {
            class: classify_code(&code),
            code,
            message: response.message,
        });
    }
    response
        .data
        .ok_or_else(|| ProviderError::BadResponse("OK without Data".to_owned()))
}

/// A code the SDK types as a string and the vendor has been seen to send as a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Code {
    Text(String),
    Number(i64),
}

impl Code {
    fn text(self) -> String {
        match self {
            Code::Text(s) => s.trim().to_owned(),
            Code::Number(n) => n.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct VerifyData {
    #[serde(rename = "VerifyResult")]
    verify_result: Option<Code>,
    #[serde(rename = "CarrierCode")]
    carrier_code: Option<String>,
    #[serde(rename = "Carrier")]
    carrier: Option<String>,
}

impl VerifyData {
    fn code(self) -> Result<(String, String), ProviderError> {
        let code = self
            .verify_result
            .map(Code::text)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ProviderError::BadResponse("OK without Data.VerifyResult".into()))?;
        Ok((code, self.carrier_code.or(self.carrier).unwrap_or_default()))
    }
}

fn unexpected(code: &str) -> ProviderError {
    ProviderError::BadResponse(format!("VerifyResult {code} is not documented"))
}

/// Decodes `DescribePhoneNumberOnlineTime`: `VerifyResult` `1`..`5` are the buckets [0,3),
/// [3,6), [6,12), [12,24), [24,∞) months; `-1` no record (not billed), `0` an abnormal number
/// (billed, the vendor's rule).
pub fn decode_tenure(body: &[u8]) -> Result<Answer, ProviderError> {
    let (raw, carrier_code) = envelope::<VerifyData>(body)?.code()?;
    let (status, lower, upper) = match raw.as_str() {
        "-1" => (TenureStatus::NotFound, 0, None),
        "0" => (TenureStatus::Abnormal, 0, None),
        "1" => (TenureStatus::Known, 0, Some(3)),
        "2" => (TenureStatus::Known, 3, Some(6)),
        "3" => (TenureStatus::Known, 6, Some(12)),
        "4" => (TenureStatus::Known, 12, Some(24)),
        "5" => (TenureStatus::Known, 24, None),
        other => return Err(unexpected(other)),
    };
    Ok(Answer::Ready {
        billable: status != TenureStatus::NotFound,
        data: CheckData::Tenure(TenureResult {
            status,
            lower_months: lower,
            upper_months: upper,
            raw_code: raw,
            carrier_code,
        }),
    })
}

/// Decodes `DescribePhoneTwiceTelVerify`: `VerifyResult` `1` recycled, `2` not recycled, `3`
/// deactivated, `4` transferred to a new owner, `0` cannot tell (not billed).
pub fn decode_reassigned(body: &[u8]) -> Result<Answer, ProviderError> {
    let (raw, carrier_code) = envelope::<VerifyData>(body)?.code()?;
    let status = match raw.as_str() {
        "0" => Reassigned::Unknown,
        "1" => Reassigned::Recycled,
        "2" => Reassigned::NotRecycled,
        "3" => Reassigned::Deactivated,
        "4" => Reassigned::Transferred,
        other => return Err(unexpected(other)),
    };
    Ok(Answer::Ready {
        billable: status != Reassigned::Unknown,
        data: CheckData::Reassigned(ReassignedResult {
            status,
            raw_code: raw,
            carrier_code,
        }),
    })
}

#[derive(Deserialize)]
struct AttributeData {
    #[serde(rename = "BasicCarrier", default)]
    basic_carrier: String,
    #[serde(rename = "Carrier", default)]
    carrier: String,
    #[serde(rename = "IsNumberPortability", default)]
    ported: bool,
    #[serde(rename = "Province", default)]
    province: String,
    #[serde(rename = "City", default)]
    city: String,
}

/// Decodes `DescribePhoneNumberOperatorAttribute`. `Carrier` is the network serving the number
/// after porting, or a virtual operator: a name that is no basic carrier is read as the MVNO,
/// and its host is then `BasicCarrier`. **Decision**: billed whenever `Code` is `OK` (the vendor
/// documents no "not found" answer for this action; its refusals, not billed, come as codes).
pub fn decode_current_carrier(body: &[u8]) -> Result<Answer, ProviderError> {
    let data: AttributeData = envelope(body)?;
    if data.carrier.is_empty() && data.basic_carrier.is_empty() {
        return Err(ProviderError::BadResponse(
            "OK without Data.Carrier or Data.BasicCarrier".into(),
        ));
    }
    let (names, mvno) = match current_carrier_names(&data.carrier) {
        Some(names) => (Some(names), None),
        None if data.carrier.is_empty() => (current_carrier_names(&data.basic_carrier), None),
        None => (
            current_carrier_names(&data.basic_carrier),
            Some(data.carrier.clone()),
        ),
    };
    let (name, local_name) = names.unwrap_or_default();
    Ok(Answer::Ready {
        billable: true,
        data: CheckData::CurrentCarrier(CurrentCarrierResult {
            name: name.to_owned(),
            local_name: local_name.to_owned(),
            basic_carrier: data.basic_carrier,
            mvno,
            ported: data.ported,
            raw_code: data.carrier,
            province: data.province,
            city: data.city,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CodeClass;
    use crate::providers::ErrorReason;

    fn ready(answer: Answer) -> (CheckData, bool) {
        match answer {
            Answer::Ready { data, billable } => (data, billable),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tenure_buckets_become_month_ranges_and_no_record_is_free() {
        let cases = [
            ("\"-1\"", TenureStatus::NotFound, 0, None, false),
            ("\"0\"", TenureStatus::Abnormal, 0, None, true),
            ("\"1\"", TenureStatus::Known, 0, Some(3), true),
            ("\"2\"", TenureStatus::Known, 3, Some(6), true),
            ("3", TenureStatus::Known, 6, Some(12), true),
            ("\"4\"", TenureStatus::Known, 12, Some(24), true),
            ("\"5\"", TenureStatus::Known, 24, None, true),
        ];
        for (code, status, lower, upper, billed) in cases {
            let body = format!(
                r#"{{"Code":"OK","Message":"OK","RequestId":"x","Data":{{"VerifyResult":{code},"CarrierCode":"CMCC"}}}}"#
            );
            let (data, billable) = ready(decode_tenure(body.as_bytes()).unwrap());
            let CheckData::Tenure(t) = data else {
                panic!("{data:?}")
            };
            assert_eq!(
                (t.status, t.lower_months, t.upper_months, billable),
                (status, lower, upper, billed),
                "{code}"
            );
            assert_eq!(
                (t.raw_code.as_str(), t.carrier_code.as_str()),
                (code.trim_matches('"'), "CMCC")
            );
        }
        let odd = br#"{"Code":"OK","Data":{"VerifyResult":"9"}}"#;
        assert!(matches!(
            decode_tenure(odd),
            Err(ProviderError::BadResponse(_))
        ));
    }

    #[test]
    fn reassigned_codes_are_canonical_and_cannot_tell_is_free() {
        let cases = [
            ("0", Reassigned::Unknown, false),
            ("1", Reassigned::Recycled, true),
            ("2", Reassigned::NotRecycled, true),
            ("3", Reassigned::Deactivated, true),
            ("4", Reassigned::Transferred, true),
        ];
        for (code, status, billed) in cases {
            let body =
                format!(r#"{{"Code":"OK","Data":{{"VerifyResult":"{code}","Carrier":"CUCC"}}}}"#);
            let (data, billable) = ready(decode_reassigned(body.as_bytes()).unwrap());
            assert_eq!(
                data,
                CheckData::Reassigned(ReassignedResult {
                    status,
                    raw_code: code.into(),
                    carrier_code: "CUCC".into()
                })
            );
            assert_eq!(billable, billed);
        }
    }

    #[test]
    fn the_operator_attribute_names_the_carrier_the_mvno_and_porting() {
        let body = r#"{"Code":"OK","Data":{"BasicCarrier":"中国移动","Carrier":"中国联通","IsNumberPortability":true,"NumberSegment":1380000,"Province":"广东","City":"深圳"}}"#;
        let (data, billable) = ready(decode_current_carrier(body.as_bytes()).unwrap());
        let CheckData::CurrentCarrier(c) = data else {
            panic!()
        };
        assert!(billable);
        assert_eq!(
            (c.name.as_str(), c.local_name.as_str()),
            ("China Unicom", "中国联通")
        );
        assert!(c.ported && c.mvno.is_none());
        assert_eq!(
            (c.basic_carrier.as_str(), c.province.as_str()),
            ("中国移动", "广东")
        );
        let body = r#"{"Code":"OK","Data":{"BasicCarrier":"中国联通","Carrier":"中国联通虚拟运营商","IsNumberPortability":false}}"#;
        let (data, _) = ready(decode_current_carrier(body.as_bytes()).unwrap());
        let CheckData::CurrentCarrier(c) = data else {
            panic!()
        };
        assert_eq!(c.name, "China Unicom", "an MVNO's host serves it");
        assert_eq!(c.mvno.as_deref(), Some("中国联通虚拟运营商"));
        assert!(!c.ported);
        let empty = br#"{"Code":"OK","Data":{}}"#;
        assert!(decode_current_carrier(empty).is_err());
    }

    #[test]
    fn the_frequency_limit_backs_off_the_number_without_tripping_the_breaker() {
        let body = br#"{"Code":"RequestFrequencyLimit","Message":"too often"}"#;
        let err = decode_tenure(body).unwrap_err();
        assert_eq!(
            err.class(),
            CodeClass {
                reason: ErrorReason::RateLimited,
                retryable: false,
                billable: false
            }
        );
        assert!(!err.counts_against_vendor());
        for code in [
            "PortabilityNumberNotSupported",
            "RequestNumberNotSupported",
            "InvalidParameter",
            "PhoneNumberNotfound",
        ] {
            let body = format!(r#"{{"Code":"{code}","Message":"m"}}"#);
            let err = decode_reassigned(body.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), ErrorReason::Rejected, "{code}");
            assert!(!err.counts_against_vendor());
        }
        let err = decode_current_carrier(br#"{"Code":"isp.UNKNOWN"}"#).unwrap_err();
        assert_eq!(err.reason(), ErrorReason::Unavailable);
        assert!(err.class().retryable);
    }

    #[test]
    fn start_time_is_beijing_time_and_quotas_are_per_action() {
        assert_eq!(start_time(0), "1970-01-01 08:00:00");
        assert_eq!(start_time(1_700_000_000), "2023-11-15 06:13:20");
        let mut overrides = HashMap::new();
        overrides.insert(
            "tenure".to_owned(),
            QuotaConfig {
                requests_per_second: 0.0,
                burst: 1,
            },
        );
        let limiters = limiters(&overrides);
        assert!(!limiters.contains_key(&Check::Tenure), "0 turns it off");
        assert!(limiters.contains_key(&Check::Reassigned));
        assert!(!limiters.contains_key(&Check::LineStatus));
        overrides.insert("colour".to_owned(), HUNDRED);
        assert_eq!(quota_problems(&overrides).len(), 1);
    }
}
