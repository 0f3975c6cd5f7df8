//! What the job store keeps: jobs, their rows in file order, and their distinct numbers with
//! results. Behind [`JobStore`] so that a shared database can take SQLite's place.

use std::time::SystemTime;

use async_trait::async_trait;

use super::StoreError;
use crate::domain::Money;

/// The life of a job. The values after `Importing` are `phonecheck.v1.BatchJobState`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// The file is being read; invisible to clients, removed at start-up if the process died.
    Importing = 0,
    /// Waiting for a runner.
    Queued = 1,
    /// Being checked.
    Running = 2,
    /// Every number has its result.
    Succeeded = 3,
    /// Cancelled by a client.
    Cancelled = 4,
    /// Stopped by an error of phonecheck's own.
    Failed = 5,
    /// Held by its runner until a limit allows it to go on (the tenant's daily budget is spent);
    /// the job's `error` says why and until when.
    Paused = 6,
    /// Imported and estimated (a dry run): waits for a client to start it, never by itself.
    Estimated = 7,
    /// Stopped before it would pass its `max_cost`: waits for a client to raise it, never by
    /// itself. Shown as `Paused` (the error says why); a value of the store's own.
    CostPaused = 16,
}

impl JobState {
    /// From the stored value.
    pub fn from_i64(v: i64) -> JobState {
        match v {
            1 => JobState::Queued,
            2 => JobState::Running,
            3 => JobState::Succeeded,
            4 => JobState::Cancelled,
            5 => JobState::Failed,
            6 => JobState::Paused,
            7 => JobState::Estimated,
            16 => JobState::CostPaused,
            _ => JobState::Importing,
        }
    }

    /// The `phonecheck.v1.BatchJobState` value clients see.
    pub fn to_proto(self) -> i32 {
        match self {
            JobState::CostPaused => JobState::Paused as i32,
            state => state as i32,
        }
    }

    /// True once nothing more will happen to the job.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Cancelled | JobState::Failed
        )
    }
}

/// What is known of a job before its rows are read.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// `phonecheck.v1.BatchJobSpec`, encoded, without the numbers.
    pub spec: Vec<u8>,
    /// `phonecheck.v1.FileFormat`.
    pub format: i32,
    /// The text encoding read (empty for workbooks).
    pub encoding: String,
    /// The column the numbers come from, for people.
    pub number_column: String,
    /// The column the registration times come from, for people; empty when none.
    pub registered_at_column: String,
    /// The original header (or `column N` names).
    pub columns: Vec<String>,
    /// How many sheets rows came from.
    pub sheets: u32,
    /// When it was created.
    pub created_at: SystemTime,
    /// The most it may spend (`spec.max_cost`, later raised by a client); none: no limit.
    pub max_cost: Option<Money>,
}

/// A job's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobCounts {
    /// Data rows.
    pub rows_total: i64,
    /// Rows with their result (bad rows included).
    pub rows_done: i64,
    /// Distinct numbers.
    pub numbers_total: i64,
    /// Distinct numbers done.
    pub numbers_done: i64,
    /// Distinct numbers waiting for another pass.
    pub numbers_pending: i64,
    /// Distinct numbers with a failed check.
    pub numbers_failed: i64,
    /// Rows without a readable number.
    pub bad_rows: i64,
    /// Billable vendor calls.
    pub billable: i64,
    /// What the billable calls cost, in the billing currency.
    pub cost: crate::domain::Money,
    /// Answers from the cache.
    pub cache_hits: i64,
    /// Numbers per second, recently.
    pub rate: f64,
    /// Rows per `phonecheck.v1.LineStatus` value, of the numbers done.
    pub line_status_rows: Vec<(i32, i64)>,
}

/// A stored job.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// What it was created with.
    pub job: NewJob,
    /// Its state.
    pub state: JobState,
    /// When it first ran.
    pub started_at: Option<SystemTime>,
    /// When it reached a final state.
    pub finished_at: Option<SystemTime>,
    /// Why it failed.
    pub error: String,
    /// Passes made over its numbers.
    pub passes: u32,
    /// Counters.
    pub counts: JobCounts,
    /// `phonecheck.v1.BatchJobEstimate`, encoded, for a job imported as a dry run.
    pub estimate: Option<Vec<u8>>,
}

/// The number found in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowNumber {
    /// E.164, or the digits of an invalid number: what identifies it.
    pub key: String,
    /// As written.
    pub input: String,
    /// Carrier by segment (for the report).
    pub carrier: String,
    /// Home province (for the report).
    pub province: String,
    /// The registration time read from the row (Unix seconds), for the checks that take one;
    /// part of `key`, as the pair is what is checked.
    pub registered_at: Option<i64>,
}

