//! Re-checks: a new job over an earlier job's rows (`BatchJobSpec.recheck_of`), with each
//! number's earlier line status kept beside the new one. Numbers go empty every day, so a cleaned
//! list goes stale; a re-check asks again only what is older than `options.max_cache_age` and says
//! what changed.

use prost::Message;

use super::{JobError, Jobs, Upload};
use crate::pb;
use crate::store::{JobRecord, JobState, NewJob};

impl Jobs {
    /// Creates the re-check `spec` of `tenant` (its `recheck_of` set): the earlier job's rows,
    /// columns and layout, then queued or, with `dry_run`, estimated. `upload` must be empty.
    pub(super) async fn recheck(
        &self,
        tenant: &str,
        mut spec: pb::BatchJobSpec,
        upload: Upload,
    ) -> Result<JobRecord, JobError> {
        if upload.bytes > 0 || !spec.numbers.is_empty() {
            return Err(JobError::invalid(
                "spec.recheck_of",
                "a re-check reads the earlier job's rows: send no file and no numbers",
            ));
        }
        drop(upload);
        // Another tenant's job, or one deleted or past its retention, is not found (the sweeper
        // deletes expired jobs within the hour; until then they are refused here).
        let earlier = self.get(tenant, &spec.recheck_of).await?;
        let expired = self
            .expires_at(&earlier)
            .is_some_and(|until| until <= std::time::SystemTime::now());
        if expired {
            return Err(JobError::NotFound(earlier.job.id));
        }
        if !matches!(
            earlier.state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            return Err(JobError::NotEnded {
                id: earlier.job.id,
                state: earlier.state,
            });
        }
        // The rows were read, and their numbers analysed, with the earlier spec: the new job
        // reads them the same way, and a different way asked for is refused, not ignored.
        let before = pb::BatchJobSpec::decode(earlier.job.spec.as_slice()).unwrap_or_default();
        // Every number of a job that took registration times carries its own (read from its row,
        // or the job's one time), which comes with the numbers; a job that took none has none.
        let had_times = super::create::registered_at_read(&before)
            .ok()
            .flatten()
            .is_some();
        for (field, asked, was) in [
            (
                "spec.default_region",
                &spec.default_region,
                &before.default_region,
            ),
            (
                "spec.number_column",
                &spec.number_column,
                &before.number_column,
            ),
            ("spec.sheet", &spec.sheet, &before.sheet),
            (
                "spec.registered_at_column",
                &spec.registered_at_column,
                &before.registered_at_column,
            ),
        ] {
            if !asked.is_empty() && asked != was {
                return Err(JobError::invalid(
                    field,
                    "a re-check reads the earlier job's rows as they were read; leave it empty",
                ));
            }
        }
        spec.format = earlier.job.format;
        spec.default_region = before.default_region;
        spec.number_column = before.number_column;
        spec.sheet = before.sheet;
        spec.registered_at_column = before.registered_at_column;
        let wants_time =
            super::create::registered_at_read(&spec)?.is_some_and(|read| read.default.is_none());
        if wants_time && !had_times {
            return Err(JobError::invalid(
                "spec.registered_at_column",
                "a check of the re-check takes each number's registration time, and the earlier \
                 job took none: give one for every row in spec.options.registered_at",
            ));
        }
        if spec.file_name.is_empty() {
            spec.file_name = before.file_name;
        }
        let job = NewJob {
            encoding: earlier.job.encoding.clone(),
            number_column: earlier.job.number_column.clone(),
            registered_at_column: earlier.job.registered_at_column.clone(),
            columns: earlier.job.columns.clone(),
            sheets: earlier.job.sheets,
            ..self.new_job(tenant, &spec)?
        };
        let from = earlier.job.id;
        self.make(tenant, &spec, job, |job| async move {
            match self.store.copy_rows(&from, &job.id).await {
                Err(crate::store::StoreError::JobGone(_)) => Err(JobError::NotFound(from)),
                copied => copied.map(|()| job).map_err(JobError::from),
            }
        })
        .await
    }
}
