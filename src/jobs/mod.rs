//! Bulk file jobs: a file of numbers is read into the [`JobStore`] (rows in order, each distinct
//! number once), checked by a runner through the engine in the background, resumed after a
//! restart, and exported as CSV, XLSX or an HTML report.
//!
//! A job's life: importing (invisible) → queued → running → succeeded | cancelled | failed; a dry
//! run stops after the import, estimated, until a client starts it; a job with a `max_cost` is
//! paused before it would pass it, until a client raises it (see [`estimate`] and `cost`).
//! Results are committed as they arrive, a few hundred at a time in one transaction with the
//! job's counters, so a process killed mid-job loses at most the answers in transit.

mod admission;
mod config;
mod cost;
mod create;
pub mod estimate;
pub mod export;
pub mod import;
pub mod naming;
mod recheck;
mod report;
mod results;
mod runner;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::budget::TenantLimits;
use crate::engine::Engine;
use crate::pb;
use crate::store::{JobRecord, JobState, JobStore, StoreError};

pub use config::JobsConfig;
pub use create::Upload;
pub use runner::Runner;

/// On a shared store, an upload still unfinished after this is a dead replica's.
const ORPHAN_UPLOAD_AGE: Duration = Duration::from_secs(6 * 3600);

/// Most bad rows returned with a job.
pub const BAD_ROWS_SHOWN: u32 = 100;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A request field or the file is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field (`spec.sheet`, `chunk`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file has more data rows than allowed.
    #[error("chunk: the file has more than {limit} rows, the limit (jobs.max_rows)")]
    TooManyRows {
        /// The limit.
        limit: u64,
    },
    /// The upload is larger than allowed.
    #[error("chunk: the file is larger than {limit} bytes, the limit (jobs.max_upload_bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No such job (for this tenant).
    #[error("no batch job {0:?}")]
    NotFound(String),
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A spool file failed.
    #[error("job file: {0}")]
    Io(#[from] std::io::Error),
    /// A re-check names a job that has not ended yet.
    #[error("batch job {id:?} is {}: only a job that has ended (succeeded, failed or cancelled) can be re-checked", state_name(*.state))]
    NotEnded {
        /// The earlier job.
        id: String,
        /// Its state.
        state: JobState,
    },
    /// The job is not waiting for a client to start it (estimated, or paused at its `max_cost`).
    #[error("batch job {id:?} is {}: only an estimated job, or one paused at its max_cost, can be started", state_name(*.state))]
    NotStartable {
        /// The job.
        id: String,
        /// Its state.
        state: JobState,
    },
}

impl From<crate::messages::FieldError> for JobError {
    fn from(e: crate::messages::FieldError) -> JobError {
        JobError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

/// A state as `phonecheck.v1.BatchJobState` names it (`BATCH_JOB_STATE_RUNNING`); the store's
/// own pause at `max_cost` is named `BATCH_JOB_STATE_PAUSED` with its reason.
pub fn state_name(state: JobState) -> String {
    let name = pb::BatchJobState::try_from(state.to_proto())
        .map_or("BATCH_JOB_STATE_UNSPECIFIED", |s| s.as_str_name());
    match state {
        JobState::CostPaused => format!("{name} (at its max_cost)"),
        JobState::Paused => format!("{name} (the tenant's daily budget is spent)"),
        _ => name.to_owned(),
    }
}

impl JobError {
    /// An unacceptable field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> JobError {
        JobError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The jobs of this process: the store, the engine, and the runner.
#[derive(Debug)]
pub struct Jobs {
    store: Arc<dyn JobStore>,
    engine: Arc<Engine>,
    config: JobsConfig,
    /// Each tenant's budget and rate, by name: a job's numbers count against its tenant's.
    limits: HashMap<String, TenantLimits>,
    spool: PathBuf,
    runner: Runner,
    /// Files being read at once (`jobs.import.max_concurrent`), so the import bounds hold for the
    /// process, not per upload.
    import_slots: Arc<tokio::sync::Semaphore>,
    /// Each tenant's share of those (`jobs.import.max_concurrent_per_tenant`), by tenant name
    /// (configured tenants, so the map is bounded): taken before a process slot, so a tenant's
    /// waiting files hold none.
    tenant_import_slots: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl Jobs {
    /// Jobs over `store`, spooling uploads under `data_dir`. Call [`Jobs::start`] to run them.
    pub fn new(
        store: Arc<dyn JobStore>,
        engine: Arc<Engine>,
        config: JobsConfig,
        limits: HashMap<String, TenantLimits>,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Jobs>, JobError> {
        let spool = data_dir.join("uploads");
        std::fs::create_dir_all(&spool)?;
        Ok(Arc::new(Jobs {
            runner: Runner::new(config.max_running, config.lease),
            import_slots: Arc::new(tokio::sync::Semaphore::new(config.import.max_concurrent)),
            tenant_import_slots: std::sync::Mutex::new(HashMap::new()),
            store,
            engine,
            config,
            limits,
            spool,
        }))
    }

    /// Cleans up after a previous process (half-read uploads, jobs it was running) and starts
    /// the runner and the retention sweeper. Jobs it was running are resumed.
    pub async fn start(self: &Arc<Self>) -> Result<(), JobError> {
        for entry in std::fs::read_dir(&self.spool)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        // An embedded store is this process's alone: what it says is importing or running, a
        // previous process was. On a shared store those may be other replicas' (a dead
        // replica's uploads are dropped by the sweeper, its jobs taken over as leases lapse).
        if !self.store.shared() {
            self.drop_unfinished_uploads(SystemTime::now()).await?;
            for state in [JobState::Running, JobState::Paused] {
                for id in self.store.jobs_in_state(state).await? {
                    // A job of a tenant no longer configured fails here, before the server
                    // answers anyone (the runner refuses it too, for jobs on a shared store).
                    let tenant = self.store.job(&id).await?.map(|job| job.job.tenant);
                    if let Some(why) = tenant.as_deref().and_then(|t| self.refusal(t)) {
                        self.store
                            .transition(&id, &[state], JobState::Failed, &why)
                            .await?;
                        tracing::warn!(job = %id, reason = %why, "job refused at start-up");
                        continue;
                    }
                    self.store
                        .transition(&id, &[state], JobState::Queued, "")
                        .await?;
                    tracing::info!(job = %id, "resuming a job the previous process was running");
                }
            }
        }
        self.sweep().await?;
        runner::spawn(self.clone());
        Ok(())
    }

    /// Stops running jobs and waits for their results so far to be written. They stay `RUNNING`
    /// with their leases given up: they resume at the next start, or at once on another replica.
    pub async fn shutdown(&self) {
        for id in self.runner.stop_all().await {
            if let Err(e) = self.store.release_lease(&id, self.runner.owner()).await {
                tracing::warn!(job = %id, error = %e, "cannot give up the job's lease");
            }
        }
    }

    /// Deletes the jobs created before `created_before` whose upload never finished.
    async fn drop_unfinished_uploads(&self, created_before: SystemTime) -> Result<(), JobError> {
        let dropped = self.store.drop_unfinished_imports(created_before).await?;
        if dropped > 0 {
            tracing::warn!(dropped, "removed jobs whose upload never finished");
        }
        Ok(())
    }

    /// Deletes jobs that finished (or paused at their max_cost) longer than the retention ago.
    pub async fn sweep(&self) -> Result<u64, JobError> {
        let before = SystemTime::now()
            .checked_sub(self.config.retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if self.store.shared() {
            let orphans = SystemTime::now()
                .checked_sub(ORPHAN_UPLOAD_AGE)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            self.drop_unfinished_uploads(orphans).await?;
        }
        let mut expired = self.store.finished_before(before).await?;
        // An estimate never started holds the list as long as a finished job does.
        for id in self.store.jobs_in_state(JobState::Estimated).await? {
            if let Some(job) = self.store.job(&id).await?
                && job.job.created_at < before
            {
                expired.push(id);
            }
        }
        for id in &expired {
            self.store.delete_job(id).await?;
            tracing::info!(job = %id, "deleted a job past its retention");
        }
        Ok(expired.len() as u64)
    }

    /// A job of `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<JobRecord, JobError> {
        match self.store.job(id).await? {
            Some(job) if job.job.tenant == tenant => Ok(job),
            _ => Err(JobError::NotFound(id.to_owned())),
        }
    }

    /// The first bad rows of a job.
    pub async fn bad_rows(&self, id: &str) -> Result<Vec<crate::store::BadRowRecord>, JobError> {
        Ok(self.store.bad_rows(id, BAD_ROWS_SHOWN).await?)
    }

    /// A page of `tenant`'s jobs, newest first; the cursor of the next page.
    pub async fn list(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<(Vec<JobRecord>, Option<(i64, String)>), JobError> {
        let mut jobs = self.store.list_jobs(tenant, after, limit + 1).await?;
        let next = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last()
                .map(|j| (crate::store::millis(j.job.created_at), j.job.id.clone()))
        } else {
            None
        };
        Ok((jobs, next))
    }

    /// Cancels a job: no vendor call starts for it once this returns.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<JobRecord, JobError> {
        self.get(tenant, id).await?;
        self.store
            .transition(
                id,
                &[
                    JobState::Queued,
                    JobState::Running,
                    JobState::Paused,
                    JobState::Estimated,
                    JobState::CostPaused,
                ],
                JobState::Cancelled,
                "",
            )
            .await?;
        self.runner.stop(id).await;
        self.get(tenant, id).await
    }

    /// Deletes a job with its rows and results: the job's own data only. The vendors' answers
    /// about its numbers stay in the answer cache, shared with the tenant's other calls (and,
    /// with `cache.share = "all"`, with every tenant's): another tenant may have paid for them,
    /// and forgetting a number for everyone is an administrator's act (`ForgetNumber`).
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<(), JobError> {
        self.cancel(tenant, id).await?;
        self.store.delete_job(id).await?;
        Ok(())
    }

    /// When a finished job's data will be deleted (an estimated one's: the retention after it
    /// was created, unless it is started; one paused at its max_cost: after it paused, unless
    /// it is raised).
    pub fn expires_at(&self, job: &JobRecord) -> Option<SystemTime> {
        match job.state {
            JobState::Estimated => Some(job.job.created_at + self.config.retention),
            _ => job.finished_at.map(|t| t + self.config.retention),
        }
    }

    /// The store (exports read from it).
    pub fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    /// Where uploads and exports are spooled.
    pub fn spool_dir(&self) -> &std::path::Path {
        &self.spool
    }

    /// The budget and rate of `tenant`; `None` for a tenant no longer configured, whose jobs do
    /// not run (they would run without its limits).
    fn limits_of(&self, tenant: &str) -> Option<TenantLimits> {
        self.limits.get(tenant).cloned()
    }

    /// Why a job of `tenant` may not run: its tenant is no longer configured.
    fn refusal(&self, tenant: &str) -> Option<String> {
        (!self.limits.contains_key(tenant)).then(|| {
            format!(
                "tenant {tenant} is no longer configured: its jobs do not run without its limits"
            )
        })
    }

    /// The engine the jobs run on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The configuration.
    pub fn config(&self) -> &JobsConfig {
        &self.config
    }

    /// The shortest interval between watch updates.
    pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
}
