//! Aliyun 号码百科 end to end: a real server whose only provider is Aliyun, pointed at the
//! simulator over HTTP (statuses, current carrier and porting, billing, refused credentials); the
//! client alone against the simulator (masks, clock, nonces); and the sandbox listing it.

use std::path::Path;
use std::sync::Arc;

use crate::common::{TestServer, error_info, lookup, outcome, report, start_sim};
use chrono::{Duration as Days, Utc};
use phonecheck::config::Config;
use phonecheck::domain::{Check, CheckData};
use phonecheck::number::Analyzer;
use phonecheck::pb;
use phonecheck::providers::{
    Answer, Clock, ErrorReason, FixedClock, Provider, ProviderError, Query, SystemClock,
};
use phonecheck::sim::{SimConfig, SimServer};
use phonecheck::vendors::aliyun::Mask;

/// phonecheck with one provider, Aliyun, against `sim`, its secret in a file under `dir`.
fn aliyun_config(sim: &SimServer, dir: &Path, secret: &str, mask: &str) -> Config {
    aliyun_config_with(sim, dir, secret, mask, "")
}

/// [`aliyun_config`] with `more` TOML in the provider's table (and tables after it).
pub(crate) fn aliyun_config_with(
    sim: &SimServer,
    dir: &Path,
    secret: &str,
    mask: &str,
    more: &str,
) -> Config {
    let key = dir.join("aliyun.key");
    std::fs::write(&key, secret).unwrap();
    Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [providers.aliyun]
        type = "aliyun"
        base_url = "{}"
        access_key_id = "{}"
        access_key_secret = {{ file = "{}" }}
        auth_code = "{}"
        mask = "{mask}"
        limits = {{ timeout = "2s", retries = 0 }}
        {more}
        "#,
        sim.base_url(),
        phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_ID,
        key.display(),
        phonecheck::vendors::aliyun::SANDBOX_AUTH_CODE,
    ))
    .unwrap()
}

async fn aliyun_server(sim: &SimServer, secret: &str) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = aliyun_config(sim, dir.path(), secret, "NORMAL");
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

fn line_status(r: &pb::NumberReport) -> &pb::LineStatusResult {
    r.line_status.as_ref().expect("a line status")
}

#[tokio::test]
async fn statuses_by_magic_number_and_what_is_billed() {
    let sim = start_sim(SimConfig::default()).await;
    let server = aliyun_server(&sim, phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET).await;
    let cases = [
        ("13800000101", "NORMAL", pb::LineStatus::Active, true),
        ("13800000102", "SHUTDOWN", pb::LineStatus::Suspended, true),
        ("13800000103", "POWER_OFF", pb::LineStatus::PoweredOff, true),
        ("13800000104", "NOT_EXIST", pb::LineStatus::Empty, true),
        (
            "13800000105",
            "SUSPECTED_POWER_OFF",
            pb::LineStatus::PoweredOff,
            true,
        ),
        ("13800000106", "BUSY", pb::LineStatus::Active, true),
        ("13800000107", "UNKNOWN", pb::LineStatus::NoRecord, false),
    ];
    let mut billable = 0;
    for (number, raw, status, billed) in cases {
        let r = report(&server, lookup(number, &[pb::Check::LineStatus])).await;
        let o = outcome(&r, pb::Check::LineStatus);
        assert_eq!(
            (o.state(), o.provider.as_str(), o.billable),
            (pb::CheckState::Ok, "aliyun", billed),
            "{number}"
        );
        let line = line_status(&r);
        assert_eq!((line.status(), line.raw_code.as_str()), (status, raw));
        assert!(!line.ported);
        billable += u64::from(o.billable);
    }
    let counted = sim.stats().vendor("aliyun");
    assert_eq!(counted.calls, 7);
    assert_eq!(
        counted.billable, billable,
        "the simulator bills what phonecheck says is billable"
    );
}

#[tokio::test]
async fn a_ported_number_shows_both_carriers() {
    let sim = start_sim(SimConfig::default()).await;
    let server = aliyun_server(&sim, phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET).await;
    let r = report(&server, lookup("13800000108", &[pb::Check::LineStatus])).await;
    let segment = r.info.as_ref().unwrap().carrier.as_ref().unwrap();
    assert_eq!(segment.name, "China Mobile");
    assert!(segment.may_be_ported);
    let line = line_status(&r);
    assert!(line.ported);
    assert_eq!(line.current_carrier_code, "CUCC");
    let current = line.current_carrier.as_ref().unwrap();
    assert_eq!(
        (current.name.as_str(), current.local_name.as_str()),
        ("China Unicom", "中国联通")
    );
    assert_eq!(line.status(), pb::LineStatus::Active);

    // Not ported: the current carrier is the segment's.
    let r = report(&server, lookup("13800000101", &[pb::Check::LineStatus])).await;
    let line = line_status(&r);
    assert!(!line.ported);
    assert_eq!(line.current_carrier.as_ref().unwrap().name, "China Mobile");
}

#[tokio::test]
async fn a_wrong_secret_is_auth_failed_and_not_billable() {
    let sim = start_sim(SimConfig::default()).await;
    let server = aliyun_server(&sim, "not-the-secret").await;
    let r = report(&server, lookup("13800000101", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Error, false));
    let info = error_info(o.error.as_ref().unwrap());
    assert_eq!(info.reason, "PROVIDER_AUTH_FAILED");
    assert_eq!(info.metadata["vendor_code"], "SignatureDoesNotMatch");
    assert!(r.line_status.is_none());
    assert_eq!(sim.stats().vendor("aliyun").billable, 0);
}

