//! The runner: starts queued jobs (at most `jobs.max_running` at once), checks each job's numbers
//! through the engine at bulk priority, writes results as they come (group commit: whatever has
//! arrived while the previous write ran goes in the next transaction), and makes further passes for
//! numbers still waiting for an asynchronous vendor or after a retryable failure.
//!
//! A job runs under a lease in the store, renewed every [`RENEW_EVERY`]: on a shared store
//! (several replicas) a job runs on one replica at a time, and when that replica dies another
//! takes the job over once the lease has lapsed. A failed renewal means the job is not this
//! process's any more (cancelled on another replica, deleted, or taken over): it stops.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use prost::Message;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Jobs;
use super::admission::{Budget, Halt, admit, cost_pause, pause};
use super::cost::{self, CostGuard, CostHold};
use super::results::{self, read_todo, write_results};
use crate::budget::BudgetHold;
use crate::domain::CheckState;
use crate::engine::{Engine, LookupRequest, Priority};
use crate::messages;
use crate::pb;
use crate::store::{JobState, Lease, NumberFate, NumberResult, Spend, StoreError, TodoNumber};

/// How often the retention sweeper runs.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// How often a running job's lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// The jobs running in this process.
#[derive(Debug)]
pub struct Runner {
    /// This process, as the holder of leases.
    owner: String,
    lease: Duration,
    max_running: usize,
    wake: Notify,
    stopping: AtomicBool,
    running: Mutex<HashMap<String, Running>>,
}

#[derive(Debug)]
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Runner {
    pub(super) fn new(max_running: usize, lease: Duration) -> Runner {
        // The pod's name in Kubernetes, for people reading the store; unique with the id.
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "phonecheck".to_owned());
        Runner {
            owner: format!("{host}/{}", uuid::Uuid::now_v7()),
            lease,
            max_running,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A lease for this process from `now`.
    fn lease(&self, now: SystemTime) -> Lease {
        Lease {
            owner: self.owner.clone(),
            until: now + self.lease,
        }
    }

    /// Who this process is, as the holder of leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Tells the scheduler to look for queued jobs.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops a running job and waits until it has started its last vendor call and written
    /// every result it got.
    pub async fn stop(&self, id: &str) {
        let running = self.running.lock().await.remove(id);
        if let Some(running) = running {
            let _ = running.stop.send(true);
            let _ = running.task.await;
        }
    }

    /// Stops every job and the scheduler; returns the ids of the jobs it stopped.
    pub async fn stop_all(&self) -> Vec<String> {
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_one();
        let all: Vec<(String, Running)> = self.running.lock().await.drain().collect();
        for (_, running) in &all {
            let _ = running.stop.send(true);
        }
        let mut stopped = Vec::with_capacity(all.len());
        for (id, running) in all {
            let _ = running.task.await;
            stopped.push(id);
        }
        stopped
    }
}

/// Starts the scheduler (and the retention sweeper) of `jobs`.
pub(super) fn spawn(jobs: Arc<Jobs>) {
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.tick().await;
        // On a shared store, jobs whose replica died become runnable when their lease lapses.
        let mut lapsed = tokio::time::interval(if jobs.store.shared() {
            jobs.runner.lease / 3
        } else {
            SWEEP_EVERY
        });
        loop {
            if jobs.runner.stopping.load(Ordering::SeqCst) {
                break;
            }
            if let Err(e) = schedule(&jobs).await {
                warn!(error = %e, "cannot start queued jobs");
            }
            tokio::select! {
                () = jobs.runner.wake.notified() => {}
                _ = lapsed.tick() => {}
                _ = sweep.tick() => {
                    if let Err(e) = jobs.sweep().await {
                        warn!(error = %e, "retention sweep failed");
                    }
                }
            }
        }
    });
}

async fn schedule(jobs: &Arc<Jobs>) -> Result<(), StoreError> {
    let runner = &jobs.runner;
    // Held while a job is moved to RUNNING, so that a cancel either comes first (and the
    // transition fails) or finds the job in the map.
    let mut running = runner.running.lock().await;
    running.retain(|_, r| !r.task.is_finished());
    if running.len() >= runner.max_running || runner.stopping.load(Ordering::SeqCst) {
        return Ok(());
    }
    let now = SystemTime::now();
    for id in jobs.store.runnable_jobs(now).await? {
        if running.len() >= runner.max_running {
            break;
        }
        if running.contains_key(&id) || !jobs.store.take_job(&id, &runner.lease(now), now).await? {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(jobs.clone(), id.clone(), stopped));
        running.insert(id, Running { stop, task });
    }
    Ok(())
}

