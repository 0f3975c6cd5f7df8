//! The Yidun simulator: `POST /v1/profile/phone/multiple/query`, form-encoded.
//!
//! Checks the ids (400 missing, 401 wrong), `version`, the signature with any of the four methods
//! (410), the timestamp window of five minutes (420), nonce replay (430) and at most 100 phones
//! (414). Answers by rule: suffix `0020` an empty detail, `0021` high risk of real-person fraud,
//! `0022` medium risk of fake registration, `0023` under 18; failures `0411` (411), `0402` (402),
//! `0503` (503). Other numbers: about 85% without risk. The location comes as `phoneLocation` or,
//! like older documents, `location`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{BATCH_SIZE, PATH, SANDBOX_BUSINESS_ID, SANDBOX_SECRET_ID, SANDBOX_SECRET_KEY, sign};
use crate::providers::signing::{SignatureMethod, signatures_equal};
use crate::sim::faults::{AccountKey, VendorFaults};
use crate::sim::{Account, SimRoutes, SimState, VendorSim, bucket, suffix};

/// How far a request's timestamp may be from the simulator's clock, in milliseconds.
pub const TIMESTAMP_WINDOW_MS: i64 = 5 * 60 * 1000;

/// The Yidun simulator's own state: its accounts (the scope is the `businessId`), and the nonces
/// seen within the timestamp window.
#[derive(Debug, Default)]
pub struct YidunState {
    accounts: Vec<Account>,
    nonces: Mutex<HashMap<String, i64>>,
}

type Sim = VendorSim<YidunState>;

/// The simulator's route, accepting the sandbox account and the extra accounts of Yidun (`id` is
/// the `secretId`, with the sandbox's `businessId`).
pub fn routes(common: &Arc<SimState>) -> SimRoutes {
    let sandbox = Account::new(SANDBOX_SECRET_ID, SANDBOX_SECRET_KEY, SANDBOX_BUSINESS_ID);
    let accounts = common.accounts("yidun", sandbox);
    let state = Arc::new(VendorSim {
        common: common.clone(),
        own: YidunState {
            accounts,
            nonces: Mutex::default(),
        },
    });
    SimRoutes {
        router: axum::Router::new()
            .route(PATH, axum::routing::post(handle))
            .with_state(state),
        faults: VendorFaults {
            vendor: "yidun",
            over_limit: || {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"code":411,"msg":"rate limited"}"#,
                )
                    .into_response()
            },
            account: AccountKey::One,
        },
        paths: vec![PATH.to_owned()],
    }
}

fn answer(state: &SimState, code: i64, msg: &str) -> Json<Value> {
    let _ = state;
    Json(json!({"code": code, "msg": msg}))
}

