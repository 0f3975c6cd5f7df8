//! The runner: starts queued jobs (at most `jobs.max_running` at once), checks each job's numbers
//! through the engine at bulk priority, writes results as they come (group commit: whatever has
//! arrived while the previous write ran goes in the next transaction), and makes further passes for
//! numbers still waiting for an asynchronous vendor or after a retryable failure.
//!
//! A job runs under a lease in the store, renewed every [`RENEW_EVERY`]: on a shared store
//! (several replicas) a job runs on one replica at a time, and when that replica dies another
//! takes the job over once the lease has lapsed. A failed renewal means the job is not this
//! process's any more (cancelled on another replica, deleted, or taken over): it stops.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use prost::Message;
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Jobs;
use crate::budget::{BudgetHold, BudgetSpent, TenantLimits};
use crate::domain::CheckState;
use crate::engine::{Engine, LookupRequest, Priority};
use crate::pb;
use crate::store::{JobState, JobStore, Lease, NumberFate, NumberResult, StoreError, TodoNumber};
use crate::wire;

/// Numbers fetched from the store at once.
const PAGE: u32 = 1_000;
/// Most results in one write.
const MAX_WRITE: usize = 1_000;
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
    /// The lease could not be renewed: the job is no longer this process's to run.
    LeaseLost,
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
        Ok(Ended::Stopped) => info!(job = %id, "job stopped"),
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

