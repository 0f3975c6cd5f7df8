//! The caih simulator: `POST /verify/api/sign_add` and `POST /verify/api/sign_search`.
//!
//! Checks `authinfo` (account, `yyyyMMddHHmmss` China-time timestamp within ten minutes, lower-case
//! MD5 sign) and the number formats, answers in the decided envelope, and labels an added number
//! only after the simulator's `async_delay`. Codes: `1001` unknown account, `1002` wrong sign, `1003`
//! expired timestamp, `1004` bad parameters, `1005` over 10,000 numbers, `2001` balance (magic
//! suffix `2001`), `9999` system error (magic suffix `9999`). Adding is billed; querying is free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    ADD_PATH, BATCH_SIZE, SANDBOX_APP_ID, SANDBOX_SECRET_KEY, SANDBOX_USER_KEY, SEARCH_PATH,
    STILL_RUNNING,
};
use crate::clock::china_offset;
use crate::providers::signing::{SignatureMethod, signatures_equal};
use crate::sim::faults::{AccountKey, VendorFaults};
use crate::sim::{Account, SimRoutes, SimState, VendorSim, bucket, suffix};

/// What the caih simulator knows and remembers: its accounts (the scope is the `appid`), every
/// added number's latest batch.
#[derive(Debug, Default)]
pub struct CaihState {
    accounts: Vec<Account>,
    inner: Mutex<Inner>,
}

type Sim = VendorSim<CaihState>;

/// The simulator's routes, accepting the sandbox account and the extra accounts of caih (`id` is
/// the `userkey`, with the sandbox's `appid`).
pub fn routes(common: &Arc<SimState>) -> SimRoutes {
    let sandbox = Account::new(SANDBOX_USER_KEY, SANDBOX_SECRET_KEY, SANDBOX_APP_ID);
    let accounts = common.accounts("caih", sandbox);
    let state = Arc::new(VendorSim {
        common: common.clone(),
        own: CaihState {
            accounts,
            inner: Mutex::default(),
        },
    });
    SimRoutes {
        router: axum::Router::new()
            .route(ADD_PATH, axum::routing::post(add))
            .route(SEARCH_PATH, axum::routing::post(search))
            .with_state(state),
        faults: VendorFaults {
            vendor: "caih",
            over_limit: || {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"code":"1006","msg":"请求过于频繁","seqNo":"0","charge":false}"#,
                )
                    .into_response()
            },
            account: AccountKey::One,
        },
        paths: vec![ADD_PATH.to_owned(), SEARCH_PATH.to_owned()],
    }
}

