//! Routes and failover: line status routed over Thinksms then Aliyun (both live, pointed at the
//! simulators over HTTP). Thinksms refusing the credentials or behind an open breaker passes the
//! number to Aliyun in the same call, with the failed attempt reported and only the answer billed;
//! a refused number does not fail over; an answer from either provider serves the route from the
//! cache; `ListProviders` shows the routes; the sandbox routes line status over both.

use std::path::Path;

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use tokio::net::TcpListener;

/// Thinksms (signing with `thinksms_key`) and Aliyun against `sim`, no retries, breaker after
/// `breaker` failures for a minute; `routes` is the `[routes]` table's body.
fn routed_config(
    sim: &SimServer,
    dir: &Path,
    thinksms_key: &str,
    breaker: u32,
    routes: &str,
) -> Config {
    let write = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).unwrap();
        path.display().to_string()
    };
    let limits = format!(
        r#"{{ timeout = "2s", retries = 0, breaker_failures = {breaker}, breaker_cooldown = "60s" }}"#
    );
    let mut config = Config::from_toml(&format!(
        r#"
        [server]
        shutdown_grace = "5s"
        [providers.thinksms]
        type = "thinksms"
        base_url = "{base}"
        hashcode = "{hashcode}"
        private_key = {{ file = "{thinksms}" }}
        limits = {limits}
        [providers.aliyun]
        type = "aliyun"
        base_url = "{base}"
        access_key_id = "{key_id}"
        access_key_secret = {{ file = "{aliyun}" }}
        auth_code = "{auth_code}"
        limits = {limits}
        [routes]
        {routes}
        "#,
        base = sim.base_url(),
        hashcode = phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        thinksms = write("thinksms.key", thinksms_key),
        key_id = phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_ID,
        aliyun = write(
            "aliyun.key",
            phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET
        ),
        auth_code = phonecheck::vendors::aliyun::SANDBOX_AUTH_CODE,
    ))
    .unwrap();
    config.storage.data_dir = dir.to_owned();
    config
}

async fn routed_server(sim: &SimServer, thinksms_key: &str, breaker: u32) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = routed_config(
        sim,
        dir.path(),
        thinksms_key,
        breaker,
        r#"line_status = ["thinksms", "aliyun"]"#,
    );
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

