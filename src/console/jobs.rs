//! The job pages: the list, a new job (upload, preview, estimate, start), a job's live progress,
//! and its downloads. Each is one or two `BatchJobService` calls with the session's key.

use std::sync::Arc;

use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use serde::Deserialize;

use super::backend::keyed;
use super::pages::form;
use super::session::Signed;
use super::view::{self, Chrome, JobView, page};
use super::{App, ConsoleError};
use crate::pb;

/// A job id is an id, not a text.
const MAX_ID: usize = 128;

pub(crate) fn chrome(signed: &Signed) -> Chrome {
    Chrome {
        lang: signed.lang,
        csrf: Some(signed.csrf.clone()),
    }
}

pub(crate) fn id_of(id: &str) -> Result<String, ConsoleError> {
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConsoleError::Api(tonic::Status::not_found("no such job")));
    }
    Ok(id.to_owned())
}

#[derive(Template)]
#[template(path = "console/jobs.html")]
struct ListPage {
    c: Chrome,
    jobs: Vec<JobView>,
    next: String,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    page: String,
}

/// `GET /jobs`: the tenant's jobs, newest first, 50 a page.
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    signed: Signed,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    if query.page.len() > 256 {
        return Err(ConsoleError::BadRequest("bad page token".to_owned()));
    }
    let request = pb::ListBatchJobsRequest {
        page_size: 50,
        page_token: query.page,
    };
    let response = app
        .backend
        .jobs()
        .list_batch_jobs(keyed(&signed.key, request)?)
        .await?
        .into_inner();
    let jobs = response
        .jobs
        .iter()
        .map(|j| JobView::new(j, signed.lang))
        .collect();
    Ok(page(
        &ListPage {
            c: chrome(&signed),
            jobs,
            next: response.next_page_token,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "console/new.html")]
struct NewPage {
    c: Chrome,
    checks: Vec<(&'static str, &'static str)>,
}

/// `GET /jobs/new`: the upload form.
pub(crate) async fn new_job(signed: Signed) -> Response {
    let checks = view::check_choices(signed.lang);
    page(
        &NewPage {
            c: chrome(&signed),
            checks,
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "console/job.html")]
struct JobPage {
    c: Chrome,
    job: JobView,
    preview: Option<PreviewView>,
    downloads: Vec<(String, &'static str)>,
}

#[derive(Template)]
#[template(path = "console/live.html")]
struct LivePage {
    c: Chrome,
    job: JobView,
}

#[derive(Template)]
#[template(path = "console/preview.html")]
struct PreviewPage {
    c: Chrome,
    job: JobView,
    preview: Option<PreviewView>,
}

/// A row of the preview: sheet, row number, cells (with whether each is the number column), and
/// why it holds no number.
type PreviewRow = (String, i64, Vec<(String, bool)>, String);

/// The first rows of a job's file.
pub(crate) struct PreviewView {
    columns: Vec<(usize, String, bool)>,
    rows: Vec<PreviewRow>,
    sheets: i32,
}

async fn get_job(app: &App, signed: &Signed, id: &str) -> Result<pb::BatchJob, ConsoleError> {
    let request = pb::GetBatchJobRequest { job_id: id_of(id)? };
    Ok(app
        .backend
        .jobs()
        .get_batch_job(keyed(&signed.key, request)?)
        .await?
        .into_inner()
        .job
        .unwrap_or_default())
}

async fn get_preview(app: &App, signed: &Signed, id: &str) -> Result<PreviewView, ConsoleError> {
    let request = pb::PreviewBatchJobRequest {
        job_id: id_of(id)?,
        rows: 10,
    };
    let preview = app
        .backend
        .jobs()
        .preview_batch_job(keyed(&signed.key, request)?)
        .await?
        .into_inner();
    let chosen = usize::try_from(preview.number_column_index).ok();
    Ok(PreviewView {
        columns: preview
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (i + 1, c.clone(), Some(i) == chosen))
            .collect(),
        rows: preview
            .rows
            .into_iter()
            .map(|r| {
                let cells = r
                    .cells
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| (c, Some(i) == chosen))
                    .collect();
                (r.sheet, r.row, cells, r.problem)
            })
            .collect(),
        sheets: preview.sheets,
    })
}

/// What a job's results can be downloaded as: (query, label).
fn downloads(job: &JobView, signed: &Signed) -> Vec<(String, &'static str)> {
    let lang = signed.lang;
    let mut links = vec![
        ("format=csv".to_owned(), lang.t("download.csv_all")),
        ("format=xlsx".to_owned(), lang.t("download.xlsx_all")),
        ("format=html".to_owned(), lang.t("download.report")),
    ];
    for (code, label, _) in &job.counts {
        links.push((format!("format=csv&status={code}"), label));
        links.push((format!("format=xlsx&status={code}"), label));
    }
    links
}

/// `GET /jobs/{id}`: a job, live while it runs.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let job = JobView::new(&get_job(&app, &signed, &id).await?, signed.lang);
    let preview = if job.estimated {
        Some(get_preview(&app, &signed, &id).await?)
    } else {
        None
    };
    let downloads = if job.estimated {
        Vec::new()
    } else {
        downloads(&job, &signed)
    };
    Ok(page(
        &JobPage {
            c: chrome(&signed),
            job,
            preview,
            downloads,
        },
        StatusCode::OK,
    ))
}

