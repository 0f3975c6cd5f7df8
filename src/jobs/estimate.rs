//! Estimates before paying: a dry-run job is imported, then every distinct number is quoted
//! ([`Engine::quote`]) in the order the run would check it, and the job waits in `ESTIMATED` until
//! a client starts it ([`Jobs::start_job`]), which may also raise the `max_cost` of a job paused
//! at it.
//!
//! The estimate is an upper bound of what the run bills: a paid number is counted at the highest
//! price of its check's route, and an answer already in the answer cache is counted free only if
//! it is still usable when the run will reach its number (the paid numbers before it, at the bulk
//! share of the vendors' quotas, and every number before it at the tenant's rate, plus
//! [`MARGIN`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{JobError, Jobs};
use crate::domain::{Check, Money};
use crate::engine::Quote;
use crate::messages;
use crate::pb;
use crate::store::{JobCounts, JobRecord, JobState};

/// Numbers read from the store at once.
const PAGE: u32 = 1_000;

/// Slack added to the time the run reaches a number before an answer counts free: the run may be
/// slower than the quotas allow (other jobs, live calls, a pause), and a number may be asked again
/// in a later pass.
pub const MARGIN: Duration = Duration::from_secs(15 * 60);

/// Per check, as counted.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    answered: i64,
    not_covered: i64,
    paid: i64,
}

