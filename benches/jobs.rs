//! A bulk file job end to end: a CSV is generated, uploaded to a `phonecheck serve` process
//! (release build, line status from the Thinksms simulator hosted here over loopback), run to
//! the end, and exported. Reports wall times, rows/s and the server's peak RSS (VmHWM).
//!
//! `cargo bench --bench jobs` runs 1,000,000 rows with the vendor quota off. Environment:
//! `JOBS_BENCH_ROWS` (rows), `JOBS_BENCH_QUOTA` (Thinksms calls/s, 0 = off),
//! `JOBS_BENCH_DUPLICATES` (share of rows repeating an earlier number, default 0.1),
//! `JOBS_BENCH_QUOTA_SHARE` (`jobs.quota_share`, default 0.8), `JOBS_BENCH_CACHE_ENTRIES`
//! (`cache.max_entries`, default 1,000,000), `JOBS_BENCH_WINDOW` (`jobs.window`, default 64),
//! `JOBS_BENCH_BIN` (another `phonecheck` binary to serve, for before/after comparisons).

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use phonecheck::pb;
use phonecheck::pb::batch_job_service_client::BatchJobServiceClient;
use phonecheck::sim::SimConfig;
use tonic::transport::Channel;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let rows: u64 = env_or("JOBS_BENCH_ROWS", 1_000_000);
    let quota: u32 = env_or("JOBS_BENCH_QUOTA", 0);
    let duplicates: f64 = env_or("JOBS_BENCH_DUPLICATES", 0.1);
    let share: f64 = env_or("JOBS_BENCH_QUOTA_SHARE", 0.8);
    let cache_entries: u64 = env_or("JOBS_BENCH_CACHE_ENTRIES", 1_000_000);
    let window: usize = env_or("JOBS_BENCH_WINDOW", 64);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = phonecheck::vendors::simulator(listener, SimConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("thinksms.key");
    std::fs::write(&key, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY).unwrap();
    let config = dir.path().join("phonecheck.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [storage]
            data_dir = "{data}"
            [cache]
            max_entries = {cache_entries}
            [jobs]
            max_rows = 10000000
            max_upload_bytes = 1073741824
            retry_after = "1s"
            quota_share = {share}
            window = {window}
            [providers.thinksms]
            type = "thinksms"
            base_url = "{base}"
            hashcode = "{hashcode}"
            private_key = {{ file = "{key}" }}
            limits = {{ quota = {{ requests_per_second = {quota}, burst = 1 }}, concurrency = 256 }}
            "#,
            data = dir.path().join("data").display(),
            base = sim.base_url(),
            hashcode = phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
            key = key.display(),
        ),
    )
    .unwrap();

    // The list: a header, then mobile numbers; a share of rows repeats earlier numbers.
    let csv = dir.path().join("list.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    writeln!(file, "name,手机号,city").unwrap();
    let distinct = ((rows as f64) * (1.0 - duplicates)).max(1.0) as u64;
    for i in 0..rows {
        let n = if i < distinct { i } else { i % distinct };
        writeln!(
            file,
            "customer {i},1{:02}{:08},city {}",
            30 + n % 60,
            n,
            i % 300
        )
        .unwrap();
    }
    file.flush().unwrap();
    drop(file);
    let size = std::fs::metadata(&csv).unwrap().len();

    // Another build of the server, for a before/after comparison on the same load.
    let binary =
        std::env::var("JOBS_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_phonecheck").into());
    let mut server = Command::new(&binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = format!(
        "http://{}",
        line.trim().trim_start_matches("phonecheck listening on ")
    );
    let channel = Channel::from_shared(url).unwrap().connect_lazy();
    let mut client = BatchJobServiceClient::new(channel).max_decoding_message_size(64 << 20);

    let started = Instant::now();
    let bytes = std::fs::read(&csv).unwrap();
    let mut messages = vec![pb::CreateBatchJobRequest {
        payload: Some(pb::create_batch_job_request::Payload::Spec(
            pb::BatchJobSpec {
                file_name: "list.csv".into(),
                checks: vec![pb::Check::LineStatus as i32],
                ..Default::default()
            },
        )),
    }];
    messages.extend(bytes.chunks(256 * 1024).map(|c| pb::CreateBatchJobRequest {
        payload: Some(pb::create_batch_job_request::Payload::Chunk(c.to_vec())),
    }));
    drop(bytes);
    let job = client
        .create_batch_job(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let imported = started.elapsed();
    let mut updates = client
        .watch_batch_job(pb::WatchBatchJobRequest {
            job_id: job.id.clone(),
            interval: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(update) = updates.message().await.unwrap() {
        last = update.job;
    }
    let checked = started.elapsed();
    let last = last.unwrap();
    let progress = last.progress.unwrap();
    let export_started = Instant::now();
    let mut export = client
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: job.id.clone(),
            format: pb::ExportFormat::Csv as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut exported = 0usize;
    while let Some(chunk) = export.message().await.unwrap() {
        exported += chunk.chunk.len();
    }
    let export_time = export_started.elapsed();
    let rss = peak_rss_mib(server.id());
    let _ = server.kill();
    let _ = server.wait();
    let stats = sim.stats().vendor("thinksms");

    println!(
        "jobs bench: {rows} rows ({distinct} distinct), {:.1} MiB CSV, Thinksms quota {}",
        size as f64 / 1048576.0,
        if quota == 0 {
            "off".to_owned()
        } else {
            format!("{quota}/s")
        }
    );
    println!(
        "  upload + import      {:>8.2} s  ({:.0} rows/s)",
        imported.as_secs_f64(),
        rows as f64 / imported.as_secs_f64()
    );
    println!(
        "  upload to last check {:>8.2} s  ({:.0} rows/s, {:.0} distinct numbers/s while checking)",
        checked.as_secs_f64(),
        rows as f64 / checked.as_secs_f64(),
        progress.numbers_total as f64 / (checked - imported).as_secs_f64()
    );
    println!(
        "  export CSV           {:>8.2} s  ({:.1} MiB)",
        export_time.as_secs_f64(),
        exported as f64 / 1048576.0
    );
    println!(
        "  state {:?}, rows done {}, billable {} (simulator billed {}), server peak RSS {:.1} MiB",
        pb::BatchJobState::try_from(last.state).unwrap_or_default(),
        progress.rows_done,
        progress.billable_calls,
        stats.billable,
        rss
    );
}