/// `GET /jobs/{id}/live`: the progress part of the job page, which the script polls.
pub(crate) async fn live(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let job = JobView::new(&get_job(&app, &signed, &id).await?, signed.lang);
    Ok(page(
        &LivePage {
            c: chrome(&signed),
            job,
        },
        StatusCode::OK,
    ))
}

/// `GET /jobs/{id}/preview`: what was read and what it would cost, shown on the new-job page
/// after the upload.
pub(crate) async fn preview(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let job = JobView::new(&get_job(&app, &signed, &id).await?, signed.lang);
    let preview = Some(get_preview(&app, &signed, &id).await?);
    Ok(page(
        &PreviewPage {
            c: chrome(&signed),
            job,
            preview,
        },
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    max_cost: String,
}

/// `POST /jobs/{id}/start`: runs an estimated job, or raises a paused one's `max_cost`.
pub(crate) async fn start(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form: StartForm = form(&body)?;
    signed.check_csrf(&form.csrf)?;
    let request = pb::StartBatchJobRequest {
        job_id: id_of(&id)?,
        max_cost: view::parse_money(&form.max_cost).map_err(ConsoleError::BadRequest)?,
    };
    app.backend
        .jobs()
        .start_batch_job(keyed(&signed.key, request)?)
        .await?;
    Ok(Redirect::to(&format!("/jobs/{}", id_of(&id)?)).into_response())
}

/// `POST /jobs/{id}/cancel`.
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form: StartForm = form(&body)?;
    signed.check_csrf(&form.csrf)?;
    let request = pb::CancelBatchJobRequest {
        job_id: id_of(&id)?,
    };
    app.backend
        .jobs()
        .cancel_batch_job(keyed(&signed.key, request)?)
        .await?;
    Ok(Redirect::to(&format!("/jobs/{}", id_of(&id)?)).into_response())
}

/// `POST /jobs/{id}/delete`: from the script (when a file is read again with another column) or
/// the job page.
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let header_token = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    let token = match header_token {
        Some(t) => t.to_owned(),
        None => form::<StartForm>(&body)?.csrf,
    };
    signed.check_csrf(&token)?;
    let request = pb::DeleteBatchJobRequest {
        job_id: id_of(&id)?,
    };
    app.backend
        .jobs()
        .delete_batch_job(keyed(&signed.key, request)?)
        .await?;
    Ok(Redirect::to("/jobs").into_response())
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    format: String,
    #[serde(default)]
    status: String,
}

/// A file name safe in a `Content-Disposition` header.
fn safe_file_name(name: &str) -> String {
    let name: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.trim_matches('.').is_empty() {
        "export".to_owned()
    } else {
        name
    }
}

/// `GET /jobs/{id}/download`: streams `ExportBatchJobResults` into the answer as it comes.
pub(crate) async fn download(
    State(app): State<Arc<App>>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<DownloadQuery>,
) -> Result<Response, ConsoleError> {
    let format = match query.format.as_str() {
        "" | "csv" => pb::ExportFormat::Csv,
        "xlsx" => pb::ExportFormat::Xlsx,
        "html" => pb::ExportFormat::Html,
        _ => return Err(ConsoleError::BadRequest("unknown format".to_owned())),
    };
    let line_status = match query.status.as_str() {
        "" => pb::LineStatus::Unspecified,
        code => view::status_from_code(code)
            .ok_or_else(|| ConsoleError::BadRequest("unknown status".to_owned()))?,
    };
    let request = pb::ExportBatchJobResultsRequest {
        job_id: id_of(&id)?,
        format: format as i32,
        line_status: line_status as i32,
        changed_only: false,
    };
    let mut stream = app
        .backend
        .jobs()
        .export_batch_job_results(keyed(&signed.key, request)?)
        .await?
        .into_inner();
    // The first chunk names the file; errors before it are shown as a page.
    let first = stream
        .message()
        .await?
        .ok_or_else(|| ConsoleError::Api(tonic::Status::unavailable("the export was empty")))?;
    let name = safe_file_name(&first.file_name);
    let content_type = HeaderValue::from_str(&first.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let rest = stream.map(|m| m.map(|m| Bytes::from(m.chunk)));
    let body = Body::from_stream(
        futures::stream::once(async move { Ok::<_, tonic::Status>(Bytes::from(first.chunk)) })
            .chain(rest),
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if format == pb::ExportFormat::Html {
        // The report carries its own inline styles; opened here it may run nothing and fetch
        // nothing.
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox",
            ),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_cleaned() {
        assert_eq!(safe_file_name("job_1-empty.csv"), "job_1-empty.csv");
        assert_eq!(safe_file_name("a\"b\r\n.csv"), "a_b__.csv");
        assert_eq!(safe_file_name(".."), "export");
        assert!(id_of("job_01abc").is_ok());
        assert!(id_of("../x").is_err());
        assert!(id_of("").is_err());
    }
}