enum Ended {
    Finished,
    Stopped,
    /// Paused before it would pass its `max_cost`.
    CostPaused,
    /// The lease could not be renewed: the job is no longer this process's to run.
    LeaseLost,
    /// It may not run, for this reason (it fails).
    Refused(String),
}

async fn run(jobs: Arc<Jobs>, id: String, stop: watch::Receiver<bool>) {
    info!(job = %id, "job started");
    let running = metrics::gauge!(crate::metrics::JOBS_RUNNING);
    running.increment(1.0);
    let ended = tokio::select! {
        ended = run_passes(&jobs, &id, stop) => ended,
        () = keep_lease(&jobs, &id) => Ok(Ended::LeaseLost),
    };
    match ended {
        Ok(Ended::Finished) => {
            if let Err(e) = jobs
                .store
                .transition(&id, &[JobState::Running], JobState::Succeeded, "")
                .await
            {
                warn!(job = %id, error = %e, "cannot mark the job finished");
            }
            info!(job = %id, "job finished");
        }
        Ok(Ended::Refused(why)) => {
            warn!(job = %id, reason = %why, "job refused");
            if let Err(e) = jobs
                .store
                .transition(&id, &[JobState::Running], JobState::Failed, &why)
                .await
            {
                warn!(job = %id, error = %e, "cannot mark the job failed");
            }
        }
        Ok(Ended::Stopped) => info!(job = %id, "job stopped"),
        Ok(Ended::CostPaused) => info!(job = %id, "job paused at its max_cost"),
        Ok(Ended::LeaseLost) => info!(
            job = %id,
            "job stopped: it was cancelled or deleted, or another replica took it over"
        ),
        Err(e) if jobs.store.shared() => {
            // A shared database failing is usually passing: the job stays RUNNING with its lease
            // given up, and a replica takes it up again once the database answers.
            warn!(job = %id, error = %e, "job interrupted: the job store failed; it resumes when the store answers");
            let _ = jobs.store.release_lease(&id, jobs.runner.owner()).await;
        }
        Err(e) => {
            warn!(job = %id, error = %e, "job failed");
            let _ = jobs
                .store
                .transition(
                    &id,
                    &[JobState::Running, JobState::Paused],
                    JobState::Failed,
                    "the job store failed; the server log has the details",
                )
                .await;
        }
    }
    running.decrement(1.0);
    // Still in the map unless a stop took it out.
    jobs.runner.running.lock().await.remove(&id);
    jobs.runner.wake();
}

/// Renews the job's lease every [`RENEW_EVERY`] until it cannot be renewed, or until the lease
/// has lapsed without a renewal getting through (the store unreachable from here: another replica
/// may take the job up, and two runners would each spend up to the job's `max_cost`).
async fn keep_lease(jobs: &Jobs, id: &str) {
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.tick().await;
    // The job was just taken with a fresh lease.
    let mut held_until = tokio::time::Instant::now() + jobs.runner.lease;
    loop {
        every.tick().await;
        let lease = jobs.runner.lease(SystemTime::now());
        let asked = tokio::time::Instant::now();
        match jobs.store.renew_lease(id, &lease).await {
            Ok(true) => held_until = asked + jobs.runner.lease,
            Ok(false) => return,
            Err(e) if asked >= held_until => {
                warn!(job = %id, error = %e, "the job's lease lapsed without a renewal: the job stops here");
                return;
            }
            // Tried again next tick, while the lease still holds.
            Err(e) => warn!(job = %id, error = %e, "cannot renew the job's lease"),
        }
    }
}

