//! Aliyun decoding, status mapping, masks, and the signed request.
use chrono::TimeZone;

use super::*;
use crate::number::{Analyzer, LocationData};
use crate::providers::signing::signatures_equal;
use crate::providers::{BuildContext, FixedClock};
use signing::sign;

fn info(number: &str) -> NumberInfo {
    Analyzer::new(LocationData::embedded())
        .analyze(number, "CN")
        .unwrap()
}

fn line(answer: &Answer) -> (&LineStatusResult, bool) {
    match answer {
        Answer::Ready {
            data: CheckData::LineStatus(r),
            billable,
        } => (r, *billable),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sdk_documented_answer_decodes() {
    let body = br#"{"RequestId":"CC3BB6D2-2FDF-4321-9DCE-B38165CE4C47","Code":"OK","Message":"OK","Data":{"Status":"NORMAL","Carrier":"CMCC"}}"#;
    let answer = decode(body, &info("13800000101")).unwrap();
    let (r, billable) = line(&answer);
    assert!(billable);
    assert_eq!(
        (r.status, r.raw_code.as_str(), r.ported),
        (LineStatus::Active, "NORMAL", false)
    );
    let carrier = r.current_carrier.as_ref().unwrap();
    assert_eq!(
        (
            carrier.code.as_str(),
            carrier.name.as_str(),
            carrier.local_name.as_str()
        ),
        ("CMCC", "China Mobile", "中国移动")
    );
}

#[test]
fn statuses_map_to_the_taxonomy() {
    for (status, expected) in [
        ("NORMAL", LineStatus::Active),
        ("SHUTDOWN", LineStatus::Suspended),
        ("POWER_OFF", LineStatus::PoweredOff),
        ("NOT_EXIST", LineStatus::Empty),
        ("SUSPECTED_POWER_OFF", LineStatus::PoweredOff),
        ("BUSY", LineStatus::Active),
        ("UNKNOWN", LineStatus::NoRecord),
        ("SOMETHING_NEW", LineStatus::NoRecord),
    ] {
        assert_eq!(map_status(status), expected, "{status}");
    }
}

#[test]
fn unknown_is_answered_but_not_billed() {
    let body = br#"{"RequestId":"1","Code":"OK","Message":"OK","Data":{"Status":"UNKNOWN","Carrier":"CUCC"}}"#;
    let answer = decode(body, &info("13000000107")).unwrap();
    let (r, billable) = line(&answer);
    assert_eq!(r.status, LineStatus::NoRecord);
    assert!(!billable);
    assert!(!answer.billable());
}

#[test]
fn a_carrier_other_than_the_segments_is_a_ported_number() {
    // 138 is a China Mobile segment; the vendor says China Unicom serves it now.
    let body = br#"{"RequestId":"1","Code":"OK","Message":"OK","Data":{"Status":"NORMAL","Carrier":"CUCC"}}"#;
    let answer = decode(body, &info("13800000108")).unwrap();
    let (r, _) = line(&answer);
    assert!(r.ported);
    assert_eq!(r.current_carrier.as_ref().unwrap().name, "China Unicom");
    // A virtual operator's number is compared with its host network (1704: China Unicom).
    let answer = decode(body, &info("17040000101")).unwrap();
    assert!(!line(&answer).0.ported);
    // A code phonecheck does not know is kept, and says nothing about porting.
    let body = br#"{"Code":"OK","Data":{"Status":"NORMAL","Carrier":"XYZ"}}"#;
    let answer = decode(body, &info("13800000101")).unwrap();
    let (r, _) = line(&answer);
    assert!(!r.ported);
    assert_eq!(r.current_carrier.as_ref().unwrap().code, "XYZ");
    assert!(r.current_carrier.as_ref().unwrap().name.is_empty());
    // No carrier at all.
    let body = br#"{"Code":"OK","Data":{"Status":"SHUTDOWN"}}"#;
    let answer = decode(body, &info("13800000101")).unwrap();
    assert_eq!(line(&answer).0.current_carrier, None);
}

#[test]
fn vendor_codes_are_classified_and_free() {
    let cases = [
        ("SignatureDoesNotMatch", ErrorReason::AuthFailed, false),
        (
            "InvalidAccessKeyId.NotFound",
            ErrorReason::AuthFailed,
            false,
        ),
        ("isv.AUTH_CODE_NOT_EXIST", ErrorReason::AuthFailed, false),
        ("InvalidTimeStamp.Expired", ErrorReason::Rejected, false),
        ("SignatureNonceUsed", ErrorReason::Rejected, true),
        ("Throttling.User", ErrorReason::RateLimited, true),
        ("RequestFrequencyLimit", ErrorReason::RateLimited, false),
        ("isv.OUT_OF_SERVICE", ErrorReason::QuotaExhausted, false),
        ("OperatorLimit", ErrorReason::Rejected, false),
        ("isv.MOBILE_NUMBER_ILLEGAL", ErrorReason::Rejected, false),
        ("isp.SYSTEM_ERROR", ErrorReason::Unavailable, true),
        ("ServiceUnavailable", ErrorReason::Unavailable, true),
    ];
    for (code, reason, retryable) in cases {
        let body = format!(r#"{{"RequestId":"1","Code":"{code}","Message":"words"}}"#);
        let err = decode(body.as_bytes(), &info("13800000101")).unwrap_err();
        assert_eq!(
            (err.reason(), err.retryable(), err.billable()),
            (reason, retryable, false),
            "{code}"
        );
        assert_eq!(err.vendor_code(), Some(code));
    }
}

#[test]
fn malformed_bodies_are_bad_responses() {
    for body in [
        &b""[..],
        b"{",
        b"<html>",
        br#"{"Message":"no code"}"#,
        br#"{"Code":"OK"}"#,
        br#"{"Code":"OK","Data":{"Carrier":"CMCC"}}"#,
        br#"{"Code":"OK","Data":{"Status":""}}"#,
    ] {
        let err = decode(body, &info("13800000101")).unwrap_err();
        assert_eq!(
            err.reason(),
            ErrorReason::BadResponse,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn masks_send_lower_case_hex() {
    assert_eq!(Mask::Normal.encode("13800000101"), "13800000101");
    let md5 = Mask::Md5.encode("13800000101");
    assert_eq!(md5.len(), 32);
    assert_eq!(md5, SignatureMethod::Md5.hex_digest(b"13800000101"));
    for mask in [Mask::Sha256, Mask::Sm3] {
        let hash = mask.encode("13800000101");
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
    }
    assert_ne!(
        Mask::Sha256.encode("13800000101"),
        Mask::Sm3.encode("13800000101")
    );
    assert_eq!(Mask::parse("SM3"), Some(Mask::Sm3));
    assert_eq!(Mask::parse("sm3"), None, "the vendor wants upper case");
}

#[test]
fn config_problems_and_masks_from_toml() {
    let config = toml_config(
        r#"access_key_id = "LTAI"
        access_key_secret = { env = "ALIYUN_SECRET" }
        auth_code = "code"
        mask = "SHA256""#,
    );
    assert!(format!("{:?}", config.settings).contains("Sha256"));
    assert_eq!(
        config.shared.base_url, None,
        "the vendor's endpoint by default"
    );
    assert!(config.problems().is_empty());
    let config = toml_config(
        r#"base_url = "ftp://x"
        access_key_id = " "
        access_key_secret = { env = "ALIYUN_SECRET" }
        auth_code = """#,
    );
    assert!(format!("{:?}", config.settings).contains("Normal"));
    assert_eq!(config.problems().len(), 3, "{:?}", config.problems());
}

fn toml_config(text: &str) -> crate::vendors::ProviderConfig {
    use figment::providers::{Format, Toml};
    figment::Figment::from(Toml::string(&format!("type = \"aliyun\"\n{text}")))
        .extract()
        .unwrap()
}

/// The client of `settings` at `base_url`.
fn provider(
    base_url: &str,
    settings: &AliyunSettings,
    secret: &str,
    ctx: &BuildContext,
) -> AliyunProvider {
    let shared = crate::providers::SharedConfig {
        base_url: Some(base_url.to_owned()),
        ..Default::default()
    };
    let setup = Setup::new(
        "aliyun",
        VENDOR.name,
        VENDOR.checks,
        &VENDOR.defaults,
        &shared,
        ctx,
    )
    .unwrap();
    AliyunProvider::new(setup, settings, secret.to_owned().into()).unwrap()
}

fn settings(access_key_id: &str, auth_code: &str, mask: Mask) -> AliyunSettings {
    AliyunSettings {
        access_key_id: access_key_id.to_owned(),
        auth_code: auth_code.to_owned(),
        mask,
        action_quotas: Default::default(),
    }
}

async fn ctx(clock: Arc<dyn Clock>) -> BuildContext {
    BuildContext {
        http: crate::providers::http_client().unwrap(),
        clock,
        sandbox: false,
        pending: Arc::new(crate::store::SqliteStore::in_memory().await.unwrap()),
    }
}

#[tokio::test]
async fn the_request_is_signed_over_what_is_sent() {
    let clock = FixedClock(
        chrono::Utc
            .with_ymd_and_hms(2024, 3, 10, 4, 12, 32)
            .unwrap(),
    );
    let ctx = ctx(Arc::new(clock)).await;
    let config = settings(SANDBOX_ACCESS_KEY_ID, SANDBOX_AUTH_CODE, Mask::Md5);
    let secret = SANDBOX_ACCESS_KEY_SECRET;
    let provider = provider("http://127.0.0.1:8700", &config, secret, &ctx);
    let signed = provider.signed_request("13800000101");
    assert_eq!(signed.headers[0], ("host", "127.0.0.1:8700".to_owned()));
    let get = |name: &str| {
        signed
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    };
    assert_eq!(get("x-acs-date"), "2024-03-10T04:12:32Z");
    assert_eq!(get("x-acs-signature-nonce"), clock.nonce());
    assert_eq!(get("x-acs-action"), ACTION);
    assert_eq!(get("x-acs-version"), VERSION);
    assert_eq!(signed.query[1].1, Mask::Md5.encode("13800000101"));
    assert_eq!(signed.query[2], ("Mask", "MD5".to_owned()));
    // A verifier holding the secret recomputes the same signature from the same parts.
    let query: Vec<(&str, &str)> = signed.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let headers: Vec<(&str, &str)> = signed
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let request = Acs3Request {
        method: "POST",
        path: "/",
        query: &query,
        headers: &headers,
        payload_sha256: &sha256_hex(b""),
    };
    let (signed_headers, signature) = sign(&request, secret);
    assert_eq!(
        signed.authorization,
        format!(
            "ACS3-HMAC-SHA256 Credential=LTAI5tSandboxAliyunAccessKey,SignedHeaders={signed_headers},Signature={signature}"
        )
    );
    let (_, wrong) = sign(&request, "wrong");
    assert!(!signatures_equal(&wrong, &signature));
    assert!(
        !format!("{provider:?}").contains(secret),
        "the secret never shows in Debug"
    );
}

#[tokio::test]
async fn only_chinese_mobiles_are_covered() {
    let ctx = ctx(Arc::new(crate::providers::SystemClock)).await;
    let provider = provider(
        DEFAULT_BASE_URL,
        &settings("id", "code", Mask::Normal),
        "s",
        &ctx,
    );
    let provider: &dyn Provider = &provider;
    assert!(provider.covers(&info("13800000101")).is_ok());
    assert!(provider.covers(&info("01088886666")).is_err());
    let limits = provider.info().limits;
    assert_eq!(limits.quota.requests_per_second, 300.0);
}
