//! `phonecheck check FILE|-`: reads a file of numbers exactly as a batch job does (TXT, CSV, XLSX,
//! XLS; GBK, UTF-16 or UTF-8; delimiter, header and number column detected; the `[jobs.import]`
//! bounds), streams its numbers through `CheckNumbers` with a progress bar, and writes one CSV row
//! per file row, in completion order, with the result columns of a job export.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::CliError;
use crate::domain::Check;
use crate::jobs::JobError;
use crate::jobs::export::{SafeCsv, report_cells, result_columns};
use crate::jobs::import::{self, ImportBounds, ReadSpec, RegisteredAtRead};
use crate::messages::check_to_proto;
use crate::number::Analyzer;
use crate::pb;
use crate::pb::check_numbers_response::Response;
use crate::pb::check_numbers_result::Outcome;
use crate::pb::phone_check_service_client::PhoneCheckServiceClient;
use crate::store::ImportRow;

/// What `check` was asked to do.
pub(super) struct CheckArgs {
    pub input: PathBuf,
    pub checks: Vec<Check>,
    pub region: String,
    pub column: Option<String>,
    pub sheet: Option<String>,
    pub server: String,
    pub out: Option<PathBuf>,
    /// The registration time sent with every number without one of its own (the reassigned
    /// check).
    pub registered_at: Option<prost_types::Timestamp>,
    /// The column of each row's registration time.
    pub registered_at_column: Option<String>,
}

/// Where a row came from in the input.
#[derive(Debug, Clone)]
struct Origin {
    sheet: String,
    row: u64,
    input: String,
}

/// A row to write: its origin and its report, or why it has none.
type Finished = (Origin, Result<pb::NumberReport, String>);

/// The columns before the result columns: the row's place and the number as written.
fn lead_columns(workbook: bool) -> Vec<&'static str> {
    let mut columns = Vec::with_capacity(3);
    if workbook {
        columns.push("sheet");
    }
    columns.extend(["row", "input"]);
    columns
}

fn enum_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

/// Reads the input on a blocking thread, handing its rows on in file order, a batch at a time.
fn spawn_reader(
    input: PathBuf,
    spec: ReadSpec,
    rows: mpsc::Sender<Vec<ImportRow>>,
) -> tokio::task::JoinHandle<Result<import::Layout, JobError>> {
    tokio::task::spawn_blocking(move || {
        let analyzer = Analyzer::default();
        let mut sink = |batch| {
            rows.blocking_send(batch)
                .map_err(|_| JobError::invalid("chunk", "the check was abandoned"))
        };
        if input.as_os_str() == "-" {
            import::read_stream(std::io::stdin().lock(), &spec, &analyzer, &mut sink)
        } else {
            import::read_file(&input, &spec, &analyzer, &mut sink)
        }
    })
}

