//! The Thinksms simulator: `POST /HrmApi/emptyStatusQuery`.
//!
//! Checks the upper-case MD5 sign with today's date in China time exactly, and answers with the
//! vendor's JSON. The simulator's error codes (the vendor publishes none but `"200"`) are
//! `400` bad parameters, `401` wrong sign, `403` unknown `hashcode`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{PATH, SANDBOX_HASHCODE, SANDBOX_PRIVATE_KEY};
use crate::providers::signing::signatures_equal;
use crate::sim::faults::{AccountKey, VendorFaults};
use crate::sim::{Account, SimRoutes, SimState, VendorSim, bucket, suffix};

type Sim = VendorSim<Vec<Account>>;

/// The simulator's route, accepting the sandbox account and the extra accounts of Thinksms.
pub fn routes(common: &Arc<SimState>) -> SimRoutes {
    let sandbox = Account::new(SANDBOX_HASHCODE, SANDBOX_PRIVATE_KEY, "");
    let accounts = common.accounts("thinksms", sandbox);
    let state = Arc::new(VendorSim {
        common: common.clone(),
        own: accounts,
    });
    SimRoutes {
        router: axum::Router::new()
            .route(PATH, axum::routing::post(handle))
            .with_state(state),
        faults: VendorFaults {
            vendor: "thinksms",
            over_limit: || {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"mobileresult":null,"errorRes":{"err_code":"429","err_content":"请求过于频繁"},"err_TransCode":"0"}"#,
                )
                    .into_response()
            },
            account: AccountKey::JsonField("hashcode"),
        },
        paths: vec![PATH.to_owned()],
    }
}

#[derive(Deserialize)]
struct Request {
    mobile: Option<String>,
    hashcode: Option<String>,
    sign: Option<String>,
}

fn failure(state: &SimState, code: &str, content: &str) -> Json<Value> {
    Json(json!({
        "mobileresult": null,
        "errorRes": {"err_code": code, "err_content": content},
        "err_TransCode": state.next_id().to_string(),
    }))
}

/// The answer for a number on the simulated world's day `epoch`, by rule: the last four digits
/// `0001`..`0004` select state 1..4; any other number gets a state from a hash of it (80%
/// active, 10% empty, 5% silent, 5% risk), stable on day 0 and drawn again on each later day.
pub fn answer_for(mobile: &str, epoch: u64) -> (u8, &'static str) {
    let key = if epoch == 0 {
        std::borrow::Cow::Borrowed(mobile)
    } else {
        std::borrow::Cow::Owned(format!("{mobile}@{epoch}"))
    };
    let state = match suffix(mobile) {
        "0001" => 1,
        "0002" => 2,
        "0003" => 3,
        "0004" => 4,
        _ => match bucket(&key) {
            0..80 => 1,
            80..90 => 2,
            90..95 => 3,
            _ => 4,
        },
    };
    let desc = match state {
        1 => "活跃号",
        2 => "空号",
        3 => "沉默号码",
        _ => "风险号",
    };
    (state, desc)
}

/// Handles one query.
pub async fn handle(State(state): State<Arc<Sim>>, body: Bytes) -> Json<Value> {
    let counters = state.stats.counters("thinksms");
    state.stats.record_call(counters, 1);
    state.delay().await;
    let Ok(request) = serde_json::from_slice::<Request>(&body) else {
        return failure(&state, "400", "参数错误: 请求体不是JSON");
    };
    let (Some(mobile), Some(hashcode), Some(sign)) =
        (request.mobile, request.hashcode, request.sign)
    else {
        return failure(&state, "400", "参数错误: mobile, hashcode, sign 必填");
    };
    let Some(account) = Account::find(&state.own, &hashcode, "") else {
        return failure(&state, "403", "账号不存在");
    };
    let date = state.config.clock.now_china().format("%Y%m%d").to_string();
    let expected = super::sign(&hashcode, &mobile, &account.secret, &date);
    if !signatures_equal(&sign, &expected) {
        return failure(&state, "401", "签名错误");
    }
    if mobile.len() != 11 || !mobile.starts_with('1') || !mobile.bytes().all(|b| b.is_ascii_digit())
    {
        return failure(&state, "400", "手机号码格式错误");
    }
    // Magic numbers for the vendor's failures.
    match suffix(&mobile) {
        "0429" => return failure(&state, "429", "请求过于频繁"),
        "0500" => return failure(&state, "500", "系统繁忙"),
        _ => {}
    }
    let (code, desc) = answer_for(
        &mobile,
        state
            .config
            .answer_epoch
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    state.stats.record_billable(counters);
    Json(json!({
        "mobileresult": {"state": code, "desc": desc},
        "errorRes": {"err_code": "200", "err_content": "success"},
        "err_TransCode": state.next_id().to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_suffixes() {
        for epoch in [0, 7] {
            assert_eq!(answer_for("13800000001", epoch).0, 1);
            assert_eq!(answer_for("13800000002", epoch).0, 2);
            assert_eq!(answer_for("13800000003", epoch).0, 3);
            assert_eq!(answer_for("13800000004", epoch).0, 4);
        }
    }

    #[test]
    fn other_numbers_are_stable_and_mostly_active() {
        assert_eq!(answer_for("13912345678", 0), answer_for("13912345678", 0));
        let active = (0..1000)
            .filter(|i| answer_for(&format!("139{:08}", i * 7919), 0).0 == 1)
            .count();
        assert!((700..900).contains(&active), "{active}");
    }

    #[test]
    fn a_later_day_changes_some_numbers() {
        let numbers: Vec<String> = (0..1000).map(|i| format!("139{:08}", i * 7919)).collect();
        let changed = numbers
            .iter()
            .filter(|n| answer_for(n, 0) != answer_for(n, 1))
            .count();
        // Two independent draws with these shares agree about two times in three.
        assert!((200..500).contains(&changed), "{changed}");
    }
}
