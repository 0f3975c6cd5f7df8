//! The HTML report of a job: self-contained (inline CSS and SVG charts, no scripts, nothing
//! fetched), so it opens offline and can be mailed as one file.

use std::fmt::Write as _;

use prost::Message;

use super::export::short;
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

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A horizontal bar chart as inline SVG.
fn bars(items: &[(String, i64, &str)]) -> String {
    let max = items.iter().map(|(_, n, _)| *n).max().unwrap_or(0).max(1);
    let total: i64 = items.iter().map(|(_, n, _)| *n).sum::<i64>().max(1);
    let (row, label_w, bar_w) = (26, 170, 420);
    let height = row * items.len().max(1) + 8;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img">"#,
        w = label_w + bar_w + 130
    );
    for (i, (label, n, colour)) in items.iter().enumerate() {
        let y = i * row + 4;
        let w = (*n as f64 / max as f64 * bar_w as f64).round() as i64;
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ty}" text-anchor="end" font-size="13">{label}</text><rect x="{label_w}" y="{y}" width="{w}" height="18" fill="{colour}"/><text x="{nx}" y="{ty}" font-size="13">{n} ({pct:.1}%)</text>"#,
            lx = label_w - 8,
            ty = y + 14,
            label = esc(label),
            nx = label_w as i64 + w + 6,
            pct = *n as f64 * 100.0 / total as f64,
        );
    }
    svg.push_str("</svg>");
    svg
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
    let state = short!(pb::BatchJobState, job.state as i32, "BATCH_JOB_STATE_");
    let rows_with_number = c.rows_total - c.bad_rows;
    let duplicates = rows_with_number - c.numbers_total;
    let paid_checks = spec.checks.len() as i64;

    let mut html = String::with_capacity(32 * 1024);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>phonecheck report {id}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC",sans-serif;margin:2rem auto;max-width:980px;color:#222;padding:0 1rem}}