/// One data row of an uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    /// The sheet (workbooks), else empty.
    pub sheet: String,
    /// 1-based row (line) number in the file or sheet.
    pub row_no: u64,
    /// The row's cells.
    pub cells: Vec<String>,
    /// Where in `cells` the number column is (none: the sheet has no number column).
    pub number_cell: Option<usize>,
    /// Its number, or why it has none.
    pub number: Result<RowNumber, String>,
}

/// A number still to be checked.
#[derive(Debug, Clone)]
pub struct TodoNumber {
    /// Its key.
    pub key: String,
    /// Its order in the file.
    pub seq: i64,
    /// As first written.
    pub input: String,
    /// Its registration time read from the file (Unix seconds), if any.
    pub registered_at: Option<i64>,
    /// Passes made already.
    pub passes: u32,
}

/// Where a checked number goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberFate {
    /// Done: its result is final.
    Done,
    /// Asked again in the next pass (pending answer or retryable failure).
    Again,
}

/// The result of checking one number.
#[derive(Debug, Clone)]
pub struct NumberResult {
    /// Its key.
    pub key: String,
    /// Done or again.
    pub fate: NumberFate,
    /// `phonecheck.v1.LineStatus` (0 without one).
    pub line_status: i32,
    /// Whether a check failed.
    pub failed: bool,
    /// `phonecheck.v1.NumberReport`, encoded.
    pub report: Vec<u8>,
    /// Billable vendor calls it cost.
    pub billable: i64,
    /// What they cost, in the billing currency.
    pub cost: crate::domain::Money,
    /// Answers from the cache.
    pub cache_hits: i64,
}

/// One row of an export, with its number's report.
#[derive(Debug, Clone)]
pub struct ExportRow {
    /// Order in the file.
    pub seq: i64,
    /// Sheet.
    pub sheet: String,
    /// Row number.
    pub row_no: u64,
    /// Original cells.
    pub cells: Vec<String>,
    /// Why the row has no number.
    pub problem: Option<String>,
    /// The number's report, once checked.
    pub report: Option<Vec<u8>>,
    /// A re-check's: the number's `phonecheck.v1.LineStatus` in the earlier job, if known.
    pub previous_line_status: Option<i32>,
}

/// A row that holds no readable number, or an invalid one.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRowRecord {
    /// Sheet.
    pub sheet: String,
    /// Row number.
    pub row_no: u64,
    /// Why.
    pub reason: String,
}

/// Aggregates for the report.
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    /// Rows per carrier, most first.
    pub carriers: Vec<(String, i64)>,
    /// Rows per province, most first.
    pub provinces: Vec<(String, i64)>,
    /// Rows whose number is not valid (line status INVALID), first ones.
    pub invalid_rows: Vec<(String, u64, String)>,
}

/// How a re-check's numbers' line statuses moved since the earlier job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineStatusChanges {
    /// (earlier, now, numbers) for each pair of `phonecheck.v1.LineStatus` that differ.
    pub moves: Vec<(i32, i32, i64)>,
    /// Numbers checked again whose line status is the earlier one.
    pub unchanged: i64,
    /// The first changed numbers in file order: (the number as written, earlier, now).
    pub first: Vec<(String, i32, i32)>,
}

/// Filter of an export: every row by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportFilter {
    /// Only rows whose number has this `phonecheck.v1.LineStatus`.
    pub line_status: Option<i32>,
    /// Only rows whose number's line status differs from the earlier job's (a re-check).
    pub changed_only: bool,
}

/// A process's right to run a job until a time, renewed while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: one id per process.
    pub owner: String,
    /// When it lapses unless renewed.
    pub until: SystemTime,
}