/// Handles one query.
pub async fn handle(State(state): State<Arc<Sim>>, body: Bytes) -> Json<Value> {
    let counters = state.stats.counters("yidun");
    let form: HashMap<String, String> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .map(|pairs| pairs.into_iter().collect())
            .unwrap_or_default();
    let phones: Option<Vec<String>> = form
        .get("phones")
        .and_then(|p| serde_json::from_str(p).ok());
    state
        .stats
        .record_call(counters, phones.as_ref().map_or(0, |p| p.len() as u64));
    state.delay().await;
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(secret_id), Some(business_id)) = (get("secretId"), get("businessId")) else {
        return answer(&state, 400, "secretId or businessId missing");
    };
    let Some(account) = Account::find(&state.own.accounts, secret_id, business_id) else {
        return answer(&state, 401, "secretId or businessId invalid");
    };
    if get("version") != Some("v1") {
        return answer(&state, 405, "version must be v1");
    }
    let method = match get("signatureMethod") {
        None => SignatureMethod::Md5,
        Some(name) => match SignatureMethod::parse(name) {
            Some(m) if m.as_str() == name => m,
            _ => return answer(&state, 405, "signatureMethod not supported"),
        },
    };
    let Some(timestamp) = get("timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return answer(&state, 405, "timestamp invalid");
    };
    let Some(nonce) = get("nonce").filter(|n| n.len() <= 32) else {
        return answer(&state, 405, "nonce invalid");
    };
    let Some(signature) = get("signature") else {
        return answer(&state, 410, "signature missing");
    };
    let params: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !signatures_equal(signature, &sign(&params, &account.secret, method)) {
        return answer(&state, 410, "signature verification failed");
    }
    let now = state.config.clock.now().timestamp_millis();
    if (now - timestamp).abs() > TIMESTAMP_WINDOW_MS {
        return answer(&state, 420, "request expired");
    }
    {
        let mut nonces = state.own.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.retain(|_, seen| now - *seen <= TIMESTAMP_WINDOW_MS);
        if nonces.insert(nonce.to_owned(), now).is_some() {
            return answer(&state, 430, "replayed request");
        }
    }
    let Some(phones) = phones.filter(|p| !p.is_empty()) else {
        return answer(
            &state,
            405,
            "phones must be a non-empty JSON array of strings",
        );
    };
    if phones.len() > BATCH_SIZE {
        return answer(&state, 414, "phones too long");
    }
    for (magic, code, msg) in [
        ("0411", 411, "rate limited"),
        ("0402", 402, "business offline"),
        ("0503", 503, "service unavailable"),
    ] {
        if phones.iter().any(|p| suffix(p) == magic) {
            return answer(&state, code, msg);
        }
    }
    state.stats.record_billable(counters);
    let details: Vec<Value> = phones.iter().map(|p| detail(p)).collect();
    let task = format!("{:032x}", state.next_id());
    Json(json!({
        "code": 200,
        "msg": "ok",
        "data": {"success": true, "taskId": task, "riskDetails": details},
    }))
}

fn carrier(phone: &str) -> &'static str {
    match phone.get(..3).unwrap_or("") {
        "134" | "135" | "136" | "137" | "138" | "139" | "147" | "150" | "151" | "152" | "157"
        | "158" | "159" | "172" | "178" | "182" | "183" | "184" | "187" | "188" | "195" | "197"
        | "198" => "中国移动",
        "130" | "131" | "132" | "145" | "155" | "156" | "166" | "175" | "176" | "185" | "186"
        | "196" => "中国联通",
        _ => "中国电信",
    }
}

/// The risk detail of a number, by rule.
fn detail(phone: &str) -> Value {
    const PLACES: [(&str, &str); 6] = [
        ("广东", "广州"),
        ("北京", "北京"),
        ("上海", "上海"),
        ("浙江", "杭州"),
        ("四川", "成都"),
        ("江苏", "南京"),
    ];
    let b = bucket(phone);
    let risk = |level: u8, kind: u32, score: f64| json!({"riskLevel": level, "riskType": kind, "riskScore": score});
    let (risks, under18) = match suffix(phone) {
        "0020" => return json!({"phone": phone, "riskInfoList": [], "propDetails": {}}),
        "0021" => (
            vec![risk(2, 14002, 0.93)],
            json!({"score": 0.9, "isUnder18": 0}),
        ),
        "0022" => (
            vec![risk(1, 14003, 0.61)],
            json!({"score": 0.8, "isUnder18": 0}),
        ),
        "0023" => (vec![], json!({"score": 0.88, "isUnder18": 1})),
        _ => {
            let risks = match b {
                0..85 => vec![],
                85..95 => vec![risk(0, 14001, f64::from(b) / 100.0)],
                _ => vec![risk(1, 14004, 0.7)],
            };
            (risks, json!({"score": 0.75, "isUnder18": 0}))
        }
    };
    let (province, city) = PLACES[usize::from(b) % PLACES.len()];
    let location = json!({"carrier": carrier(phone), "province": province, "city": city});
    let location_key = if b.is_multiple_of(2) {
        "phoneLocation"
    } else {
        "location"
    };
    json!({
        "phone": phone,
        "riskInfoList": risks,
        "propDetails": {"under18": under18, location_key: location},
    })
}
