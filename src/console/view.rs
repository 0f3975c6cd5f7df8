//! What the templates show: the API's messages put into words (in the page's language), and the
//! pages themselves. No decision is made here that the API has not made.

use std::time::Duration;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::i18n::Lang;
use crate::domain::{CHECKS, Money};
use crate::pb;

/// What every page has: the language, and the session's CSRF token when signed in.
pub(crate) struct Chrome {
    pub(crate) lang: Lang,
    pub(crate) csrf: Option<String>,
}

impl Chrome {
    pub(crate) fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    pub(crate) fn signed(&self) -> bool {
        self.csrf.is_some()
    }

    pub(crate) fn token(&self) -> &str {
        self.csrf.as_deref().unwrap_or("")
    }
}

/// A rendered page, never cached.
pub(crate) fn page(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page could not be rendered");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A JSON answer, never cached.
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(value)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An amount for people: `2.40 CNY`.
pub(crate) fn money(money: Option<&pb::google_type::Money>) -> String {
    let money = money.cloned().unwrap_or_default();
    let amount = Money::from_units_and_nanos(money.units, money.nanos).unwrap_or_default();
    if money.currency_code.is_empty() {
        amount.to_string()
    } else {
        format!("{amount} {}", money.currency_code)
    }
}

/// A form's amount (`12.50`) as the API's money in the billing currency; empty: none.
pub(crate) fn parse_money(text: &str) -> Result<Option<pb::google_type::Money>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let amount: Money = text.parse().map_err(|e| format!("max_cost: {e}"))?;
    let (units, nanos) = amount.units_and_nanos();
    Ok(Some(pb::google_type::Money {
        currency_code: String::new(),
        units,
        nanos,
    }))
}

/// A duration for people, to the second.
pub(crate) fn duration(d: Option<&prost_types::Duration>) -> String {
    match d.and_then(|d| Duration::try_from(*d).ok()) {
        Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
        None => "—".to_owned(),
    }
}

