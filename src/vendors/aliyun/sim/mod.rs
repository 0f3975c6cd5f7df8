//! The Aliyun 号码百科 simulator: `PhoneNumberStatusForPublic` and the three actions of
//! [`answers`] (`DescribePhoneNumberOnlineTime`, `DescribePhoneTwiceTelVerify`,
//! `DescribePhoneNumberOperatorAttribute`) at `POST /` (and `GET /`, which the vendor's RPC
//! gateway also takes), selected by `x-acs-action` and `x-acs-version`.
//!
//! Checks what the gateway checks, in its order: the action (404 `InvalidAction.NotFound`), the
//! V3 `Authorization` header and that `host` and every `x-acs-*` header are signed (400
//! `IncompleteSignature`), the AccessKey id (404 `InvalidAccessKeyId.NotFound`), the signature
//! over the request as received, body hash included (400 `SignatureDoesNotMatch`), the
//! `x-acs-date` format and 15-minute window (400 `InvalidTimeStamp.Format` / `.Expired`), nonce
//! replay within the window (400 `SignatureNonceUsed`) and the required parameters (400
//! `Missing<Name>`). Then the business rules answer HTTP 200 with a `Code`: `isv.AUTH_CODE_NOT_EXIST`
//! (wrong `AuthCode`), `isv.INVALID_PARAMETERS` (a `Mask` other than the four, in upper case),
//! `isv.MOBILE_NUMBER_ILLEGAL` (`InputNumber` not 11 digits, or not 32/64 hex for a hash mask), or
//! `OK` with `Data {Status, Carrier}` by rule ([`answer_for`]). Billable: `OK` and not `UNKNOWN`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::actions::{self, Action};
use super::signing::{ALGORITHM, Acs3Request, canonical_request, sign, string_to_sign};
use super::{
    ACTION, DATE_FORMAT, Mask, PATH, SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET,
    SANDBOX_AUTH_CODE, VERSION,
};
use crate::number::segments;
use crate::providers::signing::{SignatureMethod, sha256_hex, signatures_equal};
use crate::sim::faults::{AccountKey, VendorFaults};
use crate::sim::{Account, SimRoutes, SimState, VendorSim, bucket, suffix};

pub mod answers;

/// How far `x-acs-date` may be from the simulator's clock, in seconds (the vendor's 15 minutes).
pub const DATE_WINDOW_SECONDS: i64 = 15 * 60;

/// The headers every request must sign.
const MUST_SIGN: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
];

/// The Aliyun simulator's own state: its accounts (the scope is the `AuthCode`) and the nonces
/// seen within the date window.
#[derive(Debug)]
pub struct AliyunState {
    accounts: Vec<Account>,
    nonces: Mutex<HashMap<String, i64>>,
    repeats: answers::Repeats,
}

type Sim = VendorSim<AliyunState>;

/// The simulator's route (`POST /` and `GET /`), accepting the sandbox account and the extra
/// accounts of Aliyun (with the sandbox's `AuthCode`).
pub fn routes(common: &Arc<SimState>) -> SimRoutes {
    let sandbox = Account::new(
        SANDBOX_ACCESS_KEY_ID,
        SANDBOX_ACCESS_KEY_SECRET,
        SANDBOX_AUTH_CODE,
    );
    let accounts = common.accounts("aliyun", sandbox);
    let state = Arc::new(VendorSim {
        common: common.clone(),
        own: AliyunState {
            accounts,
            nonces: Mutex::default(),
            repeats: answers::Repeats::new(common.config.repeat_window),
        },
    });
    SimRoutes {
        router: axum::Router::new()
            .route(PATH, axum::routing::post(handle).get(handle))
            .with_state(state),
        faults: VendorFaults {
            vendor: "aliyun",
            over_limit: || {
                (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"{"RequestId":"00000000-0000-0000-0000-000000000000","HostId":"dytnsapi.aliyuncs.com","Code":"Throttling.User","Message":"Request was denied due to user flow control."}"#,
                )
                    .into_response()
            },
            account: AccountKey::AuthorizationCredential,
        },
        paths: actions::ACTIONS
            .iter()
            .map(|a| format!("{PATH}  (x-acs-action: {})", a.name))
            .collect(),
    }
}

/// A request's parameters, name and value, in the order received.
type Params = Vec<(String, String)>;

/// An answer: HTTP status and JSON body.
type Reply = (StatusCode, Json<Value>);

/// A vendor-style request id (upper-case UUID shape), unique per answer.
fn request_id(state: &SimState) -> String {
    let hex = SignatureMethod::Md5
        .hex_digest(state.next_id().to_string().as_bytes())
        .to_ascii_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A gateway refusal: an HTTP error status and the vendor's error JSON.
fn refuse(state: &SimState, status: StatusCode, code: &str, message: &str) -> Reply {
    (
        status,
        Json(json!({
            "RequestId": request_id(state),
            "HostId": "dytnsapi.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Dytnsapi"),
        })),
    )
}