#[tokio::test]
async fn vendor_failures_by_magic_number() {
    let sim = start_sim(SimConfig::default()).await;
    let server = aliyun_server(&sim, phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET).await;
    for (number, reason, code) in [
        ("13800000140", "PROVIDER_REJECTED", "OperatorLimit"),
        (
            "13800000141",
            "PROVIDER_RATE_LIMITED",
            "RequestFrequencyLimit",
        ),
        (
            "13800000142",
            "PROVIDER_QUOTA_EXHAUSTED",
            "isv.OUT_OF_SERVICE",
        ),
        ("13800000150", "PROVIDER_UNAVAILABLE", "ServiceUnavailable"),
    ] {
        let r = report(&server, lookup(number, &[pb::Check::LineStatus])).await;
        let o = outcome(&r, pb::Check::LineStatus);
        assert!(!o.billable, "{number}");
        let info = error_info(o.error.as_ref().unwrap());
        assert_eq!(
            (info.reason.as_str(), info.metadata["vendor_code"].as_str()),
            (reason, code),
            "{number}"
        );
    }
    assert_eq!(sim.stats().vendor("aliyun").billable, 0);
}

async fn provider(sim: &SimServer, clock: Arc<dyn Clock>, mask: Mask) -> Arc<dyn Provider> {
    crate::common::vendor_client(
        "aliyun",
        sim,
        clock,
        serde_json::json!({ "mask": mask.as_str() }),
        None,
    )
    .await
}

fn query(number: &str) -> Vec<Query> {
    vec![Query::from(
        Analyzer::default().analyze(number, "").unwrap(),
    )]
}

fn failure(results: &[Result<Answer, ProviderError>]) -> &ProviderError {
    results[0].as_ref().expect_err("a failure")
}

#[tokio::test]
async fn hash_masks_are_accepted() {
    let sim = start_sim(SimConfig::default()).await;
    for mask in [Mask::Md5, Mask::Sha256, Mask::Sm3] {
        let client = provider(&sim, Arc::new(SystemClock), mask).await;
        let results = client.call(Check::LineStatus, &query("13800000101")).await;
        let Ok(Answer::Ready {
            data: CheckData::LineStatus(line),
            ..
        }) = &results[0]
        else {
            panic!("{mask:?}: {results:?}");
        };
        assert_eq!(
            line.status,
            phonecheck::vendors::aliyun::map_status(&line.raw_code)
        );
        // The simulator cannot see a hashed number's carrier; nothing is claimed about porting.
        assert_eq!((line.current_carrier.as_ref(), line.ported), (None, false));
    }
    assert_eq!(sim.stats().vendor("aliyun").calls, 3);
}

#[tokio::test]
async fn a_clock_off_by_a_day_is_expired_and_not_retried() {
    let sim = start_sim(SimConfig::default()).await;
    let late = Arc::new(FixedClock(Utc::now() - Days::days(1)));
    let client = provider(&sim, late, Mask::Normal).await;
    let results = client.call(Check::LineStatus, &query("13800000101")).await;
    let err = failure(&results);
    assert_eq!(err.vendor_code(), Some("InvalidTimeStamp.Expired"));
    assert_eq!(err.reason(), ErrorReason::Rejected);
    assert!(!err.retryable(), "fix the clock, do not retry blindly");
}

#[tokio::test]
async fn a_reused_nonce_is_refused_and_retryable() {
    let sim = start_sim(SimConfig::default()).await;
    // A stopped clock also hands out one nonce forever.
    let stopped = Arc::new(FixedClock(Utc::now()));
    let client = provider(&sim, stopped, Mask::Normal).await;
    let first = client.call(Check::LineStatus, &query("13800000101")).await;
    assert!(first[0].is_ok(), "{first:?}");
    let again = client.call(Check::LineStatus, &query("13800000102")).await;
    let err = failure(&again);
    assert_eq!(err.vendor_code(), Some("SignatureNonceUsed"));
    assert!(err.retryable(), "a fresh nonce may pass");
    assert!(!err.billable());
}

#[tokio::test]
async fn the_sandbox_lists_aliyun_and_asks_thinksms_first_for_line_status() {
    let server = TestServer::sandbox().await;
    let providers = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let aliyun = providers
        .iter()
        .find(|p| p.name == "aliyun")
        .expect("aliyun listed");
    assert_eq!(aliyun.vendor, "aliyun");
    assert_eq!(
        aliyun.checks,
        vec![
            pb::Check::LineStatus as i32,
            pb::Check::Tenure as i32,
            pb::Check::Reassigned as i32,
            pb::Check::CurrentCarrier as i32,
        ]
    );
    assert_eq!(aliyun.batch_size, 1);
    assert!(aliyun.sandbox && !aliyun.asynchronous);
    assert_eq!(aliyun.quota.unwrap().requests_per_second, 300.0);
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    let position = |name| names.iter().position(|n| *n == name).unwrap();
    assert!(position("thinksms") < position("aliyun"), "{names:?}");
    // Line status is routed over Thinksms first (then Aliyun): Thinksms answers.
    let r = report(&server, lookup("13800000101", &[pb::Check::LineStatus])).await;
    assert_eq!(outcome(&r, pb::Check::LineStatus).provider, "thinksms");
    let thinksms_state = phonecheck::vendors::thinksms::sim::answer_for("13800000101", 0)
        .0
        .to_string();
    assert_eq!(line_status(&r).raw_code, thinksms_state);
    assert!(
        line_status(&r).current_carrier.is_none(),
        "Thinksms names none"
    );
}