#[derive(Debug, Default)]
struct Inner {
    numbers: HashMap<String, Entry>,
    batches: HashMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
struct Entry {
    batch: String,
    created: DateTime<FixedOffset>,
    ready: bool,
}

#[derive(Deserialize)]
struct Request {
    authinfo: Option<AuthInfo>,
    #[serde(default)]
    param: Map<String, Value>,
}

#[derive(Deserialize)]
struct AuthInfo {
    userkey: Option<String>,
    appid: Option<String>,
    timestamp: Option<String>,
    sign: Option<String>,
}

fn envelope(
    state: &SimState,
    code: &str,
    msg: &str,
    charge: bool,
    data: Option<Value>,
) -> Json<Value> {
    let mut body = json!({
        "code": code,
        "msg": msg,
        "seqNo": format!("{:032x}", state.next_id()),
        "charge": charge,
    });
    if let Some(data) = data {
        body["data"] = data;
    }
    Json(body)
}

type Refusal = (&'static str, String);

fn authenticate(state: &Sim, auth: Option<AuthInfo>) -> Result<(), Refusal> {
    let Some(AuthInfo {
        userkey: Some(userkey),
        appid: Some(appid),
        timestamp: Some(timestamp),
        sign: Some(sign),
    }) = auth
    else {
        return Err(("1001", "authinfo 不完整".to_owned()));
    };
    let Some(account) = Account::find(&state.own.accounts, &userkey, &appid) else {
        return Err(("1001", "userkey 或 appid 错误".to_owned()));
    };
    let when = NaiveDateTime::parse_from_str(&timestamp, "%Y%m%d%H%M%S")
        .ok()
        .and_then(|t| china_offset().from_local_datetime(&t).single())
        .ok_or(("1004", "timestamp 格式错误".to_owned()))?;
    let skew = (state.config.clock.now_china() - when).num_seconds().abs();
    if skew > 600 {
        return Err(("1003", "timestamp 已过期".to_owned()));
    }
    let expected = super::sign(&account.secret, &userkey, &appid, &timestamp);
    if !signatures_equal(&sign, &expected) {
        return Err(("1002", "sign 错误".to_owned()));
    }
    Ok(())
}

/// Whether caih accepts a number in this form (the vendor page's format table).
pub fn valid_tel(tel: &str) -> bool {
    let len = tel.len();
    if len == 0 || !tel.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if tel.starts_with('0') {
        // Area code + 7-8 digits, or + a 96/95 number of at most 15 digits without it.
        let rest = if tel.starts_with("01") || tel.starts_with("02") {
            &tel[3..]
        } else {
            tel.get(4..).unwrap_or("")
        };
        return (7..=8).contains(&rest.len())
            || ((rest.starts_with("96") || rest.starts_with("95"))
                && rest.len() >= 5
                && rest.len() <= 15);
    }
    (len == 11 && tel.starts_with('1') && !tel.starts_with("10"))
        || (tel.starts_with("95") && (5..=17).contains(&len))
        || (tel.starts_with("400") && len == 10)
        || (tel.starts_with("1010") && (8..=15).contains(&len))
        || ((tel.starts_with("116") || tel.starts_with("118")) && (4..=23).contains(&len))
        || tel.starts_with("1019")
}

fn tels_param(param: &Map<String, Value>) -> Option<Vec<String>> {
    let tels = param.get("tels")?.as_str()?;
    Some(
        tels.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// The labels of a number, by rule: suffix `0010` none, `0011` 360 harassment, `0012` fraud
/// across three sources, `0013` a delivery company's shown name; any other number gets a stable
/// answer (about 85% unlabelled). Tencent's triple is never filled, as the vendor documents.
fn labels_for(tel: &str) -> Vec<(&'static str, &'static str, String, &'static str)> {
    match suffix(tel) {
        "0010" => vec![],
        "0011" => vec![("securityGuard", "骚扰电话", "120".into(), "--")],
        "0012" => vec![
            ("securityGuard", "诈骗电话", "530".into(), "--"),
            ("mobileGuard", "诈骗电话", "88".into(), "--"),
            ("telephoneBond", "诈骗", "41".into(), "--"),
        ],
        "0013" => vec![
            ("numberLink", "快递送餐", "--".into(), "顺丰速运"),
            ("other", "快递物流", "12".into(), "--"),
        ],
        _ => {
            const SOURCES: [&str; 5] = [
                "securityGuard",
                "mobileGuard",
                "numberLink",
                "telephoneBond",
                "other",
            ];
            let b = bucket(tel);
            match b {
                0..85 => vec![],
                85..95 => vec![(
                    SOURCES[usize::from(b % 5)],
                    "广告推销",
                    (u32::from(b) * 3).to_string(),
                    "--",
                )],
                _ => vec![
                    (
                        "securityGuard",
                        "骚扰电话",
                        (u32::from(b) * 7).to_string(),
                        "--",
                    ),
                    (
                        "mobileGuard",
                        "骚扰电话",
                        (u32::from(b) * 2).to_string(),
                        "--",
                    ),
                ],
            }
        }
    }
}

fn item(tel: &str, entry: &Entry, batch_done: bool) -> Value {
    let mut item = Map::new();
    item.insert("batchUniqueId".into(), json!(entry.batch));
    item.insert(
        "batchStatus".into(),
        json!(if batch_done {
            "已完成"
        } else {
            STILL_RUNNING
        }),
    );
    item.insert("phone".into(), json!(tel));
    item.insert(
        "status".into(),
        json!(if entry.ready {
            "已完成"
        } else {
            STILL_RUNNING
        }),
    );
    for source in [
        "mobileHousekeeper",
        "securityGuard",
        "telephoneBond",
        "mobileGuard",
        "numberLink",
        "other",
    ] {
        for field in ["Name", "Times", "ShowName"] {
            item.insert(format!("{source}{field}"), json!("--"));
        }
    }
    if entry.ready {
        for (source, name, times, show) in labels_for(tel) {
            item.insert(format!("{source}Name"), json!(name));
            item.insert(format!("{source}Times"), json!(times));
            item.insert(format!("{source}ShowName"), json!(show));
        }
    }
    item.insert(
        "date".into(),
        json!(entry.created.format("%Y-%m-%d").to_string()),
    );
    item.insert(
        "createTime".into(),
        json!(entry.created.format("%Y-%m-%d %H:%M:%S").to_string()),
    );
    Value::Object(item)
}

fn parse(body: &Bytes) -> Result<Request, Refusal> {
    serde_json::from_slice(body).map_err(|_| ("1004", "请求体不是JSON".to_owned()))
}

/// `sign_add`: adds numbers to monitoring.
pub async fn add(State(state): State<Arc<Sim>>, body: Bytes) -> Json<Value> {
    let counters = state.stats.counters("caih");
    let request = match parse(&body) {
        Ok(r) => r,
        Err((code, msg)) => {
            state.stats.record_call(counters, 0);
            return envelope(&state, code, &msg, false, None);
        }
    };
    let tels = tels_param(&request.param).unwrap_or_default();
    state.stats.record_call(counters, tels.len() as u64);
    state.delay().await;
    if let Err((code, msg)) = authenticate(&state, request.authinfo) {
        return envelope(&state, code, &msg, false, None);
    }
    if tels.is_empty() {
        return envelope(&state, "1004", "tels 为空", false, None);
    }
    if tels.len() > BATCH_SIZE {
        return envelope(&state, "1005", "号码数量超过10000", false, None);
    }
    if let Some(bad) = tels.iter().find(|t| !valid_tel(t)) {
        let shown = crate::telemetry::mask(bad);
        return envelope(
            &state,
            "1004",
            &format!("号码格式错误: {shown}"),
            false,
            None,
        );
    }
    if tels.iter().any(|t| suffix(t) == "9999") {
        return envelope(&state, "9999", "系统错误", false, None);
    }
    if tels.iter().any(|t| suffix(t) == "2001") {
        return envelope(&state, "2001", "余额不足", false, None);
    }
    let batch = format!(
        "u{}",
        &SignatureMethod::Md5.hex_digest(state.next_id().to_string().as_bytes())[..31]
    );
    let created = state.config.clock.now_china();
    {
        let mut inner = state.own.inner.lock().unwrap_or_else(|e| e.into_inner());
        for tel in &tels {
            inner.numbers.insert(
                tel.clone(),
                Entry {
                    batch: batch.clone(),
                    created,
                    ready: false,
                },
            );
        }
        inner.batches.insert(batch.clone(), tels.clone());
    }
    // The vendor's hourly labelling run, compressed to the configured delay.
    let labeller = state.clone();
    let labelled_batch = batch.clone();
    tokio::spawn(async move {
        tokio::time::sleep(labeller.config.async_delay).await;
        let ready = {
            let mut inner = labeller.own.inner.lock().unwrap_or_else(|e| e.into_inner());
            let tels = inner
                .batches
                .get(&labelled_batch)
                .cloned()
                .unwrap_or_default();
            let mut ready = 0;
            for tel in tels {
                if let Some(entry) = inner
                    .numbers
                    .get_mut(&tel)
                    .filter(|e| e.batch == labelled_batch)
                {
                    entry.ready = true;
                    ready += 1;
                }
            }
            ready
        };
        labeller
            .stats
            .record_ready(labeller.stats.counters("caih"), ready);
    });
    state.stats.record_billable(counters);
    let data =
        json!({"state": "1", "desc": "成功", "batchUniqueId": batch, "importCount": tels.len()});
    envelope(&state, "0000", "成功", true, Some(data))
}

/// `sign_search`: labels by batch or by numbers.
pub async fn search(State(state): State<Arc<Sim>>, body: Bytes) -> Json<Value> {
    let counters = state.stats.counters("caih");
    let request = match parse(&body) {
        Ok(r) => r,
        Err((code, msg)) => {
            state.stats.record_call(counters, 0);
            return envelope(&state, code, &msg, false, None);
        }
    };
    let tels = tels_param(&request.param);
    state
        .stats
        .record_call(counters, tels.as_ref().map_or(0, |t| t.len() as u64));
    state.delay().await;
    if let Err((code, msg)) = authenticate(&state, request.authinfo) {
        return envelope(&state, code, &msg, false, None);
    }
    let inner = state.own.inner.lock().unwrap_or_else(|e| e.into_inner());
    let batch_done = |batch: &str| {
        inner.batches.get(batch).is_some_and(|tels| {
            tels.iter().all(|t| {
                inner
                    .numbers
                    .get(t)
                    .is_none_or(|e| e.batch != batch || e.ready)
            })
        })
    };
    let items: Vec<Value> =
        if let Some(batch) = request.param.get("batchUniqueId").and_then(Value::as_str) {
            let Some(tels) = inner.batches.get(batch) else {
                return envelope(
                    &state,
                    "0000",
                    "成功",
                    false,
                    Some(json!({"state": "0", "desc": "失败"})),
                );
            };
            tels.iter()
                .filter_map(|t| {
                    inner
                        .numbers
                        .get(t)
                        .filter(|e| e.batch == batch)
                        .map(|e| item(t, e, batch_done(batch)))
                })
                .collect()
        } else if let Some(tels) = tels {
            if tels.len() > BATCH_SIZE {
                return envelope(&state, "1005", "号码数量超过10000", false, None);
            }
            tels.iter()
                .filter_map(|t| {
                    inner
                        .numbers
                        .get(t)
                        .map(|e| item(t, e, batch_done(&e.batch)))
                })
                .collect()
        } else {
            return envelope(
                &state,
                "1004",
                "tels 或 batchUniqueId 必填其一",
                false,
                None,
            );
        };
    envelope(
        &state,
        "0000",
        "成功",
        false,
        Some(json!({"state": "1", "desc": "成功", "items": items})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        for ok in [
            "13800138000",
            "01064012345",
            "057188888888",
            "95588",
            "4008108888",
            "10109999",
            "116114",
            "1019000",
            "057196225",
        ] {
            assert!(valid_tel(ok), "{ok}");
        }
        for bad in [
            "",
            "1380013800",
            "10012345678",
            "400810888",
            "95",
            "12315",
            "+8613800138000",
            "abc",
        ] {
            assert!(!valid_tel(bad), "{bad}");
        }
    }

    #[test]
    fn label_rules() {
        assert!(labels_for("13800000010").is_empty());
        assert_eq!(labels_for("13800000012").len(), 3);
        let unlabelled = (0..1000)
            .filter(|i| labels_for(&format!("139{i:08}")).is_empty())
            .count();
        assert!((780..920).contains(&unlabelled), "{unlabelled}");
    }
}