/// Renews the job's lease every [`RENEW_EVERY`] until it cannot be renewed.
async fn keep_lease(jobs: &Jobs, id: &str) {
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        let lease = jobs.runner.lease(SystemTime::now());
        match jobs.store.renew_lease(id, &lease).await {
            Ok(true) => {}
            Ok(false) => return,
            // Tried again next tick; if the lease lapses meanwhile, the next renewal says so.
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
        checks: wire::checks_from_proto("checks", &spec.checks).unwrap_or_default(),
        options: wire::options_from_proto("options", spec.options).unwrap_or_default(),
        deadline: None,
        priority: Priority::Bulk,
        tenant: job.job.tenant.as_str().into(),
    });
    let config = jobs.config();
    let budget = Budget {
        limits: jobs.limits_of(&job.job.tenant),
        calls: template.checks.iter().collect::<HashSet<_>>().len() as u64,
    };
    loop {
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        if let Some(spent) = pass(jobs, id, template.clone(), &budget, stop.clone()).await? {
            // The numbers not checked are still to do: the same pass goes on after the pause.
            if pause(jobs, id, &budget, spent, stop.clone()).await? {
                continue;
            }
            return Ok(Ended::Stopped);
        }
        if *stop.borrow() {
            return Ok(Ended::Stopped);
        }
        let Some(job) = jobs.store.job(id).await? else {
            return Ok(Ended::Stopped);
        };
        if job.counts.numbers_pending == 0 {
            return Ok(Ended::Finished);
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

/// What a job's numbers count against: its tenant's budget and rate.
struct Budget {
    limits: TenantLimits,
    /// Paid checks held per number (each check is one billable call at most).
    calls: u64,
}

/// How often a paused job looks whether its tenant's budget has room again (it renews at
/// midnight, China time, and requests in flight may give back what they held).
const BUDGET_RECHECK: Duration = Duration::from_secs(30);

/// Holds the job `PAUSED`, saying why, until the budget has room for a number again. False when
/// the job was stopped (or cancelled) meanwhile.
async fn pause(
    jobs: &Jobs,
    id: &str,
    budget: &Budget,
    spent: BudgetSpent,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, StoreError> {
    let minutes = spent.retry_after.as_secs().div_ceil(60);
    let why = format!(
        "the tenant's daily budget of {} billable calls is spent; the job goes on when it renews \
         at midnight China time (in {}h{:02}m) or is raised",
        spent.limit,
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
    info!(job = %id, budget = spent.limit, "job paused: the tenant's daily budget is spent");
    let has_room = || {
        budget
            .limits
            .budget
            .as_ref()
            .is_none_or(|b| b.room() >= budget.calls)
    };
    while !has_room() {
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

/// One pass over the numbers still to check. Stops early, with what the budget said, when the
/// tenant's daily budget has no room for the next number; the numbers in flight finish.
async fn pass(
    jobs: &Arc<Jobs>,
    id: &str,
    template: Arc<LookupRequest>,
    budget: &Budget,
    stop: watch::Receiver<bool>,
) -> Result<Option<BudgetSpent>, StoreError> {
    let config = jobs.config();
    let (results, received) = mpsc::channel(config.window * 2);
    let writer = tokio::spawn(write_results(jobs.store.clone(), id.to_owned(), received));
    // Numbers are read a page at a time, ahead of the checks by at most one page.
    let (todo, numbers) = mpsc::channel(PAGE as usize);
    tokio::spawn(read_todo(jobs.store.clone(), id.to_owned(), todo));
    let engine = jobs.engine.clone();
    let passes = Passes {
        pending: config.max_passes,
        failure: config.failure_passes,
    };
    let mut stopped = stop.clone();
    let spent: Arc<OnceLock<BudgetSpent>> = Arc::default();
    let over = spent.clone();
    let said_no = spent.clone();
    let limits = budget.limits.clone();
    let calls = budget.calls;
    let mut checked = Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(numbers)
            // No number starts once the budget said no; those in flight finish.
            .take_while(move |_| std::future::ready(over.get().is_none()))
            .map(move |todo| {
                let engine = engine.clone();
                let template = template.clone();
                let limits = limits.clone();
                let spent = spent.clone();
                async move {
                    let todo = todo?;
                    // Each number is one request of the tenant's rate, and holds its paid checks.
                    limits.pace().await;
                    match limits.hold(calls) {
                        Ok(hold) => Ok(Some(check(engine, template, todo, passes, hold).await)),
                        Err(no) => {
                            let _ = spent.set(no);
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

/// Sends the numbers still to check, in file order, until there are none or nobody listens.
async fn read_todo(
    store: Arc<dyn JobStore>,
    id: String,
    todo: mpsc::Sender<Result<TodoNumber, StoreError>>,
) {
    let mut after = -1;
    loop {
        match store.todo(&id, after, PAGE).await {
            Ok(page) => {
                let Some(last) = page.last() else { return };
                after = last.seq;
                for number in page {
                    if todo.send(Ok(number)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                let _ = todo.send(Err(e)).await;
                return;
            }
        }
    }
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
) -> NumberResult {
    let request = LookupRequest {
        number: todo.input.clone(),
        ..LookupRequest::clone(&template)
    };
    let looked_up = engine.lookup(&request).await;
    match &looked_up {
        Ok(report) => hold.settle(report),
        Err(_) => hold.release(),
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
            let proto = wire::report_to_proto(&report, engine.currency());
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

/// Writes results as they come: each write takes everything that arrived during the previous one.
async fn write_results(
    store: Arc<dyn JobStore>,
    id: String,
    mut received: mpsc::Receiver<NumberResult>,
) -> Result<(), StoreError> {
    let mut rate = Rate::default();
    let mut batch = Vec::with_capacity(MAX_WRITE);
    while let Some(first) = received.recv().await {
        batch.push(first);
        while batch.len() < MAX_WRITE {
            match received.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        rate.add(batch.len());
        store.record(&id, &batch, rate.per_second()).await?;
        let again = batch.iter().filter(|r| r.fate == NumberFate::Again).count() as u64;
        metrics::counter!(crate::metrics::JOB_NUMBERS, "fate" => "again").increment(again);
        metrics::counter!(crate::metrics::JOB_NUMBERS, "fate" => "done")
            .increment(batch.len() as u64 - again);
        batch.clear();
    }
    Ok(())
}

/// Numbers per second over the last ten seconds.
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, usize)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(10);

    fn add(&mut self, n: usize) {
        let now = Instant::now();
        self.samples.push_back((now, n));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_second(&self) -> f64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let span = last.0.duration_since(first.0).as_secs_f64();
        let count: usize = self.samples.iter().skip(1).map(|(_, n)| n).sum();
        if span > 0.0 { count as f64 / span } else { 0.0 }
    }
}
