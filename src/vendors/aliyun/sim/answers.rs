//! The simulator's answers to the three actions beyond line status, by rule. For a number in
//! clear, magic suffixes select each answer (the README's "Sandbox and magic numbers" table);
//! other numbers get a stable answer from a hash. The carrier's per-number frequency limit is
//! kept per action and number: the same one asked again within the window (5 seconds unless
//! `SimConfig::repeat_window` says otherwise; zero turns it off) is refused with
//! `RequestFrequencyLimit`, not billed.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::http::StatusCode;
use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::{Reply, Sim, business, ported_to, request_id, segment_code};
use crate::domain::{Check, NetworkType};
use crate::number::segments::{self, Operator};
use crate::sim::{bucket, suffix};
use crate::vendors::aliyun::Mask;
use crate::vendors::aliyun::actions::Action;

/// How long, in seconds, the same number is refused for the same action, by default.
pub const REPEAT_WINDOW_SECONDS: i64 = 5;

/// The numbers asked recently, per action, and the window.
#[derive(Debug)]
pub struct Repeats {
    window: i64,
    asked: Mutex<HashMap<(&'static str, String), i64>>,
}

impl Repeats {
    /// Refuses a number asked again within `window` (the vendor's default when `None`).
    pub fn new(window: Option<std::time::Duration>) -> Repeats {
        Repeats {
            window: window.map_or(REPEAT_WINDOW_SECONDS, |w| {
                i64::try_from(w.as_secs()).unwrap_or(i64::MAX)
            }),
            asked: Mutex::default(),
        }
    }

    /// Records `input` asked of `action` at `now`; true when it was asked within the window.
    fn too_soon(&self, action: &'static str, input: &str, now: i64) -> bool {
        if self.window <= 0 {
            return false;
        }
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.retain(|_, at| now - *at < self.window);
        match asked.get(&(action, input.to_owned())) {
            Some(_) => true,
            None => {
                asked.insert((action, input.to_owned()), now);
                false
            }
        }
    }
}

/// Tenure's `VerifyResult` for a number in clear: `0201`..`0207` select `-1`, `0`, `1`..`5`;
/// others by hash (3% `-1`, 2% `0`, then 10/10/15/20/40% for the buckets).
pub fn tenure_for(number: &str) -> &'static str {
    const CODES: [&str; 7] = ["-1", "0", "1", "2", "3", "4", "5"];
    if let Some(i) = magic(number, "02", CODES.len()) {
        return CODES[i];
    }
    match bucket(&format!("{number}/tenure")) {
        0..3 => "-1",
        3..5 => "0",
        5..15 => "1",
        15..25 => "2",
        25..40 => "3",
        40..60 => "4",
        _ => "5",
    }
}

/// Reassigned's `VerifyResult` for a number in clear and a registration time: `0301`..`0305`
/// select `0`..`4`; others by a hash of both (3% `0`, 5% `1`, 2% `3`, 1% `4`, else `2`).
pub fn reassigned_for(number: &str, start_time: &str) -> &'static str {
    const CODES: [&str; 5] = ["0", "1", "2", "3", "4"];
    if let Some(i) = magic(number, "03", CODES.len()) {
        return CODES[i];
    }
    match bucket(&format!("{number}/{start_time}")) {
        0..3 => "0",
        3..8 => "1",
        8..10 => "3",
        10..11 => "4",
        _ => "2",
    }
}

/// What the operator attribute says of a number in clear: `(BasicCarrier, Carrier, ported)`.
/// `0401` a number on its segment's carrier, `0402` a ported one, `0403` one served by a virtual
/// operator (also every number of a virtual segment); others are ported like line status says
/// (the same hash, so the two actions agree).
pub fn attribute_for(number: &str) -> Option<(&'static str, String, bool)> {
    let segment = segments::lookup(number)?;
    let basic = segment.operator.names().1;
    let virtual_operator = format!("{basic}虚拟运营商");
    let code = segment_code(number)?;
    let ported = || {
        let to = ported_to(code);
        let name = Operator::from_code(to).map(|o| o.names().1).unwrap_or(to);
        (basic, name.to_owned(), true)
    };
    Some(match suffix(number) {
        "0401" => (basic, basic.to_owned(), false),
        "0402" => ported(),
        "0403" => (basic, virtual_operator, false),
        _ if segment.network == NetworkType::Virtual => (basic, virtual_operator, false),
        _ if bucket(&format!("{number}/carrier")) < 4 => ported(),
        _ => (basic, basic.to_owned(), false),
    })
}