pub(super) async fn run(args: CheckArgs) -> Result<(), CliError> {
    let checks: Vec<i32> = args
        .checks
        .iter()
        .map(|&c| check_to_proto(c) as i32)
        .collect();
    let spec = ReadSpec {
        file_name: args
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        number_column: args.column.clone().unwrap_or_default(),
        sheet: args.sheet.clone().unwrap_or_default(),
        default_region: args.region.clone(),
        registered_at: args
            .checks
            .iter()
            .any(|c| c.spec().takes_registration_time)
            .then(|| RegisteredAtRead {
                column: args.registered_at_column.clone().unwrap_or_default(),
                default: args.registered_at.map(|at| at.seconds),
            }),
        // Rows stream through and are not kept: only the per-file reading bounds apply.
        max_rows: u64::MAX,
        limits: ImportBounds::default(),
        ..ReadSpec::default()
    };
    let workbook = args.input.as_os_str() != "-"
        && matches!(
            import::detect_format(&args.input, &spec).map_err(input_error)?,
            pb::FileFormat::Xlsx | pb::FileFormat::Xls
        );
    let mut client = PhoneCheckServiceClient::connect(args.server.clone())
        .await
        .map_err(|source| CliError::Connect {
            server: args.server.clone(),
            source,
        })?;

    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows · {per_sec} · ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    let (batches_tx, mut batches) = mpsc::channel(2);
    let reader = spawn_reader(args.input.clone(), spec, batches_tx);
    // Rows to write, from the feeder (rows without a number) and from the answers.
    let (finished_tx, mut finished) = mpsc::channel::<Finished>(1024);
    // Rows at the server, by request id; an entry lives until its answer.
    let pending: Arc<Mutex<HashMap<String, Origin>>> = Arc::default();
    // Items are fed as the server takes them: bounded channels keep memory flat.
    let (requests_tx, requests) = mpsc::channel(1024);
    let feeder = {
        let (pending, finished_tx, progress) =
            (pending.clone(), finished_tx.clone(), progress.clone());
        let region = args.region.clone();
        let checks = checks.clone();
        let options = args.registered_at.map(|at| pb::CheckOptions {
            registered_at: Some(at),
            ..Default::default()
        });
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut refused = 0i64;
            while let Some(batch) = batches.recv().await {
                progress.inc_length(batch.len() as u64);
                for row in batch {
                    let input = match &row.number {
                        Ok(number) => number.input.clone(),
                        Err(_) => row
                            .number_cell
                            .and_then(|i| row.cells.get(i).cloned())
                            .unwrap_or_default(),
                    };
                    let origin = Origin {
                        sheet: row.sheet,
                        row: row.row_no,
                        input,
                    };
                    match row.number {
                        Ok(number) => {
                            let id = sent.to_string();
                            sent += 1;
                            lock(&pending).insert(id.clone(), origin);
                            // The row's own registration time, read from its column.
                            let own = number.registered_at.map(|seconds| pb::CheckOptions {
                                registered_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
                                ..Default::default()
                            });
                            let item = pb::CheckNumbersRequest {
                                request_id: id,
                                number: number.input,
                                default_region: region.clone(),
                                checks: checks.clone(),
                                options: own.or_else(|| options.clone()),
                            };
                            if requests_tx.send(item).await.is_err() {
                                return refused;
                            }
                        }
                        Err(problem) => {
                            refused += 1;
                            if finished_tx.send((origin, Err(problem))).await.is_err() {
                                return refused;
                            }
                        }
                    }
                }
            }
            refused
        })
    };
    let mut responses = client
        .check_numbers(ReceiverStream::new(requests))
        .await?
        .into_inner();
    let answers = tokio::spawn(async move {
        let mut summary = None;
        while let Some(message) = responses.next().await {
            match message?.response {
                Some(Response::Result(result)) => {
                    let Some(origin) = lock(&pending).remove(&result.request_id) else {
                        continue;
                    };
                    let report = match result.outcome {
                        Some(Outcome::Report(report)) => Ok(report),
                        Some(Outcome::Error(e)) => Err(e.message),
                        None => Err("no answer".to_owned()),
                    };
                    if finished_tx.send((origin, report)).await.is_err() {
                        break;
                    }
                }
                Some(Response::Summary(s)) => summary = Some(s),
                None => {}
            }
        }
        Ok::<_, tonic::Status>(summary)
    });

    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout()),
    };
    let mut csv = SafeCsv::new(sink);
    let mut header = lead_columns(workbook);
    header.extend(result_columns(&checks));
    csv.write(&header)?;
    while let Some((origin, report)) = finished.recv().await {
        let mut cells = Vec::with_capacity(header.len());
        if workbook {
            cells.push(origin.sheet);
        }
        cells.extend([origin.row.to_string(), origin.input]);
        cells.extend(match &report {
            Ok(report) => report_cells(Some(report), None, &checks),
            Err(problem) => report_cells(None, Some(problem), &checks),
        });
        csv.write(&cells)?;
        progress.inc(1);
    }
    csv.flush()?;
    progress.finish_and_clear();
    // The server's error first: the reader fails too when its rows are no longer taken.
    let summary = answers
        .await
        .map_err(|e| CliError::Render(e.to_string()))??;
    reader
        .await
        .map_err(|e| CliError::Render(e.to_string()))?
        .map_err(input_error)?;
    let refused = feeder.await.map_err(|e| CliError::Render(e.to_string()))?;
    if let Some(s) = summary {
        let statuses: Vec<String> = s
            .line_status_counts
            .iter()
            .map(|c| {
                format!(
                    "{} {}",
                    enum_name(c.status().as_str_name(), "LINE_STATUS_"),
                    c.count
                )
            })
            .collect();
        eprintln!(
            "{} rows: {} reports, {} errors ({} without a readable number); {} billable vendor \
             calls costing {}, {} cache hits{}{}",
            s.items_received + refused,
            s.reports,
            s.errors + refused,
            refused,
            s.billable_calls,
            super::money_text(s.cost.as_ref()),
            s.cache_hits,
            if statuses.is_empty() { "" } else { "; " },
            statuses.join(", ")
        );
    }
    Ok(())
}

/// A file that cannot be read, said without the upload's field name.
fn input_error(e: JobError) -> CliError {
    match e {
        JobError::Invalid { message, .. } => {
            CliError::Usage(format!("cannot read the input: {message}"))
        }
        e => CliError::Usage(format!("cannot read the input: {e}")),
    }
}

/// The map's guard; a panic elsewhere while it was held leaves it usable (entries are
/// independent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_columns_name_the_row_as_job_exports_do() {
        assert_eq!(lead_columns(false), ["row", "input"]);
        assert_eq!(lead_columns(true), ["sheet", "row", "input"]);
    }
}
