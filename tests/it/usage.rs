//! Money and the usage ledger: what each outcome, stream, job and provider shows it cost, and
//! `UsageService/GetUsage` reconciled with what the simulators billed, per tenant, after unary
//! calls, streams and file jobs with cache hits, shared calls and an abandoned call; who may read
//! whose usage; grouping by month; refused ranges; the ledger across a restart.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{self, SimConfig, SimServer};
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
    use phonecheck::sim::*;
    let write = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let price = |name: &str| SANDBOX_PRICES.iter().find(|(n, _)| *n == name).unwrap().1;
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
        hashcode = "{SANDBOX_THINKSMS_HASHCODE}"
        private_key = {{ file = "{}" }}
        limits = {{ retries = 0 }}
        prices = {{ line_status = "{}" }}
        [providers.aliyun]
        type = "aliyun"
        base_url = "{base}"
        access_key_id = "{SANDBOX_ALIYUN_ACCESS_KEY_ID}"
        access_key_secret = {{ file = "{}" }}
        auth_code = "{SANDBOX_ALIYUN_AUTH_CODE}"
        prices = {{ line_status = "{}" }}
        [providers.caih]
        type = "caih"
        base_url = "{base}"
        user_key = "{SANDBOX_CAIH_USER_KEY}"
        app_id = "{SANDBOX_CAIH_APP_ID}"
        secret_key = {{ file = "{}" }}
        prices = {{ spam_labels = "{}" }}
        [providers.yidun]
        type = "yidun"
        base_url = "{base}"
        secret_id = "{SANDBOX_YIDUN_SECRET_ID}"
        business_id = "{SANDBOX_YIDUN_BUSINESS_ID}"
        secret_key = {{ file = "{}" }}
        signature_method = "SM3"
        prices = {{ risk_profile = "{}" }}
        [routes]
        line_status = ["thinksms", "aliyun"]
        {tenants}
        "#,
        write("thinksms.key", SANDBOX_THINKSMS_PRIVATE_KEY),
        price("thinksms"),
        write("aliyun.key", SANDBOX_ALIYUN_ACCESS_KEY_SECRET),
        price("aliyun"),
        write("caih.key", SANDBOX_CAIH_SECRET_KEY),
        price("caih"),
        write("yidun.key", SANDBOX_YIDUN_SECRET_KEY),
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
    let written = sim::SANDBOX_PRICES
        .iter()
        .find(|(n, _)| *n == provider)
        .unwrap()
        .1;
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

#[tokio::test]
async fn outcomes_streams_jobs_and_providers_show_money() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, false).await;

    // Billed: Thinksms's price. Cached: nothing.
    let paid = lookup_as(&server, None, "13912340001", &[pb::Check::LineStatus]).await;
    let o = outcome(&paid, pb::Check::LineStatus);
    assert!(o.billable && !o.cached);
    assert_eq!(nanos(&o.cost), price("thinksms"));
    assert_eq!(o.cost.as_ref().unwrap().currency_code, "CNY");
    let again = lookup_as(&server, None, "13912340001", &[pb::Check::LineStatus]).await;
    let o = outcome(&again, pb::Check::LineStatus);
    assert!(o.cached && !o.billable);
    assert_eq!(nanos(&o.cost), 0);

    // Thinksms rate-limits 0429 every time: the number fails over to Aliyun, which bills its own
    // price; the failed attempt cost nothing.
    let failover = lookup_as(&server, None, "13912340429", &[pb::Check::LineStatus]).await;
    let o = outcome(&failover, pb::Check::LineStatus);
    assert_eq!((o.provider.as_str(), o.billable), ("aliyun", true), "{o:?}");
    assert_eq!(nanos(&o.cost), price("aliyun"));

    // A stream's summary: the sum of its outcomes' costs.
    let list = numbers("1391235", 20);
    let (reports, summary) = stream_as(&server, None, &list, &[pb::Check::LineStatus]).await;
    let summed: i64 = reports
        .iter()
        .flat_map(|r| &r.outcomes)
        .map(|o| nanos(&o.cost))
        .sum();
    assert_eq!(summary.billable_calls, 20);
    assert_eq!(nanos(&summary.cost), summed);
    assert_eq!(nanos(&summary.cost), 20 * price("thinksms"));

    // A job's progress and report: 30 numbers, of which the stream's 20 answered from the cache.
    let job = job_as(
        &server,
        None,
        &numbers("1391235", 30),
        &[pb::Check::LineStatus],
    )
    .await;
    let p = job.progress.unwrap();
    assert_eq!((p.billable_calls, p.cache_hits), (10, 20));
    assert_eq!(nanos(&p.cost), 10 * price("thinksms"));
    let html = String::from_utf8(
        export_job(
            &mut jobs_client(&server),
            &job.id,
            pb::ExportFormat::Html,
            pb::LineStatus::Unspecified,
        )
        .await,
    )
    .unwrap();
    assert!(html.contains("cost of billable calls"), "{html}");
    assert!(html.contains("0.30 CNY"), "10 × 0.03: {html}");

    // Each provider's prices, per check it serves, and the currency.
    let listed = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.currency_code, "CNY");
    for provider in &listed.providers {
        assert_eq!(provider.prices.len(), provider.checks.len(), "{provider:?}");
        for p in &provider.prices {
            assert_eq!(nanos(&p.price), price(&provider.name), "{provider:?}");
        }
    }
}

