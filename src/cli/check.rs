//! `phonecheck check FILE|-`: streams a list of numbers through `CheckNumbers` with a progress
//! bar and writes one CSV row per number, in completion order.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::CliError;
use crate::domain::Check;
use crate::pb;
use crate::pb::check_numbers_response::Response;
use crate::pb::check_numbers_result::Outcome;
use crate::pb::phone_check_service_client::PhoneCheckServiceClient;
use crate::wire::check_to_proto;

/// What `check` was asked to do.
pub(super) struct CheckArgs {
    pub input: PathBuf,
    pub checks: Vec<Check>,
    pub region: String,
    pub server: String,
    pub out: Option<PathBuf>,
}

const COLUMNS: &[&str] = &[
    "line",
    "input",
    "e164",
    "valid",
    "type",
    "carrier",
    "province",
    "city",
    "line_status",
    "vendor_code",
    "spam_labels",
    "account_presence",
    "risk",
    "billable",
    "cached",
    "error",
];

/// A number from one line: the first field of a CSV-like line, without quotes.
fn number_of(line: &str) -> Option<&str> {
    let field = line
        .split([',', '\t', ';'])
        .next()?
        .trim()
        .trim_matches('"')
        .trim();
    (!field.is_empty() && !field.starts_with('#')).then_some(field)
}

fn enum_name(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

fn row(line: &str, input: &str, result: &pb::CheckNumbersResult) -> Vec<String> {
    let mut row = vec![String::new(); COLUMNS.len()];
    row[0] = line.to_owned();
    row[1] = input.to_owned();
    match &result.outcome {
        Some(Outcome::Report(r)) => {
            if let Some(info) = &r.info {
                row[2] = info.e164.clone();
                row[3] = info.valid.to_string();
                row[4] = enum_name(info.r#type().as_str_name(), "NUMBER_TYPE_");
                row[5] = info
                    .carrier
                    .as_ref()
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                if let Some(l) = &info.location {
                    row[6] = l.province.clone();
                    row[7] = l.city.clone();
                }
            }
            if let Some(ls) = &r.line_status {
                row[8] = enum_name(ls.status().as_str_name(), "LINE_STATUS_");
                row[9] = ls.raw_code.clone();
            }
            if let Some(s) = &r.spam_labels {
                row[10] = if s.pending {
                    "pending".to_owned()
                } else {
                    s.labels
                        .iter()
                        .map(|l| l.label.as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                };
            }
            if let Some(p) = &r.account_presence {
                let registered = p
                    .registrations
                    .iter()
                    .filter(|r| r.registered() == pb::Presence::Registered);
                row[11] = registered
                    .map(|r| r.platform.as_str())
                    .collect::<Vec<_>>()
                    .join("|");
            }
            if let Some(p) = &r.risk_profile {
                row[12] = p
                    .risks
                    .iter()
                    .map(|r| r.r#type.to_string())
                    .collect::<Vec<_>>()
                    .join("|");
            }
            row[13] = r.outcomes.iter().any(|o| o.billable).to_string();
            row[14] = (!r.outcomes.is_empty() && r.outcomes.iter().all(|o| o.cached)).to_string();
            row[15] = r
                .outcomes
                .iter()
                .filter_map(|o| o.error.as_ref().map(|e| e.message.clone()))
                .collect::<Vec<_>>()
                .join("; ");
        }
        Some(Outcome::Error(e)) => row[15] = e.message.clone(),
        None => {}
    }
    row
}

fn read_lines(input: &PathBuf) -> Result<Vec<(usize, String)>, CliError> {
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(input)?))
    };
    let mut numbers = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        // A first line without a digit is a header (`phone,name`).
        if i == 0 && !line.bytes().any(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(number) = number_of(line.trim_start_matches('\u{feff}')) {
            numbers.push((i + 1, number.to_owned()));
        }
    }
    Ok(numbers)
}

pub(super) async fn run(args: CheckArgs) -> Result<(), CliError> {
    let numbers = read_lines(&args.input)?;
    let mut client = PhoneCheckServiceClient::connect(args.server.clone())
        .await
        .map_err(|source| CliError::Connect {
            server: args.server.clone(),
            source,
        })?;
    let checks: Vec<i32> = args
        .checks
        .iter()
        .map(|&c| check_to_proto(c) as i32)
        .collect();
    let progress = ProgressBar::new(numbers.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} numbers · {per_sec} · ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));

    // Items are fed as the server takes them: a bounded channel keeps memory flat.
    let (tx, rx) = mpsc::channel(1024);
    let inputs: std::collections::HashMap<String, String> = numbers
        .iter()
        .map(|(line, n)| (line.to_string(), n.clone()))
        .collect();
    let region = args.region.clone();
    let feeder = tokio::spawn(async move {
        for (line, number) in numbers {
            let item = pb::CheckNumbersRequest {
                request_id: line.to_string(),
                number,
                default_region: region.clone(),
                checks: checks.clone(),
                options: None,
            };
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let mut responses = client
        .check_numbers(ReceiverStream::new(rx))
        .await?
        .into_inner();

    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(std::io::stdout()),
    };
    let mut csv = csv::Writer::from_writer(sink);
    csv.write_record(COLUMNS)
        .map_err(|e| CliError::Render(e.to_string()))?;
    let safe = |cells: Vec<String>| {
        cells
            .into_iter()
            .map(|c| crate::jobs::export::spreadsheet_safe(&c).into_owned())
            .collect::<Vec<_>>()
    };
    let mut summary = None;
    while let Some(message) = responses.message().await? {
        match message.response {
            Some(Response::Result(result)) => {
                let input = inputs
                    .get(&result.request_id)
                    .map(String::as_str)
                    .unwrap_or_default();
                csv.write_record(safe(row(&result.request_id, input, &result)))
                    .map_err(|e| CliError::Render(e.to_string()))?;
                progress.inc(1);
            }
            Some(Response::Summary(s)) => summary = Some(s),
            None => {}
        }
    }
    csv.flush()?;
    feeder.abort();
    progress.finish_and_clear();
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
            "{} numbers: {} reports, {} errors; {} billable vendor calls, {} cache hits{}{}",
            s.items_received,
            s.reports,
            s.errors,
            s.billable_calls,
            s.cache_hits,
            if statuses.is_empty() { "" } else { "; " },
            statuses.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::number_of;

    #[test]
    fn numbers_from_lines() {
        assert_eq!(number_of("13800138000"), Some("13800138000"));
        assert_eq!(
            number_of(" \"+86 138 0013 8000\",Alice"),
            Some("+86 138 0013 8000")
        );
        assert_eq!(number_of("13800138000\tBob"), Some("13800138000"));
        assert_eq!(number_of("# comment"), None);
        assert_eq!(number_of("   "), None);
    }
}