h1{{font-size:1.5rem}} h2{{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}}
table{{border-collapse:collapse}} td,th{{padding:.25rem .7rem;border-bottom:1px solid #eee;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
.tiles{{display:flex;flex-wrap:wrap;gap:.8rem}} .tile{{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;min-width:8rem}}
.tile b{{display:block;font-size:1.4rem}} .muted{{color:#777;font-size:.9rem}}
</style></head><body>
<h1>Number check report · {label}</h1>
<p class="muted">Job <code>{id}</code> · file {file} · {format} {encoding} · number column {column} · checks: {checks} · state: {state}</p>
"#,
        id = esc(id),
        label = esc(if spec.label.is_empty() {
            &spec.file_name
        } else {
            &spec.label
        }),
        file = esc(&spec.file_name),
        format = esc(&short!(pb::FileFormat, job.job.format, "FILE_FORMAT_")),
        encoding = esc(&job.job.encoding),
        column = esc(&job.job.number_column),
        checks = esc(&if checks.is_empty() {
            "offline analysis only".to_owned()
        } else {
            checks.join(", ")
        }),
        state = esc(&state),
    );
    let tile =
        |label: &str, value: String| format!(r#"<div class="tile"><b>{value}</b>{label}</div>"#);
    html.push_str(r#"<div class="tiles">"#);
    for (label, value) in [
        ("rows", c.rows_total.to_string()),
        ("distinct numbers", c.numbers_total.to_string()),
        ("numbers checked", c.numbers_done.to_string()),
        ("bad rows (no number)", c.bad_rows.to_string()),
        ("billable vendor calls", c.billable.to_string()),
        ("answers from the cache", c.cache_hits.to_string()),
        ("duplicate rows, checked once", duplicates.to_string()),
    ] {
        html.push_str(&tile(label, value));
    }
    html.push_str("</div>\n");

    html.push_str("<h2>Line status 号码状态</h2>\n");
    if spec.checks.contains(&(pb::Check::LineStatus as i32)) {
        let items: Vec<(String, i64, &str)> = STATUSES
            .iter()
            .map(|(s, label, colour)| ((*label).to_owned(), status_rows(*s), *colour))
            .collect();
        html.push_str(&bars(&items));
        html.push_str("<table><tr><th>status</th><th>rows</th></tr>");
        for (s, label, _) in STATUSES {
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td class="n">{}</td></tr>"#,
                esc(label),
                status_rows(s)
            );
        }
        let unanswered = c.rows_done
            - c.bad_rows
            - STATUSES
                .iter()
                .map(|(s, _, _)| status_rows(*s))
                .sum::<i64>();
        let _ = write!(
            html,
            r#"<tr><td>no answer (check failed)</td><td class="n">{unanswered}</td></tr><tr><td>not checked yet</td><td class="n">{}</td></tr></table>"#,
            c.rows_total - c.rows_done
        );
    } else {
        html.push_str(r#"<p class="muted">The job did not ask for line status.</p>"#);
    }

    html.push_str("<h2>Cost 费用</h2><table>");
    let _ = write!(
        html,
        r#"<tr><td>billable vendor calls</td><td class="n">{}</td></tr><tr><td>calls saved: duplicate rows × paid checks</td><td class="n">{}</td></tr><tr><td>calls saved: answers from the cache</td><td class="n">{}</td></tr>"#,
        c.billable,
        duplicates * paid_checks,
        c.cache_hits
    );
    if let Some(prices) = &jobs.config().prices
        && paid_checks > 0
    {
        let per_number: f64 = spec
            .checks
            .iter()
            .filter_map(|&ch| crate::wire::checks_from_proto("checks", &[ch]).ok())
            .flatten()
            .map(|ch| prices.of(ch))
            .sum();
        let average = per_number / paid_checks as f64;
        let _ = write!(
            html,
            r#"<tr><td>cost of billable calls (estimated)</td><td class="n">{:.2} {cur}</td></tr><tr><td>cost saved by de-duplication and the cache (estimated)</td><td class="n">{:.2} {cur}</td></tr>"#,
            c.billable as f64 * average,
            duplicates as f64 * per_number + c.cache_hits as f64 * average,
            cur = esc(&prices.currency),
        );
    }
    html.push_str("</table>\n");

    for (title, items) in [
        ("Carriers 运营商", &breakdown.carriers),
        ("Provinces 归属地 (top 15)", &breakdown.provinces),
    ] {
        let _ = writeln!(html, "<h2>{title}</h2>");
        let items: Vec<(String, i64, &str)> = items
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
        html.push_str(&bars(&items));
    }

    let _ = writeln!(
        html,
        "<h2>Rows without a readable number ({})</h2>",
        c.bad_rows
    );
    if bad.is_empty() {
        html.push_str(r#"<p class="muted">None.</p>"#);
    } else {
        html.push_str("<table><tr><th>sheet</th><th>row</th><th>why</th></tr>");
        for row in &bad {
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&row.sheet),
                row.row_no,
                esc(&row.reason)
            );
        }
        html.push_str("</table>");
        if c.bad_rows > bad.len() as i64 {
            let _ = write!(
                html,
                r#"<p class="muted">First {} shown; the CSV export lists them all.</p>"#,
                bad.len()
            );
        }
    }
    html.push_str("<h2>Invalid numbers 无效号码</h2>\n");
    if breakdown.invalid_rows.is_empty() {
        html.push_str(r#"<p class="muted">None.</p>"#);
    } else {
        html.push_str("<table><tr><th>sheet</th><th>row</th><th>number as written</th></tr>");
        for (sheet, row, input) in &breakdown.invalid_rows {
            let _ = write!(
                html,
                r#"<tr><td>{}</td><td class="n">{row}</td><td>{}</td></tr>"#,
                esc(sheet),
                esc(input)
            );
        }
        html.push_str("</table>");
    }
    let _ = write!(
        html,
        r#"<p class="muted">Made by phonecheck {} from the job's stored results.</p></body></html>"#,
        env!("CARGO_PKG_VERSION")
    );
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        let svg = bars(&[("<b>".to_owned(), 3, "#000"), ("y".to_owned(), 1, "#000")]);
        assert!(svg.contains("&lt;b&gt;") && svg.contains("75.0%"));
    }
}