/// Sums of the ledger by provider.
fn by_provider(usage: &pb::GetUsageResponse, provider: &str) -> (i64, i64, i64, i64, i64) {
    usage
        .rows
        .iter()
        .filter(|r| r.provider == provider)
        .fold((0, 0, 0, 0, 0), |t, r| {
            (
                t.0 + r.billable_calls,
                t.1 + nanos(&r.cost),
                t.2 + r.cache_hits,
                t.3 + r.joined_calls,
                t.4 + r.failures,
            )
        })
}

#[tokio::test]
async fn the_ledger_reconciles_with_what_the_simulators_billed() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, true).await;
    let mut cached_outcomes = 0;
    let count_cached = |reports: &[pb::NumberReport]| -> i64 {
        reports
            .iter()
            .flat_map(|r| &r.outcomes)
            .filter(|o| o.cached)
            .count() as i64
    };

    // acme, unary: line status (one failing over to Aliyun) and risk profile, some twice.
    let mut unary = Vec::new();
    for number in ["13812340001", "13812340002", "13812340429", "13812340001"] {
        unary.push(
            lookup_as(
                &server,
                Some(ACME),
                number,
                &[pb::Check::LineStatus, pb::Check::RiskProfile],
            )
            .await,
        );
    }
    cached_outcomes += count_cached(&unary);

    // acme, five callers at once for one number while the vendor holds the call: one pays, the
    // others share its call or (arriving after it) the cache.
    sim.stats().hold(true);
    let together =
        (0..5).map(|_| lookup_as(&server, Some(ACME), "13812349999", &[pb::Check::LineStatus]));
    let (together, ()) = tokio::join!(futures::future::join_all(together), async {
        sim.stats().wait_for_held(|held| held >= 1).await;
        sim.stats().hold(false);
    });
    let billed_together = together
        .iter()
        .filter(|r| outcome(r, pb::Check::LineStatus).billable)
        .count() as i64;
    assert_eq!(billed_together, 1);
    let cached_together = count_cached(&together);
    cached_outcomes += cached_together;
    let joined_together = 5 - billed_together - cached_together;

    // beta, a stream: Yidun batches (one charge per call) and caih submissions, with duplicates.
    let mut list = numbers("1381235", 40);
    list.extend(numbers("1381235", 10));
    let (reports, summary) = stream_as(
        &server,
        Some(BETA),
        &list,
        &[pb::Check::RiskProfile, pb::Check::SpamLabels],
    )
    .await;
    assert_eq!(summary.items_received, 50);
    cached_outcomes += count_cached(&reports);

    // beta, a job: 60 numbers, of which acme's unary ones and the stream's are cached.
    let mut job_numbers = numbers("1381235", 30);
    job_numbers.extend(numbers("1381236", 30));
    let job = job_as(&server, Some(BETA), &job_numbers, &[pb::Check::LineStatus]).await;
    let p = job.progress.unwrap();
    assert_eq!(p.numbers_done, 60);
    cached_outcomes += p.cache_hits;

    // acme goes away mid-call: the vendor call completes and is billed all the same.
    sim.stats().hold(true);
    let abandoned = tokio::spawn({
        let mut client = checks_as(&server, Some(ACME));
        async move {
            client
                .lookup_number(lookup("13812347777", &[pb::Check::LineStatus]))
                .await
        }
    });
    sim.stats().wait_for_held(|held| held >= 1).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    sim.stats().hold(false);

    // Counted where the vendor call completes: poll (bounded) until the abandoned call is in.
    let stats = sim.stats().snapshot();
    let thinksms_billed = stats["thinksms"].billable as i64;
    let mut usage = get_usage(&server, Some(AUDITOR), all()).await.unwrap();
    for _ in 0..100 {
        if by_provider(&usage, "thinksms").0 >= thinksms_billed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        usage = get_usage(&server, Some(AUDITOR), all()).await.unwrap();
    }
    let stats = sim.stats().snapshot();
    for provider in ["thinksms", "aliyun", "caih", "yidun"] {
        let (billable, cost, ..) = by_provider(&usage, provider);
        assert_eq!(
            billable, stats[provider].billable as i64,
            "{provider}: the ledger's billable calls are the simulator's ({usage:?})"
        );
        assert_eq!(cost, billable * price(provider), "{provider}");
    }
    assert!(
        stats["yidun"].numbers > stats["yidun"].calls,
        "Yidun batched: {stats:?}"
    );
    let t = usage.totals.clone().unwrap();
    assert_eq!(
        t.billable_calls,
        usage.rows.iter().map(|r| r.billable_calls).sum::<i64>()
    );
    assert_eq!(
        t.cache_hits, cached_outcomes,
        "every cache hit, on every path"
    );
    assert!(t.joined_calls >= joined_together, "{t:?}");
    let (_, _, _, _, failures) = by_provider(&usage, "thinksms");
    assert_eq!(
        failures, 1,
        "0429 failed at Thinksms once, then went to Aliyun"
    );

    // Per tenant: acme's unary calls and beta's stream and job, each counted to its tenant.
    let tenants: std::collections::BTreeSet<&str> =
        usage.rows.iter().map(|r| r.tenant.as_str()).collect();
    assert_eq!(tenants, ["acme", "beta"].into());
    let beta = usage.rows.iter().filter(|r| r.tenant == "beta");
    assert_eq!(
        beta.clone()
            .filter(|r| r.provider == "caih")
            .map(|r| r.billable_calls)
            .sum::<i64>(),
        stats["caih"].billable as i64,
        "only beta asked for spam labels"
    );
    assert_eq!(
        beta.filter(|r| r.provider == "thinksms")
            .map(|r| r.billable_calls)
            .sum::<i64>(),
        p.billable_calls,
        "beta paid Thinksms for its job's numbers only"
    );
}

