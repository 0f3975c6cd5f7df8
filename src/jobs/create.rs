//! Creating a job: an upload spooled to a file, then read into the store a batch at a time
//! (within the tenant's and the process's import places), and made visible queued or, for a dry
//! run, estimated. Nothing of a job remains if its creation fails or its caller goes away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use tokio::sync::mpsc;

use super::{JobError, Jobs, import};
use crate::pb;
use crate::store::{JobRecord, JobState, JobStore, NewJob};

/// An upload being received: the spool file and its size so far.
#[derive(Debug)]
pub struct Upload {
    pub(super) path: PathBuf,
    pub(super) file: tokio::fs::File,
    pub(super) bytes: u64,
    pub(super) limit: u64,
}

impl Upload {
    /// Appends a chunk; refused as soon as the file passes the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), JobError> {
        use tokio::io::AsyncWriteExt;
        self.bytes += chunk.len() as u64;
        if self.bytes > self.limit {
            return Err(JobError::TooLarge { limit: self.limit });
        }
        self.file.write_all(chunk).await?;
        Ok(())
    }
}

/// A job being created: deleted, with its rows, if its creation is dropped before it finishes
/// (the client cancelled the upload during the import). The delete runs as a task of its own,
/// since a drop cannot wait; if it fails (the store is down) the next start-up, or on a shared
/// store the sweeper, removes the unfinished import.
struct Unfinished {
    store: Arc<dyn JobStore>,
    id: Option<String>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            match store.delete_job(&id).await {
                Ok(_) => tracing::info!(job = %id, "deleted a job whose upload was cancelled"),
                Err(e) => tracing::warn!(
                    job = %id,
                    error = %e,
                    "cannot delete a job whose upload was cancelled; it is removed at the next \
                     start"
                ),
            }
        });
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // The spool file is only ever a step on the way into the store.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where the rows' registration times come from, when a check of `spec` takes one: the column
/// the spec names or the importer finds, with `options.registered_at` for empty cells.
pub(super) fn registered_at_read(
    spec: &pb::BatchJobSpec,
) -> Result<Option<import::RegisteredAtRead>, JobError> {
    let checks = crate::messages::checks_from_proto("spec.checks", &spec.checks)?;
    if !checks.iter().any(|c| c.spec().takes_registration_time) {
        return Ok(None);
    }
    let options = crate::messages::options_from_proto("spec.options", spec.options.clone())?;
    Ok(Some(import::RegisteredAtRead {
        column: spec.registered_at_column.clone(),
        default: options.registered_at(),
    }))
}

impl Jobs {
    /// Starts receiving an upload.
    pub async fn upload(&self) -> Result<Upload, JobError> {
        let path = self.spool.join(format!("{}.upload", uuid::Uuid::now_v7()));
        Ok(Upload {
            file: tokio::fs::File::create(&path).await?,
            path,
            bytes: 0,
            limit: self.config.max_upload_bytes,
        })
    }

    /// Reads the uploaded file into a new job of `tenant` and queues it. Nothing remains of the
    /// job if the file cannot be read or is over a limit.
    pub async fn create(
        &self,
        tenant: &str,
        mut spec: pb::BatchJobSpec,
        upload: Upload,
    ) -> Result<JobRecord, JobError> {
        use tokio::io::AsyncWriteExt;
        if !spec.recheck_of.is_empty() {
            return self.recheck(tenant, spec, upload).await;
        }
        let mut upload = upload;
        if !spec.numbers.is_empty() {
            if upload.bytes > 0 {
                return Err(JobError::invalid(
                    "spec.numbers",
                    "give either numbers in the spec or a file in chunks, not both",
                ));
            }
            let text = std::mem::take(&mut spec.numbers).join("\n");
            upload.write(text.as_bytes()).await?;
            spec.format = pb::FileFormat::Txt as i32;
        }
        upload.file.flush().await?;
        let read = import::ReadSpec {
            file_name: spec.file_name.clone(),
            format: pb::FileFormat::try_from(spec.format).unwrap_or_default(),
            number_column: spec.number_column.clone(),
            sheet: spec.sheet.clone(),
            default_region: spec.default_region.clone(),
            registered_at: registered_at_read(&spec)?,
            max_rows: self.config.max_rows,
            limits: self.config.import.clone(),
        };
        let job = self.new_job(tenant, &spec)?;
        let id = job.id.clone();
        let upload_path = upload.path.clone();
        let made = self
            .make(tenant, &spec, job, |mut job| async move {
                let layout = self.import(tenant, &id, &read, &upload_path).await?;
                job.format = layout.format as i32;
                job.encoding = layout.encoding;
                job.number_column = layout.number_column;
                job.registered_at_column = layout.registered_at_column;
                job.columns = layout.columns;
                job.sheets = layout.sheets;
                Ok(job)
            })
            .await;
        drop(upload);
        made
    }

