//! Spawns the real server on 127.0.0.1:0 (and simulators) for integration tests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::pb::phone_check_service_client::PhoneCheckServiceClient;
use phonecheck::sim::{SimConfig, SimServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub mod console;
pub mod h2;
mod process;
mod redis;
mod vendor_configs;
pub mod webdriver;
#[allow(unused_imports)] // test binaries besides `it` include this module and use part of it
pub use process::*;
#[allow(unused_imports)]
pub use redis::Redis;
// The test binaries of their own (`route_spread`, ...) use none of them.
#[allow(unused_imports)]
pub use vendor_configs::*;

/// A running phonecheck server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The web console's address, when started with [`TestServer::with_console`].
    pub console: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), phonecheck::ServeError>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Binds 127.0.0.1:0, then serves `config` on it, with its state in a fresh directory.
    pub async fn start(config: Config) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(config, dir.path()).await.keep_dir(dir)
    }

    /// Like `start`, with the state in `data_dir` (to restart on the same state).
    pub async fn start_in(mut config: Config, data_dir: &Path) -> TestServer {
        config.storage.data_dir = data_dir.to_owned();
        Self::start_with_dir(config, None).await
    }

    pub fn keep_dir(mut self, dir: tempfile::TempDir) -> TestServer {
        self._dir = Some(dir);
        self
    }

    async fn start_with_dir(config: Config, dir: Option<tempfile::TempDir>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(phonecheck::serve(listener, config, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            console: None,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// The sandbox: no providers configured.
    pub async fn sandbox() -> TestServer {
        Self::start(Config::from_toml("").unwrap()).await
    }

    /// A live Thinksms provider pointed at `sim`, signing with `private_key`.
    pub async fn thinksms(sim: &SimServer, hashcode: &str, private_key: &str) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("thinksms.key");
        std::fs::write(&key, private_key).unwrap();
        let config = thinksms_config(&sim.base_url(), hashcode, &key);
        Self::start_in(config, dir.path()).await.keep_dir(dir)
    }

    pub fn channel(&self) -> Channel {
        // Connecting lazily means no readiness wait: the listener is already bound.
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_lazy()
    }

    pub fn client(&self) -> PhoneCheckServiceClient<Channel> {
        PhoneCheckServiceClient::new(self.channel())
    }

    /// Signals shutdown and waits for the server to stop.
    pub async fn stop(mut self) -> Result<(), phonecheck::ServeError> {
        self.signal_stop();
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("server stops within 30 s")
            .expect("server task did not panic")
    }

    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn join(mut self) -> Result<(), phonecheck::ServeError> {
        (&mut self.task).await.expect("server task did not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

pub fn thinksms_config(base_url: &str, hashcode: &str, key_file: &Path) -> Config {
    Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [providers.thinksms]
        type = "thinksms"
        base_url = "{base_url}"
        hashcode = "{hashcode}"
        private_key = {{ file = "{}" }}
        limits = {{ timeout = "2s" }}
        "#,
        key_file.display()
    ))
    .unwrap()
}

/// The seed of a test's simulator faults: `PHONECHECK_FAULT_SEED` to replay a run, else a fresh
/// one each run. Printed, so that a failing test's output says how to replay it (the test harness
/// shows a test's output when it fails).
pub fn fault_seed() -> u64 {
    let seed = std::env::var("PHONECHECK_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random);
    println!("simulator fault seed {seed}: replay with PHONECHECK_FAULT_SEED={seed}");
    seed
}

/// Starts the simulators on 127.0.0.1:0, on the test's runtime.
pub async fn start_sim(config: SimConfig) -> SimServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    phonecheck::vendors::simulator(listener, config).unwrap()
}

/// The simulators on a runtime and a thread of their own, as a vendor is a machine of its own:
/// for the tests that count calls per second at the vendor. On the test's one thread, the
/// milliseconds spent on the clients' streams (or an in-process server) would hold the vendor's
/// clock back and bunch the calls it then counts.
pub struct SimApart {
    sim: SimServer,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SimApart {
    pub async fn start(config: SimConfig) -> SimApart {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime.spawn(start_sim(config)).await.unwrap();
        SimApart {
            sim,
            runtime: Some(runtime),
        }
    }
}

impl std::ops::Deref for SimApart {
    type Target = SimServer;
    fn deref(&self) -> &SimServer {
        &self.sim
    }
}

impl Drop for SimApart {
    fn drop(&mut self) {
        // A runtime may not be dropped (it would block) inside the test's async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Looks a number up and returns the report; any RPC failure fails the test.
pub async fn report(server: &TestServer, request: pb::LookupNumberRequest) -> pb::NumberReport {
    server
        .client()
        .lookup_number(request)
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
}

pub fn lookup(number: &str, checks: &[pb::Check]) -> pb::LookupNumberRequest {
    pb::LookupNumberRequest {
        number: number.to_owned(),
        default_region: String::new(),
        checks: checks.iter().map(|&c| c as i32).collect(),
        options: None,
    }
}

/// The ErrorInfo of a `google.rpc.Status`, decoded.
pub fn error_info(status: &tonic_types::Status) -> tonic_types::ErrorInfo {
    use tonic_types::RpcStatusExt;
    status
        .get_details_error_info()
        .expect("status carries an ErrorInfo")
}

/// The outcome of `check` in a report.
pub fn outcome(report: &pb::NumberReport, check: pb::Check) -> &pb::CheckOutcome {
    report
        .outcomes
        .iter()
        .find(|o| o.check() == check)
        .unwrap_or_else(|| panic!("no outcome for {check:?}"))
}

/// Sets every provider's limits.
pub fn set_limits(config: &mut Config, limits: phonecheck::providers::LimitsConfig) {
    for provider in config.providers.values_mut() {
        provider.shared.limits = limits.clone();
    }
}

/// Streams `items` through CheckNumbers and collects every result and the summary.
pub async fn check_numbers(
    server: &TestServer,
    items: Vec<pb::CheckNumbersRequest>,
) -> (Vec<pb::CheckNumbersResult>, pb::CheckNumbersSummary) {
    check_numbers_on(server.channel(), items).await
}

/// `check_numbers` over any channel (a server process, say).
pub async fn check_numbers_on(
    channel: Channel,
    items: Vec<pb::CheckNumbersRequest>,
) -> (Vec<pb::CheckNumbersResult>, pb::CheckNumbersSummary) {
    use pb::check_numbers_response::Response;
    let mut responses = PhoneCheckServiceClient::new(channel)
        .check_numbers(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let mut results = Vec::new();
    let mut summary = None;
    while let Some(message) = responses.message().await.unwrap() {
        match message.response.unwrap() {
            Response::Result(r) => results.push(r),
            Response::Summary(s) => summary = Some(s),
        }
    }
    (results, summary.expect("a summary"))
}

/// A `BatchJobService` client of `server`.
pub fn jobs_client(
    server: &TestServer,
) -> pb::batch_job_service_client::BatchJobServiceClient<Channel> {
    pb::batch_job_service_client::BatchJobServiceClient::new(server.channel())
}

/// An interceptor that sends the API key it holds with every call.
#[derive(Debug, Clone, Copy)]
pub struct ApiKey(pub &'static str);

impl tonic::service::Interceptor for ApiKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.0).parse().unwrap(),
        );
        Ok(request)
    }
}

/// A `BatchJobService` client that sends the API key `key` with every call.
pub fn jobs_client_as(
    server: &TestServer,
    key: &'static str,
) -> pb::batch_job_service_client::BatchJobServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, ApiKey>,
> {
    pb::batch_job_service_client::BatchJobServiceClient::with_interceptor(
        server.channel(),
        ApiKey(key),
    )
}

/// Uploads `file` in chunks of `chunk` bytes as a job with `spec`.
pub async fn create_job<T>(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<T>,
    spec: pb::BatchJobSpec,
    file: &[u8],
    chunk: usize,
) -> Result<pb::BatchJob, tonic::Status>
where
    // Any channel the generated client takes (a plain one, or one with an API-key interceptor).
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    use pb::create_batch_job_request::Payload;
    let mut messages = vec![pb::CreateBatchJobRequest {
        payload: Some(Payload::Spec(spec)),
    }];
    messages.extend(
        file.chunks(chunk.max(1))
            .map(|c| pb::CreateBatchJobRequest {
                payload: Some(Payload::Chunk(c.to_vec())),
            }),
    );
    Ok(client
        .create_batch_job(tokio_stream::iter(messages))
        .await?
        .into_inner()
        .job
        .expect("a job"))
}

/// `WatchBatchJob` of `id`, an update at most every 100 ms.
pub async fn watch(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
) -> tonic::Streaming<pb::WatchBatchJobResponse> {
    client
        .watch_batch_job(pb::WatchBatchJobRequest {
            job_id: id.to_owned(),
            interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Mid-job: closes the vendor's door (calls wait there, unbilled) and waits until every answer the
/// vendor already gave is committed to the job, as `WatchBatchJob` shows. Returns how many
/// numbers the vendor billed.
pub async fn hold_vendor_once_committed(
    sim: &SimServer,
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
) -> u64 {
    sim.stats().hold(true);
    sim.stats().wait_for_held(|held| held >= 1).await;
    let answered = sim.stats().vendor("thinksms").billable;
    let mut updates = watch(client, id).await;
    let committed = async {
        while let Some(update) = updates.message().await.unwrap() {
            let progress = update.job.and_then(|j| j.progress).unwrap_or_default();
            if progress.billable_calls >= answered as i64 {
                return;
            }
        }
        panic!("the job ended before the vendor's answers were committed");
    };
    tokio::time::timeout(Duration::from_secs(30), committed)
        .await
        .expect("the answers given are committed");
    answered
}

/// `GetBatchJob` of `id`, which must exist.
pub async fn get_job(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
) -> pb::BatchJob {
    client
        .get_batch_job(pb::GetBatchJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .expect("a job")
}

/// Follows a job with `WatchBatchJob` until it ends and returns it as it ended.
pub async fn finished_job(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
) -> pb::BatchJob {
    let watching = async {
        let mut updates = watch(client, id).await;
        let mut last = None;
        while let Some(update) = updates.message().await.unwrap() {
            last = update.job;
        }
        last.expect("at least one update")
    };
    tokio::time::timeout(Duration::from_secs(120), watching)
        .await
        .expect("the job ends within 120 s")
}

/// Exports a job's results and returns the file.
pub async fn export_job(
    client: &mut pb::batch_job_service_client::BatchJobServiceClient<Channel>,
    id: &str,
    format: pb::ExportFormat,
    line_status: pb::LineStatus,
) -> Vec<u8> {
    let mut chunks = client
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: id.to_owned(),
            format: format as i32,
            line_status: line_status as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        file.extend(chunk.chunk);
    }
    file
}

/// Rows of a CSV export (the byte-order mark removed), header first.
pub fn csv_rows(file: &[u8]) -> Vec<Vec<String>> {
    let text = std::str::from_utf8(file)
        .unwrap()
        .trim_start_matches('\u{feff}');
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// The rows of a progress's line-status counts, by status.
pub fn status_count(job: &pb::BatchJob, status: pb::LineStatus) -> i64 {
    job.progress
        .as_ref()
        .unwrap()
        .line_status_counts
        .iter()
        .find(|c| c.status == status as i32)
        .map_or(0, |c| c.count)
}

/// A lazily connecting channel to `url`.
pub fn channel_to(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).unwrap().connect_lazy()
}

/// The keyed hash's key, the same for every replica.
pub fn hash_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("redis-hash.key");
    std::fs::write(&path, "replicas-share-this-hash-key").unwrap();
    path
}

/// A `phonecheck serve` configuration: Thinksms against `sim` at `quota` calls/s (no retries:
/// against a fault-free simulator a retry could only hide a failure), state under `dir`. `more`
/// continues the `[storage]` table (keys) and may add tables.
pub fn thinksms_toml(sim: &SimServer, dir: &Path, quota: u32, more: &str) -> String {
    let key = dir.join("thinksms.key");
    std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
    format!(
        r#"
[server]
shutdown_grace = "2s"
[providers.thinksms]
type = "thinksms"
base_url = "{base}"
hashcode = "{hashcode}"
private_key = {{ file = "{key}" }}
limits = {{ quota = {{ requests_per_second = {quota}, burst = 1 }}, retries = 0 }}
[storage]
data_dir = "{data}"
{more}
"#,
        data = dir.join("data").display(),
        base = sim.base_url(),
        hashcode = phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        key = key.display(),
    )
}

/// `thinksms_toml`, sharing state through the Redis on `redis_port`.
pub fn replica_toml(sim: &SimServer, dir: &Path, redis_port: u16, quota: u32) -> String {
    let redis = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nhash_key = {{ file = \"{}\" }}\ntimeout = \"300ms\"",
        hash_key_file(dir).display()
    );
    thinksms_toml(sim, dir, quota, &redis)
}

pub fn replica_config(
    sim: &SimServer,
    dir: &std::path::Path,
    redis_port: u16,
    quota: u32,
) -> Config {
    Config::from_toml(&replica_toml(sim, dir, redis_port, quota)).unwrap()
}

/// `n` line-status items for distinct numbers under `prefix`.
pub fn items(prefix: u32, n: u32) -> Vec<pb::CheckNumbersRequest> {
    (0..n)
        .map(|i| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number: format!("13{prefix}00{i:06}"),
            checks: vec![pb::Check::LineStatus as i32],
            ..Default::default()
        })
        .collect()
}

/// `message` as a request carrying the API key `key`.
pub fn bearer<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}
