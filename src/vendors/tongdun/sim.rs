//! The TongDun simulator: `POST /verification/kyc/phoneverify/v1?partner_code=..&partner_key=..`,
//! also under a node prefix (`/id/...`, `/sg/...`, `/pk/...`) so that one address can stand for
//! the three regional nodes, each accepting only its own country.
//!
//! Answers by rule from the number: suffix `0031` a high fraud score and inactive, `0032`
//! registered everywhere with profile details, `0033` everything unknown (`-999`); failures
//! `0300` (300), `0303` (303 balance), `0305` (305 daily maximum), `1350` (11350 internal error).
//! Other numbers get a stable answer; `score` comes as a number or a string and `type` in mixed
//! case, as the vendor sends them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{PATH, SANDBOX_PARTNER_CODE, SANDBOX_PARTNER_KEY};
use crate::providers::signing::signatures_equal;
use crate::sim::faults::{AccountKey, VendorFaults};
use crate::sim::{Account, SimRoutes, SimState, VendorSim, bucket, suffix};

type Sim = VendorSim<Vec<Account>>;

/// The simulator's routes (`{PATH}` and `/{node}{PATH}`), accepting the sandbox account and the
/// extra accounts of TongDun (`id` is the partner code).
pub fn routes(common: &Arc<SimState>) -> SimRoutes {
    let sandbox = Account::new(SANDBOX_PARTNER_CODE, SANDBOX_PARTNER_KEY, "");
    let accounts = common.accounts("tongdun", sandbox);
    let state = Arc::new(VendorSim {
        common: common.clone(),
        own: accounts,
    });
    SimRoutes {
        router: axum::Router::new()
            .route(PATH, axum::routing::post(handle))
            .route(
                &format!("/{{node}}{PATH}"),
                axum::routing::post(handle_node),
            )
            .with_state(state),
        faults: VendorFaults {
            vendor: "tongdun",
            over_limit: || {
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "Too Many Requests",
                )
                    .into_response()
            },
            account: AccountKey::One,
        },
        paths: vec![format!("[/id|/sg|/pk]{PATH}")],
    }
}

/// The platforms TongDun probes.
pub const PLATFORMS: &[&str] = &[
    "google",
    "bukalapak",
    "facebook",
    "twitter",
    "instagram",
    "microsoft",
    "telegram",
    "whatsapp",
    "viber",
    "skype",
    "amazon",
    "linkedin",
];
const ID_TYPES: &[&str] = &[
    "identity_card",
    "passport",
    "driving_licence",
    "birth_certificate",
    "voter_card",
    "tax_card",
    "social_security_card",
    "others",
];
const COUNTRY_CODES: &[(&str, &str)] = &[("ID", "62"), ("SG", "65"), ("PK", "92")];

/// Credentials in the query string.
#[derive(Deserialize)]
pub struct Credentials {
    partner_code: Option<String>,
    partner_key: Option<String>,
}

fn answer(state: &SimState, code: i64, message: &str) -> Json<Value> {
    Json(json!({
        "code": code,
        "sequence_id": format!("{}SIM{:016}", state.config.clock.now().timestamp_millis(), state.next_id()),
        "message": message,
    }))
}

/// The endpoint without a node prefix: accepts any served country.
pub async fn handle(
    state: State<Arc<Sim>>,
    credentials: Query<Credentials>,
    body: Bytes,
) -> Json<Value> {
    respond(&state, None, &credentials, &body).await
}

/// The endpoint under a node prefix: accepts only the node's country.
pub async fn handle_node(
    state: State<Arc<Sim>>,
    Path(node): Path<String>,
    credentials: Query<Credentials>,
    body: Bytes,
) -> Json<Value> {
    respond(&state, Some(&node), &credentials, &body).await
}

