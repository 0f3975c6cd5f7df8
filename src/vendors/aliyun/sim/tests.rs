//! The Aliyun simulator's gateway rules and answers, driven over its router with hand-built,
//! hand-signed requests (the provider client and the vendor's SDK are tested against it
//! elsewhere).
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use chrono::{DateTime, TimeZone, Utc};
use tower::ServiceExt;

use super::*;
use crate::providers::FixedClock;
use crate::sim::SimConfig;
use crate::vendors::aliyun::signing::authorization;

const AUTH_CODE: &str = SANDBOX_AUTH_CODE;
const HOST: &str = "127.0.0.1:8700";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 10, 4, 12, 32).unwrap()
}

/// A request as the SDK builds it, with what a test changes.
struct Call {
    query: Vec<(&'static str, String)>,
    date: DateTime<Utc>,
    nonce: String,
    key_id: &'static str,
    secret: &'static str,
    /// Headers signed; `x-acs-date` can be left out of the signature.
    sign_date: bool,
    /// Changes the query after signing.
    tamper: bool,
}

impl Call {
    fn new(number: &str, mask: &str) -> Call {
        Call {
            query: vec![
                ("AuthCode", AUTH_CODE.to_owned()),
                ("InputNumber", number.to_owned()),
                ("Mask", mask.to_owned()),
            ],
            date: now(),
            nonce: "0123456789abcdef0123456789abcdef".to_owned(),
            key_id: SANDBOX_ACCESS_KEY_ID,
            secret: SANDBOX_ACCESS_KEY_SECRET,
            sign_date: true,
            tamper: false,
        }
    }

