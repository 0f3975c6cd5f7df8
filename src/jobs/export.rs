//! Exports of a job's results: CSV and XLSX in the file's row order, the original columns followed
//! by the result columns, all rows or one line-status category; and the HTML report. Rows are read
//! a page at a time and written out in chunks, so an export of millions of rows needs little memory.

use std::borrow::Cow;
use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;

use super::naming::short;
use super::{JobError, Jobs, report};
use crate::pb;
use crate::store::{ExportFilter, ExportRow, JobRecord};

/// Rows read from the store at once.
const PAGE: u32 = 2_000;
/// Size of the chunks sent.
pub const CHUNK: usize = 64 * 1024;
/// Rows per XLSX sheet (Excel's limit is 1,048,576 with the header).
const XLSX_SHEET_ROWS: u32 = 1_000_000;

/// What to export.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest {
    /// Format.
    pub format: pb::ExportFormat,
    /// Rows to include.
    pub filter: ExportFilter,
}

/// The result columns for `checks`: of job exports and of `phonecheck check`'s CSV, whose
/// cells [`report_cells`] writes.
pub fn result_columns(checks: &[i32]) -> Vec<&'static str> {
    let mut columns = vec![
        "e164",
        "valid",
        "number_type",
        "carrier",
        "province",
        "city",
    ];
    for spec in &crate::domain::CHECKS {
        if checks.contains(&spec.proto) {
            columns.extend(spec.export_columns);
        }
    }
    columns.push("error");
    columns
}

/// The result cells of one stored row, matching [`result_columns`].
pub fn result_cells(row: &ExportRow, checks: &[i32]) -> Vec<String> {
    let report = row
        .report
        .as_deref()
        .map(|bytes| pb::NumberReport::decode(bytes).unwrap_or_default());
    report_cells(report.as_ref(), row.problem.as_deref(), checks)
}

