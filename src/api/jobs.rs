//! `phonecheck.v1.BatchJobService`: bulk file jobs over gRPC. Jobs belong to the caller's tenant.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::error::ApiError;
use super::{convert, tenant_of};
use crate::auth::Concurrent;
use crate::jobs::export::{self, ExportRequest};
use crate::jobs::{JobError, Jobs};
use crate::pb;
use crate::pb::batch_job_service_server::BatchJobService;
use crate::store::{ExportFilter, JobRecord};

/// Default and largest page of `ListBatchJobs`.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1_000;
/// Default and largest number of rows of `PreviewBatchJob`.
const DEFAULT_PREVIEW: u32 = 10;
const MAX_PREVIEW: u32 = 100;

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Invalid { field, message } => ApiError::invalid(field, message),
            e @ (JobError::TooManyRows { .. } | JobError::TooLarge { .. }) => {
                let text = e.to_string();
                ApiError::invalid("chunk", text.trim_start_matches("chunk: "))
            }
            ref e @ (JobError::NotStartable { ref id, .. } | JobError::NotEnded { ref id, .. }) => {
                ApiError::FailedPrecondition {
                    kind: "STATE",
                    subject: format!("phonecheck.v1.BatchJob/{id}"),
                    message: e.to_string(),
                }
            }
            JobError::NotFound(id) => ApiError::NotFound {
                kind: "phonecheck.v1.BatchJob",
                name: id,
            },
            e @ (JobError::Store(_) | JobError::Io(_)) => {
                tracing::error!(error = %e, "job store failure");
                ApiError::Unavailable("the job store is unavailable; try again")
            }
        }
    }
}

fn status(e: JobError) -> Status {
    ApiError::from(e).into()
}

/// `phonecheck.v1.BatchJobService`.
#[derive(Debug, Clone)]
pub struct BatchJobApi {
    jobs: Arc<Jobs>,
}

impl BatchJobApi {
    /// The service over the process's jobs.
    pub fn new(jobs: Arc<Jobs>) -> BatchJobApi {
        BatchJobApi { jobs }
    }

    async fn to_proto(&self, job: &JobRecord, with_bad_rows: bool) -> Result<pb::BatchJob, Status> {
        let bad_rows = if with_bad_rows && job.counts.bad_rows > 0 {
            self.jobs.bad_rows(&job.job.id).await.map_err(status)?
        } else {
            Vec::new()
        };
        Ok(job_to_proto(
            job,
            bad_rows,
            self.jobs.expires_at(job),
            self.jobs.engine().currency(),
        ))
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A stored job as the contract shows it.
fn job_to_proto(
    job: &JobRecord,
    bad_rows: Vec<crate::store::BadRowRecord>,
    expires: Option<SystemTime>,
    currency: crate::domain::Currency,
) -> pb::BatchJob {
    let c = &job.counts;
    let remaining = (c.numbers_total - c.numbers_done).max(0);
    let eta = (c.rate > 0.0 && !job.state.is_final())
        .then(|| Duration::from_secs_f64(remaining as f64 / c.rate))
        .and_then(|d| prost_types::Duration::try_from(d).ok());
    pb::BatchJob {
        id: job.job.id.clone(),
        spec: pb::BatchJobSpec::decode(job.job.spec.as_slice()).ok(),
        format: job.job.format,
        encoding: job.job.encoding.clone(),
        number_column: job.job.number_column.clone(),
        registered_at_column: job.job.registered_at_column.clone(),
        state: job.state.to_proto(),
        progress: Some(pb::BatchJobProgress {
            rows_total: c.rows_total,
            rows_done: c.rows_done,
            numbers_total: c.numbers_total,
            numbers_done: c.numbers_done,
            numbers_pending: c.numbers_pending,
            numbers_per_second: if job.state.is_final() { 0.0 } else { c.rate },
            eta,
            line_status_counts: c
                .line_status_rows
                .iter()
                .map(|&(status, count)| pb::LineStatusCount { status, count })
                .collect(),
            bad_rows: c.bad_rows,
            numbers_failed: c.numbers_failed,
            billable_calls: c.billable,
            cache_hits: c.cache_hits,
            cost: Some(crate::messages::money_to_proto(c.cost, currency)),
        }),
        bad_rows: bad_rows
            .into_iter()
            .map(|b| pb::BadRow {
                sheet: b.sheet,
                row: i64::try_from(b.row_no).unwrap_or(i64::MAX),
                reason: b.reason,
            })
            .collect(),
        create_time: Some(timestamp(job.job.created_at)),
        start_time: job.started_at.map(timestamp),
        end_time: job
            .finished_at
            .filter(|_| job.state.is_final())
            .map(timestamp),
        error: job.error.clone(),
        expire_time: expires.map(timestamp),
        estimate: job
            .estimate
            .as_deref()
            .and_then(|e| pb::BatchJobEstimate::decode(e).ok()),
        max_cost: job
            .job
            .max_cost
            .map(|m| crate::messages::money_to_proto(m, currency)),
    }
}

fn job_id(id: &str) -> Result<&str, Status> {
    if id.is_empty() {
        return Err(ApiError::invalid("job_id", "the job id is required").into());
    }
    Ok(id)
}

/// The 0-based column of a job's `number_column` (or `registered_at_column`) as the importer
/// describes it for people,
/// `header (B)` (the letters in the last parentheses), or only `B` for a file without a header.
fn column_index(described: &str) -> Option<usize> {
    let inner = match described.strip_suffix(')').and_then(|s| s.rsplit_once('(')) {
        Some((_, inner)) => inner,
        None => described,
    };
    if inner.is_empty() || inner.len() > 3 || !inner.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let n = inner
        .bytes()
        .fold(0usize, |n, b| n * 26 + usize::from(b - b'A') + 1);
    Some(n - 1)
}

/// The list cursor, as an opaque token.
fn page_token(cursor: &(i64, String)) -> String {
    format!("{}.{}", cursor.0, cursor.1)
}

fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .split_once('.')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_owned())))
        .map(Some)
        .ok_or_else(|| ApiError::invalid("page_token", "not a token this server gave out").into())
}

type ByteStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl BatchJobService for BatchJobApi {
    async fn create_batch_job(
        &self,
        request: Request<Streaming<pb::CreateBatchJobRequest>>,
    ) -> Result<Response<pb::CreateBatchJobResponse>, Status> {
        use pb::create_batch_job_request::Payload;
        let tenant = tenant_of(&request);
        let mut inbound = request.into_inner();
        let spec = match inbound.message().await? {
            Some(pb::CreateBatchJobRequest {
                payload: Some(Payload::Spec(spec)),
            }) => spec,
            _ => {
                return Err(ApiError::invalid(
                    "spec",
                    "the first message must carry the job's spec",
                )
                .into());
            }
        };
        use convert::max_len;
        for (field, value, max) in [
            ("spec.label", &spec.label, max_len::LABEL),
            ("spec.file_name", &spec.file_name, max_len::FILE_NAME),
            ("spec.number_column", &spec.number_column, max_len::COLUMN),
            ("spec.sheet", &spec.sheet, max_len::COLUMN),
            (
                "spec.registered_at_column",
                &spec.registered_at_column,
                max_len::COLUMN,
            ),
            ("spec.default_region", &spec.default_region, max_len::REGION),
            ("spec.recheck_of", &spec.recheck_of, max_len::LABEL),
        ] {
            convert::bounded(field, value, max)?;
        }
        if let Some(i) = spec.numbers.iter().position(|n| n.len() > max_len::NUMBER) {
            convert::bounded(
                &format!("spec.numbers[{i}]"),
                &spec.numbers[i],
                max_len::NUMBER,
            )?;
        }
        let checks = convert::checks_from_proto("spec.checks", &spec.checks)?;
        let options = convert::options_from_proto("spec.options", spec.options.clone())?;
        // A registration time may come from the file's rows: the import decides
        // (`spec.registered_at_column`).
        tenant.authorize("spec.checks", &checks, &options)?;
        if let Err(e) = crate::number::parse_region(&spec.default_region) {
            return Err(ApiError::invalid("spec.default_region", e.to_string()).into());
        }
        if let Some(max_cost) = &spec.max_cost {
            crate::messages::money_from_proto(
                "spec.max_cost",
                max_cost,
                self.jobs.engine().currency(),
            )?;
        }
        if !(0..=4).contains(&spec.format) {
            return Err(ApiError::invalid("spec.format", "not a FileFormat value").into());
        }
        let _place = tenant.open(Concurrent::Upload)?;
        let idle = self.jobs.config().upload_idle_timeout;
        let mut upload = self.jobs.upload().await.map_err(status)?;
        // A client that stops sending loses its upload (the spool file goes with `upload`).
        let idle_out = || {
            Status::deadline_exceeded(format!(
                "the upload sent nothing for {} (jobs.upload_idle_timeout); it was dropped",
                humantime::format_duration(idle)
            ))
        };
        while let Some(message) = tokio::time::timeout(idle, inbound.message())
            .await
            .map_err(|_| idle_out())??
        {
            match message.payload {
                Some(Payload::Chunk(chunk)) => upload.write(&chunk).await.map_err(status)?,
                Some(Payload::Spec(_)) => {
                    return Err(ApiError::invalid(
                        "spec",
                        "only the first message may carry a spec",
                    )
                    .into());
                }
                None => {}
            }
        }
        let job = self
            .jobs
            .create(&tenant.name, spec, upload)
            .await
            .map_err(status)?;
        tracing::info!(job = %job.job.id, rows = job.counts.rows_total, "job created");
        Ok(Response::new(pb::CreateBatchJobResponse {
            job: Some(self.to_proto(&job, true).await?),
        }))
    }

    async fn get_batch_job(
        &self,
        request: Request<pb::GetBatchJobRequest>,
    ) -> Result<Response<pb::GetBatchJobResponse>, Status> {
        let tenant = tenant_of(&request);
        let id = request.into_inner().job_id;
        let job = self
            .jobs
            .get(&tenant.name, job_id(&id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetBatchJobResponse {
            job: Some(self.to_proto(&job, true).await?),
        }))
    }

    async fn list_batch_jobs(
        &self,
        request: Request<pb::ListBatchJobsRequest>,
    ) -> Result<Response<pb::ListBatchJobsResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            n if n < 0 => {
                return Err(ApiError::invalid("page_size", "must not be negative").into());
            }
            n => (n as u32).min(MAX_PAGE),
        };
        let after = parse_page_token(&request.page_token)?;
        let (jobs, next) = self
            .jobs
            .list(&tenant.name, after, size)
            .await
            .map_err(status)?;
        let mut out = Vec::with_capacity(jobs.len());
        for job in &jobs {
            out.push(self.to_proto(job, false).await?);
        }
        Ok(Response::new(pb::ListBatchJobsResponse {
            jobs: out,
            next_page_token: next.as_ref().map(page_token).unwrap_or_default(),
        }))
    }

    async fn cancel_batch_job(
        &self,
        request: Request<pb::CancelBatchJobRequest>,
    ) -> Result<Response<pb::CancelBatchJobResponse>, Status> {
        let tenant = tenant_of(&request);
        let id = request.into_inner().job_id;
        let job = self
            .jobs
            .cancel(&tenant.name, job_id(&id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CancelBatchJobResponse {
            job: Some(self.to_proto(&job, true).await?),
        }))
    }

    async fn delete_batch_job(
        &self,
        request: Request<pb::DeleteBatchJobRequest>,
    ) -> Result<Response<pb::DeleteBatchJobResponse>, Status> {
        let tenant = tenant_of(&request);
        let id = request.into_inner().job_id;
        self.jobs
            .delete(&tenant.name, job_id(&id)?)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteBatchJobResponse {}))
    }

    async fn start_batch_job(
        &self,
        request: Request<pb::StartBatchJobRequest>,
    ) -> Result<Response<pb::StartBatchJobResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let max_cost = request
            .max_cost
            .as_ref()
            .map(|m| {
                crate::messages::money_from_proto("max_cost", m, self.jobs.engine().currency())
            })
            .transpose()?;
        let job = self
            .jobs
            .start_job(&tenant.name, job_id(&request.job_id)?, max_cost)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::StartBatchJobResponse {
            job: Some(self.to_proto(&job, true).await?),
        }))
    }

    async fn preview_batch_job(
        &self,
        request: Request<pb::PreviewBatchJobRequest>,
    ) -> Result<Response<pb::PreviewBatchJobResponse>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let rows = match request.rows {
            0 => DEFAULT_PREVIEW,
            n if n < 0 => return Err(ApiError::invalid("rows", "must not be negative").into()),
            n => u32::try_from(n).unwrap_or(MAX_PREVIEW).min(MAX_PREVIEW),
        };
        let job = self
            .jobs
            .get(&tenant.name, job_id(&request.job_id)?)
            .await
            .map_err(status)?;
        let first = self
            .jobs
            .store()
            .export_rows(&job.job.id, ExportFilter::default(), -1, rows)
            .await
            .map_err(|e| status(JobError::Store(e)))?;
        let index = |described: &str| {
            column_index(described)
                .filter(|&i| i < job.job.columns.len())
                .and_then(|i| i32::try_from(i).ok())
                .unwrap_or(-1)
        };
        Ok(Response::new(pb::PreviewBatchJobResponse {
            columns: job.job.columns.clone(),
            number_column_index: index(&job.job.number_column),
            registered_at_column_index: index(&job.job.registered_at_column),
            rows: first
                .into_iter()
                .map(|row| pb::PreviewRow {
                    sheet: row.sheet,
                    row: i64::try_from(row.row_no).unwrap_or(i64::MAX),
                    cells: row.cells,
                    problem: row.problem.unwrap_or_default(),
                })
                .collect(),
            sheets: i32::try_from(job.job.sheets).unwrap_or(i32::MAX),
        }))
    }

    type WatchBatchJobStream = ByteStream<pb::WatchBatchJobResponse>;

    async fn watch_batch_job(
        &self,
        request: Request<pb::WatchBatchJobRequest>,
    ) -> Result<Response<Self::WatchBatchJobStream>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let interval = match request.interval {
            None => Duration::from_secs(1),
            Some(d) => Duration::try_from(d)
                .map_err(|_| ApiError::invalid("interval", "must not be negative"))?
                .max(Jobs::MIN_WATCH_INTERVAL),
        };
        let id = job_id(&request.job_id)?.to_owned();
        let place = tenant.open(Concurrent::Watch)?;
        // The first answer tells at once whether the job exists.
        let first = self.jobs.get(&tenant.name, &id).await.map_err(status)?;
        let api = self.clone();
        let updates = futures::stream::unfold(
            (Some(first), None::<pb::BatchJob>, false),
            move |(mut next, last, ended)| {
                let api = api.clone();
                let (tenant, id) = (tenant.name.clone(), id.clone());
                // The watch holds its place while the stream lives.
                let _place = &place;
                async move {
                    if ended {
                        return None;
                    }
                    loop {
                        let job = match next.take() {
                            Some(job) => job,
                            None => {
                                tokio::time::sleep(interval).await;
                                match api.jobs.get(&tenant, &id).await {
                                    Ok(job) => job,
                                    Err(e) => return Some((Err(status(e)), (None, last, true))),
                                }
                            }
                        };
                        let done = job.state.is_final();
                        let proto = match api.to_proto(&job, false).await {
                            Ok(p) => p,
                            Err(e) => return Some((Err(e), (None, last, true))),
                        };
                        if last.as_ref() != Some(&proto) || done {
                            let response = pb::WatchBatchJobResponse {
                                job: Some(proto.clone()),
                            };
                            return Some((Ok(response), (None, Some(proto), done)));
                        }
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(updates)))
    }

    type ExportBatchJobResultsStream = ByteStream<pb::ExportBatchJobResultsResponse>;

    async fn export_batch_job_results(
        &self,
        request: Request<pb::ExportBatchJobResultsRequest>,
    ) -> Result<Response<Self::ExportBatchJobResultsStream>, Status> {
        let tenant = tenant_of(&request);
        let request = request.into_inner();
        let format = pb::ExportFormat::try_from(request.format)
            .map_err(|_| ApiError::invalid("format", "not an ExportFormat value"))?;
        let line_status = match pb::LineStatus::try_from(request.line_status) {
            Ok(pb::LineStatus::Unspecified) => None,
            Ok(s) if format != pb::ExportFormat::Html => Some(s as i32),
            Ok(_) => {
                return Err(ApiError::invalid(
                    "line_status",
                    "the HTML report covers every status; choose CSV or XLSX for one category",
                )
                .into());
            }
            Err(_) => return Err(ApiError::invalid("line_status", "not a LineStatus value").into()),
        };
        if request.changed_only && format == pb::ExportFormat::Html {
            return Err(ApiError::invalid(
                "changed_only",
                "the HTML report covers every number; choose CSV or XLSX for the changed ones",
            )
            .into());
        }
        let filter = ExportFilter {
            line_status,
            changed_only: request.changed_only,
        };
        let job = self
            .jobs
            .get(&tenant.name, job_id(&request.job_id)?)
            .await
            .map_err(status)?;
        if request.changed_only && crate::jobs::naming::recheck_of(&job).is_none() {
            return Err(ApiError::invalid(
                "changed_only",
                "the job is not a re-check (BatchJobSpec.recheck_of): nothing to compare with",
            )
            .into());
        }
        let place = tenant.open(Concurrent::Export)?;
        let export = ExportRequest { format, filter };
        let (name, content_type) = export::file_name(&job, &export);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(export::produce(self.jobs.clone(), job, export, tx));
        let mut first = Some((name, content_type));
        let chunks = ReceiverStream::new(rx).map(move |chunk| {
            // The export holds its place until its stream is dropped.
            let _place = &place;
            match chunk {
                Ok(chunk) => {
                    let (file_name, content_type) = first.take().unwrap_or_default();
                    Ok(pb::ExportBatchJobResultsResponse {
                        file_name,
                        content_type: content_type.to_owned(),
                        chunk,
                    })
                }
                Err(e) => Err(status(e)),
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}

#[cfg(test)]
mod tests {
    use super::column_index;

    #[test]
    fn the_number_column_is_found_from_its_description() {
        assert_eq!(column_index("手机号 (B)"), Some(1));
        assert_eq!(column_index("phone (AA)"), Some(26));
        assert_eq!(column_index("C"), Some(2));
        assert_eq!(column_index("a (b) (C)"), Some(2));
        assert_eq!(column_index(""), None);
        assert_eq!(column_index("phone"), None);
        assert_eq!(column_index("x (b)"), None);
    }
}