    /// A new job of `tenant` for `spec`, not stored yet, with its layout still to be read.
    pub(super) fn new_job(
        &self,
        tenant: &str,
        spec: &pb::BatchJobSpec,
    ) -> Result<NewJob, JobError> {
        let max_cost = spec
            .max_cost
            .as_ref()
            .map(|m| crate::messages::money_from_proto("spec.max_cost", m, self.engine.currency()))
            .transpose()?;
        Ok(NewJob {
            id: format!("job_{}", uuid::Uuid::now_v7().simple()),
            tenant: tenant.to_owned(),
            spec: spec.encode_to_vec(),
            format: spec.format,
            encoding: String::new(),
            number_column: String::new(),
            registered_at_column: String::new(),
            columns: Vec::new(),
            sheets: 0,
            created_at: SystemTime::now(),
            max_cost,
        })
    }

    /// Stores `job` (importing, invisible), lets `fill` write its rows and return it with its
    /// layout, then makes it visible ([`Jobs::ready`]) and wakes the runner. If anything fails,
    /// or the caller goes away (this future is dropped), the job and the rows written so far are
    /// deleted.
    pub(super) async fn make<'a, F, Fut>(
        &'a self,
        tenant: &str,
        spec: &pb::BatchJobSpec,
        job: NewJob,
        fill: F,
    ) -> Result<JobRecord, JobError>
    where
        F: FnOnce(NewJob) -> Fut,
        Fut: std::future::Future<Output = Result<NewJob, JobError>> + 'a,
    {
        let id = job.id.clone();
        self.store.create_job(&job).await?;
        let mut unfinished = Unfinished {
            store: self.store.clone(),
            id: Some(id.clone()),
        };
        let made = async {
            let job = fill(job).await?;
            self.ready(&job, tenant, spec).await
        }
        .await;
        if let Err(e) = made {
            self.store.delete_job(&id).await?;
            unfinished.id = None;
            return Err(e);
        }
        unfinished.id = None;
        self.runner.wake();
        self.get(tenant, &id).await
    }

    /// Makes a job whose rows are in visible: queued, or with `dry_run` estimated first.
    async fn ready(
        &self,
        job: &NewJob,
        tenant: &str,
        spec: &pb::BatchJobSpec,
    ) -> Result<(), JobError> {
        if !spec.dry_run {
            self.store.finish_import(job, JobState::Queued).await?;
            return Ok(());
        }
        // Still invisible while its numbers are quoted.
        let counts = self.store.finish_import(job, JobState::Importing).await?;
        let estimate = self.estimate(&job.id, tenant, spec, &counts).await?;
        self.store
            .set_estimate(&job.id, &estimate.encode_to_vec())
            .await?;
        self.store
            .transition(&job.id, &[JobState::Importing], JobState::Estimated, "")
            .await?;
        Ok(())
    }

    /// Reads the file on a blocking thread while the rows are written here, a batch at a time,
    /// once `tenant` has a place among its own imports and then one among the process's.
    async fn import(
        &self,
        tenant: &str,
        id: &str,
        spec: &import::ReadSpec,
        path: &std::path::Path,
    ) -> Result<import::Layout, JobError> {
        let (rows, mut batches) = mpsc::channel(2);
        let engine = self.engine.clone();
        let (spec, path) = (spec.clone(), path.to_owned());
        let closed = |_| JobError::invalid("chunk", "the server is shutting down");
        let tenant_slots = self
            .tenant_import_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.config.import.max_concurrent_per_tenant,
                ))
            })
            .clone();
        let tenant_slot = tenant_slots.acquire_owned().await.map_err(closed)?;
        let slot = self
            .import_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let reader = tokio::task::spawn_blocking(move || {
            // Held until the file is read, even if the caller goes away meanwhile.
            let _slots = (tenant_slot, slot);
            import::read_file(&path, &spec, engine.analyzer(), &mut |batch| {
                rows.blocking_send(batch)
                    .map_err(|_| JobError::invalid("chunk", "the import was abandoned"))
            })
        });
        let mut seq = 0i64;
        let mut written = Ok(());
        while let Some(batch) = batches.recv().await {
            if written.is_ok() {
                written = self.store.add_rows(id, seq, &batch).await;
                seq += batch.len() as i64;
            }
            if written.is_err() {
                // Stop the reader: it fails on its next send.
                batches.close();
            }
        }
        let layout = reader
            .await
            .map_err(|e| JobError::Io(std::io::Error::other(e.to_string())));
        written?;
        layout?
    }
}