    fn request(&self) -> Request<Body> {
        let date = self.date.format(DATE_FORMAT).to_string();
        let empty = sha256_hex(b"");
        let mut headers = vec![
            ("host", HOST),
            ("x-acs-action", ACTION),
            ("x-acs-version", VERSION),
            ("x-acs-signature-nonce", self.nonce.as_str()),
            ("x-acs-content-sha256", empty.as_str()),
        ];
        if self.sign_date {
            headers.push(("x-acs-date", &date));
        }
        let query: Vec<(&str, &str)> = self.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let authorization = authorization(
            &Acs3Request {
                method: "POST",
                path: "/",
                query: &query,
                headers: &headers,
                payload_sha256: &empty,
            },
            self.key_id,
            self.secret,
        );
        let mut sent = query.clone();
        if self.tamper {
            sent[1].1 = "13800000104";
        }
        let uri = format!("/?{}", serde_urlencoded::to_string(&sent).unwrap());
        let mut request = Request::post(uri)
            .header("authorization", authorization)
            .header("accept", "application/json");
        if !self.sign_date {
            request = request.header("x-acs-date", &date);
        }
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.body(Body::empty()).unwrap()
    }
}

fn router() -> (axum::Router, Arc<crate::sim::Stats>) {
    crate::vendors::sim_router(SimConfig {
        clock: Arc::new(FixedClock(now())),
        ..SimConfig::default()
    })
}

async fn send(router: &axum::Router, call: &Call) -> (StatusCode, Value) {
    let response = router.clone().oneshot(call.request()).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn code(answer: &(StatusCode, Value)) -> (u16, &str) {
    (answer.0.as_u16(), answer.1["Code"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn a_signed_call_is_answered_and_billed() {
    let (router, stats) = router();
    let answer = send(&router, &Call::new("13800000101", "NORMAL")).await;
    assert_eq!(code(&answer), (200, "OK"));
    assert_eq!(answer.1["Data"]["Status"], "NORMAL");
    assert_eq!(answer.1["Data"]["Carrier"], "CMCC");
    assert_eq!(answer.1["RequestId"].as_str().unwrap().len(), 36);
    let counted = stats.vendor("aliyun");
    assert_eq!((counted.calls, counted.billable), (1, 1));
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let (router, stats) = router();
    let call = Call::new("13800000101", "NORMAL");
    assert_eq!(code(&send(&router, &call).await), (200, "OK"));
    assert_eq!(
        code(&send(&router, &call).await),
        (400, "SignatureNonceUsed")
    );
    assert_eq!(stats.vendor("aliyun").billable, 1);
}

#[tokio::test]
async fn a_date_outside_fifteen_minutes_is_expired() {
    let (router, _) = router();
    let mut call = Call::new("13800000101", "NORMAL");
    call.date = now() - chrono::Duration::minutes(16);
    assert_eq!(
        code(&send(&router, &call).await),
        (400, "InvalidTimeStamp.Expired")
    );
    call.date = now() + chrono::Duration::minutes(14);
    assert_eq!(code(&send(&router, &call).await), (200, "OK"));
}

#[tokio::test]
async fn credentials_and_signatures_are_checked() {
    let (router, stats) = router();
    let mut call = Call::new("13800000101", "NORMAL");
    call.secret = "wrong";
    let refused = send(&router, &call).await;
    assert_eq!(code(&refused), (400, "SignatureDoesNotMatch"));
    assert!(
        refused.1["Message"]
            .as_str()
            .unwrap()
            .contains("ACS3-HMAC-SHA256\n"),
        "the vendor tells the string it signed"
    );
    let mut call = Call::new("13800000101", "NORMAL");
    call.key_id = "LTAI5tSomebodyElse";
    assert_eq!(
        code(&send(&router, &call).await),
        (404, "InvalidAccessKeyId.NotFound")
    );
    let mut call = Call::new("13800000101", "NORMAL");
    call.tamper = true;
    assert_eq!(
        code(&send(&router, &call).await),
        (400, "SignatureDoesNotMatch")
    );
    let mut call = Call::new("13800000101", "NORMAL");
    call.sign_date = false;
    assert_eq!(
        code(&send(&router, &call).await),
        (400, "IncompleteSignature")
    );
    assert_eq!(stats.vendor("aliyun").billable, 0);
}

#[tokio::test]
async fn another_action_is_not_found() {
    let (router, _) = router();
    let mut request = Call::new("13800000101", "NORMAL").request();
    request.headers_mut().insert(
        "x-acs-action",
        "DescribePhoneNumberAttribute".parse().unwrap(),
    );
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn business_codes() {
    let (router, stats) = router();
    let mut call = Call::new("13800000101", "NORMAL");
    call.query[0].1 = "another-code".into();
    assert_eq!(
        code(&send(&router, &call).await),
        (200, "isv.AUTH_CODE_NOT_EXIST")
    );
    let mut nonce = 0;
    let mut fresh = |number: &str, mask: &str| {
        nonce += 1;
        let mut call = Call::new(number, mask);
        call.nonce = format!("{nonce:032x}");
        call
    };
    for (number, mask, expected) in [
        ("1380000010", "NORMAL", (200, "isv.MOBILE_NUMBER_ILLEGAL")),
        ("13800000101", "normal", (200, "isv.INVALID_PARAMETERS")),
        ("13800000101", "MD5", (200, "isv.MOBILE_NUMBER_ILLEGAL")),
        ("13800000140", "NORMAL", (200, "OperatorLimit")),
        ("13800000141", "NORMAL", (200, "RequestFrequencyLimit")),
        ("13800000142", "NORMAL", (200, "isv.OUT_OF_SERVICE")),
        ("13800000150", "NORMAL", (503, "ServiceUnavailable")),
        ("", "NORMAL", (400, "MissingInputNumber")),
    ] {
        let answer = send(&router, &fresh(number, mask)).await;
        assert_eq!(code(&answer), expected, "{number} {mask}");
    }
    assert_eq!(stats.vendor("aliyun").billable, 0);
}

#[tokio::test]
async fn hash_masks_are_accepted_in_either_case() {
    let (router, stats) = router();
    let number = "13800000101";
    let mut sent = 0;
    for mask in [Mask::Md5, Mask::Sha256, Mask::Sm3] {
        for hash in [
            mask.encode(number),
            mask.encode(number).to_ascii_uppercase(),
        ] {
            sent += 1;
            let mut call = Call::new(&hash, mask.as_str());
            call.nonce = format!("{sent:032x}");
            let answer = send(&router, &call).await;
            assert_eq!(code(&answer), (200, "OK"), "{mask:?}");
            assert_eq!(answer.1["Data"]["Status"], answer_for_hash(&hash));
            assert!(answer.1["Data"].get("Carrier").is_none());
        }
    }
    assert_eq!(stats.vendor("aliyun").calls, sent);
}

#[test]
fn magic_suffixes() {
    for (number, status) in [
        ("13800000101", "NORMAL"),
        ("13800000102", "SHUTDOWN"),
        ("13800000103", "POWER_OFF"),
        ("13800000104", "NOT_EXIST"),
        ("13800000105", "SUSPECTED_POWER_OFF"),
        ("13800000106", "BUSY"),
        ("13800000107", "UNKNOWN"),
    ] {
        assert_eq!(answer_for(number), (status, Some("CMCC")), "{number}");
    }
    assert_eq!(answer_for("13800000108"), ("NORMAL", Some("CUCC")));
    assert_eq!(answer_for("13000000108"), ("NORMAL", Some("CTCC")));
    assert_eq!(answer_for("13300000108"), ("NORMAL", Some("CMCC")));
    assert_eq!(answer_for("19200000101"), ("NORMAL", Some("CBN")));
}

#[test]
fn other_numbers_are_stable_spread_and_mostly_unported() {
    assert_eq!(answer_for("13912345678"), answer_for("13912345678"));
    let numbers: Vec<String> = (0..2000).map(|i| format!("139{:08}", i * 7919)).collect();
    let normal = numbers
        .iter()
        .filter(|n| answer_for(n).0 == "NORMAL")
        .count();
    assert!((1400..1750).contains(&normal), "{normal}");
    let ported = numbers
        .iter()
        .filter(|n| answer_for(n).1 != Some("CMCC"))
        .count();
    assert!((20..180).contains(&ported), "{ported}");
    // Like the vendor, China Telecom numbers chosen by the hash are never busy or powered off
    // (magic suffixes, `01xx`, left aside).
    let telecom = (0..2000).map(|i| format!("133{:08}", i * 7919));
    assert!(telecom.filter(|n| &n[7..9] != "01").all(|n| {
        let (status, carrier) = answer_for(&n);
        carrier != Some("CTCC") || !matches!(status, "BUSY" | "SUSPECTED_POWER_OFF" | "POWER_OFF")
    }));
}
