//! An upload: the request body streamed, piece by piece, into `CreateBatchJob`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::App;
use super::backend::keyed;
use super::pages::api_status;
use super::session::Signed;
use super::view::{self, json};
use crate::pb;

/// The largest piece of a file sent in one `CreateBatchJob` message.
const UPLOAD_PIECE: usize = 256 * 1024;
/// After the API refused an upload part-way, how much more of the request the console reads (and
/// drops) so that the browser gets the answer rather than a reset connection, and for how long.
const DRAIN_BYTES: u64 = 256 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(60);

/// The upload's settings, in the query string (the body is the file itself).
#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    column: String,
    #[serde(default)]
    sheet: String,
    #[serde(default)]
    registered_at_column: String,
    /// Comma-separated check codes (`line-status,spam-labels`).
    #[serde(default)]
    checks: String,
    #[serde(default)]
    max_cost: String,
}

/// `POST /jobs/upload`: streams the request body, piece by piece, into `CreateBatchJob` as a dry
/// run (the job waits, estimated, for its start). The answer is JSON: the new job's id, or the
/// API's refusal in words. A dropped connection ends the call without a job: the upload can
/// simply be made again.
pub(crate) async fn upload(
    State(app): State<Arc<App>>,
    signed: Signed,
    headers: HeaderMap,
    Query(query): Query<UploadQuery>,
    body: Body,
) -> Response {
    let lang = signed.lang;
    let refuse = |status: StatusCode, message: String| json(status, json!({ "error": message }));
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Err(e) = signed.check_csrf(token) {
        return refuse(StatusCode::FORBIDDEN, e.to_string());
    }
    let mut checks = Vec::new();
    for code in query.checks.split(',').filter(|c| !c.is_empty()) {
        match view::check_from_code(code) {
            Some(check) => checks.push(check),
            None => return refuse(StatusCode::BAD_REQUEST, format!("unknown check {code:?}")),
        }
    }
    let max_cost = match view::parse_money(&query.max_cost) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let spec = pb::BatchJobSpec {
        file_name: query.name,
        number_column: query.column,
        sheet: query.sheet,
        registered_at_column: query.registered_at_column,
        label: query.label,
        checks,
        max_cost,
        dry_run: true,
        ..Default::default()
    };
    // The file's pieces follow the spec; a broken connection stops the stream without ending
    // it, and the call is then dropped (no job is created from part of a file).
    let (broken_tx, broken) = tokio::sync::oneshot::channel::<()>();
    let mut broken_tx = Some(broken_tx);
    let mut data = body.into_data_stream();
    let pieces = async_stream(move |tx| async move {
        while let Some(next) = data.next().await {
            match next {
                Ok(bytes) => {
                    for piece in bytes.chunks(UPLOAD_PIECE) {
                        let message = pb::CreateBatchJobRequest {
                            payload: Some(pb::create_batch_job_request::Payload::Chunk(
                                piece.to_vec(),
                            )),
                        };
                        if tx.send(message).await.is_err() {
                            return data;
                        }
                    }
                }
                Err(_) => {
                    if let Some(b) = broken_tx.take() {
                        let _ = b.send(());
                    }
                    std::future::pending::<()>().await;
                }
            }
        }
        data
    });
    let (messages, rest) = pieces;
    let first = pb::CreateBatchJobRequest {
        payload: Some(pb::create_batch_job_request::Payload::Spec(spec)),
    };
    let stream = futures::stream::once(async { first }).chain(messages);
    let request = match keyed(&signed.key, stream) {
        Ok(r) => r,
        Err(s) => return refuse(StatusCode::UNAUTHORIZED, s.message().to_owned()),
    };
    let mut client = app.backend.jobs();
    let created = tokio::select! {
        created = client.create_batch_job(request) => created,
        Ok(()) = broken => {
            return refuse(StatusCode::BAD_REQUEST, lang.t("upload.broken").to_owned());
        }
    };
    match created {
        Ok(response) => {
            let id = response.into_inner().job.map(|j| j.id).unwrap_or_default();
            json(StatusCode::OK, json!({ "id": id }))
        }
        Err(status) => {
            // The browser is perhaps still sending: read the rest (within bounds) so that it
            // gets this answer.
            drain(rest).await;
            let (code, title) = api_status(&status);
            refuse(code, format!("{}: {}", lang.t(title), status.message()))
        }
    }
}

/// Runs `produce` with a sender of messages; returns the receiving stream and a handle that
/// yields what `produce` gives back (the rest of the request body) once it ends.
fn async_stream<F, Fut>(
    produce: F,
) -> (
    tokio_stream::wrappers::ReceiverStream<pb::CreateBatchJobRequest>,
    tokio::task::JoinHandle<axum::body::BodyDataStream>,
)
where
    F: FnOnce(tokio::sync::mpsc::Sender<pb::CreateBatchJobRequest>) -> Fut,
    Fut: std::future::Future<Output = axum::body::BodyDataStream> + Send + 'static,
{
    // One message in flight: the request is read only as fast as the importer takes it.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let handle = tokio::spawn(produce(tx));
    (tokio_stream::wrappers::ReceiverStream::new(rx), handle)
}

/// Reads and drops what is left of an upload, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(rest: tokio::task::JoinHandle<axum::body::BodyDataStream>) {
    let deadline = Instant::now() + DRAIN_TIME;
    let Ok(Ok(mut data)) = tokio::time::timeout(Duration::from_secs(1), rest).await else {
        return;
    };
    let mut read = 0u64;
    while read < DRAIN_BYTES {
        match tokio::time::timeout_at(deadline.into(), data.next()).await {
            Ok(Some(Ok(bytes))) => read += bytes.len() as u64,
            _ => return,
        }
    }
}