async fn run_passes(
    jobs: &Arc<Jobs>,
    id: &str,
    stop: watch::Receiver<bool>,
) -> Result<Ended, StoreError> {
    let Some(job) = jobs.store.job(id).await? else {
        return Ok(Ended::Stopped);
    };
    let spec = pb::BatchJobSpec::decode(job.job.spec.as_slice()).unwrap_or_default();
    let template = Arc::new(LookupRequest {
        number: String::new(),
        default_region: spec.default_region.clone(),
        checks: messages::checks_from_proto("checks", &spec.checks).unwrap_or_default(),
        options: messages::options_from_proto("options", spec.options).unwrap_or_default(),
        deadline: None,
        priority: Priority::Bulk,
        tenant: job.job.tenant.as_str().into(),
    });
    let config = jobs.config();
    if let Err(e) = jobs.refresh_stale_estimate(&job).await {
        warn!(job = %id, error = %e, "the stale estimate could not be made again");
    }
    let Some(limits) = jobs.limits_of(&job.job.tenant) else {
        return Ok(Ended::Refused(
            jobs.refusal(&job.job.tenant).unwrap_or_default(),
        ));
    };
    let mut checks = template.checks.clone();
    let mut seen = HashSet::new();
    checks.retain(|c| seen.insert(*c));
    let budget = Budget {
        limits,
        want: Spend {
            calls: checks.len() as u64,
            cost: checks.iter().map(|c| jobs.engine.price_ceiling(*c)).sum(),
        },
        cost: job
            .job
            .max_cost
            .map(|max| (CostGuard::new(max, job.counts.cost), Arc::new(checks))),
    };
    loop {
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        match pass(jobs, id, template.clone(), &budget, stop.clone()).await? {
            None => {}
            Some(Halt::Budget(spent)) => {
                // The numbers not checked are still to do: the same pass goes on after the pause.
                if pause(jobs, id, &budget, spent, stop.clone()).await? {
                    continue;
                }
                return Ok(Ended::Stopped);
            }
            Some(Halt::MaxCost) => {
                // Numbers in flight held their ceilings, cached ones too: settled, they may have
                // left room for a whole number again, and then the job goes on.
                if budget
                    .cost
                    .as_ref()
                    .is_some_and(|(guard, _)| guard.fits(budget.want.cost))
                {
                    continue;
                }
                return Ok(if cost_pause(jobs, id).await? {
                    Ended::CostPaused
                } else {
                    Ended::Stopped
                });
            }
        }
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        let Some(job) = jobs.store.job(id).await? else {
            return Ok(Ended::Stopped);
        };
        if job.counts.numbers_pending == 0 {
            // A pass leaves no number unchecked, unless a write it was told had committed was
            // lost (a database that crashed without making it durable): such numbers are asked
            // again (from the answer store: not paid twice) before the job is called finished.
            if jobs.store.todo(id, -1, 1).await?.is_empty() {
                return Ok(Ended::Finished);
            }
            warn!(job = %id, "job: numbers recorded as done are unchecked again; another pass");
            continue;
        }
        // Numbers waiting for an asynchronous vendor, or after a retryable failure.
        let mut stopped = stop.clone();
        tokio::select! {
            () = tokio::time::sleep(config.retry_after) => {}
            _ = stopped.wait_for(|s| *s) => return Ok(Ended::Stopped),
        }
        let again = jobs.store.next_pass(id).await?;
        info!(job = %id, numbers = again, "job: another pass");
    }
}

