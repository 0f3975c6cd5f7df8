//! The HTML report of a job: self-contained (inline CSS and SVG charts, no scripts, nothing
//! fetched), so it opens offline and can be mailed as one file.

use prost::Message;

mod ownership;

use super::naming::short;
use super::{JobError, Jobs};
use crate::pb;
use crate::store::JobRecord;

/// Rows shown in the carrier and province charts and the invalid-row lists.
const TOP: u32 = 15;
const LIST: u32 = 100;

/// The eight line statuses, in the taxonomy's order, with their colours.
const STATUSES: [(pb::LineStatus, &str, &str); 8] = [
    (pb::LineStatus::Active, "active 实号", "#2e7d32"),
    (pb::LineStatus::Empty, "empty 空号", "#c62828"),
    (pb::LineStatus::Suspended, "suspended 停机", "#ef6c00"),
    (pb::LineStatus::Silent, "silent 沉默号", "#6d4c41"),
    (pb::LineStatus::Risk, "risk 风险号", "#ad1457"),
    (pb::LineStatus::PoweredOff, "powered off 关机", "#5e35b1"),
    (pb::LineStatus::NoRecord, "no record 库无", "#546e7a"),
    (pb::LineStatus::Invalid, "invalid 无效号", "#9e9e9e"),
];