/// A business answer other than `OK`: HTTP 200 with the code.
fn business(state: &SimState, code: &str, message: &str) -> Reply {
    (
        StatusCode::OK,
        Json(json!({"RequestId": request_id(state), "Code": code, "Message": message})),
    )
}

/// The parts of `Authorization: ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
struct Authorization<'a> {
    credential: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    Some(Authorization {
        credential: credential?,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the gateway's rules; returns the request's parameters (query, then a form body) and
/// the account that signed it.
fn verify<'a>(
    state: &'a Sim,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, &'a Account, &'static Action), Reply> {
    let action = header(headers, "x-acs-action").and_then(actions::named);
    let Some(action) = action.filter(|_| header(headers, "x-acs-version") == Some(VERSION)) else {
        return Err(refuse(
            state,
            StatusCode::NOT_FOUND,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        ));
    };
    let incomplete = |why: &str| {
        refuse(
            state,
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            &format!("The request signature does not conform to Aliyun standards: {why}"),
        )
    };
    let auth = header(headers, "authorization")
        .and_then(parse_authorization)
        .ok_or_else(|| incomplete("no ACS3-HMAC-SHA256 Authorization header"))?;
    let Some(account) = state.own.accounts.iter().find(|a| a.id == auth.credential) else {
        return Err(refuse(
            state,
            StatusCode::NOT_FOUND,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        ));
    };
    let content_type = headers
        .contains_key(header::CONTENT_TYPE)
        .then_some("content-type");
    if let Some(missing) = MUST_SIGN
        .into_iter()
        .chain(content_type)
        .find(|h| !auth.signed_headers.contains(h))
    {
        return Err(incomplete(&format!("{missing} is not signed")));
    }
    let mut signed = Vec::new();
    for name in &auth.signed_headers {
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(incomplete(&format!("signed header {name} is not sent")));
        }
        signed.extend(values.into_iter().map(|v| (*name, v)));
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let query_refs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // The body is signed through its hash: the vendor recomputes it rather than trust the header.
    let request = Acs3Request {
        method: method.as_str(),
        path: uri.path(),
        query: &query_refs,
        headers: &signed,
        payload_sha256: &sha256_hex(body),
    };
    let (_, expected) = sign(&request, &account.secret);
    if !signatures_equal(auth.signature, &expected)
        || header(headers, "x-acs-content-sha256") != Some(request.payload_sha256)
    {
        let (canonical, _) = canonical_request(&request);
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            &format!(
                "Specified signature does not match our calculation. server string to sign is:{}",
                string_to_sign(&canonical)
            ),
        ));
    }
    let Some(date) = header(headers, "x-acs-date")
        .and_then(|d| NaiveDateTime::parse_from_str(d, DATE_FORMAT).ok())
    else {
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        ));
    };
    let now = state.config.clock.now().timestamp();
    if (now - date.and_utc().timestamp()).abs() > DATE_WINDOW_SECONDS {
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    let nonce = header(headers, "x-acs-signature-nonce").unwrap_or_default();
    {
        let mut nonces = state.own.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.retain(|_, seen| now - *seen <= DATE_WINDOW_SECONDS);
        if nonces.insert(nonce.to_owned(), now).is_some() {
            return Err(refuse(
                state,
                StatusCode::BAD_REQUEST,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
    }
    let mut params = query;
    let form = header(headers, "content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default(),
        );
    }
    Ok((params, account, action))
}

/// The vendor's answer for a number in clear, by rule: suffix `0101`..`0107` selects `NORMAL`,
/// `SHUTDOWN`, `POWER_OFF`, `NOT_EXIST`, `SUSPECTED_POWER_OFF`, `BUSY`, `UNKNOWN`; `0108` a ported
/// number (`NORMAL`, with a carrier other than its segment's). Other numbers get a stable status
/// from a hash (78% normal, 8% not existing, 4% shut down, 3% powered off, 2% suspected powered
/// off, 1% busy, 4% unknown), their segment's carrier, and about 4% of them are ported. Like the
/// vendor, China Telecom numbers chosen by the hash are never `BUSY`, `SUSPECTED_POWER_OFF` or
/// `POWER_OFF` (they read `NORMAL`); magic suffixes win over that rule.
pub fn answer_for(number: &str) -> (&'static str, Option<&'static str>) {
    let segment = segment_code(number);
    let magic = match suffix(number) {
        "0101" => Some("NORMAL"),
        "0102" => Some("SHUTDOWN"),
        "0103" => Some("POWER_OFF"),
        "0104" => Some("NOT_EXIST"),
        "0105" => Some("SUSPECTED_POWER_OFF"),
        "0106" => Some("BUSY"),
        "0107" => Some("UNKNOWN"),
        "0108" => return ("NORMAL", segment.map(ported_to)),
        _ => None,
    };
    if let Some(status) = magic {
        return (status, segment);
    }
    let carrier = if bucket(&format!("{number}/carrier")) < 4 {
        segment.map(ported_to)
    } else {
        segment
    };
    let status = status_by_bucket(bucket(number));
    let telecom_silenced = matches!(status, "BUSY" | "SUSPECTED_POWER_OFF" | "POWER_OFF");
    if carrier == Some("CTCC") && telecom_silenced {
        return ("NORMAL", carrier);
    }
    (status, carrier)
}

fn status_by_bucket(b: u8) -> &'static str {
    match b {
        0..78 => "NORMAL",
        78..86 => "NOT_EXIST",
        86..90 => "SHUTDOWN",
        90..93 => "POWER_OFF",
        93..95 => "SUSPECTED_POWER_OFF",
        95..96 => "BUSY",
        _ => "UNKNOWN",
    }
}

/// The carrier a ported number moved to: the next of the big three.
fn ported_to(code: &'static str) -> &'static str {
    match code {
        "CMCC" => "CUCC",
        "CUCC" => "CTCC",
        _ => "CMCC",
    }
}

/// The answer for a hashed number. The hash hides the number from the simulator (the vendor
/// hashes its own records; the simulator cannot), so the status follows the hash with the same
/// spread, stable per number, and `Carrier` is left out rather than invented.
pub fn answer_for_hash(hash: &str) -> &'static str {
    status_by_bucket(bucket(&hash.to_ascii_lowercase()))
}

fn well_formed(mask: Mask, input: &str) -> bool {
    let hex = |len: usize| input.len() == len && input.bytes().all(|b| b.is_ascii_hexdigit());
    match mask {
        Mask::Normal => {
            input.len() == 11 && input.starts_with('1') && input.bytes().all(|b| b.is_ascii_digit())
        }
        Mask::Md5 => hex(32),
        Mask::Sha256 | Mask::Sm3 => hex(64),
    }
}

/// Handles one call.
pub async fn handle(
    State(state): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let counters = state.stats.counters("aliyun");
    state.stats.record_call(counters, 1);
    state.delay().await;
    let (params, account, action) = match verify(&state, &method, &uri, &headers, &body) {
        Ok(verified) => verified,
        Err(reply) => return reply,
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (Some(auth_code), Some(input), Some(mask)) =
        (param("AuthCode"), param("InputNumber"), param("Mask"))
    else {
        let missing = ["AuthCode", "InputNumber", "Mask"]
            .into_iter()
            .find(|n| param(n).is_none())
            .unwrap_or("InputNumber");
        return refuse(
            &state,
            StatusCode::BAD_REQUEST,
            &format!("Missing{missing}"),
            &format!("{missing} is mandatory for this action."),
        );
    };
    if auth_code != account.scope {
        return business(&state, "isv.AUTH_CODE_NOT_EXIST", "授权码不存在或不可用");
    }
    let Some(mask) = Mask::parse(mask) else {
        return business(
            &state,
            "isv.INVALID_PARAMETERS",
            "Mask 仅支持 NORMAL, MD5, SHA256, SM3",
        );
    };
    if !well_formed(mask, input) {
        return business(&state, "isv.MOBILE_NUMBER_ILLEGAL", "手机号码格式错误");
    }
    let (status, carrier) = if mask == Mask::Normal {
        // Magic numbers for the vendor's failures.
        match suffix(input) {
            "0140" => return business(&state, "OperatorLimit", "运营商限制查询该号码"),
            "0141" => {
                return business(&state, "RequestFrequencyLimit", "同一号码查询过于频繁");
            }
            "0142" => return business(&state, "isv.OUT_OF_SERVICE", "业务停机"),
            "0143" => {
                return business(
                    &state,
                    "PortabilityNumberNotSupported",
                    "携号转网号码不支持",
                );
            }
            "0144" => return business(&state, "RequestNumberNotSupported", "不支持该号段"),
            "0145" => return business(&state, "PhoneNumberNotfound", "号码不存在"),
            "0150" => {
                return refuse(
                    &state,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                );
            }
            _ => answer_for(input),
        }
    } else {
        (answer_for_hash(input), None)
    };
    if action.name != ACTION {
        let param = |name: &str| param(name).map(str::to_owned);
        let (reply, billable) = answers::answer(&state, action, mask, input, &param);
        if billable {
            state.stats.record_billable(counters);
        }
        return reply;
    }
    if status != "UNKNOWN" {
        state.stats.record_billable(counters);
    }
    let mut data = json!({"Status": status});
    if let Some(carrier) = carrier {
        data["Carrier"] = json!(carrier);
    }
    (
        StatusCode::OK,
        Json(json!({
            "RequestId": request_id(&state),
            "Code": "OK",
            "Message": "OK",
            "Data": data,
        })),
    )
}

/// The segment operator's vendor code of a number in clear, for tests comparing carriers.
pub fn segment_code(number: &str) -> Option<&'static str> {
    segments::lookup(number).and_then(|s| s.operator.code())
}

#[cfg(test)]
mod tests;
