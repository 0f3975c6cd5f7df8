//! `phonecheck usage`: the usage ledger of a running server, as a table or as CSV.

use std::io::Write;

use super::CliError;
use super::job::ServerArgs;
use crate::domain::Check;
use crate::pb;
use crate::pb::usage_service_client::UsageServiceClient;

/// Rows per day or per month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Grouping {
    /// One row per day.
    Day,
    /// One row per calendar month.
    Month,
}

/// How the ledger is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns with a total line.
    Table,
    /// CSV with a header (amounts as decimals, the currency in its own column).
    Csv,
}

/// `phonecheck usage` arguments.
#[derive(Debug, clap::Args)]
pub struct UsageCommand {
    /// First day, inclusive (`YYYY-MM-DD`, China time); the first of `--to`'s month when absent.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, inclusive (`YYYY-MM-DD`, China time); today when absent.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this tenant (another tenant's usage needs `usage_all`).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this check.
    #[arg(long)]
    pub check: Option<Check>,
    /// Rows per day or per month.
    #[arg(long = "by", value_enum, default_value_t = Grouping::Day)]
    pub by: Grouping,
    /// Table or CSV.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
}

pub(super) async fn run(command: UsageCommand) -> Result<(), CliError> {
    let (channel, key) = super::job::channel(&command.server).await?;
    let mut client = UsageServiceClient::with_interceptor(channel, key);
    let response = client
        .get_usage(pb::GetUsageRequest {
            from_day: command.from.unwrap_or_default(),
            to_day: command.to.unwrap_or_default(),
            tenant: command.tenant.unwrap_or_default(),
            provider: command.provider.unwrap_or_default(),
            check: command
                .check
                .map_or(0, |c| crate::messages::check_to_proto(c) as i32),
            group_by: match command.by {
                Grouping::Day => pb::UsageGrouping::Day,
                Grouping::Month => pb::UsageGrouping::Month,
            } as i32,
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    match command.format {
        Format::Table => out.write_all(table(&response).as_bytes())?,
        Format::Csv => out.write_all(&csv(&response)?)?,
    }
    Ok(())
}

fn check_name(check: i32) -> String {
    pb::Check::try_from(check)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("CHECK_")
                .to_ascii_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_default()
}

fn amount(money: Option<&pb::google_type::Money>) -> String {
    let money = money.cloned().unwrap_or_default();
    crate::domain::Money::from_units_and_nanos(money.units, money.nanos)
        .unwrap_or_default()
        .to_string()
}

fn currency(response: &pb::GetUsageResponse) -> String {
    response
        .totals
        .as_ref()
        .and_then(|t| t.cost.as_ref())
        .map(|c| c.currency_code.clone())
        .unwrap_or_default()
}

/// The ledger as aligned columns, with a total line.
fn table(response: &pb::GetUsageResponse) -> String {
    let header = [
        "period".to_owned(),
        "tenant".to_owned(),
        "provider".to_owned(),
        "check".to_owned(),
        "billable".to_owned(),
        format!("cost ({})", currency(response)),
        "cache hits".to_owned(),
        "joined".to_owned(),
        "failures".to_owned(),
    ];
    let mut lines: Vec<[String; 9]> = vec![header];
    for r in &response.rows {
        lines.push([
            r.period.clone(),
            r.tenant.clone(),
            r.provider.clone(),
            check_name(r.check),
            r.billable_calls.to_string(),
            amount(r.cost.as_ref()),
            r.cache_hits.to_string(),
            r.joined_calls.to_string(),
            r.failures.to_string(),
        ]);
    }
    let t = response.totals.clone().unwrap_or_default();
    lines.push([
        "total".to_owned(),
        String::new(),
        String::new(),
        String::new(),
        t.billable_calls.to_string(),
        amount(t.cost.as_ref()),
        t.cache_hits.to_string(),
        t.joined_calls.to_string(),
        t.failures.to_string(),
    ]);
    let widths: Vec<usize> = (0..9)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = format!(
        "usage from {} to {} (China time)\n",
        response.from_day, response.to_day
    );
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                // Names left, counts and amounts right.
                let pad = " ".repeat(w - cell.chars().count());
                if i < 4 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The ledger as CSV, one line per row (no total line: spreadsheets sum it).
fn csv(response: &pb::GetUsageResponse) -> Result<Vec<u8>, CliError> {
    let currency = currency(response);
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| CliError::Render(e.to_string());
    writer
        .write_record([
            "period",
            "tenant",
            "provider",
            "check",
            "billable_calls",
            "cost",
            "currency",
            "cache_hits",
            "joined_calls",
            "failures",
        ])
        .map_err(failed)?;
    for r in &response.rows {
        writer
            .write_record([
                r.period.clone(),
                r.tenant.clone(),
                r.provider.clone(),
                check_name(r.check),
                r.billable_calls.to_string(),
                amount(r.cost.as_ref()),
                currency.clone(),
                r.cache_hits.to_string(),
                r.joined_calls.to_string(),
                r.failures.to_string(),
            ])
            .map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| CliError::Render(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_csv() {
        let cost = |units, nanos| pb::google_type::Money {
            currency_code: "CNY".into(),
            units,
            nanos,
        };
        let response = pb::GetUsageResponse {
            rows: vec![pb::UsageRow {
                tenant: "a,b".into(),
                provider: "thinksms".into(),
                check: pb::Check::LineStatus as i32,
                period: "2026-12-01".into(),
                billable_calls: 3,
                cost: Some(cost(0, 90_000_000)),
                cache_hits: 2,
                joined_calls: 1,
                failures: 0,
            }],
            totals: Some(pb::UsageTotals {
                billable_calls: 3,
                cost: Some(cost(0, 90_000_000)),
                cache_hits: 2,
                joined_calls: 1,
                failures: 0,
            }),
            from_day: "2026-12-01".into(),
            to_day: "2026-12-01".into(),
        };
        let text = table(&response);
        assert!(text.contains("cost (CNY)"), "{text}");
        assert!(text.contains("line-status"), "{text}");
        assert!(text.lines().last().unwrap().starts_with("total"), "{text}");
        let csv = String::from_utf8(csv(&response).unwrap()).unwrap();
        assert_eq!(
            csv,
            "period,tenant,provider,check,billable_calls,cost,currency,cache_hits,joined_calls,failures\n\
             2026-12-01,\"a,b\",thinksms,line-status,3,0.09,CNY,2,1,0\n"
        );
    }
}