#[tokio::test]
async fn refused_credentials_fail_over_to_aliyun_in_the_same_call_billed_once() {
    let sim = start_sim(SimConfig::default()).await;
    let server = routed_server(&sim, "not-the-thinksms-key", 5).await;
    // 0108: Aliyun's ported number (segment China Mobile, now China Unicom).
    let r = report(&server, lookup("13800000108", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!(
        (o.state(), o.provider.as_str(), o.billable, o.cached),
        (pb::CheckState::Ok, "aliyun", true, false)
    );
    assert_eq!(o.attempts.len(), 1, "{:?}", o.attempts);
    let attempt = &o.attempts[0];
    assert_eq!(
        (
            attempt.provider.as_str(),
            attempt.reason.as_str(),
            attempt.vendor_code.as_str()
        ),
        ("thinksms", "PROVIDER_AUTH_FAILED", "401")
    );
    let info = error_info(attempt.error.as_ref().unwrap());
    assert_eq!(info.reason, "PROVIDER_AUTH_FAILED");
    assert_eq!(info.metadata["provider"], "thinksms");
    // A ported number shows both carriers through the route.
    let segment = r.info.as_ref().unwrap().carrier.as_ref().unwrap();
    assert_eq!(segment.name, "China Mobile");
    let line = r.line_status.as_ref().unwrap();
    assert!(line.ported);
    assert_eq!(line.current_carrier_code, "CUCC");
    // The simulators agree: Thinksms was asked once and billed nothing, Aliyun billed once.
    let (thinksms, aliyun) = (sim.stats().vendor("thinksms"), sim.stats().vendor("aliyun"));
    assert_eq!((thinksms.calls, thinksms.billable), (1, 0));
    assert_eq!((aliyun.calls, aliyun.billable), (1, 1));

    // Asked again, the route's first provider finds Aliyun's answer in the cache: no call, and
    // the outcome names the provider that answered.
    let r = report(&server, lookup("13800000108", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!(
        (o.provider.as_str(), o.cached, o.billable, o.attempts.len()),
        ("aliyun", true, false, 0)
    );
    assert_eq!(sim.stats().vendor("thinksms").calls, 1);
    assert_eq!(sim.stats().vendor("aliyun").calls, 1);
}

#[tokio::test]
async fn an_open_breaker_passes_the_number_to_aliyun_without_calling_thinksms() {
    let sim = start_sim(SimConfig::default()).await;
    let server = routed_server(&sim, phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY, 1).await;
    // 0500: Thinksms is busy (err_code 500): unavailable, and with a breaker of one failure and
    // no retries, the breaker opens. The number itself fails over.
    let r = report(&server, lookup("13800000500", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!((o.provider.as_str(), o.attempts.len()), ("aliyun", 1));
    // Aliyun bills what it knows (a stable answer by number may be UNKNOWN, not billed).
    let billed = u64::from(o.billable);
    assert_eq!(o.attempts[0].reason, "PROVIDER_UNAVAILABLE");
    assert_eq!(o.attempts[0].vendor_code, "500");

    // The next number does not reach Thinksms: its breaker is open.
    let r = report(&server, lookup("13800000001", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!(
        (o.state(), o.provider.as_str(), o.billable),
        (pb::CheckState::Ok, "aliyun", true)
    );
    assert_eq!(o.attempts.len(), 1);
    assert_eq!(o.attempts[0].provider, "thinksms");
    let message = &o.attempts[0].error.as_ref().unwrap().message;
    assert!(message.contains("circuit breaker"), "{message}");
    assert_eq!(sim.stats().vendor("thinksms").calls, 1);
    assert_eq!(sim.stats().vendor("aliyun").billable, billed + 1);

    // ListProviders shows the route and Thinksms' open breaker.
    let listed = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let thinksms = listed
        .providers
        .iter()
        .find(|p| p.name == "thinksms")
        .unwrap();
    assert!(thinksms.circuit_open);
    assert_eq!(
        thinksms.health(),
        pb::ProviderHealth::Serving,
        "one failure"
    );
    let aliyun = listed
        .providers
        .iter()
        .find(|p| p.name == "aliyun")
        .unwrap();
    assert!(!aliyun.circuit_open);
    let route = listed
        .routes
        .iter()
        .find(|r| r.check() == pb::Check::LineStatus)
        .expect("a line-status route");
    assert_eq!(route.providers, ["thinksms", "aliyun"]);
    assert_eq!(route.policy(), pb::RoutePolicy::Failover);
}

#[tokio::test]
async fn a_refused_number_does_not_fail_over() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = routed_config(
        &sim,
        dir.path(),
        phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
        5,
        r#"line_status = ["aliyun", "thinksms"]"#,
    );
    let server = TestServer::start_in(config, dir.path()).await.keep_dir(dir);
    // 0140: Aliyun's carrier refuses to be asked about this number (OperatorLimit): a refusal
    // of the number, which another vendor would not change.
    let r = report(&server, lookup("13800000140", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!(
        (o.state(), o.provider.as_str(), o.billable),
        (pb::CheckState::Error, "aliyun", false)
    );
    assert!(o.attempts.is_empty());
    assert_eq!(
        error_info(o.error.as_ref().unwrap()).reason,
        "PROVIDER_REJECTED"
    );
    assert_eq!(sim.stats().vendor("thinksms").calls, 0);
    // An invalid number goes to no vendor at all.
    let r = report(&server, lookup("1380013800", &[pb::Check::LineStatus])).await;
    let o = outcome(&r, pb::Check::LineStatus);
    assert_eq!((o.provider.as_str(), o.attempts.len()), ("local", 0));
    assert_eq!(
        r.line_status.as_ref().unwrap().status(),
        pb::LineStatus::Invalid
    );
    assert_eq!(sim.stats().total_calls(), 1);
}

#[tokio::test]
async fn match_rules_send_a_carriers_numbers_to_their_provider() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = routed_config(
        &sim,
        dir.path(),
        phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
        5,
        r#"line_status = { providers = ["thinksms", "aliyun"], rules = [{ carriers = ["CTCC"], providers = ["aliyun"] }] }"#,
    );
    let server = TestServer::start_in(config, dir.path()).await.keep_dir(dir);
    // 133 is a China Telecom segment, 138 China Mobile.
    let telecom = report(&server, lookup("13300001234", &[pb::Check::LineStatus])).await;
    assert_eq!(outcome(&telecom, pb::Check::LineStatus).provider, "aliyun");
    let mobile = report(&server, lookup("13800001234", &[pb::Check::LineStatus])).await;
    assert_eq!(outcome(&mobile, pb::Check::LineStatus).provider, "thinksms");
    let listed = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.routes[0].rules[0].carriers, ["CTCC"]);
    assert_eq!(listed.routes[0].rules[0].providers, ["aliyun"]);
}

#[tokio::test]
async fn routes_naming_unknown_providers_or_checks_are_refused_all_at_once() {
    let text = r#"
        [providers.thinksms]
        type = "thinksms"
        base_url = "http://127.0.0.1:9"
        hashcode = "h"
        private_key = { env = "PATH" }
        [routes]
        line_status = ["thinksms", "nobody"]
        spam_labels = ["thinksms"]
        weather = ["thinksms"]
        "#;
    let err = Config::from_toml(text).unwrap_err().to_string();
    assert!(
        err.contains("routes.line_status: no provider is named \"nobody\""),
        "{err}"
    );
    assert!(err.contains("does not serve spam-labels"), "{err}");
    assert!(err.contains("routes.weather: not a check"), "{err}");
}

#[tokio::test]
async fn the_sandbox_routes_line_status_over_thinksms_then_aliyun() {
    let server = TestServer::sandbox().await;
    let listed = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let line = listed
        .routes
        .iter()
        .find(|r| r.check() == pb::Check::LineStatus)
        .expect("a line-status route");
    assert_eq!(line.providers, ["thinksms", "aliyun"]);
    assert_eq!(line.policy(), pb::RoutePolicy::Failover);
    assert_eq!(
        listed.routes.len(),
        phonecheck::domain::CHECKS.len(),
        "every check has a route"
    );
}

#[tokio::test]
async fn failovers_are_counted_in_metrics() {
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = routed_config(
        &sim,
        dir.path(),
        "not-the-thinksms-key",
        5,
        r#"line_status = ["thinksms", "aliyun"]"#,
    );
    config.storage.data_dir = dir.path().to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(phonecheck::serve_with_admin(
        listener,
        Some(admin),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    let labels = [
        "check=\"line-status\"",
        "from=\"thinksms\"",
        "to=\"aliyun\"",
        "reason=\"auth_failed\"",
    ];
    let scrape = || async {
        let text = reqwest::get(format!("http://{admin_addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("phonecheck_failovers_total{"))
            .filter(|l| labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = scrape().await;
    let mut client = pb::phone_check_service_client::PhoneCheckServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy(),
    );
    for number in ["13800000101", "13800000102"] {
        client
            .lookup_number(lookup(number, &[pb::Check::LineStatus]))
            .await
            .unwrap();
    }
    // The recorder is process-wide: other tests' failovers may add to it, never take away.
    assert!(scrape().await >= before + 2.0);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
