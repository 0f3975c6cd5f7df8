//! [`BudgetStore`] in SQL, one text for SQLite and PostgreSQL.
//!
//! [`BudgetStore`]: crate::store::BudgetStore

use async_trait::async_trait;
use sqlx::{Executor, Row};

use super::{RowsAffected, SqlDb, SqlStore, Text, Value};
use crate::domain::Money;
use crate::store::{BudgetLimit, BudgetStore, DayUse, Spend, StoreError};

#[async_trait]
impl<DB: SqlDb> BudgetStore for SqlStore<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'a> &'a str: Text<'a, DB>,
    i64: Value<DB>,
{
    async fn hold(
        &self,
        tenant: &str,
        day: &str,
        want: Spend,
        limit: BudgetLimit,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO tenant_budget_days (tenant, day) VALUES ($1, $2)
             ON CONFLICT (tenant, day) DO NOTHING",
        )
        .bind(tenant)
        .bind(day)
        .execute(&self.pool)
        .await?;
        // One conditional statement: the row's lock (PostgreSQL re-reads the row it waited
        // for) or SQLite's single writer makes check and hold one step for every process.
        let held = sqlx::query(
            "UPDATE tenant_budget_days
             SET held_calls = held_calls + $3, held_nanos = held_nanos + $4
             WHERE tenant = $1 AND day = $2
               AND ($5 < 0 OR spent_calls + held_calls + $3 <= $5)
               AND ($6 < 0 OR spent_nanos + held_nanos + $4 <= $6)",
        )
        .bind(tenant)
        .bind(day)
        .bind(want.calls_i64())
        .bind(want.cost.nanos())
        .bind(limit.calls_arg())
        .bind(limit.cost_arg())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(held == 1)
    }

    async fn settle(
        &self,
        tenant: &str,
        day: &str,
        held: Spend,
        billed: Spend,
    ) -> Result<(), StoreError> {
        // The day may have no row yet (billed on the day after the hold was taken).
        sqlx::query(
            "INSERT INTO tenant_budget_days (tenant, day) VALUES ($1, $2)
                         ON CONFLICT (tenant, day) DO NOTHING",
        )
        .bind(tenant)
        .bind(day)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE tenant_budget_days
             SET held_calls = CASE WHEN held_calls > $3 THEN held_calls - $3 ELSE 0 END,
                 held_nanos = CASE WHEN held_nanos > $4 THEN held_nanos - $4 ELSE 0 END,
                 spent_calls = spent_calls + $5,
                 spent_nanos = spent_nanos + $6
             WHERE tenant = $1 AND day = $2",
        )
        .bind(tenant)
        .bind(day)
        .bind(held.calls_i64())
        .bind(held.cost.nanos())
        .bind(billed.calls_i64())
        .bind(billed.cost.nanos())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn day_use(&self, tenant: &str, day: &str) -> Result<DayUse, StoreError> {
        let row = sqlx::query(
            "SELECT spent_calls, held_calls, spent_nanos, held_nanos
             FROM tenant_budget_days WHERE tenant = $1 AND day = $2",
        )
        .bind(tenant)
        .bind(day)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(DayUse::default());
        };
        let count = |column: &str| -> Result<u64, StoreError> {
            Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
        };
        let money = |column: &str| -> Result<Money, StoreError> {
            Ok(Money::from_nanos(row.try_get::<i64, _>(column)?))
        };
        Ok(DayUse {
            spent: Spend {
                calls: count("spent_calls")?,
                cost: money("spent_nanos")?,
            },
            held: Spend {
                calls: count("held_calls")?,
                cost: money("held_nanos")?,
            },
        })
    }
}
