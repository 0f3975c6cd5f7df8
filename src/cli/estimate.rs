//! How `phonecheck job` shows money: a dry run's estimate, `max_cost` and what was spent.

use std::time::Duration;

use crate::domain::Money;
use crate::pb;

/// `--max-cost 12.50`: an amount in the server's billing currency.
pub fn parse_max_cost(text: &str) -> Result<pb::google_type::Money, String> {
    let amount: Money = text.parse().map_err(|e| format!("{e}"))?;
    let (units, nanos) = amount.units_and_nanos();
    Ok(pb::google_type::Money {
        currency_code: String::new(),
        units,
        nanos,
    })
}

fn duration(d: Option<prost_types::Duration>) -> String {
    match d.and_then(|d| Duration::try_from(d).ok()) {
        Some(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
        None => "no quota limits it".to_owned(),
    }
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

/// Prints a job's estimate, limit and spending, when it has them.
pub fn print_money(job: &pb::BatchJob) {
    if let Some(e) = &job.estimate {
        println!(
            "estimate  {} (an upper bound), about {} at the vendors' bulk quotas",
            super::money_text(e.cost.as_ref()),
            duration(e.duration)
        );
        println!(
            "          {} rows: {} without a number, {} duplicates; {} valid numbers, {} invalid (free)",
            e.rows, e.bad_rows, e.duplicate_rows, e.valid_numbers, e.invalid_numbers
        );
        for c in &e.checks {
            println!(
                "  {:<17} {} paid × {} = {}; free: {} answered already, {} not covered",
                check_name(c.check),
                c.paid,
                super::money_text(c.price_ceiling.as_ref()),
                super::money_text(c.cost.as_ref()),
                c.answered,
                c.not_covered
            );
        }
        if let Some(until) = e
            .valid_until
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
        {
            println!(
                "          holds until {} (started later, it is estimated again first)",
                humantime::format_rfc3339_seconds(until)
            );
        }
    }
    if job.max_cost.is_some() {
        println!("max_cost  {}", super::money_text(job.max_cost.as_ref()));
    }
    if let Some(cost) = job.progress.as_ref().and_then(|p| p.cost.as_ref()) {
        println!("spent     {}", super::money_text(Some(cost)));
    }
}
