//! `phonecheck.v1.UsageService`: the usage ledger, per tenant, provider, check and day or month.
//! A tenant reads its own usage; a tenant granted `usage_all` (and the anonymous caller without
//! tenants configured) reads everyone's.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use tonic::{Request, Response, Status};

use super::{ApiError, convert, tenant_of};
use crate::engine::Engine;
use crate::messages::FieldError;
use crate::pb;
use crate::pb::usage_service_server::UsageService;
use crate::providers::Clock as _;
use crate::store::{UsageCounts, UsagePeriod, UsageQuery, UsageRow};

/// The most days one request may span (a year, leap day included).
pub const MAX_RANGE_DAYS: i64 = 366;
/// The most rows one response may carry; past it the request is refused (narrow the range,
/// filter, or group by month), so that a response stays small and its totals are the sum of
/// everything selected.
pub const MAX_ROWS: u32 = 10_000;
/// The longest tenant or provider name accepted in a filter.
const MAX_NAME: usize = 256;
/// The longest day accepted (`YYYY-MM-DD` is 10 bytes; a little slack for the message).
const MAX_DAY: usize = 32;

/// `phonecheck.v1.UsageService`.
#[derive(Debug, Clone)]
pub struct UsageApi {
    engine: Arc<Engine>,
}

impl UsageApi {
    /// The service over an engine (which writes and reads the ledger).
    pub fn new(engine: Arc<Engine>) -> UsageApi {
        UsageApi { engine }
    }
}

/// A `YYYY-MM-DD` day of a request field.
fn day(field: &str, value: &str) -> Result<NaiveDate, FieldError> {
    convert::bounded(field, value, MAX_DAY)?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, "not a day written YYYY-MM-DD (China time)"))
}