#[tokio::test]
async fn a_tenant_reads_its_own_usage_unless_granted_all() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, true).await;
    lookup_as(&server, Some(ACME), "13712340001", &[pb::Check::LineStatus]).await;
    lookup_as(&server, Some(BETA), "13712340002", &[pb::Check::LineStatus]).await;
    lookup_as(&server, Some(BETA), "13712340003", &[pb::Check::LineStatus]).await;

    let own = get_usage(&server, Some(ACME), all()).await.unwrap();
    assert!(own.rows.iter().all(|r| r.tenant == "acme"), "{own:?}");
    assert_eq!(own.totals.unwrap().billable_calls, 1);
    let named = get_usage(
        &server,
        Some(BETA),
        pb::GetUsageRequest {
            tenant: "beta".into(),
            ..all()
        },
    )
    .await
    .unwrap();
    assert_eq!(named.totals.unwrap().billable_calls, 2);

    let refused = get_usage(
        &server,
        Some(BETA),
        pb::GetUsageRequest {
            tenant: "acme".into(),
            ..all()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "USAGE_NOT_ALLOWED"
    );
    let anonymous = get_usage(&server, None, all()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let everyone = get_usage(&server, Some(AUDITOR), all()).await.unwrap();
    assert_eq!(everyone.totals.unwrap().billable_calls, 3);
    let acme_only = get_usage(
        &server,
        Some(AUDITOR),
        pb::GetUsageRequest {
            tenant: "acme".into(),
            provider: "thinksms".into(),
            check: pb::Check::LineStatus as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(!acme_only.rows.is_empty());
    assert!(acme_only.rows.iter().all(|r| r.tenant == "acme"
        && r.provider == "thinksms"
        && r.check == pb::Check::LineStatus as i32));
    assert_eq!(acme_only.totals.unwrap().billable_calls, 1);
    let other_check = get_usage(
        &server,
        Some(AUDITOR),
        pb::GetUsageRequest {
            check: pb::Check::RiskProfile as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(other_check.rows.is_empty());
}

#[tokio::test]
async fn months_group_days_and_bad_ranges_are_refused_by_field() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, false).await;
    lookup_as(
        &server,
        None,
        "13612340001",
        &[pb::Check::LineStatus, pb::Check::RiskProfile],
    )
    .await;
    lookup_as(&server, None, "13612340001", &[pb::Check::LineStatus]).await;

    let days = get_usage(&server, None, all()).await.unwrap();
    // Two provider-checks, on one day (two if the test ran across midnight in China).
    assert!((2..=4).contains(&days.rows.len()), "{days:?}");
    assert!(
        days.rows
            .iter()
            .all(|r| r.period.len() == 10 && r.tenant == "anonymous")
    );
    let months = get_usage(
        &server,
        None,
        pb::GetUsageRequest {
            group_by: pb::UsageGrouping::Month as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(months.rows.len() <= days.rows.len(), "{months:?}");
    for month in &months.rows {
        let of_month = days.rows.iter().filter(|d| {
            d.period.starts_with(&month.period)
                && (&d.provider, d.check) == (&month.provider, month.check)
        });
        assert_eq!(
            of_month.map(|d| d.billable_calls).sum::<i64>(),
            month.billable_calls,
            "{month:?}"
        );
        assert_eq!(month.period.len(), 7, "YYYY-MM");
    }
    assert_eq!(months.totals, days.totals);
    let t = months.totals.unwrap();
    assert_eq!((t.billable_calls, t.cache_hits), (2, 1));
    assert_eq!(nanos(&t.cost), price("thinksms") + price("yidun"));

    for (from, to, field) in [
        ("2026-03-02", "2026-03-01", "from_day"),
        ("2024-01-01", "2026-01-01", "from_day"),
        ("01/03/2026", "", "from_day"),
        ("", "2026-02-30", "to_day"),
    ] {
        let status = get_usage(
            &server,
            None,
            pb::GetUsageRequest {
                from_day: from.into(),
                to_day: to.into(),
                ..all()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{from} {to}");
        let bad = status.get_details_bad_request().expect("a BadRequest");
        assert_eq!(bad.field_violations[0].field, field, "{from} {to}");
    }
}

#[tokio::test]
async fn the_ledger_survives_a_restart() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start_in(config(&sim, dir.path(), false), dir.path()).await;
    for number in ["13512340001", "13512340002", "13512340001"] {
        lookup_as(&first, None, number, &[pb::Check::LineStatus]).await;
    }
    // Counted in memory, written at the latest at shutdown.
    first.stop().await.unwrap();

    let second = TestServer::start_in(config(&sim, dir.path(), false), dir.path()).await;
    let usage = get_usage(&second, None, all()).await.unwrap();
    let t = usage.totals.unwrap();
    assert_eq!((t.billable_calls, t.cache_hits), (2, 1));
    assert_eq!(
        t.billable_calls,
        sim.stats().vendor("thinksms").billable as i64
    );
    assert_eq!(nanos(&t.cost), 2 * price("thinksms"));
}

#[tokio::test]
async fn past_ten_thousand_rows_a_selection_is_refused() {
    use phonecheck::store::{SqliteStore, UsageCounts, UsageKey, UsageStore};
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), false), dir.path()).await;
    // Once the server has its database (an empty ledger), 10,001 rows are written beside it, as
    // another replica would: 1,001 tenants × 10 days.
    assert!(
        get_usage(&server, None, all())
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let mut increments: Vec<(UsageKey, UsageCounts)> = Vec::new();
    for tenant in 0..1_001 {
        for day in 0..10 {
            increments.push((
                UsageKey {
                    tenant: format!("t{tenant:04}"),
                    provider: "thinksms".into(),
                    check: "line-status".into(),
                    day: today - chrono::Duration::days(day),
                },
                UsageCounts {
                    billable_calls: 1,
                    ..UsageCounts::default()
                },
            ));
        }
    }
    store.add_usage(&increments[..10_000]).await.unwrap();
    let ten_days = pb::GetUsageRequest {
        from_day: (today - chrono::Duration::days(9)).to_string(),
        ..all()
    };
    let exactly = get_usage(&server, None, ten_days.clone()).await.unwrap();
    assert_eq!(exactly.rows.len(), 10_000, "the bound itself is served");
    assert_eq!(exactly.totals.unwrap().billable_calls, 10_000);

    store.add_usage(&increments[10_000..]).await.unwrap();
    let status = get_usage(&server, None, ten_days.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("a BadRequest");
    assert_eq!(bad.field_violations[0].field, "from_day");
    assert!(status.message().contains("10000"), "{status:?}");
    // Narrowed, or by month: served.
    let by_month = get_usage(
        &server,
        None,
        pb::GetUsageRequest {
            group_by: pb::UsageGrouping::Month as i32,
            ..ten_days
        },
    )
    .await
    .unwrap();
    assert_eq!(by_month.totals.unwrap().billable_calls, 10_010);
}