/// One pass over the numbers still to check. Stops early, with what the budget said, when the
/// tenant's daily budget has no room for the next number; the numbers in flight finish.
async fn pass(
    jobs: &Arc<Jobs>,
    id: &str,
    template: Arc<LookupRequest>,
    budget: &Budget,
    stop: watch::Receiver<bool>,
) -> Result<Option<Halt>, StoreError> {
    let config = jobs.config();
    let (results, received) = mpsc::channel(config.window * 2);
    let writer = tokio::spawn(write_results(
        jobs.store.clone(),
        id.to_owned(),
        received,
        stop.clone(),
    ));
    // Numbers are read a page at a time, ahead of the checks by at most one page.
    let (todo, numbers) = mpsc::channel(results::PAGE as usize);
    tokio::spawn(read_todo(jobs.store.clone(), id.to_owned(), todo));
    let engine = jobs.engine.clone();
    let passes = Passes {
        pending: config.max_passes,
        failure: config.failure_passes,
    };
    let mut stopped = stop.clone();
    let spent: Arc<OnceLock<Halt>> = Arc::default();
    let over = spent.clone();
    let said_no = spent.clone();
    let limits = budget.limits.clone();
    let want = budget.want;
    let cost = budget.cost.clone();
    let mut checked = Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(numbers)
            // No number starts once the budget said no; those in flight finish.
            .take_while(move |_| std::future::ready(over.get().is_none()))
            .map(move |todo| {
                let engine = engine.clone();
                let template = template.clone();
                let limits = limits.clone();
                let spent = spent.clone();
                let cost = cost.clone();
                async move {
                    let todo = todo?;
                    // The job's own limit first: a number it stops holds nothing of the tenant's.
                    let held = match &cost {
                        None => None,
                        Some((guard, checks)) => {
                            let amount = cost::to_hold(
                                &engine,
                                &todo.input,
                                &template.default_region,
                                checks,
                            );
                            match guard.hold(amount) {
                                Some(hold) => Some(hold),
                                None => {
                                    let _ = spent.set(Halt::MaxCost);
                                    return Ok(None);
                                }
                            }
                        }
                    };
                    // Each number is one request of the tenant's rate, and holds its paid checks.
                    match admit(&limits, want).await {
                        Ok(hold) => Ok(Some(
                            check(engine, template, todo, passes, hold, held).await,
                        )),
                        Err(no) => {
                            if let Some(held) = held {
                                held.settle(None);
                            }
                            let _ = spent.set(Halt::Budget(no));
                            Ok(None)
                        }
                    }
                }
            })
            .buffer_unordered(config.window)
            // Dropping the stream drops the lookups in flight: no vendor call starts after a stop.
            .take_until(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }),
    );
    let mut failure = None;
    while let Some(result) = checked.next().await {
        match result {
            Ok(None) => {}
            Ok(Some(result)) => {
                if results.send(result).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(checked);
    drop(results);
    let written = writer
        .await
        .map_err(|e| StoreError::Database(sqlx::Error::Protocol(e.to_string())))?;
    written?;
    failure.map_or(Ok(said_no.get().copied()), Err)
}

/// How many passes a number may get.
#[derive(Debug, Clone, Copy)]
struct Passes {
    /// While an asynchronous vendor's answer is pending.
    pending: u32,
    /// After retryable failures.
    failure: u32,
}

/// Checks one number and decides whether it is done; settles the budget held for it.
async fn check(
    engine: Arc<Engine>,
    template: Arc<LookupRequest>,
    todo: TodoNumber,
    passes: Passes,
    hold: BudgetHold,
    held: Option<CostHold>,
) -> NumberResult {
    let request = LookupRequest {
        number: todo.input.clone(),
        options: template.options.with_registered_at(todo.registered_at),
        ..LookupRequest::clone(&template)
    };
    let looked_up = engine.lookup(&request).await;
    match &looked_up {
        Ok(report) => hold.settle(report).await,
        Err(_) => hold.release().await,
    }
    if let Some(held) = held {
        held.settle(looked_up.as_ref().ok());
    }
    match looked_up {
        Ok(report) => {
            // An answer still to come is asked for again up to `max_passes`; a retryable
            // failure up to `failure_passes` (a vendor that keeps failing a number should not
            // hold the job for a day).
            let next = todo.passes + 1;
            let again = report.outcomes.iter().any(|o| match &o.state {
                CheckState::Pending => next < passes.pending,
                CheckState::Failed(e) => e.retryable() && next < passes.failure,
                _ => false,
            });
            let proto = messages::report_to_proto(&report, engine.currency());
            NumberResult {
                key: todo.key,
                fate: if again {
                    NumberFate::Again
                } else {
                    NumberFate::Done
                },
                line_status: proto.line_status.as_ref().map_or(0, |l| l.status),
                failed: report
                    .outcomes
                    .iter()
                    .any(|o| matches!(o.state, CheckState::Failed(_))),
                billable: report.outcomes.iter().filter(|o| o.billable).count() as i64,
                cost: report.outcomes.iter().map(|o| o.cost).sum(),
                cache_hits: report.outcomes.iter().filter(|o| o.cached).count() as i64,
                report: proto.encode_to_vec(),
            }
        }
        // The number was read at upload with the same analyser; this is not expected.
        Err(e) => {
            warn!(error = %e, "job: a stored number no longer parses");
            NumberResult {
                key: todo.key,
                fate: NumberFate::Done,
                line_status: 0,
                failed: true,
                report: pb::NumberReport {
                    info: Some(pb::NumberInfo {
                        input: todo.input,
                        ..Default::default()
                    }),
                    ..Default::default()
                }
                .encode_to_vec(),
                billable: 0,
                cost: crate::domain::Money::ZERO,
                cache_hits: 0,
            }
        }
    }
}