impl Jobs {
    /// Quotes every distinct number of job `id` (all still to check) for the checks of `spec`.
    pub(super) async fn estimate(
        &self,
        id: &str,
        tenant: &str,
        spec: &pb::BatchJobSpec,
        counts: &JobCounts,
    ) -> Result<pb::BatchJobEstimate, JobError> {
        let engine = &self.engine;
        // Every number of the run, free or paid, waits for the tenant's rate.
        let tenant_rate = self
            .limits_of(tenant)
            .and_then(|l| l.rate)
            .map(|r| r.per_second())
            .filter(|r| *r > 0.0);
        let checks = unique(messages::checks_from_proto("spec.checks", &spec.checks)?);
        let options = messages::options_from_proto("spec.options", spec.options.clone())?;
        let now = SystemTime::now();
        let mut tally: HashMap<Check, Tally> = HashMap::new();
        let (mut valid, mut invalid) = (0i64, 0i64);
        let mut valid_until: Option<SystemTime> = None;
        let mut after = -1;
        loop {
            let page = self.store.todo(id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for number in page {
                let info = match engine
                    .analyzer()
                    .analyze(&number.input, &spec.default_region)
                {
                    Ok(info) if info.valid => info,
                    _ => {
                        invalid += 1;
                        continue;
                    }
                };
                // When the run reaches this number: after the paid numbers before it, at the
                // slowest check's pace, and after every number before it at the tenant's rate.
                let paced = tenant_rate
                    .and_then(|rate| {
                        Duration::try_from_secs_f64((valid + invalid) as f64 / rate).ok()
                    })
                    .unwrap_or_default();
                valid += 1;
                let reach = checks
                    .iter()
                    .filter_map(|&c| {
                        let paid = tally.get(&c).map_or(0, |t| t.paid);
                        engine.bulk_duration(c, paid as u64)
                    })
                    .max()
                    .unwrap_or_default()
                    .max(paced)
                    + MARGIN;
                // A time read from the number's row is part of what is asked.
                let options = options.with_registered_at(number.registered_at);
                for &check in &checks {
                    let t = tally.entry(check).or_default();
                    match engine
                        .quote(check, &info, &options, now + reach, tenant)
                        .await
                    {
                        Quote::Invalid | Quote::NotCovered => t.not_covered += 1,
                        Quote::Answered(until) => {
                            t.answered += 1;
                            let latest_start = until.checked_sub(reach).unwrap_or(now);
                            valid_until =
                                Some(valid_until.map_or(latest_start, |v| v.min(latest_start)));
                        }
                        Quote::Paid => t.paid += 1,
                    }
                }
            }
        }
        let currency = engine.currency();
        let mut cost = Money::ZERO;
        let mut duration = Duration::ZERO;
        let per_check = checks
            .iter()
            .map(|&check| {
                let t = tally.get(&check).copied().unwrap_or_default();
                let ceiling = engine.price_ceiling(check);
                let check_cost = ceiling.times(t.paid as u64);
                cost += check_cost;
                let took = engine.bulk_duration(check, t.paid as u64);
                duration = duration.max(took.unwrap_or_default());
                pb::CheckEstimate {
                    check: messages::check_to_proto(check) as i32,
                    answered: t.answered,
                    not_covered: t.not_covered,
                    paid: t.paid,
                    price_ceiling: Some(messages::money_to_proto(ceiling, currency)),
                    cost: Some(messages::money_to_proto(check_cost, currency)),
                    duration: took.and_then(|d| prost_types::Duration::try_from(d).ok()),
                }
            })
            .collect();
        // And no faster than the tenant's rate lets its numbers through.
        if let Some(paced) = tenant_rate
            .and_then(|rate| Duration::try_from_secs_f64((valid + invalid) as f64 / rate).ok())
        {
            duration = duration.max(paced);
        }
        Ok(pb::BatchJobEstimate {
            rows: counts.rows_total,
            bad_rows: counts.bad_rows,
            duplicate_rows: (counts.rows_total - counts.bad_rows - counts.numbers_total).max(0),
            valid_numbers: valid,
            invalid_numbers: invalid,
            checks: per_check,
            cost: Some(messages::money_to_proto(cost, currency)),
            duration: prost_types::Duration::try_from(duration).ok(),
            create_time: Some(now.into()),
            valid_until: valid_until.map(Into::into),
        })
    }

    /// Runs a job that waits for a client: an estimated one (with `max_cost` replacing its
    /// limit when given, and estimated again first if its estimate went stale), or one paused at
    /// its `max_cost`, which `max_cost` must raise above what the job has spent.
    pub async fn start_job(
        &self,
        tenant: &str,
        id: &str,
        max_cost: Option<Money>,
    ) -> Result<JobRecord, JobError> {
        let job = self.get(tenant, id).await?;
        let currency = self.engine.currency();
        match job.state {
            JobState::Estimated => {
                if stale(&job, SystemTime::now()) {
                    let spec = spec_of(&job);
                    let estimate = self.estimate(id, tenant, &spec, &job.counts).await?;
                    self.store
                        .set_estimate(id, &prost::Message::encode_to_vec(&estimate))
                        .await?;
                    tracing::info!(job = %id, "the estimate went stale: estimated again before the run");
                }
                self.queue(id, JobState::Estimated, max_cost, false).await?;
            }
            JobState::CostPaused => {
                let spent = job.counts.cost;
                let limit = job.job.max_cost.unwrap_or_default().max(spent);
                let Some(max_cost) = max_cost else {
                    return Err(JobError::invalid(
                        "max_cost",
                        format!(
                            "the job is paused at its max_cost of {limit} {currency}; give a higher one"
                        ),
                    ));
                };
                if max_cost <= limit {
                    return Err(JobError::invalid(
                        "max_cost",
                        format!(
                            "{max_cost} {currency} does not raise the job's max_cost of {limit} {currency} ({spent} {currency} spent)"
                        ),
                    ));
                }
                self.queue(id, JobState::CostPaused, Some(max_cost), true)
                    .await?;
            }
            state => {
                return Err(JobError::NotStartable {
                    id: id.to_owned(),
                    state,
                });
            }
        }
        tracing::info!(job = %id, "job started by a client");
        self.get(tenant, id).await
    }

    /// Queues a job waiting in `from` with its new `max_cost` (which, with `raise`, must still
    /// raise it); refused if it moved meanwhile (cancelled, started twice, raised by another
    /// call), leaving nothing changed.
    async fn queue(
        &self,
        id: &str,
        from: JobState,
        max_cost: Option<Money>,
        raise: bool,
    ) -> Result<(), JobError> {
        if !self.store.start(id, from, max_cost, raise).await? {
            let state = self
                .store
                .job(id)
                .await?
                .map_or(JobState::Importing, |j| j.state);
            return Err(JobError::NotStartable {
                id: id.to_owned(),
                state,
            });
        }
        self.runner.wake();
        Ok(())
    }
}

impl Jobs {
    /// Estimates a job again when the runner takes it up before any number ran but after its
    /// estimate went stale (it waited in the queue, or behind other jobs): the stored estimate
    /// stays an upper bound of what the run bills.
    pub(super) async fn refresh_stale_estimate(&self, job: &JobRecord) -> Result<(), JobError> {
        if job.estimate.is_none() || job.counts.numbers_done > 0 || !stale(job, SystemTime::now()) {
            return Ok(());
        }
        let estimate = self
            .estimate(&job.job.id, &job.job.tenant, &spec_of(job), &job.counts)
            .await?;
        self.store
            .set_estimate(&job.job.id, &prost::Message::encode_to_vec(&estimate))
            .await?;
        tracing::info!(job = %job.job.id, "the estimate went stale in the queue: estimated again");
        Ok(())
    }
}

/// The spec a job was created with.
pub(super) fn spec_of(job: &JobRecord) -> pb::BatchJobSpec {
    prost::Message::decode(job.job.spec.as_slice()).unwrap_or_default()
}

/// Whether the job's estimate no longer holds at `now` (an answer it counted free would have
/// expired by the time the run reaches its number).
fn stale(job: &JobRecord, now: SystemTime) -> bool {
    let Some(estimate) = job
        .estimate
        .as_deref()
        .and_then(|e| <pb::BatchJobEstimate as prost::Message>::decode(e).ok())
    else {
        return true;
    };
    estimate
        .valid_until
        .and_then(|t| SystemTime::try_from(t).ok())
        .is_some_and(|until| until <= now)
}

/// Checks in order, each once.
fn unique(checks: Vec<Check>) -> Vec<Check> {
    let mut seen = std::collections::HashSet::new();
    checks.into_iter().filter(|c| seen.insert(*c)).collect()
}
