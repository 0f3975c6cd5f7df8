//! Money and the usage ledger: what each outcome, stream, job and provider shows it cost, and
//! `UsageService/GetUsage` reconciled with what the simulators billed, per tenant, after unary
//! calls, streams and file jobs with cache hits, shared calls and an abandoned call; who may read
//! whose usage; grouping by month; refused ranges; the ledger across a restart. This module holds
//! the server and the clients the areas share: `costs`, `ledger` and `reading`.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use tonic::Code;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const ACME: &str = "pck_usage_acme_key_for_tests_only";
const BETA: &str = "pck_usage_beta_key_for_tests_only";
const AUDITOR: &str = "pck_usage_auditor_key_for_tests_only";

/// Line status over Thinksms (no retries) then Aliyun, caih, Yidun, all live against `sim` at the
/// sandbox prices; tenants acme and beta (every check but account presence) and auditor
/// (`usage_all`).
fn config(sim: &SimServer, dir: &Path, tenants: bool) -> Config {
    use phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_ID as ALIYUN_ACCESS_KEY_ID;
    use phonecheck::vendors::aliyun::SANDBOX_AUTH_CODE as ALIYUN_AUTH_CODE;
    use phonecheck::vendors::caih::SANDBOX_APP_ID as CAIH_APP_ID;
    use phonecheck::vendors::caih::SANDBOX_USER_KEY as CAIH_USER_KEY;
    use phonecheck::vendors::thinksms::SANDBOX_HASHCODE as THINKSMS_HASHCODE;
    use phonecheck::vendors::yidun::SANDBOX_BUSINESS_ID as YIDUN_BUSINESS_ID;
    use phonecheck::vendors::yidun::SANDBOX_SECRET_ID as YIDUN_SECRET_ID;
    let write = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let price = |name: &str| phonecheck::vendors::find(name).unwrap().sandbox.prices[0].1;
    let tenants = if tenants {
        format!(
            r#"
            [tenants.acme]
            key_sha256 = ["{}"]
            allowed_checks = ["line-status", "spam-labels", "risk-profile"]
            [tenants.beta]
            key_sha256 = ["{}"]
            allowed_checks = ["line-status", "spam-labels", "risk-profile"]
            [tenants.auditor]
            key_sha256 = ["{}"]
            usage_all = true
            "#,
            key_hash(ACME),
            key_hash(BETA),
            key_hash(AUDITOR)
        )
    } else {
        String::new()
    };
    let base = sim.base_url();
    let mut config = Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [providers.thinksms]
        type = "thinksms"
        base_url = "{base}"
        hashcode = "{THINKSMS_HASHCODE}"
        private_key = {{ file = "{}" }}
        limits = {{ retries = 0 }}
        prices = {{ line_status = "{}" }}
        [providers.aliyun]
        type = "aliyun"
        base_url = "{base}"
        access_key_id = "{ALIYUN_ACCESS_KEY_ID}"
        access_key_secret = {{ file = "{}" }}
        auth_code = "{ALIYUN_AUTH_CODE}"
        prices = {{ line_status = "{}" }}
        [providers.caih]
        type = "caih"
        base_url = "{base}"
        user_key = "{CAIH_USER_KEY}"
        app_id = "{CAIH_APP_ID}"
        secret_key = {{ file = "{}" }}
        prices = {{ spam_labels = "{}" }}
        [providers.yidun]
        type = "yidun"
        base_url = "{base}"
        secret_id = "{YIDUN_SECRET_ID}"
        business_id = "{YIDUN_BUSINESS_ID}"
        secret_key = {{ file = "{}" }}
        signature_method = "SM3"
        prices = {{ risk_profile = "{}" }}
        [routes]
        line_status = ["thinksms", "aliyun"]
        {tenants}
        "#,
        write(
            "thinksms.key",
            phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY
        ),
        price("thinksms"),
        write(
            "aliyun.key",
            phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET
        ),
        price("aliyun"),
        write("caih.key", phonecheck::vendors::caih::SANDBOX_SECRET_KEY),
        price("caih"),
        write("yidun.key", phonecheck::vendors::yidun::SANDBOX_SECRET_KEY),
        price("yidun"),
    ))
    .unwrap();
    config.storage.data_dir = dir.to_owned();
    config
}

async fn server(sim: &SimServer, tenants: bool) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    TestServer::start_in(config(sim, dir.path(), tenants), dir.path())
        .await
        .keep_dir(dir)
}

/// `units.nanos` of a `google.type.Money`, in nanos.
fn nanos(money: &Option<pb::google_type::Money>) -> i64 {
    let m = money.clone().unwrap_or_default();
    m.units * 1_000_000_000 + i64::from(m.nanos)
}

