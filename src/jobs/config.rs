//! `[jobs]`: limits and pacing of bulk file jobs, and retention.

use std::time::Duration;

use serde::Deserialize;

/// `[jobs]`: bulk file jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Largest file accepted, in bytes; an upload is refused as soon as it passes this.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// Most rows with a number one job may hold.
    #[serde(default = "default_max_rows")]
    pub max_rows: u64,
    /// Jobs run at once; more wait in the queue.
    #[serde(default = "default_max_running")]
    pub max_running: usize,
    /// Numbers of one job being checked at once.
    #[serde(default = "default_job_window")]
    pub window: usize,
    /// The share (0 to 1] of each vendor's quota that jobs may use, so that live calls never
    /// wait behind a big job.
    #[serde(default = "default_quota_share")]
    pub quota_share: f64,
    /// How long after a job's first pass its numbers still waiting for an asynchronous vendor
    /// (or retryable failures) are asked again.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// How many passes a number waiting for an asynchronous vendor gets before the job ends
    /// with it pending.
    #[serde(default = "default_max_passes")]
    pub max_passes: u32,
    /// How many passes a number whose check failed in a retryable way gets before it is
    /// reported failed.
    #[serde(default = "default_failure_passes")]
    pub failure_passes: u32,
    /// Finished jobs, with their rows and results (personal data), are deleted this long after
    /// they finished.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// How long a replica's hold on a running job lasts without renewal (it is renewed every
    /// second while the job runs): when a replica dies, another takes its jobs over after this.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// How long an upload (`CreateBatchJob`) may send nothing before it is refused with
    /// `DEADLINE_EXCEEDED` and dropped, so that a client that stops sending does not hold an
    /// upload place and a spool file.
    #[serde(default = "default_upload_idle_timeout", with = "humantime_serde")]
    pub upload_idle_timeout: Duration,
    /// Retired: `[jobs.prices]` gave the report estimated prices. Prices are now each provider's
    /// (`[providers.NAME.prices]`, in `[billing] currency`) and the report shows what a job
    /// cost; still read only so that start-up says what replaced it.
    #[serde(default)]
    pub prices: Option<serde::de::IgnoredAny>,
    /// `[jobs.import]`: the bounds an uploaded file is read within.
    #[serde(default)]
    pub import: crate::jobs::import::ImportBounds,
}

fn default_upload_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

impl JobsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_upload_bytes == 0 || self.max_rows == 0 {
            problems.push("jobs.max_upload_bytes and jobs.max_rows must be above zero".to_owned());
        }
        if !(1..=64).contains(&self.max_running) {
            problems.push("jobs.max_running must be between 1 and 64".to_owned());
        }
        if !(1..=10_000).contains(&self.window) {
            problems.push("jobs.window must be between 1 and 10000".to_owned());
        }
        if !(self.quota_share > 0.0 && self.quota_share <= 1.0) {
            problems.push("jobs.quota_share must be above 0 and at most 1".to_owned());
        }
        if self.lease < Duration::from_secs(3) {
            problems.push("jobs.lease must be at least 3s (it is renewed every second)".to_owned());
        }
        if self.upload_idle_timeout.is_zero() {
            problems.push("jobs.upload_idle_timeout must be above zero".to_owned());
        }
        if self.max_passes == 0 || self.failure_passes == 0 {
            problems.push("jobs.max_passes and jobs.failure_passes must be at least 1".to_owned());
        }
        problems.extend(self.import.problems());
        if self.prices.is_some() {
            problems.push(
                "jobs.prices is retired: write each provider's prices in [providers.NAME.prices] \
                 (line_status = \"0.03\") and the currency in [billing] currency"
                    .to_owned(),
            );
        }
        problems
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            max_upload_bytes: default_max_upload_bytes(),
            max_rows: default_max_rows(),
            max_running: default_max_running(),
            window: default_job_window(),
            quota_share: default_quota_share(),
            retry_after: default_retry_after(),
            max_passes: default_max_passes(),
            failure_passes: default_failure_passes(),
            retention: default_retention(),
            lease: default_lease(),
            upload_idle_timeout: default_upload_idle_timeout(),
            prices: None,
            import: Default::default(),
        }
    }
}

fn default_max_upload_bytes() -> u64 {
    50 * 1024 * 1024
}

fn default_max_rows() -> u64 {
    1_000_000
}

fn default_max_running() -> usize {
    4
}

fn default_job_window() -> usize {
    64
}

fn default_quota_share() -> f64 {
    0.8
}

fn default_retry_after() -> Duration {
    Duration::from_secs(60)
}

fn default_failure_passes() -> u32 {
    3
}

/// With the default `retry_after`, a day: caih labels numbers within hours.
fn default_max_passes() -> u32 {
    1_440
}

fn default_lease() -> Duration {
    Duration::from_secs(30)
}

fn default_retention() -> Duration {
    Duration::from_secs(30 * 86_400)
}
