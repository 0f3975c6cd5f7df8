//! `phonecheck job ...`: bulk file jobs through a running server.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CliError;
use crate::domain::Check;
use crate::pb;
use crate::pb::batch_job_service_client::BatchJobServiceClient;

/// Size of the upload chunks.
const CHUNK: usize = 256 * 1024;

/// Where the server is and who calls it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "PHONECHECK_SERVER"
    )]
    pub server: String,
    /// The API key, when the server requires one.
    #[arg(long, env = "PHONECHECK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `phonecheck job ...`.
#[derive(Debug, clap::Subcommand)]
pub enum JobCommand {
    /// Upload a file (TXT, CSV, XLSX, XLS) as a new job, then follow its progress (with
    /// `--dry-run`: print what it would cost, and run it later with `job start`).
    #[command(alias = "create")]
    Submit {
        /// The file.
        file: PathBuf,
        /// A paid check to run; repeat for several.
        #[arg(long = "check", value_name = "CHECK")]
        checks: Vec<Check>,
        /// Region for numbers without a country code.
        #[arg(long, default_value = "CN")]
        region: String,
        /// The number column: header name, letter or 1-based number (detected when absent).
        #[arg(long)]
        column: Option<String>,
        /// The sheet of a workbook (every sheet when absent).
        #[arg(long)]
        sheet: Option<String>,
        /// A label for the job.
        #[arg(long)]
        label: Option<String>,
        /// Return once the job is created instead of following it.
        #[arg(long)]
        no_follow: bool,
        /// Only import the file and estimate the cost; `job start` runs it.
        #[arg(long)]
        dry_run: bool,
        /// The most the job may spend, in the server's billing currency (`12.50`).
        #[arg(long, value_parser = super::estimate::parse_max_cost)]
        max_cost: Option<pb::google_type::Money>,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run an estimated job (from its stored rows), or resume one paused at its max_cost with a
    /// higher `--max-cost`; then follow its progress.
    Start {
        /// The job's id.
        id: String,
        /// A new limit, in the server's billing currency (`12.50`).
        #[arg(long, value_parser = super::estimate::parse_max_cost)]
        max_cost: Option<pb::google_type::Money>,
        /// Return once the job is started instead of following it.
        #[arg(long)]
        no_follow: bool,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a job.
    Status {
        /// The job's id.
        id: String,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Follow a job's progress until it ends.
    Watch {
        /// The job's id.
        id: String,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List your jobs, newest first.
    List {
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Cancel a job (its results so far are kept).
    Cancel {
        /// The job's id.
        id: String,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a job with its rows and results.
    Delete {
        /// The job's id.
        id: String,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Export a job's results: CSV, XLSX, or the HTML report.
    Export {
        /// The job's id.
        id: String,
        /// Only rows whose number has this line status (`empty`, `active`, ...).
        #[arg(long)]
        status: Option<String>,
        /// A re-check's: only rows whose line status changed since the earlier job.
        #[arg(long)]
        changed_only: bool,
        /// The format.
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
        format: ExportFormatArg,
        /// The file to write.
        #[arg(short = 'o', long)]
        out: PathBuf,
        /// The server.
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `--format` of `job export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormatArg {
    /// CSV (UTF-8 with BOM).
    Csv,
    /// Excel workbook.
    Xlsx,
    /// Self-contained HTML report.
    Html,
}

/// Adds the API key to every call.
#[derive(Debug, Clone)]
pub struct ApiKey(Option<MetadataValue<Ascii>>);

impl Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = BatchJobServiceClient<InterceptedService<Channel, ApiKey>>;

async fn connect(args: &ServerArgs) -> Result<Client, CliError> {
    let (channel, key) = channel(args).await?;
    Ok(BatchJobServiceClient::with_interceptor(channel, key).max_decoding_message_size(16 << 20))
}

/// A connection to the server and the API key to send on it.
pub(super) async fn channel(args: &ServerArgs) -> Result<(Channel, ApiKey), CliError> {
    let key = match &args.api_key {
        Some(key) => Some(format!("Bearer {key}").parse().map_err(|_| {
            CliError::Usage("the API key has characters a header cannot carry".into())
        })?),
        None => None,
    };
    let channel = Channel::from_shared(args.server.clone())
        .map_err(|e| CliError::Usage(format!("--server: {e}")))?
        .connect()
        .await
        .map_err(|source| CliError::Connect {
            server: args.server.clone(),
            source,
        })?;
    Ok((channel, ApiKey(key)))
}

pub(super) async fn run(command: JobCommand) -> Result<(), CliError> {
    match command {
        JobCommand::Submit {
            file,
            checks,
            region,
            column,
            sheet,
            label,
            no_follow,
            dry_run,
            max_cost,
            server,
        } => {
            let mut client = connect(&server).await?;
            let spec = pb::BatchJobSpec {
                file_name: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                number_column: column.unwrap_or_default(),
                sheet: sheet.unwrap_or_default(),
                default_region: region,
                checks: checks
                    .into_iter()
                    .map(|c| crate::messages::check_to_proto(c) as i32)
                    .collect(),
                label: label.unwrap_or_default(),
                dry_run,
                max_cost,
                ..Default::default()
            };
            let job = submit(&mut client, &file, spec).await?;
            println!(
                "job {} created: {} rows, {} distinct numbers, {} bad rows",
                job.id,
                progress(&job).rows_total,
                progress(&job).numbers_total,
                progress(&job).bad_rows
            );
            if dry_run {
                super::estimate::print_money(&job);
                println!("run it with: phonecheck job start {}", job.id);
                return Ok(());
            }
            if no_follow {
                return Ok(());
            }
            let job = follow(&mut client, &job.id).await?;
            print_job(&job);
            Ok(())
        }
        JobCommand::Start {
            id,
            max_cost,
            no_follow,
            server,
        } => {
            let mut client = connect(&server).await?;
            let job = client
                .start_batch_job(pb::StartBatchJobRequest {
                    job_id: id,
                    max_cost,
                })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            println!("job {} started", job.id);
            if no_follow {
                print_job(&job);
                return Ok(());
            }
            let job = follow(&mut client, &job.id).await?;
            print_job(&job);
            Ok(())
        }
        JobCommand::Status { id, server } => {
            let mut client = connect(&server).await?;
            let job = client
                .get_batch_job(pb::GetBatchJobRequest { job_id: id })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            print_job(&job);
            Ok(())
        }
        JobCommand::Watch { id, server } => {
            let mut client = connect(&server).await?;
            let job = follow(&mut client, &id).await?;
            print_job(&job);
            Ok(())
        }
        JobCommand::List { server } => {
            let mut client = connect(&server).await?;
            let mut token = String::new();
            println!(
                "{:<38} {:<10} {:>10} {:>10}  label / file",
                "id", "state", "rows", "done"
            );
            loop {
                let page = client
                    .list_batch_jobs(pb::ListBatchJobsRequest {
                        page_size: 100,
                        page_token: token,
                    })
                    .await?
                    .into_inner();
                for job in &page.jobs {
                    let p = progress(job);
                    let spec = job.spec.clone().unwrap_or_default();
                    println!(
                        "{:<38} {:<10} {:>10} {:>10}  {}",
                        job.id,
                        state_name(job.state),
                        p.rows_total,
                        p.rows_done,
                        if spec.label.is_empty() {
                            spec.file_name
                        } else {
                            spec.label
                        }
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                token = page.next_page_token;
            }
        }
        JobCommand::Cancel { id, server } => {
            let mut client = connect(&server).await?;
            let job = client
                .cancel_batch_job(pb::CancelBatchJobRequest { job_id: id })
                .await?
                .into_inner()
                .job
                .unwrap_or_default();
            print_job(&job);
            Ok(())
        }
        JobCommand::Delete { id, server } => {
            let mut client = connect(&server).await?;
            client
                .delete_batch_job(pb::DeleteBatchJobRequest { job_id: id.clone() })
                .await?;
            println!("job {id} deleted");
            Ok(())
        }
        JobCommand::Export {
            id,
            status,
            changed_only,
            format,
            out,
            server,
        } => {
            let line_status = match status {
                None => pb::LineStatus::Unspecified,
                Some(s) => {
                    let name = format!(
                        "LINE_STATUS_{}",
                        s.trim().to_ascii_uppercase().replace([' ', '-'], "_")
                    );
                    pb::LineStatus::from_str_name(&name)
                        .filter(|s| *s != pb::LineStatus::Unspecified)
                        .ok_or_else(|| CliError::Usage(format!(
                            "--status {s:?}: use one of active, empty, suspended, silent, risk, powered-off, no-record, invalid"
                        )))?
                }
            };
            let format = match format {
                ExportFormatArg::Csv => pb::ExportFormat::Csv,
                ExportFormatArg::Xlsx => pb::ExportFormat::Xlsx,
                ExportFormatArg::Html => pb::ExportFormat::Html,
            };
            let mut client = connect(&server).await?;
            let mut chunks = client
                .export_batch_job_results(pb::ExportBatchJobResultsRequest {
                    job_id: id,
                    format: format as i32,
                    line_status: line_status as i32,
                    changed_only,
                })
                .await?
                .into_inner();
            // Written next to the target and renamed at the end: no half-written file remains.
            let partial = out.with_extension("part");
            let mut file = tokio::fs::File::create(&partial).await?;
            let mut bytes = 0usize;
            let result = async {
                while let Some(chunk) = chunks.message().await? {
                    bytes += chunk.chunk.len();
                    file.write_all(&chunk.chunk).await?;
                }
                file.flush().await?;
                Ok::<(), CliError>(())
            }
            .await;
            if let Err(e) = result {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
            tokio::fs::rename(&partial, &out).await?;
            println!("wrote {} ({bytes} bytes)", out.display());
            Ok(())
        }
    }
}

fn progress(job: &pb::BatchJob) -> pb::BatchJobProgress {
    job.progress.clone().unwrap_or_default()
}

fn state_name(state: i32) -> String {
    pb::BatchJobState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("BATCH_JOB_STATE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Uploads `file` with a progress bar.
async fn submit(
    client: &mut Client,
    file: &PathBuf,
    spec: pb::BatchJobSpec,
) -> Result<pb::BatchJob, CliError> {
    use pb::create_batch_job_request::Payload;
    let mut reader = tokio::fs::File::open(file).await?;
    let size = reader.metadata().await?.len();
    let bar = ProgressBar::new(size).with_style(
        ProgressStyle::with_template("upload {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::CreateBatchJobRequest {
        payload: Some(Payload::Spec(spec)),
    })
    .await
    .map_err(|_| CliError::Usage("upload stopped".into()))?;
    let uploading = bar.clone();
    let sender = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            uploading.inc(n as u64);
            let message = pb::CreateBatchJobRequest {
                payload: Some(Payload::Chunk(buf[..n].to_vec())),
            };
            if tx.send(message).await.is_err() {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    });
    let response = client
        .create_batch_job(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    bar.finish_and_clear();
    sender.await.map_err(|e| CliError::Usage(e.to_string()))??;
    Ok(response?.into_inner().job.unwrap_or_default())
}

/// Follows a job with a progress bar until it ends; returns it as it ended.
async fn follow(client: &mut Client, id: &str) -> Result<pb::BatchJob, CliError> {
    let mut updates = client
        .watch_batch_job(pb::WatchBatchJobRequest {
            job_id: id.to_owned(),
            interval: prost_types::Duration::try_from(Duration::from_millis(500)).ok(),
        })
        .await?
        .into_inner();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("check  {bar:40} {pos}/{len} numbers {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut last = pb::BatchJob::default();
    while let Some(update) = updates.message().await? {
        let job = update.job.unwrap_or_default();
        let p = progress(&job);
        bar.set_length(p.numbers_total.max(0) as u64);
        bar.set_position(p.numbers_done.max(0) as u64);
        let eta = p
            .eta
            .and_then(|d| Duration::try_from(d).ok())
            .map(|d| {
                format!(
                    ", ETA {}",
                    humantime::format_duration(Duration::from_secs(d.as_secs()))
                )
            })
            .unwrap_or_default();
        let paused = if job.state == pb::BatchJobState::Paused as i32 {
            format!(" — paused: {}", job.error)
        } else {
            String::new()
        };
        bar.set_message(format!(
            "{:.0}/s{eta}, {} billable ({}), {} pending{paused}",
            p.numbers_per_second,
            p.billable_calls,
            super::money_text(p.cost.as_ref()),
            p.numbers_pending
        ));
        // A job paused at its max_cost waits for `job start --max-cost`, not for time.
        let waits_for_a_client = job.state == pb::BatchJobState::Estimated as i32
            || (job.state == pb::BatchJobState::Paused as i32 && job.error.starts_with("max_cost"));
        last = job;
        if waits_for_a_client {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(last)
}

fn print_job(job: &pb::BatchJob) {
    let p = progress(job);
    let spec = job.spec.clone().unwrap_or_default();
    println!("job       {}", job.id);
    println!(
        "state     {}{}",
        state_name(job.state),
        if job.error.is_empty() {
            String::new()
        } else {
            format!(" ({})", job.error)
        }
    );
    println!(
        "file      {} ({}{}, column {})",
        spec.file_name,
        pb::FileFormat::try_from(job.format)
            .map(|f| f
                .as_str_name()
                .trim_start_matches("FILE_FORMAT_")
                .to_owned())
            .unwrap_or_default(),
        if job.encoding.is_empty() {
            String::new()
        } else {
            format!(", {}", job.encoding)
        },
        job.number_column
    );
    println!(
        "rows      {} ({} done, {} without a number)",
        p.rows_total, p.rows_done, p.bad_rows
    );
    println!(
        "numbers   {} distinct ({} done, {} pending, {} failed)",
        p.numbers_total, p.numbers_done, p.numbers_pending, p.numbers_failed
    );
    println!(
        "billable  {} vendor calls costing {}, {} answers from the cache",
        p.billable_calls,
        super::money_text(p.cost.as_ref()),
        p.cache_hits
    );
    for c in &p.line_status_counts {
        let name = pb::LineStatus::try_from(c.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("LINE_STATUS_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        println!(
            "  {:<12} {}",
            if name == "unspecified" {
                "no status".to_owned()
            } else {
                name
            },
            c.count
        );
    }
    for bad in job.bad_rows.iter().take(10) {
        let sheet = if bad.sheet.is_empty() {
            String::new()
        } else {
            format!("{} ", bad.sheet)
        };
        println!("  bad row {sheet}{}: {}", bad.row, bad.reason);
    }
    super::estimate::print_money(job);
    if p.bad_rows > 10 {
        println!("  ... {} more bad rows (see the export)", p.bad_rows - 10);
    }
}