/// A sandbox price in nanos.
fn price(provider: &str) -> i64 {
    let written = phonecheck::vendors::find(provider).unwrap().sandbox.prices[0].1;
    written
        .parse::<phonecheck::domain::Money>()
        .unwrap()
        .nanos()
}

/// Sends `authorization: Bearer <key>` on every call.
#[derive(Clone)]
struct Key(Option<MetadataValue<Ascii>>);

impl Key {
    fn of(key: Option<&str>) -> Key {
        Key(key.map(|k| format!("Bearer {k}").parse().unwrap()))
    }
}

impl Interceptor for Key {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("authorization", key.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Key>;

fn checks_as(
    server: &TestServer,
    key: Option<&str>,
) -> pb::phone_check_service_client::PhoneCheckServiceClient<Authed> {
    pb::phone_check_service_client::PhoneCheckServiceClient::with_interceptor(
        server.channel(),
        Key::of(key),
    )
}

fn jobs_as(
    server: &TestServer,
    key: Option<&str>,
) -> pb::batch_job_service_client::BatchJobServiceClient<Authed> {
    pb::batch_job_service_client::BatchJobServiceClient::with_interceptor(
        server.channel(),
        Key::of(key),
    )
}

async fn get_usage(
    server: &TestServer,
    key: Option<&str>,
    request: pb::GetUsageRequest,
) -> Result<pb::GetUsageResponse, tonic::Status> {
    pb::usage_service_client::UsageServiceClient::with_interceptor(server.channel(), Key::of(key))
        .get_usage(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn lookup_as(
    server: &TestServer,
    key: Option<&str>,
    number: &str,
    checks: &[pb::Check],
) -> pb::NumberReport {
    checks_as(server, key)
        .lookup_number(lookup(number, checks))
        .await
        .unwrap()
        .into_inner()
        .report
        .unwrap()
}

/// Streams `numbers` (each asking `checks`) and returns the reports and the summary.
async fn stream_as(
    server: &TestServer,
    key: Option<&str>,
    numbers: &[String],
    checks: &[pb::Check],
) -> (Vec<pb::NumberReport>, pb::CheckNumbersSummary) {
    use pb::check_numbers_response::Response;
    let items: Vec<pb::CheckNumbersRequest> = numbers
        .iter()
        .enumerate()
        .map(|(i, n)| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number: n.clone(),
            checks: checks.iter().map(|&c| c as i32).collect(),
            ..Default::default()
        })
        .collect();
    let mut responses = checks_as(server, key)
        .check_numbers(tokio_stream::iter(items))
        .await
        .unwrap()
        .into_inner();
    let (mut reports, mut summary) = (Vec::new(), None);
    while let Some(message) = responses.message().await.unwrap() {
        match message.response.unwrap() {
            Response::Result(r) => match r.outcome.unwrap() {
                pb::check_numbers_result::Outcome::Report(report) => reports.push(report),
                pb::check_numbers_result::Outcome::Error(e) => panic!("{e:?}"),
            },
            Response::Summary(s) => summary = Some(s),
        }
    }
    (reports, summary.unwrap())
}

/// Runs a job of `numbers` for the tenant of `key` to its end.
async fn job_as(
    server: &TestServer,
    key: Option<&str>,
    numbers: &[String],
    checks: &[pb::Check],
) -> pb::BatchJob {
    let mut client = jobs_as(server, key);
    let spec = pb::BatchJobSpec {
        file_name: "list.txt".into(),
        checks: checks.iter().map(|&c| c as i32).collect(),
        ..Default::default()
    };
    let file = format!("phone\n{}\n", numbers.join("\n"));
    let created = create_job(&mut client, spec, file.as_bytes(), 4096)
        .await
        .unwrap();
    let watching = async {
        let mut updates = client
            .watch_batch_job(pb::WatchBatchJobRequest {
                job_id: created.id.clone(),
                interval: Some(prost_types::Duration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
            })
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        while let Some(update) = updates.message().await.unwrap() {
            last = update.job;
        }
        last.unwrap()
    };
    tokio::time::timeout(Duration::from_secs(60), watching)
        .await
        .expect("the job ends within 60 s")
}

fn numbers(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

/// Everything since three days ago (China time) to today: a test that runs across midnight in
/// China, or across a month's end, still reads all it did.
fn all() -> pb::GetUsageRequest {
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    pb::GetUsageRequest {
        from_day: (today - chrono::Duration::days(3)).to_string(),
        ..Default::default()
    }
}

mod costs;
mod ledger;
mod reading;