/// A timestamp for people (UTC).
pub(crate) fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// `LINE_STATUS_POWERED_OFF` → `powered_off`: the name downloads use.
pub(crate) fn status_code(status: i32) -> String {
    pb::LineStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("LINE_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// A line status from its download name.
pub(crate) fn status_from_code(code: &str) -> Option<pb::LineStatus> {
    pb::LineStatus::from_str_name(&format!("LINE_STATUS_{}", code.to_ascii_uppercase()))
}

/// The checks a person may choose, from the one table of checks: (form value, name in `lang`).
pub(crate) fn check_choices(lang: Lang) -> Vec<(&'static str, &'static str)> {
    CHECKS
        .iter()
        .map(|spec| (spec.name, check_name(lang, spec.proto)))
        .collect()
}

/// A check's contract value from its form value (`line-status`).
pub(crate) fn check_from_code(code: &str) -> Option<i32> {
    CHECKS
        .iter()
        .find(|spec| spec.name == code)
        .map(|spec| spec.proto)
}

/// A check's name in `lang` (its text key is `check.` and its configuration key).
pub(crate) fn check_name(lang: Lang, check: i32) -> &'static str {
    CHECKS
        .iter()
        .find(|spec| spec.proto == check)
        .map_or("—", |spec| lang.t(&format!("check.{}", spec.key)))
}

/// A job as the pages show it.
pub(crate) struct JobView {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) file: String,
    pub(crate) state: String,
    /// `queued`, `running`, ... (for the page's script and styling).
    pub(crate) state_code: String,
    pub(crate) is_final: bool,
    pub(crate) estimated: bool,
    pub(crate) paused: bool,
    pub(crate) cancellable: bool,
    pub(crate) rows_done: i64,
    pub(crate) rows_total: i64,
    pub(crate) numbers_done: i64,
    pub(crate) numbers_total: i64,
    pub(crate) numbers_failed: i64,
    pub(crate) bad_rows: i64,
    pub(crate) rate: String,
    pub(crate) eta: String,
    pub(crate) cost: String,
    pub(crate) max_cost: String,
    pub(crate) created: String,
    pub(crate) format: String,
    pub(crate) encoding: String,
    pub(crate) number_column: String,
    /// Where the rows' registration times were read from; empty when none were.
    pub(crate) registered_at_column: String,
    pub(crate) checks: String,
    pub(crate) error: String,
    /// Rows per line status: (download name, label, rows).
    pub(crate) counts: Vec<(String, &'static str, i64)>,
    pub(crate) bad: Vec<(String, i64, String)>,
    pub(crate) estimate: Option<EstimateView>,
}

/// An estimate as the pages show it.
pub(crate) struct EstimateView {
    pub(crate) rows: i64,
    pub(crate) bad_rows: i64,
    pub(crate) duplicate_rows: i64,
    pub(crate) valid_numbers: i64,
    pub(crate) invalid_numbers: i64,
    /// Per check: name, answered, not covered, paid, price ceiling, cost.
    pub(crate) checks: Vec<(&'static str, i64, i64, i64, String, String)>,
    pub(crate) cost: String,
    pub(crate) duration: String,
}

impl JobView {
    pub(crate) fn new(job: &pb::BatchJob, lang: Lang) -> JobView {
        let spec = job.spec.clone().unwrap_or_default();
        let progress = job.progress.clone().unwrap_or_default();
        let state = pb::BatchJobState::try_from(job.state).unwrap_or_default();
        let state_code = state
            .as_str_name()
            .trim_start_matches("BATCH_JOB_STATE_")
            .to_ascii_lowercase();
        let format = pb::FileFormat::try_from(job.format)
            .map(|f| {
                f.as_str_name()
                    .trim_start_matches("FILE_FORMAT_")
                    .to_owned()
            })
            .unwrap_or_default();
        let counts = progress
            .line_status_counts
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| {
                let code = status_code(c.status);
                (code.clone(), lang.t(&format!("status.{code}")), c.count)
            })
            .collect();
        JobView {
            id: job.id.clone(),
            title: if spec.label.is_empty() {
                spec.file_name.clone()
            } else {
                spec.label.clone()
            },
            file: spec.file_name.clone(),
            state: lang.t(&format!("state.{state_code}")).to_owned(),
            is_final: matches!(
                state,
                pb::BatchJobState::Succeeded
                    | pb::BatchJobState::Cancelled
                    | pb::BatchJobState::Failed
            ),
            estimated: state == pb::BatchJobState::Estimated,
            paused: state == pb::BatchJobState::Paused,
            cancellable: matches!(
                state,
                pb::BatchJobState::Queued | pb::BatchJobState::Running | pb::BatchJobState::Paused
            ),
            state_code,
            rows_done: progress.rows_done,
            rows_total: progress.rows_total,
            numbers_done: progress.numbers_done,
            numbers_total: progress.numbers_total,
            numbers_failed: progress.numbers_failed,
            bad_rows: progress.bad_rows,
            rate: format!("{:.1}", progress.numbers_per_second),
            eta: duration(progress.eta.as_ref()),
            cost: money(progress.cost.as_ref()),
            max_cost: job
                .max_cost
                .as_ref()
                .map_or_else(|| lang.t("job.no_limit").to_owned(), |m| money(Some(m))),
            created: time(job.create_time.as_ref()),
            format,
            encoding: job.encoding.clone(),
            number_column: job.number_column.clone(),
            registered_at_column: job.registered_at_column.clone(),
            checks: spec
                .checks
                .iter()
                .map(|&c| check_name(lang, c))
                .collect::<Vec<_>>()
                .join(", "),
            error: job.error.clone(),
            counts,
            bad: job
                .bad_rows
                .iter()
                .take(20)
                .map(|b| (b.sheet.clone(), b.row, b.reason.clone()))
                .collect(),
            estimate: job.estimate.as_ref().map(|e| EstimateView {
                rows: e.rows,
                bad_rows: e.bad_rows,
                duplicate_rows: e.duplicate_rows,
                valid_numbers: e.valid_numbers,
                invalid_numbers: e.invalid_numbers,
                checks: e
                    .checks
                    .iter()
                    .map(|c| {
                        (
                            check_name(lang, c.check),
                            c.answered,
                            c.not_covered,
                            c.paid,
                            money(c.price_ceiling.as_ref()),
                            money(c.cost.as_ref()),
                        )
                    })
                    .collect(),
                cost: money(e.cost.as_ref()),
                duration: duration(e.duration.as_ref()),
            }),
        }
    }

    /// Percent of rows done, for the progress bar.
    pub(crate) fn percent(&self) -> i64 {
        if self.rows_total > 0 {
            self.rows_done * 100 / self.rows_total
        } else {
            0
        }
    }
}

/// The error page: what went wrong, in words.
#[derive(Template)]
#[template(path = "console/error.html")]
pub(crate) struct ErrorPage {
    pub(crate) c: Chrome,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_statuses_in_words() {
        assert_eq!(parse_money("12.5").unwrap().unwrap().units, 12);
        assert!(parse_money("-1").is_err());
        assert!(parse_money(" ").unwrap().is_none());
        assert_eq!(
            status_code(pb::LineStatus::PoweredOff as i32),
            "powered_off"
        );
        assert_eq!(status_from_code("empty"), Some(pb::LineStatus::Empty));
        assert_eq!(
            check_from_code("line-status"),
            Some(pb::Check::LineStatus as i32)
        );
        assert_eq!(check_choices(Lang::Zh)[0], ("line-status", "号码状态"));
        assert_eq!(check_from_code("nope"), None);
    }
}
