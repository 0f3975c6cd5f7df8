//! LookupNumber end to end: offline analysis, Thinksms line status through the simulator over
//! HTTP, and errors.

use crate::common::{TestServer, error_info, lookup, start_sim};
use phonecheck::pb;
use phonecheck::sim::SimConfig;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn offline_analysis_of_written_forms() {
    let server = TestServer::sandbox().await;
    let mut client = server.client();
    for input in [
        "13800138000",
        "+86 138-0013-8000",
        "008613800138000",
        "8613800138000",
        "１３８００１３８０００",
    ] {
        let report = crate::common::report(&server, lookup(input, &[])).await;
        let info = report.info.unwrap();
        assert_eq!(info.e164, "+8613800138000", "{input}");
        assert_eq!(info.input, input);
        assert_eq!(info.r#type(), pb::NumberType::Mobile);
        assert!(info.valid);
        let carrier = info.carrier.unwrap();
        assert_eq!(carrier.name, "China Mobile");
        assert!(carrier.may_be_ported);
        let location = info.location.unwrap();
        assert_eq!(
            (location.province.as_str(), location.city.as_str()),
            ("北京", "北京")
        );
        assert!(info.data_version.starts_with("phone.dat-"));
        assert!(report.outcomes.is_empty(), "no check asked, none run");
        assert!(!report.sandbox);
    }
    let fixed = client
        .lookup_number(lookup("(010) 6401-2345", &[]))
        .await
        .unwrap()
        .into_inner();
    let info = fixed.report.unwrap().info.unwrap();
    assert_eq!(
        (info.e164.as_str(), info.r#type()),
        ("+861064012345", pb::NumberType::FixedLine)
    );
    assert_eq!(info.location.unwrap().area_code, "010");
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let server = TestServer::sandbox().await;
    let mut client = server.client();
    let cases = [
        (lookup("not a number", &[]), "number"),
        (lookup("", &[]), "number"),
        (
            pb::LookupNumberRequest {
                default_region: "XX".into(),
                ..lookup("13800138000", &[])
            },
            "default_region",
        ),
        (
            pb::LookupNumberRequest {
                checks: vec![99],
                ..lookup("13800138000", &[])
            },
            "checks[0]",
        ),
    ];
    for (request, field) in cases {
        let status = client.lookup_number(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details
            .bad_request()
            .expect("BadRequest detail")
            .field_violations;
        assert_eq!(violations[0].field, field, "{}", status.message());
        assert!(!violations[0].description.is_empty());
    }
}

#[tokio::test]
async fn line_status_for_each_magic_suffix() {
    let server = TestServer::sandbox().await;
    let cases = [
        ("13800000001", pb::LineStatus::Active, "1"),
        ("13800000002", pb::LineStatus::Empty, "2"),
        ("13800000003", pb::LineStatus::Silent, "3"),
        ("13800000004", pb::LineStatus::Risk, "4"),
    ];
    for (number, status, raw) in cases {
        let report = crate::common::report(&server, lookup(number, &[pb::Check::LineStatus])).await;
        let line = report.line_status.unwrap();
        assert_eq!(
            (line.status(), line.raw_code.as_str()),
            (status, raw),
            "{number}"
        );
        assert!(!line.description.is_empty());
        assert!(report.sandbox);
        let outcome = &report.outcomes[0];
        assert_eq!(outcome.check(), pb::Check::LineStatus);
        assert_eq!(outcome.provider, "thinksms");
        assert_eq!(outcome.state(), pb::CheckState::Ok);
        assert!(outcome.billable && !outcome.cached);
        assert!(outcome.latency.is_some() && outcome.fetched_at.is_some());
        assert!(outcome.error.is_none());
    }
}

#[tokio::test]
async fn invalid_numbers_never_reach_the_vendor() {
    let sim = start_sim(SimConfig::default()).await;
    let server = TestServer::thinksms(
        &sim,
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
    )
    .await;
    let report =
        crate::common::report(&server, lookup("15412345678", &[pb::Check::LineStatus])).await;
    assert!(!report.info.unwrap().valid);
    assert_eq!(
        report.line_status.unwrap().status(),
        pb::LineStatus::Invalid
    );
    let outcome = &report.outcomes[0];
    assert_eq!(
        (outcome.provider.as_str(), outcome.billable),
        ("local", false)
    );
    // A fixed line is outside Thinksms' coverage: skipped with a reason, not sent.
    let report =
        crate::common::report(&server, lookup("010-64012345", &[pb::Check::LineStatus])).await;
    let outcome = &report.outcomes[0];
    assert_eq!(outcome.state(), pb::CheckState::Skipped);
    assert_eq!(
        error_info(outcome.error.as_ref().unwrap()).reason,
        "NOT_COVERED"
    );
    assert!(sim.stats().snapshot().values().all(|v| v.calls == 0));
}

#[tokio::test]
async fn live_provider_against_the_simulator_over_http() {
    let sim = start_sim(SimConfig::default()).await;
    let server = TestServer::thinksms(
        &sim,
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        phonecheck::vendors::thinksms::SANDBOX_PRIVATE_KEY,
    )
    .await;
    let report =
        crate::common::report(&server, lookup("13912340002", &[pb::Check::LineStatus])).await;
    assert_eq!(report.line_status.unwrap().status(), pb::LineStatus::Empty);
    assert!(
        !report.sandbox,
        "a configured provider is live, not sandbox"
    );
    let stats = sim.stats().snapshot()["thinksms"];
    assert_eq!((stats.calls, stats.numbers, stats.billable), (1, 1, 1));
}

#[tokio::test]
async fn a_wrong_sign_is_a_non_billable_auth_failure() {
    let sim = start_sim(SimConfig::default()).await;
    let server = TestServer::thinksms(
        &sim,
        phonecheck::vendors::thinksms::SANDBOX_HASHCODE,
        "not-the-private-key",
    )
    .await;
    let mut client = server.client();
    let report = client
        .lookup_number(lookup("13800138000", &[pb::Check::LineStatus]))
        .await
        .expect("a vendor failure does not fail the RPC")
        .into_inner()
        .report
        .unwrap();
    assert!(report.line_status.is_none());
    assert!(report.info.is_some(), "the free analysis is still there");
    let outcome = &report.outcomes[0];
    assert_eq!(outcome.state(), pb::CheckState::Error);
    assert!(!outcome.billable);
    let error = outcome.error.as_ref().unwrap();
    assert_eq!(error.code, Code::FailedPrecondition as i32);
    assert!(!error.message.contains("not-the-private-key"));
    let info = error_info(error);
    assert_eq!(info.reason, "PROVIDER_AUTH_FAILED");
    assert_eq!(info.domain, "phonecheck.dev");
    assert_eq!(info.metadata["provider"], "thinksms");
    assert_eq!(info.metadata["vendor_code"], "401");
    assert_eq!(info.metadata["billable"], "false");
    let stats = sim.stats().snapshot()["thinksms"];
    assert_eq!(
        (stats.calls, stats.billable),
        (1, 0),
        "the vendor was asked and billed nothing"
    );
}

#[tokio::test]
async fn an_unreachable_vendor_is_unavailable_and_retryable() {
    // Nothing listens there, and no other test's simulator can take the port meanwhile.
    let (_held, port) = crate::common::refusing_port();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "k").unwrap();
    let server = TestServer::start(crate::common::thinksms_config(
        &format!("http://127.0.0.1:{port}"),
        "h",
        &key,
    ))
    .await;
    let mut client = server.client();
    for _ in 0..3 {
        let report =
            crate::common::report(&server, lookup("13800138000", &[pb::Check::LineStatus])).await;
        let info = error_info(report.outcomes[0].error.as_ref().unwrap());
        assert_eq!(info.reason, "PROVIDER_UNAVAILABLE");
        assert_eq!(info.metadata["retryable"], "true");
    }
    let providers = client
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    assert_eq!(providers[0].health(), pb::ProviderHealth::Failing);
    assert_eq!(
        error_info(providers[0].last_error.as_ref().unwrap()).reason,
        "PROVIDER_UNAVAILABLE"
    );
}

#[tokio::test]
async fn list_providers_in_the_sandbox() {
    let server = TestServer::sandbox().await;
    let providers = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let thinksms = providers
        .iter()
        .find(|p| p.name == "thinksms")
        .expect("thinksms listed");
    assert_eq!(thinksms.vendor, "thinksms");
    assert_eq!(thinksms.checks, vec![pb::Check::LineStatus as i32]);
    assert_eq!(thinksms.batch_size, 1);
    assert!(thinksms.sandbox && !thinksms.asynchronous);
    assert_eq!(thinksms.quota.unwrap().requests_per_second, 100.0);
    assert_eq!(thinksms.health(), pb::ProviderHealth::Serving);
}