/// The report's page: `templates/report.html`, checked when the crate compiles and escaped by
/// askama (the template is `.html`, so every value is HTML-escaped unless marked safe, and none
/// is).
///
/// askama rather than maud: the page is mostly fixed HTML, CSS and SVG, which reads (and can be
/// edited) as the HTML it is in a template file, while a maud macro would restate it in Rust
/// syntax; both check the template at compile time.
#[derive(askama::Template)]
#[template(path = "report.html")]
struct Page<'a> {
    id: &'a str,
    label: &'a str,
    file: &'a str,
    format: String,
    encoding: &'a str,
    column: &'a str,
    checks: String,
    state: String,
    tiles: Vec<(&'static str, i64)>,
    line_status: Option<LineStatusSection>,
    recheck: Option<RecheckSection>,
    cost: Vec<(&'static str, String)>,
    charts: Vec<(&'static str, Chart)>,
    bad_total: i64,
    bad: Vec<crate::store::BadRowRecord>,
    invalid: Vec<(String, u64, String)>,
    version: &'static str,
}

/// The line-status chart and table.
struct LineStatusSection {
    chart: Chart,
    rows: Vec<(&'static str, i64)>,
    unanswered: i64,
    unchecked: i64,
}

/// A re-check's changes since the earlier job.
struct RecheckSection {
    earlier: String,
    unchanged: i64,
    changed: i64,
    /// (earlier, now, numbers).
    moves: Vec<(String, String, i64)>,
    /// The first changed numbers: (as written, earlier, now).
    first: Vec<(String, String, String)>,
}

impl RecheckSection {
    async fn of(jobs: &Jobs, job: &JobRecord, earlier: String) -> Result<Self, JobError> {
        let changes = jobs.store().line_status_changes(&job.job.id, LIST).await?;
        let name = |s: i32| short!(pb::LineStatus, s, "LINE_STATUS_");
        Ok(RecheckSection {
            earlier,
            unchanged: changes.unchanged,
            changed: changes.moves.iter().map(|(_, _, n)| n).sum(),
            moves: changes
                .moves
                .iter()
                .map(|&(before, now, n)| (name(before), name(now), n))
                .collect(),
            first: changes
                .first
                .into_iter()
                .map(|(input, before, now)| (input, name(before), name(now)))
                .collect(),
        })
    }
}

/// A horizontal bar chart, drawn as inline SVG by the template.
struct Chart {
    width: usize,
    height: usize,
    label_x: usize,
    bar_x: usize,
    bars: Vec<Bar>,
}

/// One bar, placed.
struct Bar {
    label: String,
    count: i64,
    colour: &'static str,
    y: usize,
    text_y: usize,
    width: i64,
    count_x: i64,
    percent: String,
}

/// Places the bars of `items` (label, count, colour): widths relative to the largest, shares of
/// the total.
fn chart(items: &[(String, i64, &'static str)]) -> Chart {
    let max = items.iter().map(|(_, n, _)| *n).max().unwrap_or(0).max(1);
    let total: i64 = items.iter().map(|(_, n, _)| *n).sum::<i64>().max(1);
    let (row, label_w, bar_w) = (26, 170, 420);
    let bars = items
        .iter()
        .enumerate()
        .map(|(i, (label, n, colour))| {
            let y = i * row + 4;
            let width = (*n as f64 / max as f64 * bar_w as f64).round() as i64;
            Bar {
                label: label.clone(),
                count: *n,
                colour,
                y,
                text_y: y + 14,
                width,
                count_x: label_w as i64 + width + 6,
                percent: format!("{:.1}", *n as f64 * 100.0 / total as f64),
            }
        })
        .collect();
    Chart {
        width: label_w + bar_w + 130,
        height: row * items.len().max(1) + 8,
        label_x: label_w - 8,
        bar_x: label_w,
        bars,
    }
}

/// Renders the report of `job`.
pub async fn render(jobs: &Jobs, job: &JobRecord) -> Result<String, JobError> {
    let store = jobs.store();
    let id = &job.job.id;
    let breakdown = store.breakdown(id, TOP).await?;
    let bad = store.bad_rows(id, LIST).await?;
    let spec = pb::BatchJobSpec::decode(job.job.spec.as_slice()).unwrap_or_default();
    let c = &job.counts;
    let status_rows = |s: pb::LineStatus| {
        c.line_status_rows
            .iter()
            .find(|(v, _)| *v == s as i32)
            .map_or(0, |(_, n)| *n)
    };
    let checks: Vec<String> = spec
        .checks
        .iter()
        .map(|&ch| short!(pb::Check, ch, "CHECK_"))
        .collect();
    let rows_with_number = c.rows_total - c.bad_rows;
    let duplicates = rows_with_number - c.numbers_total;
    let paid_checks = spec.checks.len() as i64;

    let line_status = spec
        .checks
        .contains(&(pb::Check::LineStatus as i32))
        .then(|| {
            let items: Vec<(String, i64, &'static str)> = STATUSES
                .iter()
                .map(|(s, label, colour)| ((*label).to_owned(), status_rows(*s), *colour))
                .collect();
            let answered: i64 = STATUSES.iter().map(|(s, _, _)| status_rows(*s)).sum();
            LineStatusSection {
                chart: chart(&items),
                rows: STATUSES
                    .iter()
                    .map(|(s, label, _)| (*label, status_rows(*s)))
                    .collect(),
                unanswered: c.rows_done - c.bad_rows - answered,
                unchecked: c.rows_total - c.rows_done,
            }
        });

    let recheck = match super::naming::recheck_of(job) {
        Some(earlier) => Some(RecheckSection::of(jobs, job, earlier).await?),
        None => None,
    };

    let currency = jobs.engine().currency();
    let mut cost = vec![
        ("billable vendor calls", c.billable.to_string()),
        ("cost of billable calls", format!("{} {currency}", c.cost)),
        (
            "calls saved: duplicate rows × paid checks",
            (duplicates * paid_checks).to_string(),
        ),
        (
            "calls saved: answers from the cache",
            c.cache_hits.to_string(),
        ),
    ];
    // What a duplicate or a cache hit would have cost is not known exactly (a route may answer
    // from any of its providers): estimated at the routes' highest prices, an upper bound.
    let per_number: crate::domain::Money = spec
        .checks
        .iter()
        .filter_map(|&ch| crate::messages::checks_from_proto("checks", &[ch]).ok())
        .flatten()
        .map(|ch| jobs.engine().price_ceiling(ch))
        .sum();
    if paid_checks > 0 && !per_number.is_zero() {
        let average = crate::domain::Money::from_nanos(per_number.nanos() / paid_checks);
        let saved = per_number.times(u64::try_from(duplicates).unwrap_or(0))
            + average.times(u64::try_from(c.cache_hits).unwrap_or(0));
        cost.push((
            "cost saved by de-duplication and the cache (at most, at the routes' highest prices)",
            format!("{saved} {currency}"),
        ));
    }

    // What the vendors billed, next to the dry run's estimate (an upper bound) and the limit.
    let currency = jobs.engine().currency();
    cost.push(("billed (spent)", format!("{} {currency}", job.counts.cost)));
    if let Some(estimate) = job
        .estimate
        .as_deref()
        .and_then(|e| <pb::BatchJobEstimate as prost::Message>::decode(e).ok())
    {
        let amount = |m: &Option<crate::pb::google_type::Money>| {
            let m = m.clone().unwrap_or_default();
            crate::domain::Money::from_units_and_nanos(m.units, m.nanos).unwrap_or_default()
        };
        let paid: i64 = estimate.checks.iter().map(|c| c.paid).sum();
        cost.push((
            "estimated before the run (dry run, an upper bound)",
            format!(
                "{} {currency} for {paid} paid checks",
                amount(&estimate.cost)
            ),
        ));
    }
    if let Some(max) = job.job.max_cost {
        cost.push(("max_cost", format!("{max} {currency}")));
    }

    let by_name = |items: &[(String, i64)]| {
        let items: Vec<(String, i64, &'static str)> = items
            .iter()
            .map(|(name, n)| {
                let name = if name.is_empty() {
                    "unknown 未知"
                } else {
                    name
                };
                (name.to_owned(), *n, "#1565c0")
            })
            .collect();
        chart(&items)
    };
    let ownership = ownership::charts(jobs, job, &spec.checks).await?;
    let page = Page {
        id,
        label: if spec.label.is_empty() {
            &spec.file_name
        } else {
            &spec.label
        },
        file: &spec.file_name,
        format: short!(pb::FileFormat, job.job.format, "FILE_FORMAT_"),
        encoding: &job.job.encoding,
        column: &job.job.number_column,
        checks: if checks.is_empty() {
            "offline analysis only".to_owned()
        } else {
            checks.join(", ")
        },
        state: short!(pb::BatchJobState, job.state.to_proto(), "BATCH_JOB_STATE_"),
        tiles: vec![
            ("rows", c.rows_total),
            ("distinct numbers", c.numbers_total),
            ("numbers checked", c.numbers_done),
            ("bad rows (no number)", c.bad_rows),
            ("billable vendor calls", c.billable),
            ("answers from the cache", c.cache_hits),
            ("duplicate rows, checked once", duplicates),
        ],
        line_status,
        recheck,
        cost,
        charts: vec![
            ("Carriers 运营商", by_name(&breakdown.carriers)),
            ("Provinces 归属地 (top 15)", by_name(&breakdown.provinces)),
        ]
        .into_iter()
        .chain(ownership)
        .collect(),
        bad_total: c.bad_rows,
        bad,
        invalid: breakdown.invalid_rows,
        version: env!("CARGO_PKG_VERSION"),
    };
    askama::Template::render(&page).map_err(|e| JobError::Io(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_bars_are_placed() {
        let page = Page {
            id: "job_<1>",
            label: "<script>alert('x')</script>",
            file: "a&b.csv",
            format: "csv".into(),
            encoding: "GBK",
            column: "手机号 (B)",
            checks: "line_status".into(),
            state: "done".into(),
            tiles: vec![("rows", 4)],
            line_status: None,
            recheck: Some(RecheckSection {
                earlier: "job_0".into(),
                unchanged: 1,
                changed: 1,
                moves: vec![("active".into(), "empty".into(), 1)],
                first: vec![(
                    "<img src=x onerror=alert(1)>".into(),
                    "active".into(),
                    "empty".into(),
                )],
            }),
            cost: vec![("billable vendor calls", "3".into())],
            charts: vec![(
                "Carriers 运营商",
                chart(&[("<b>".to_owned(), 3, "#000"), ("y".to_owned(), 1, "#000")]),
            )],
            bad_total: 0,
            bad: Vec::new(),
            invalid: vec![("\"s\"".into(), 2, "=1+1".into())],
            version: "0",
        };
        let html = askama::Template::render(&page).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains(">&#60;b&#62;</text>"),
            "a label is text: {html}"
        );
        assert!(
            html.contains("a&#38;b.csv") || html.contains("a&amp;b.csv"),
            "{html}"
        );
        assert!(html.contains("75.0%") && html.contains("<svg"), "{html}");
        assert!(html.contains("The job did not ask for line status."));
        assert!(html.contains("1 numbers changed line status"), "{html}");
        assert!(!html.contains("<img"), "a number is text: {html}");
    }
}
