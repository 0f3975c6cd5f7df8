//! [`UsageStore`] in SQL, one text for SQLite and PostgreSQL. Days are `YYYY-MM-DD` text, so that
//! ranges compare as text and a month is the first seven characters (`substr` in both).
//!
//! [`UsageStore`]: crate::store::UsageStore

use async_trait::async_trait;
use sqlx::{ColumnIndex, Executor, QueryBuilder, Row};

use super::{SqlDb, SqlStore, Text, Value};
use crate::domain::Money;
use crate::store::{
    StoreError, UsageCounts, UsageKey, UsagePeriod, UsageQuery, UsageRow, UsageStore,
};

/// Ledger increments per INSERT statement (nine values each).
const INCREMENTS_PER_STATEMENT: usize = 1_000;

#[async_trait]
impl<DB: SqlDb> UsageStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    usize: ColumnIndex<DB::Row>,
    String: Value<DB>,
    i64: Value<DB>,
{
    async fn add_usage(&self, increments: &[(UsageKey, UsageCounts)]) -> Result<(), StoreError> {
        if increments.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in increments.chunks(INCREMENTS_PER_STATEMENT) {
            let mut insert: QueryBuilder<DB> = QueryBuilder::new(
                "INSERT INTO usage_ledger (tenant, provider, check_name, day, billable_calls,
                     cost_nanos, cache_hits, joined_calls, failures) ",
            );
            insert.push_values(chunk, |mut b, (key, counts)| {
                b.push_bind(&key.tenant)
                    .push_bind(&key.provider)
                    .push_bind(&key.check)
                    .push_bind(key.day.format("%Y-%m-%d").to_string())
                    .push_bind(counts.billable_calls)
                    .push_bind(counts.cost.nanos())
                    .push_bind(counts.cache_hits)
                    .push_bind(counts.joined_calls)
                    .push_bind(counts.failures);
            });
            insert.push(
                " ON CONFLICT (tenant, provider, check_name, day) DO UPDATE SET
                     billable_calls = usage_ledger.billable_calls + excluded.billable_calls,
                     cost_nanos = usage_ledger.cost_nanos + excluded.cost_nanos,
                     cache_hits = usage_ledger.cache_hits + excluded.cache_hits,
                     joined_calls = usage_ledger.joined_calls + excluded.joined_calls,
                     failures = usage_ledger.failures + excluded.failures",
            );
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let period = match query.period {
            UsagePeriod::Day => "day",
            UsagePeriod::Month => "substr(day, 1, 7)",
        };
        let mut select: QueryBuilder<DB> = QueryBuilder::new(format!(
            "SELECT tenant, provider, check_name, {period} AS period,
                 CAST(SUM(billable_calls) AS BIGINT), CAST(SUM(cost_nanos) AS BIGINT),
                 CAST(SUM(cache_hits) AS BIGINT), CAST(SUM(joined_calls) AS BIGINT),
                 CAST(SUM(failures) AS BIGINT)
             FROM usage_ledger WHERE day >= "
        ));
        select.push_bind(query.from.format("%Y-%m-%d").to_string());
        select.push(" AND day <= ");
        select.push_bind(query.to.format("%Y-%m-%d").to_string());
        for (column, value) in [
            ("tenant", &query.tenant),
            ("provider", &query.provider),
            ("check_name", &query.check),
        ] {
            if let Some(value) = value {
                select.push(format!(" AND {column} = "));
                select.push_bind(value.as_str());
            }
        }
        select.push(format!(
            " GROUP BY tenant, provider, check_name, {period}
              ORDER BY period, tenant, provider, check_name LIMIT "
        ));
        select.push_bind(i64::from(query.limit));
        let rows = select.build().fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(|r| UsageRow {
                tenant: r.get(0),
                provider: r.get(1),
                check: r.get(2),
                period: r.get(3),
                counts: UsageCounts {
                    billable_calls: r.get(4),
                    cost: Money::from_nanos(r.get(5)),
                    cache_hits: r.get(6),
                    joined_calls: r.get(7),
                    failures: r.get(8),
                },
            })
            .collect())
    }
}
