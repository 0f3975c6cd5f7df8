//! The usage page (spend per day and check, as a chart drawn here in SVG) and one number's
//! lookup with its report.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde::Deserialize;

use super::backend::keyed;
use super::pages::form;
use super::session::Signed;
use super::view::{self, Chrome, page};
use super::{App, ConsoleError};
use crate::domain::Money;
use crate::pb;

/// Days the usage page covers, today included.
const DAYS: i64 = 30;
/// The chart's drawing area, in SVG units.
const CHART_WIDTH: u32 = 720;
const CHART_HEIGHT: u32 = 160;

/// One day's bar: its label, its cost, and the SVG geometry.
struct Bar {
    day: String,
    /// The day's label is drawn under its bar (every 7th day back from today).
    label: bool,
    x: u32,
    /// Where its label is centred.
    middle: u32,
    width: u32,
    /// The check's part of the day, stacked: (y, height, colour, title).
    parts: Vec<(u32, u32, &'static str, String)>,
}

/// The colours of the checks' parts, in contract order.
const COLOURS: [&str; 4] = ["#2f6fde", "#e8833a", "#2e9e6b", "#a05ad1"];

fn colour(check: i32) -> &'static str {
    let i = usize::try_from(check).unwrap_or(0).saturating_sub(1);
    COLOURS[i % COLOURS.len()]
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct UsagePage {
    c: Chrome,
    from: String,
    to: String,
    total: String,
    calls: i64,
    bars: Vec<Bar>,
    /// The checks in the chart: colour and name.
    legend: Vec<(&'static str, &'static str)>,
    /// Per day and check: day, check, provider, calls, cache hits, cost.
    rows: Vec<(String, &'static str, String, i64, i64, String)>,
    width: u32,
    height: u32,
}

fn amount(money: Option<&pb::google_type::Money>) -> Money {
    money
        .and_then(|m| Money::from_units_and_nanos(m.units, m.nanos).ok())
        .unwrap_or_default()
}

/// `GET /usage`: the last 30 days of the tenant's usage, by day.
pub(crate) async fn usage(
    State(app): State<Arc<App>>,
    signed: Signed,
) -> Result<Response, ConsoleError> {
    // The ledger's days are China's (UTC+8), as `GetUsage` reads them.
    let today = chrono::Utc::now()
        .with_timezone(&crate::clock::china_offset())
        .date_naive();
    let from = today - chrono::Duration::days(DAYS - 1);
    let request = pb::GetUsageRequest {
        from_day: from.to_string(),
        to_day: today.to_string(),
        group_by: pb::UsageGrouping::Day as i32,
        ..Default::default()
    };
    let usage = app
        .backend
        .usage()
        .get_usage(keyed(&signed.key, request)?)
        .await?
        .into_inner();
    let currency = usage
        .rows
        .iter()
        .filter_map(|r| r.cost.as_ref())
        .map(|m| m.currency_code.clone())
        .find(|c| !c.is_empty())
        .unwrap_or_default();
    // Spend per day and check: the bars are stacked by check.
    let mut per_day: BTreeMap<String, BTreeMap<i32, Money>> = BTreeMap::new();
    for day in 0..DAYS {
        per_day.insert(
            (from + chrono::Duration::days(day)).to_string(),
            BTreeMap::new(),
        );
    }
    for row in &usage.rows {
        *per_day
            .entry(row.period.clone())
            .or_default()
            .entry(row.check)
            .or_default() += amount(row.cost.as_ref());
    }
    let day_total = |checks: &BTreeMap<i32, Money>| checks.values().copied().sum::<Money>();
    let highest = per_day
        .values()
        .map(|checks| day_total(checks).as_f64())
        .fold(0.0, f64::max);
    let slot = CHART_WIDTH / u32::try_from(per_day.len().max(1)).unwrap_or(1);
    let days = per_day.len();
    let bars = per_day
        .iter()
        .enumerate()
        .map(|(i, (day, checks))| {
            let mut top = CHART_HEIGHT;
            let parts = checks
                .iter()
                .map(|(&check, cost)| {
                    // Display geometry only: rounding to whole SVG units is fine.
                    let share = if highest > 0.0 {
                        cost.as_f64() / highest
                    } else {
                        0.0
                    };
                    let height = ((share * f64::from(CHART_HEIGHT)).round() as u32).min(top);
                    top -= height;
                    let name = view::check_name(signed.lang, check);
                    (
                        top,
                        height,
                        colour(check),
                        format!("{day} · {name}: {cost} {currency}"),
                    )
                })
                .collect();
            Bar {
                day: day.clone(),
                label: (days - 1 - i).is_multiple_of(7),
                x: u32::try_from(i).unwrap_or(0) * slot + 1,
                middle: u32::try_from(i).unwrap_or(0) * slot + slot / 2,
                width: slot.saturating_sub(2).max(1),
                parts,
            }
        })
        .collect();
    let mut seen: Vec<i32> = usage.rows.iter().map(|r| r.check).collect();
    seen.sort_unstable();
    seen.dedup();
    let legend = seen
        .into_iter()
        .map(|check| (colour(check), view::check_name(signed.lang, check)))
        .collect();
    let mut rows: Vec<_> = usage
        .rows
        .iter()
        .map(|r| {
            (
                r.period.clone(),
                view::check_name(signed.lang, r.check),
                r.provider.clone(),
                r.billable_calls,
                r.cache_hits,
                view::money(r.cost.as_ref()),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let totals = usage.totals.unwrap_or_default();
    Ok(page(
        &UsagePage {
            c: Chrome {
                lang: signed.lang,
                csrf: Some(signed.csrf.clone()),
            },
            from: usage.from_day,
            to: usage.to_day,
            total: view::money(totals.cost.as_ref()),
            calls: totals.billable_calls,
            bars,
            legend,
            rows,
            width: CHART_WIDTH,
            height: CHART_HEIGHT,
        },
        StatusCode::OK,
    ))
}

/// A number's report as the lookup page shows it.
struct ReportView {
    e164: String,
    valid: bool,
    number_type: String,
    carrier: String,
    location: String,
    line_status: String,
    /// Per check: name, provider, state, cost.
    outcomes: Vec<(&'static str, String, String, String)>,
    sandbox: bool,
    json: String,
}

#[derive(Template)]
#[template(path = "console/lookup.html")]
struct LookupPage {
    c: Chrome,
    checks: Vec<(&'static str, &'static str)>,
    number: String,
    report: Option<ReportView>,
    message: String,
}

fn lookup_view(
    signed: &Signed,
    number: String,
    report: Option<ReportView>,
    message: String,
) -> LookupPage {
    LookupPage {
        c: Chrome {
            lang: signed.lang,
            csrf: Some(signed.csrf.clone()),
        },
        checks: view::check_choices(signed.lang),
        number,
        report,
        message,
    }
}

/// `GET /lookup`: the form.
pub(crate) async fn lookup_page(signed: Signed) -> Response {
    page(
        &lookup_view(&signed, String::new(), None, String::new()),
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
struct LookupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    number: String,
    /// Repeated `check=line-status` fields, read by hand (a form may repeat a name).
    #[serde(skip)]
    checks: Vec<String>,
}

/// An enum value for people: `NUMBER_TYPE_FIXED_LINE` → `fixed line`.
fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix)
        .to_ascii_lowercase()
        .replace('_', " ")
}

fn report_view(report: &pb::NumberReport, lang: super::i18n::Lang) -> ReportView {
    let info = report.info.clone().unwrap_or_default();
    let carrier = info.carrier.clone().unwrap_or_default();
    let location = info.location.clone().unwrap_or_default();
    let json = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)
        .ok()
        .and_then(|pool| pool.get_message_by_name("phonecheck.v1.NumberReport"))
        .and_then(|d| DynamicMessage::decode(d, report.encode_to_vec().as_slice()).ok())
        .and_then(|m| serde_json::to_string_pretty(&m).ok())
        .unwrap_or_default();
    ReportView {
        e164: info.e164.clone(),
        valid: info.valid,
        number_type: pb::NumberType::try_from(info.r#type)
            .map(|t| short(t.as_str_name(), "NUMBER_TYPE_"))
            .unwrap_or_default(),
        carrier: format!("{} {}", carrier.name, carrier.local_name)
            .trim()
            .to_owned(),
        location: format!("{} {}", location.province, location.city)
            .trim()
            .to_owned(),
        line_status: report
            .line_status
            .as_ref()
            .map(|l| {
                let code = view::status_code(l.status);
                format!("{} {}", lang.t(&format!("status.{code}")), l.description)
            })
            .unwrap_or_default(),
        outcomes: report
            .outcomes
            .iter()
            .map(|o| {
                (
                    view::check_name(lang, o.check),
                    o.provider.clone(),
                    pb::CheckState::try_from(o.state)
                        .map(|s| short(s.as_str_name(), "CHECK_STATE_"))
                        .unwrap_or_default(),
                    view::money(o.cost.as_ref()),
                )
            })
            .collect(),
        sandbox: report.sandbox,
        json,
    }
}

/// `POST /lookup`: one number's report (a paid call, hence a state change with its token).
pub(crate) async fn lookup(
    State(app): State<Arc<App>>,
    signed: Signed,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let mut form: LookupForm = form(&body)?;
    signed.check_csrf(&form.csrf)?;
    form.checks = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "check")
        .map(|(_, v)| v)
        .collect();
    let mut checks = Vec::new();
    for code in &form.checks {
        let check = view::check_from_code(code)
            .ok_or_else(|| ConsoleError::BadRequest(format!("unknown check {code:?}")))?;
        checks.push(check);
    }
    let request = pb::LookupNumberRequest {
        number: form.number.clone(),
        checks,
        ..Default::default()
    };
    let answer = app
        .backend
        .lookups()
        .lookup_number(keyed(&signed.key, request)?)
        .await;
    let (status, lookup) = match answer {
        Ok(response) => {
            let report = response.into_inner().report.unwrap_or_default();
            (
                StatusCode::OK,
                lookup_view(
                    &signed,
                    form.number,
                    Some(report_view(&report, signed.lang)),
                    String::new(),
                ),
            )
        }
        // A number that is not a number, a check not granted: said on the form.
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::PermissionDenied
            ) =>
        {
            (
                StatusCode::BAD_REQUEST,
                lookup_view(&signed, form.number, None, s.message().to_owned()),
            )
        }
        Err(s) => return Err(ConsoleError::Api(s)),
    };
    Ok(page(&lookup, status))
}