/// Jobs, rows, numbers and results.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Whether other processes use the store at the same time (replicas on a shared database).
    fn shared(&self) -> bool;
    /// Records a job being imported (invisible until [`JobStore::finish_import`]).
    async fn create_job(&self, job: &NewJob) -> Result<(), StoreError>;
    /// Adds rows (with consecutive `seq` from `first_seq`) and their numbers.
    async fn add_rows(
        &self,
        job_id: &str,
        first_seq: i64,
        rows: &[ImportRow],
    ) -> Result<(), StoreError>;
    /// Records what the import found out about the file (format, encoding, columns), counts the
    /// imported rows, and moves the job to `to` (`Queued`; or, for a dry run, still `Importing`
    /// until its estimate is made). Returns the counts.
    async fn finish_import(&self, job: &NewJob, to: JobState) -> Result<JobCounts, StoreError>;
    /// Keeps a job's estimate (`phonecheck.v1.BatchJobEstimate`, encoded).
    async fn set_estimate(&self, job_id: &str, estimate: &[u8]) -> Result<(), StoreError>;
    /// Queues a job waiting in `from` for a client (estimated, or paused at its `max_cost`), in
    /// one step with setting its `max_cost` when given: only if it is still in `from` and, with
    /// `raise`, the new limit is above both what the job spent and its limit now, so that of two
    /// racing calls the one refused leaves nothing behind. False: nothing changed.
    async fn start(
        &self,
        job_id: &str,
        from: JobState,
        max_cost: Option<Money>,
        raise: bool,
    ) -> Result<bool, StoreError>;
    /// Removes the jobs created before `created_before` whose import never finished (their
    /// process died during the upload).
    async fn drop_unfinished_imports(&self, created_before: SystemTime) -> Result<u64, StoreError>;
    /// A job, if it exists (importing jobs do not).
    async fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError>;
    /// A tenant's jobs, newest first, after the `(created_at, id)` cursor.
    async fn list_jobs(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError>;
    /// Ids of jobs in `state`, oldest first.
    async fn jobs_in_state(&self, state: JobState) -> Result<Vec<String>, StoreError>;
    /// Ids of the jobs waiting for a runner, oldest first: queued ones, and running ones whose
    /// lease lapsed before `now` (the process running them died).
    async fn runnable_jobs(&self, now: SystemTime) -> Result<Vec<String>, StoreError>;
    /// Takes a runnable job under `lease`: it becomes `Running` (stamping `started_at` once).
    /// False when it is runnable no longer (another process took it first, or it was cancelled).
    async fn take_job(
        &self,
        job_id: &str,
        lease: &Lease,
        now: SystemTime,
    ) -> Result<bool, StoreError>;
    /// Extends the lease of a running job. False when the job is not this owner's to run any more
    /// (cancelled, deleted, or taken over after the lease lapsed).
    async fn renew_lease(&self, job_id: &str, lease: &Lease) -> Result<bool, StoreError>;
    /// Gives up the lease of a running job, so that any process may take the job at once.
    async fn release_lease(&self, job_id: &str, owner: &str) -> Result<(), StoreError>;
    /// Moves a job from one of `from` to `to`; false when it was in none of them. A final state
    /// stamps `finished_at`; `Running` stamps `started_at` once.
    async fn transition(
        &self,
        job_id: &str,
        from: &[JobState],
        to: JobState,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Up to `limit` numbers still to check, in file order, after `after_seq`.
    async fn todo(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<TodoNumber>, StoreError>;
    /// Records results, and the job's counters with them, atomically.
    async fn record(
        &self,
        job_id: &str,
        results: &[NumberResult],
        rate: f64,
    ) -> Result<(), StoreError>;
    /// Starts another pass: numbers waiting for one are to be checked again. Returns how many.
    async fn next_pass(&self, job_id: &str) -> Result<u64, StoreError>;
    /// The first `limit` bad rows.
    async fn bad_rows(&self, job_id: &str, limit: u32) -> Result<Vec<BadRowRecord>, StoreError>;
    /// Up to `limit` rows after `after_seq`, in file order, with their numbers' reports.
    async fn export_rows(
        &self,
        job_id: &str,
        filter: ExportFilter,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<ExportRow>, StoreError>;
    /// Carriers, provinces and invalid rows for the report.
    async fn breakdown(&self, job_id: &str, top: u32) -> Result<Breakdown, StoreError>;
    /// Up to `limit` of the job's distinct numbers' keys (E.164, or the digits of an invalid one;
    /// with `@` and the registration time when the job took one) after `after`, in key order.
    async fn numbers(
        &self,
        job_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// How the line statuses of re-check `job_id` moved, with the first `limit` changed numbers.
    async fn line_status_changes(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<LineStatusChanges, StoreError>;
    /// Copies the rows and numbers of job `from` into job `to` (created, importing): a
    /// re-check. Each number starts unchecked, with `from`'s line status as its previous one.
    /// `from` is locked meanwhile; [`StoreError::JobGone`] if it no longer exists.
    async fn copy_rows(&self, from: &str, to: &str) -> Result<(), StoreError>;
    /// Deletes a job with its rows and results; false when there was none.
    async fn delete_job(&self, job_id: &str) -> Result<bool, StoreError>;
    /// Ids of jobs that finished before `before`.
    async fn finished_before(&self, before: SystemTime) -> Result<Vec<String>, StoreError>;
}