/// The ledger query of a request, every field checked, for a caller who may read `tenant`
/// (`None`: every tenant).
fn query(
    request: &pb::GetUsageRequest,
    tenant: Option<String>,
    today: NaiveDate,
) -> Result<UsageQuery, FieldError> {
    let to = match request.to_day.as_str() {
        "" => today,
        value => day("to_day", value)?,
    };
    let from = match request.from_day.as_str() {
        "" => to.with_day(1).unwrap_or(to),
        value => day("from_day", value)?,
    };
    if from > to {
        return Err(FieldError::new("from_day", "after to_day"));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_RANGE_DAYS {
        return Err(FieldError::new(
            "from_day",
            format!("the range spans {days} days; at most {MAX_RANGE_DAYS} are read at once"),
        ));
    }
    convert::bounded("tenant", &request.tenant, MAX_NAME)?;
    convert::bounded("provider", &request.provider, MAX_NAME)?;
    // One value, named as the field itself (not `check[0]`).
    let check = convert::checks_from_proto("check", &[request.check])
        .map_err(|_| FieldError::new("check", format!("{} is not a known Check", request.check)))?
        .first()
        .map(|c| c.as_str().to_owned());
    let period = match pb::UsageGrouping::try_from(request.group_by) {
        Ok(pb::UsageGrouping::Unspecified | pb::UsageGrouping::Day) => UsagePeriod::Day,
        Ok(pb::UsageGrouping::Month) => UsagePeriod::Month,
        Err(_) => return Err(FieldError::new("group_by", "not a UsageGrouping value")),
    };
    Ok(UsageQuery {
        from,
        to,
        tenant,
        provider: (!request.provider.is_empty()).then(|| request.provider.clone()),
        check,
        period,
        // One more than may be returned, to tell "exactly the bound" from "past it".
        limit: MAX_ROWS + 1,
    })
}

fn counts_to_proto(
    c: &UsageCounts,
    currency: crate::domain::Currency,
) -> (i64, pb::google_type::Money, i64, i64, i64) {
    (
        c.billable_calls,
        convert::money_to_proto(c.cost, currency),
        c.cache_hits,
        c.joined_calls,
        c.failures,
    )
}

fn row_to_proto(row: &UsageRow, currency: crate::domain::Currency) -> pb::UsageRow {
    let (billable_calls, cost, cache_hits, joined_calls, failures) =
        counts_to_proto(&row.counts, currency);
    let check = crate::domain::Check::ALL
        .into_iter()
        .find(|c| c.as_str() == row.check)
        .map_or(pb::Check::Unspecified, convert::check_to_proto);
    pb::UsageRow {
        tenant: row.tenant.clone(),
        provider: row.provider.clone(),
        check: check as i32,
        period: row.period.clone(),
        billable_calls,
        cost: Some(cost),
        cache_hits,
        joined_calls,
        failures,
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    async fn get_usage(
        &self,
        request: Request<pb::GetUsageRequest>,
    ) -> Result<Response<pb::GetUsageResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        convert::bounded("tenant", &request.tenant, MAX_NAME)?;
        let whose = tenant.usage_of(&request.tenant).map_err(ApiError::from)?;
        let today = crate::providers::SystemClock.now_china().date_naive();
        let query = query(&request, whose, today)?;
        let rows = match self.engine.usage(&query).await {
            Some(Ok(rows)) => rows,
            Some(Err(e)) => {
                tracing::error!(error = %e, "reading the usage ledger failed");
                return Err(ApiError::Unavailable("the usage ledger could not be read").into());
            }
            None => return Err(ApiError::Unavailable("this server keeps no usage ledger").into()),
        };
        if rows.len() > MAX_ROWS as usize {
            return Err(ApiError::invalid(
                "from_day",
                format!(
                    "the selection has more than {MAX_ROWS} rows; narrow the range, filter by \
                     tenant, provider or check, or group by month"
                ),
            )
            .into());
        }
        let currency = self.engine.currency();
        let mut totals = UsageCounts::default();
        for row in &rows {
            totals.add(&row.counts);
        }
        let (billable_calls, cost, cache_hits, joined_calls, failures) =
            counts_to_proto(&totals, currency);
        Ok(Response::new(pb::GetUsageResponse {
            rows: rows.iter().map(|r| row_to_proto(r, currency)).collect(),
            totals: Some(pb::UsageTotals {
                billable_calls,
                cost: Some(cost),
                cache_hits,
                joined_calls,
                failures,
            }),
            from_day: query.from.format("%Y-%m-%d").to_string(),
            to_day: query.to.format("%Y-%m-%d").to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(from: &str, to: &str) -> pb::GetUsageRequest {
        pb::GetUsageRequest {
            from_day: from.into(),
            to_day: to.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ranges_are_read_and_bounded() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 15).unwrap();
        let q = query(&request("", ""), None, today).unwrap();
        assert_eq!(
            (q.from.to_string(), q.to.to_string()),
            ("2026-12-01".into(), "2026-12-15".into())
        );
        let q = query(&request("2025-12-15", "2026-12-15"), None, today).unwrap();
        assert_eq!(q.period, UsagePeriod::Day);
        for (from, to, field) in [
            ("2026-12-02", "2026-12-01", "from_day"),
            ("2025-12-14", "2026-12-15", "from_day"),
            ("yesterday", "", "from_day"),
            ("", "2026-13-01", "to_day"),
            ("", &"9".repeat(100), "to_day"),
        ] {
            let e = query(&request(from, to), None, today).unwrap_err();
            assert_eq!(e.field, field, "{from} {to}: {e:?}");
        }
        let bad_group = pb::GetUsageRequest {
            group_by: 9,
            ..Default::default()
        };
        assert_eq!(
            query(&bad_group, None, today).unwrap_err().field,
            "group_by"
        );
        let bad_check = pb::GetUsageRequest {
            check: 99,
            ..Default::default()
        };
        assert_eq!(query(&bad_check, None, today).unwrap_err().field, "check");
    }
}