/// The result cells of a number's report, matching [`result_columns`]: the one report→row
/// writer of job exports and `phonecheck check`. `problem` is why the number has no report (or
/// no number was read), for the error column; neither a report nor a problem means the number
/// is not checked yet.
pub fn report_cells(
    report: Option<&pb::NumberReport>,
    problem: Option<&str>,
    checks: &[i32],
) -> Vec<String> {
    let answered = report.is_some();
    let report = report.cloned().unwrap_or_default();
    let info = report.info.clone().unwrap_or_default();
    let location = info.location.clone().unwrap_or_default();
    let mut cells = vec![
        info.e164.clone(),
        if answered {
            info.valid.to_string()
        } else {
            String::new()
        },
        if answered {
            short!(pb::NumberType, info.r#type, "NUMBER_TYPE_")
        } else {
            String::new()
        },
        info.carrier.map(|c| c.local_name).unwrap_or_default(),
        location.province,
        location.city,
    ];
    let has = |c: pb::Check| checks.contains(&(c as i32));
    if has(pb::Check::LineStatus) {
        let line = report.line_status.clone().unwrap_or_default();
        cells.push(if report.line_status.is_some() {
            short!(pb::LineStatus, line.status, "LINE_STATUS_")
        } else {
            String::new()
        });
        cells.push(line.raw_code);
    }
    if has(pb::Check::SpamLabels) {
        let spam = report.spam_labels.clone().unwrap_or_default();
        let labels: Vec<String> = spam
            .labels
            .iter()
            .map(|l| {
                let source = short!(pb::LabelSource, l.source, "LABEL_SOURCE_");
                match l.count {
                    0 => format!("{source}:{}", l.label),
                    n => format!("{source}:{}({n})", l.label),
                }
            })
            .collect();
        cells.push(labels.join("; "));
        cells.push(spam.pending.to_string());
    }
    if has(pb::Check::AccountPresence) {
        match &report.account_presence {
            Some(a) => {
                cells.push(a.valid.to_string());
                cells.push(short!(pb::Activity, a.active, "ACTIVITY_"));
                cells.push(a.fraud_score.map(|s| s.to_string()).unwrap_or_default());
                let on: Vec<&str> = a
                    .registrations
                    .iter()
                    .filter(|r| r.registered == pb::Presence::Registered as i32)
                    .map(|r| r.platform.as_str())
                    .collect();
                cells.push(on.join("; "));
            }
            None => cells.extend([String::new(), String::new(), String::new(), String::new()]),
        }
    }
    if has(pb::Check::RiskProfile) {
        match &report.risk_profile {
            Some(r) => {
                let risks: Vec<String> = r
                    .risks
                    .iter()
                    .map(|k| {
                        let name = if k.type_name.is_empty() {
                            k.r#type.to_string()
                        } else {
                            k.type_name.clone()
                        };
                        format!("{name}:{}", short!(pb::RiskLevel, k.level, "RISK_LEVEL_"))
                    })
                    .collect();
                cells.push(risks.join("; "));
                cells.push(
                    r.under18
                        .as_ref()
                        .map(|u| u.is_under18.to_string())
                        .unwrap_or_default(),
                );
            }
            None => cells.extend([String::new(), String::new()]),
        }
    }
    if has(pb::Check::Tenure) {
        let t = report.tenure.clone().unwrap_or_default();
        cells.push(match (t.status(), t.upper_months) {
            (pb::TenureStatus::Unspecified, _) => String::new(),
            (pb::TenureStatus::Known, Some(upper)) => format!("{}-{upper}", t.lower_months),
            (pb::TenureStatus::Known, None) => format!("{}+", t.lower_months),
            (status, _) => short!(pb::TenureStatus, status as i32, "TENURE_STATUS_"),
        });
        cells.push(t.raw_code);
    }
    if has(pb::Check::Reassigned) {
        let r = report.reassigned.clone().unwrap_or_default();
        cells.push(match r.status() {
            pb::ReassignedStatus::Unspecified => String::new(),
            s => short!(pb::ReassignedStatus, s as i32, "REASSIGNED_STATUS_"),
        });
        cells.push(r.raw_code);
    }
    if has(pb::Check::CurrentCarrier) {
        match &report.current_carrier {
            Some(c) => {
                let name = c.carrier.as_ref().map(|c| c.local_name.clone());
                cells.push(name.unwrap_or_else(|| c.raw_code.clone()));
                cells.push(c.ported.to_string());
                cells.push(c.mvno.clone());
            }
            None => cells.extend([String::new(), String::new(), String::new()]),
        }
    }
    let mut errors: Vec<String> = problem.iter().map(|p| (*p).to_owned()).collect();
    for outcome in &report.outcomes {
        if outcome.state == pb::CheckState::Error as i32
            && let Some(e) = &outcome.error
        {
            let check = short!(pb::Check, outcome.check, "CHECK_");
            errors.push(format!("{check}: {}", e.message));
        }
    }
    if !answered && problem.is_none() {
        errors.push("not checked yet".to_owned());
    }
    cells.push(errors.join("; "));
    cells
}

/// The suggested file name and MIME type of an export.
pub fn file_name(job: &JobRecord, request: &ExportRequest) -> (String, &'static str) {
    let mut suffix = match request.filter.line_status {
        None => String::new(),
        Some(s) => format!("-{}", short!(pb::LineStatus, s, "LINE_STATUS_")),
    };
    if request.filter.changed_only {
        suffix.push_str("-changed");
    }
    match request.format {
        pb::ExportFormat::Xlsx => (
            format!("{}{suffix}.xlsx", job.job.id),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        pb::ExportFormat::Html => (
            format!("{}-report.html", job.job.id),
            "text/html; charset=utf-8",
        ),
        _ => (
            format!("{}{suffix}.csv", job.job.id),
            "text/csv; charset=utf-8",
        ),
    }
}

/// Produces the export into `out` in chunks of about [`CHUNK`] bytes.
pub async fn produce(
    jobs: Arc<Jobs>,
    job: JobRecord,
    request: ExportRequest,
    out: mpsc::Sender<Result<Vec<u8>, JobError>>,
) {
    let result = match request.format {
        pb::ExportFormat::Html => match report::render(&jobs, &job).await {
            Ok(html) => send_chunks(&out, html.into_bytes()).await,
            Err(e) => Err(e),
        },
        pb::ExportFormat::Xlsx => xlsx(&jobs, &job, request.filter, &out).await,
        _ => csv(&jobs, &job, request.filter, &out).await,
    };
    if let Err(e) = result {
        let _ = out.send(Err(e)).await;
    }
}

async fn send_chunks(
    out: &mpsc::Sender<Result<Vec<u8>, JobError>>,
    bytes: Vec<u8>,
) -> Result<(), JobError> {
    for chunk in bytes.chunks(CHUNK) {
        if out.send(Ok(chunk.to_vec())).await.is_err() {
            break;
        }
    }
    Ok(())
}

struct Columns {
    sheet: bool,
    header: Vec<String>,
    original: usize,
    checks: Vec<i32>,
    /// A re-check's two columns: the earlier line status and whether it changed.
    recheck: bool,
}

fn columns(job: &JobRecord) -> Columns {
    let spec = pb::BatchJobSpec::decode(job.job.spec.as_slice()).unwrap_or_default();
    let sheet = job.job.sheets > 1;
    let recheck = !spec.recheck_of.is_empty();
    let mut header = Vec::new();
    if sheet {
        header.push("sheet".to_owned());
    }
    header.push("row".to_owned());
    header.extend(job.job.columns.iter().cloned());
    header.extend(result_columns(&spec.checks).iter().map(|s| (*s).to_owned()));
    if recheck {
        header.extend(RECHECK_COLUMNS.map(str::to_owned));
    }
    Columns {
        sheet,
        header,
        original: job.job.columns.len(),
        checks: spec.checks,
        recheck,
    }
}

/// The columns a re-check's export adds after the result columns.
pub const RECHECK_COLUMNS: [&str; 2] = ["previous_line_status", "line_status_changed"];

/// A re-check's cells for one row, matching [`RECHECK_COLUMNS`]: the earlier line status and
/// `yes`/`no`, both empty where either status is not known.
fn recheck_cells(row: &ExportRow) -> [String; 2] {
    let now = row
        .report
        .as_deref()
        .and_then(|bytes| pb::NumberReport::decode(bytes).ok())
        .and_then(|r| r.line_status)
        .map(|l| l.status)
        .filter(|&s| s != 0);
    let Some(before) = row.previous_line_status else {
        return Default::default();
    };
    let changed = match now {
        Some(now) if now != before => "yes",
        Some(_) => "no",
        None => "",
    };
    [
        short!(pb::LineStatus, before, "LINE_STATUS_"),
        changed.to_owned(),
    ]
}

impl Columns {
    fn cells(&self, row: &ExportRow) -> Vec<String> {
        let mut cells = Vec::with_capacity(self.header.len());
        if self.sheet {
            cells.push(row.sheet.clone());
        }
        cells.push(row.row_no.to_string());
        let mut original = row.cells.clone();
        original.resize(self.original.max(original.len()), String::new());
        cells.extend(original);
        cells.extend(result_cells(row, &self.checks));
        if self.recheck {
            cells.extend(recheck_cells(row));
        }
        cells
    }
}

/// The next page of the export's rows after `after`.
async fn page(
    jobs: &Jobs,
    job: &JobRecord,
    filter: ExportFilter,
    after: i64,
) -> Result<Vec<ExportRow>, JobError> {
    Ok(jobs
        .store()
        .export_rows(&job.job.id, filter, after, PAGE)
        .await?)
}

/// A CSV cell that a spreadsheet will show, never run: a cell starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return is a formula to Excel, LibreOffice and Google Sheets, so it gets a
/// leading `'` (OWASP's "CSV injection" advice). Cells that are only a signed number or a phone
/// number written with separators (`+8613800138000`, `-1`, `+86 (10) 1234-5678`) run nothing and
/// are left as they are.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    let Some(first) = cell.chars().next() else {
        return cell.into();
    };
    if !matches!(first, '=' | '+' | '-' | '@' | '\t' | '\r') {
        return cell.into();
    }
    let rest = &cell[first.len_utf8()..];
    let numeric = matches!(first, '+' | '-')
        && rest.bytes().any(|b| b.is_ascii_digit())
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'(' | b')' | b'.'));
    if numeric {
        cell.into()
    } else {
        format!("'{cell}").into()
    }
}