async fn respond(
    state: &Sim,
    node: Option<&str>,
    credentials: &Credentials,
    body: &[u8],
) -> Json<Value> {
    let counters = state.stats.counters("tongdun");
    state.stats.record_call(counters, 1);
    state.delay().await;
    let (Some(code), Some(key)) = (&credentials.partner_code, &credentials.partner_key) else {
        let missing = if credentials.partner_code.is_none() {
            "partner_code"
        } else {
            "partner_key"
        };
        return answer(state, 11301, &format!("{missing} empty"));
    };
    let Some(account) = Account::find(&state.own, code, "") else {
        return answer(state, 11340, "partner_code error");
    };
    if !signatures_equal(key, &account.secret) {
        return answer(state, 11340, "partner_key error");
    }
    let Ok(request) = serde_json::from_slice::<Map<String, Value>>(body) else {
        return answer(state, 11340, "body error");
    };
    let field = |name: &str| {
        request
            .get(name)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let Some(country) = field("country") else {
        return answer(state, 11301, "country empty");
    };
    let Some(phone) = field("phone_number") else {
        return answer(state, 11301, "phone_number empty");
    };
    let node_country = node.map(str::to_ascii_uppercase);
    let Some(&(_, calling_code)) = COUNTRY_CODES.iter().find(|(c, _)| *c == country) else {
        return answer(state, 11304, "The country partner located is not open");
    };
    if node_country.as_deref().is_some_and(|n| n != country) {
        return answer(state, 11304, "The country partner located is not open");
    }
    if phone.len() > 19
        || !phone.bytes().all(|b| b.is_ascii_digit())
        || !phone.starts_with(calling_code)
    {
        return answer(state, 11340, "phone_number error");
    }
    if let Some(id_type) = field("id_type")
        && !ID_TYPES.contains(&id_type)
    {
        return answer(state, 11340, "id_type error");
    }
    match suffix(phone) {
        "0300" => return answer(state, 300, "Service not purchased or not effective"),
        "0303" => return answer(state, 303, "Not enough balance"),
        "0305" => return answer(state, 305, "Daily maximum reached"),
        "1350" => return answer(state, 11350, "Internal error"),
        _ => {}
    }
    state.stats.record_billable(counters);
    let mut body = answer(state, 200, "success").0;
    body["phone_detection"] = detection(phone);
    Json(body)
}

fn extras(platform: &str, phone: &str, registered: bool) -> Map<String, Value> {
    let tail = suffix(phone);
    let fields: &[(&str, Value)] = &match platform {
        "whatsapp" => vec![
            ("last_seen", json!("2024-03-19")),
            (
                "profile_photo",
                json!(format!("https://sim.invalid/wa/{tail}.jpg")),
            ),
            ("profile_about", json!("Hey there! I am using WhatsApp.")),
        ],
        "telegram" => vec![
            ("last_seen", json!("recently")),
            (
                "profile_photo",
                json!(format!("https://sim.invalid/tg/{tail}.jpg")),
            ),
        ],
        "viber" => vec![
            ("last_seen", json!("2024-03-18")),
            ("profile_photo", json!(-999)),
            ("account_name", json!(format!("Sim {tail}"))),
        ],
        "google" => vec![
            ("account_id", json!(format!("1{tail}0000"))),
            ("full_name", json!(format!("Sim User {tail}"))),
        ],
        "skype" => vec![
            ("account_name", json!(format!("sim.user.{tail}"))),
            ("account_country", json!("Indonesia")),
            ("account_city", json!("Jakarta")),
            ("account_state", json!(-999)),
            ("account_id", json!(format!("live:sim{tail}"))),
            ("account_language", json!("id")),
            ("profile_gender", json!(1)),
            ("profile_age", json!(-999)),
            ("profile_bio", json!(-999)),
            ("profile_handle", json!(format!("sim{tail}"))),
            ("profile_photo", json!(-999)),
        ],
        _ => vec![],
    };
    fields
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                if registered { v.clone() } else { json!(-999) },
            )
        })
        .collect()
}

/// The `phone_detection` object for a number, by rule.
fn detection(phone: &str) -> Value {
    let b = bucket(phone);
    let magic = suffix(phone);
    let unknown = magic == "0033";
    let registrations: Vec<Value> = PLATFORMS
        .iter()
        .map(|&platform| {
            let registered = match magic {
                "0032" => Some(true),
                "0033" => None,
                "0031" => Some(false),
                // Marketplaces the vendor often cannot probe, as in its own example.
                _ if matches!(platform, "bukalapak" | "linkedin" | "amazon")
                    && b.is_multiple_of(2) =>
                {
                    None
                }
                _ => Some(bucket(&format!("{phone}/{platform}")) < 40),
            };
            let mut detail = extras(platform, phone, registered == Some(true));
            detail.insert("account_type".into(), json!(platform));
            detail.insert(
                "registered".into(),
                registered.map_or(json!(-999), Value::from),
            );
            Value::Object(detail)
        })
        .collect();
    let total = registrations
        .iter()
        .filter(|r| r["registered"] == json!(true))
        .count();
    let score = match magic {
        "0031" => 950,
        _ => u32::from(b) * 7,
    };
    let active = match magic {
        "0031" => "NO",
        "0033" => "UNKNOWN",
        _ if b < 85 => "YES",
        _ => "NO",
    };
    let line_type = ["MOBILE", "mobile", "Mobile"][usize::from(b % 3)];
    let masked = format!("{}****{}", &phone[..phone.len().min(5)], suffix(phone));
    let first_seen = 1_700_000_000 + i64::from(b) * 86_400;
    json!({
        "account_info": {
            "phone_number": masked,
            "valid": true,
            "carrier": if unknown { json!(-999) } else { json!(["Telkomsel", "Indosat", "XL Axiata"][usize::from(b % 3)]) },
            "active": active,
            "score": if unknown { json!(-999) } else if b.is_multiple_of(2) { json!(f64::from(score)) } else { json!(score.to_string()) },
            "type": line_type,
            "total_registered": total,
            "registration_detail": registrations,
        },
        "history_info": {
            "hits_time": u32::from(b) + 1,
            "customer_hits_time": u32::from(b) / 10 + 1,
            "first_seen": first_seen,
            "last_seen": first_seen + i64::from(b) * 3_600,
        }
    })
}
