//! What a job's numbers count against while it runs: its tenant's daily budget and rate (shared
//! with calls and streams), and its own `max_cost`; and the pauses when one of them has no room.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::Jobs;
use super::cost::CostGuard;
use crate::budget::{BudgetHold, BudgetSpent, LimitError, TenantLimits};
use crate::store::{JobState, Spend, StoreError};

/// What a job's numbers count against: its tenant's budget and rate, and its own `max_cost`.
pub(super) struct Budget {
    pub(super) limits: TenantLimits,
    /// What a number holds of the tenant's budget: its paid checks (one billable call each at
    /// most), at the highest price of each check's route.
    pub(super) want: Spend,
    /// The job's `max_cost`, with the checks (each once) whose price ceilings a number holds.
    pub(super) cost: Option<(Arc<CostGuard>, Arc<Vec<crate::domain::Check>>)>,
}

/// How long a number waits before asking again when the tenant's budget or rate cannot be
/// checked (Redis or the store unreachable): the job waits rather than spending blind.
const LIMITS_RETRY: Duration = Duration::from_secs(1);

/// Paces one number and holds its paid checks, waiting while the limits cannot be checked.
/// `Err`: the budget has no room.
pub(super) async fn admit(limits: &TenantLimits, want: Spend) -> Result<BudgetHold, BudgetSpent> {
    loop {
        let admitted = match limits.pace().await {
            Ok(()) => limits.hold(want).await,
            Err(e) => Err(e),
        };
        match admitted {
            Ok(hold) => return Ok(hold),
            Err(LimitError::Spent(spent)) => return Err(spent),
            Err(e) => {
                warn!(error = %e, "job: the tenant's limits cannot be checked; the number waits");
                tokio::time::sleep(LIMITS_RETRY).await;
            }
        }
    }
}

/// Why a pass stopped before its end.
#[derive(Debug, Clone, Copy)]
pub(super) enum Halt {
    /// The tenant's daily budget has no room for the next number.
    Budget(BudgetSpent),
    /// The next number's paid checks would take the job past its `max_cost`.
    MaxCost,
}

/// Pauses the job at its `max_cost` (after the numbers in flight were written): it waits for a
/// client to raise it. False when the job was stopped (or cancelled) meanwhile.
pub(super) async fn cost_pause(jobs: &Jobs, id: &str) -> Result<bool, StoreError> {
    let Some(job) = jobs.store.job(id).await? else {
        return Ok(false);
    };
    let currency = jobs.engine.currency();
    let max = job.job.max_cost.unwrap_or_default();
    let why = format!(
        "max_cost {max} {currency} reached: {} {currency} spent, and the next number's paid checks \
         could pass it; StartBatchJob with a higher max_cost resumes the job",
        job.counts.cost
    );
    if !jobs
        .store
        .transition(id, &[JobState::Running], JobState::CostPaused, &why)
        .await?
    {
        return Ok(false);
    }
    info!(job = %id, max_cost = %max, spent = %job.counts.cost, "job paused: its max_cost is reached");
    Ok(true)
}

/// How often a paused job looks whether its tenant's budget has room again (it renews at
/// midnight, China time, and requests in flight may give back what they held).
const BUDGET_RECHECK: Duration = Duration::from_secs(30);

/// Holds the job `PAUSED`, saying why, until the budget has room for a number again. False when
/// the job was stopped (or cancelled) meanwhile.
pub(super) async fn pause(
    jobs: &Jobs,
    id: &str,
    budget: &Budget,
    spent: BudgetSpent,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, StoreError> {
    let minutes = spent.retry_after.as_secs().div_ceil(60);
    let why = format!(
        "the tenant's daily budget of {} is spent; the job goes on when it renews at midnight \
         China time (in {}h{:02}m) or is raised",
        spent.describe(),
        minutes / 60,
        minutes % 60
    );
    if !jobs
        .store
        .transition(id, &[JobState::Running], JobState::Paused, &why)
        .await?
    {
        return Ok(false);
    }
    info!(job = %id, budget = %spent.describe(), "job paused: the tenant's daily budget is spent");
    while !budget.limits.has_room(budget.want).await.unwrap_or(false) {
        tokio::select! {
            () = tokio::time::sleep(BUDGET_RECHECK.min(spent.retry_after.max(Duration::from_secs(1)))) => {}
            _ = stop.wait_for(|s| *s) => return Ok(false),
        }
    }
    let resumed = jobs
        .store
        .transition(id, &[JobState::Paused], JobState::Running, "")
        .await?;
    if resumed {
        info!(job = %id, "job goes on: the tenant's budget has room again");
    }
    Ok(resumed)
}