/// `PREFIX01`..`PREFIXnn` as the index `0..n`.
fn magic(number: &str, prefix: &str, n: usize) -> Option<usize> {
    let tail = suffix(number).strip_prefix(prefix)?;
    let i: usize = tail.parse().ok()?;
    (1..=n).contains(&i).then(|| i - 1)
}

fn ok(state: &Sim, data: Value) -> Reply {
    (
        StatusCode::OK,
        Json(json!({
            "RequestId": request_id(state),
            "Code": "OK",
            "Message": "OK",
            "Data": data,
        })),
    )
}

/// Answers `action` for `input` (checked for shape) with `params`; `billable` is told whether
/// the vendor would bill it.
pub fn answer(
    state: &Sim,
    action: &Action,
    mask: Mask,
    input: &str,
    param: &dyn Fn(&str) -> Option<String>,
) -> (Reply, bool) {
    if mask == Mask::Sm3 && action.check != Check::CurrentCarrier {
        let reply = business(state, "InvalidParameter", "Mask 仅支持 NORMAL, MD5, SHA256");
        return (reply, false);
    }
    let start_time = param("StartTime");
    if action.check == Check::Reassigned {
        let valid = start_time.as_deref().is_some_and(|t| {
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .is_ok_and(|t| t.and_utc().timestamp() > 0)
        });
        if !valid {
            let reply = business(state, "InvalidParameter", "StartTime 格式错误");
            return (reply, false);
        }
    }
    let now = state.config.clock.now().timestamp();
    if state.own.repeats.too_soon(action.name, input, now) {
        let reply = business(state, "RequestFrequencyLimit", "同一号码查询过于频繁");
        return (reply, false);
    }
    let clear = mask == Mask::Normal;
    // A hash hides the number: the answer follows the hash, without a carrier.
    let carrier = if clear { segment_code(input) } else { None };
    match action.check {
        Check::Tenure => {
            let code = if clear {
                tenure_for(input)
            } else {
                tenure_for(&input.to_ascii_lowercase())
            };
            let mut data = json!({"VerifyResult": code});
            if let Some(c) = carrier {
                data["CarrierCode"] = json!(c);
            }
            (ok(state, data), code != "-1")
        }
        Check::Reassigned => {
            let start = start_time.unwrap_or_default();
            let code = reassigned_for(&input.to_ascii_lowercase(), &start);
            let mut data = json!({"VerifyResult": code});
            if let Some(c) = carrier {
                data["Carrier"] = json!(c);
            }
            (ok(state, data), code != "0")
        }
        _ => {
            let Some((basic, carrier, ported)) = clear.then(|| attribute_for(input)).flatten()
            else {
                let reply = business(state, "PhoneNumberNotfound", "号码不存在");
                return (reply, false);
            };
            let segment: i64 = input[..7].parse().unwrap_or_default();
            let data = json!({
                "BasicCarrier": basic,
                "Carrier": carrier,
                "IsNumberPortability": ported,
                "NumberSegment": segment,
                "Province": "",
                "City": "",
            });
            (ok(state, data), true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_suffixes_select_each_answer() {
        let tenure: Vec<&str> = (1..=7)
            .map(|i| tenure_for(&format!("1380000020{i}")))
            .collect();
        assert_eq!(tenure, ["-1", "0", "1", "2", "3", "4", "5"]);
        let reassigned: Vec<&str> = (1..=5)
            .map(|i| reassigned_for(&format!("1380000030{i}"), "2020-01-01 00:00:00"))
            .collect();
        assert_eq!(reassigned, ["0", "1", "2", "3", "4"]);
        let basic = attribute_for("13800000401").unwrap();
        assert_eq!(basic, ("中国移动", "中国移动".to_owned(), false));
        let ported = attribute_for("13800000402").unwrap();
        assert_eq!(ported, ("中国移动", "中国联通".to_owned(), true));
        let mvno = attribute_for("13800000403").unwrap();
        assert_eq!(mvno, ("中国移动", "中国移动虚拟运营商".to_owned(), false));
    }

    #[test]
    fn a_number_asked_again_within_the_window_is_refused_per_action() {
        let repeats = Repeats::new(None);
        assert!(!repeats.too_soon("A", "13800000000", 100));
        assert!(repeats.too_soon("A", "13800000000", 104));
        assert!(!repeats.too_soon("B", "13800000000", 104), "per action");
        assert!(
            !repeats.too_soon("A", "13800000000", 105),
            "the window passed"
        );
    }
}