/// CSV rows with every cell made [`spreadsheet_safe`]: the one CSV row writer of job exports and
/// `phonecheck check`.
pub struct SafeCsv<W: std::io::Write> {
    writer: csv::Writer<W>,
}

impl<W: std::io::Write> SafeCsv<W> {
    /// Rows written to `out`.
    pub fn new(out: W) -> SafeCsv<W> {
        SafeCsv {
            writer: csv::Writer::from_writer(out),
        }
    }

    /// Writes one row.
    pub fn write<S: AsRef<str>>(&mut self, cells: &[S]) -> std::io::Result<()> {
        self.writer
            .write_record(cells.iter().map(|c| match spreadsheet_safe(c.as_ref()) {
                Cow::Borrowed(c) => Cow::Borrowed(c.as_bytes()),
                Cow::Owned(c) => Cow::Owned(c.into_bytes()),
            }))
            .map_err(std::io::Error::other)
    }

    /// Writes what is buffered through to the output.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }

    /// The output, with everything written so far.
    pub fn written(&mut self) -> std::io::Result<&W> {
        self.writer.flush()?;
        Ok(self.writer.get_ref())
    }

    /// Takes the output with everything written so far, leaving a fresh one to write on.
    pub fn take(&mut self) -> std::io::Result<W>
    where
        W: Default,
    {
        let writer = std::mem::replace(&mut self.writer, csv::Writer::from_writer(W::default()));
        writer
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

async fn csv(
    jobs: &Jobs,
    job: &JobRecord,
    filter: ExportFilter,
    out: &mpsc::Sender<Result<Vec<u8>, JobError>>,
) -> Result<(), JobError> {
    let columns = columns(job);
    // A byte-order mark, so that Excel reads the UTF-8 (Chinese headers, labels) correctly.
    let mut writer = SafeCsv::new(b"\xEF\xBB\xBF".to_vec());
    writer.write(&columns.header)?;
    let mut after = -1;
    loop {
        let rows = page(jobs, job, filter, after).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for row in &rows {
            writer.write(&columns.cells(row))?;
        }
        if writer.written()?.len() >= CHUNK && out.send(Ok(writer.take()?)).await.is_err() {
            return Ok(());
        }
    }
    let buffer = writer.take()?;
    if !buffer.is_empty() {
        let _ = out.send(Ok(buffer)).await;
    }
    Ok(())
}

async fn xlsx(
    jobs: &Jobs,
    job: &JobRecord,
    filter: ExportFilter,
    out: &mpsc::Sender<Result<Vec<u8>, JobError>>,
) -> Result<(), JobError> {
    use rust_xlsxwriter::Workbook;
    let columns = columns(job);
    let failed = |e: rust_xlsxwriter::XlsxError| JobError::Io(std::io::Error::other(e.to_string()));
    let dir = jobs
        .spool_dir()
        .join(format!("export-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = async {
        // Constant-memory sheets write their rows to temporary files as they go.
        let mut book = Workbook::new();
        book.set_tempdir(&dir).map_err(failed)?;
        let add_sheet = |book: &mut Workbook, number: u32| -> Result<(), JobError> {
            let sheet = book.add_worksheet_with_constant_memory().map_err(failed)?;
            sheet
                .set_name(format!("results {number}"))
                .map_err(failed)?;
            for (c, name) in columns.header.iter().enumerate() {
                sheet.write_string(0, c as u16, name).map_err(failed)?;
            }
            Ok(())
        };
        add_sheet(&mut book, 1)?;
        let mut written = 0u32;
        let mut after = -1;
        loop {
            let rows = page(jobs, job, filter, after).await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for row in &rows {
                if written > 0 && written.is_multiple_of(XLSX_SHEET_ROWS) {
                    add_sheet(&mut book, written / XLSX_SHEET_ROWS + 1)?;
                }
                let sheet = book
                    .worksheet_from_index((written / XLSX_SHEET_ROWS) as usize)
                    .map_err(failed)?;
                let r = written % XLSX_SHEET_ROWS + 1;
                for (c, cell) in columns.cells(row).iter().enumerate() {
                    if !cell.is_empty() {
                        sheet.write_string(r, c as u16, cell).map_err(failed)?;
                    }
                }
                written += 1;
            }
        }
        let path = dir.join("export.xlsx");
        book.save(&path).map_err(failed)?;
        let mut file = tokio::fs::File::open(&path).await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            use tokio::io::AsyncReadExt;
            let n = file.read(&mut buf).await?;
            if n == 0 || out.send(Ok(buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
        Ok::<(), JobError>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn formulas_are_shown_not_run() {
        for (cell, shown) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            (
                "@SUM(1+1)*cmd|' /C calc'!A0",
                "'@SUM(1+1)*cmd|' /C calc'!A0",
            ),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "'\r=1+1"),
            ("+", "'+"),
            ("-", "'-"),
            // Numbers run nothing and keep their sign.
            ("+8613800138000", "+8613800138000"),
            ("+86 (10) 1234-5678", "+86 (10) 1234-5678"),
            ("-1", "-1"),
            ("13800138000", "13800138000"),
            ("骚扰电话", "骚扰电话"),
            ("", ""),
        ] {
            assert_eq!(spreadsheet_safe(cell), shown, "{cell:?}");
        }
    }
}
