//! All the vendors end to end through their simulators over HTTP: results, coverage, failure
//! codes, credentials.

use crate::common::{
    Secrets, TestServer, error_info, lookup, outcome, report, start_sim, vendors_server,
};
use phonecheck::pb;
use phonecheck::sim::SimConfig;

const ALL: &[pb::Check] = &[
    pb::Check::LineStatus,
    pb::Check::SpamLabels,
    pb::Check::AccountPresence,
    pb::Check::RiskProfile,
];

#[tokio::test]
async fn all_four_checks_on_a_chinese_mobile() {
    let server = TestServer::sandbox().await;
    let r = report(&server, lookup("13800000021", ALL)).await;
    assert!(r.sandbox);
    assert_eq!(r.outcomes.len(), 4);

    assert_eq!(
        outcome(&r, pb::Check::LineStatus).state(),
        pb::CheckState::Ok
    );
    assert!(r.line_status.is_some());

    let spam = outcome(&r, pb::Check::SpamLabels);
    assert_eq!(
        (spam.state(), spam.provider.as_str()),
        (pb::CheckState::Pending, "caih")
    );
    assert!(spam.error.is_none());
    assert!(r.spam_labels.as_ref().unwrap().pending);

    let presence = outcome(&r, pb::Check::AccountPresence);
    assert_eq!(
        (presence.state(), presence.provider.as_str()),
        (pb::CheckState::Skipped, "tongdun")
    );
    let why = presence.error.as_ref().unwrap();
    assert_eq!(error_info(why).reason, "NOT_COVERED");
    assert!(why.message.contains("ID, PK, SG"), "{}", why.message);
    assert!(!presence.billable);
    assert!(r.account_presence.is_none());

    let risk = outcome(&r, pb::Check::RiskProfile);
    assert_eq!((risk.state(), risk.billable), (pb::CheckState::Ok, true));
    let profile = r.risk_profile.unwrap();
    assert_eq!(profile.risks.len(), 1);
    let only = &profile.risks[0];
    assert_eq!(
        (only.level(), only.r#type, only.type_name.as_str()),
        (pb::RiskLevel::High, 14002, "fraud by a real person")
    );
    assert!(profile.location.is_some() && profile.under18.is_some());
}

#[tokio::test]
async fn all_four_checks_on_an_indonesian_mobile() {
    let server = TestServer::sandbox().await;
    let r = report(&server, lookup("+62 812-3456-0032", ALL)).await;
    for check in [
        pb::Check::LineStatus,
        pb::Check::SpamLabels,
        pb::Check::RiskProfile,
    ] {
        let o = outcome(&r, check);
        assert_eq!(o.state(), pb::CheckState::Skipped, "{check:?}");
        assert_eq!(error_info(o.error.as_ref().unwrap()).reason, "NOT_COVERED");
    }
    let presence = outcome(&r, pb::Check::AccountPresence);
    assert_eq!(
        (presence.state(), presence.billable),
        (pb::CheckState::Ok, true)
    );
    let p = r.account_presence.unwrap();
    assert!(p.valid);
    assert_eq!(p.registrations.len(), 12);
    assert!(
        p.registrations
            .iter()
            .all(|r| r.registered() == pb::Presence::Registered)
    );
    assert_eq!(p.total_registered, 12);
    assert!(p.history.is_some());
    assert!(
        p.registrations.iter().all(|r| r.profile.is_none()),
        "profile details only when asked"
    );

    // Asked for: profiles come back.
    let mut request = lookup("+62 812-3456-0032", &[pb::Check::AccountPresence]);
    request.options = Some(pb::CheckOptions {
        include_profile_details: true,
        kyc: Some(pb::KycInput {
            id_type: pb::IdType::IdentityCard as i32,
            id_number: "3310225629467".into(),
            name: "Budi".into(),
            email: "budi@example.com".into(),
        }),
        ..Default::default()
    });
    let p = report(&server, request).await.account_presence.unwrap();
    let whatsapp = p
        .registrations
        .iter()
        .find(|r| r.platform == "whatsapp")
        .unwrap();
    assert!(whatsapp.profile.as_ref().unwrap().about.is_some());
}

#[tokio::test]
async fn unknown_answers_stay_unknown() {
    let server = TestServer::sandbox().await;
    let r = report(
        &server,
        lookup("+65 9123 0033", &[pb::Check::AccountPresence]),
    )
    .await;
    let p = r.account_presence.unwrap();
    assert_eq!(p.fraud_score, None, "-999 is not a score");
    assert_eq!(p.active(), pb::Activity::Unknown);
    assert!(
        p.registrations
            .iter()
            .all(|r| r.registered() == pb::Presence::Unknown)
    );
}

#[tokio::test]
async fn bad_kyc_inputs_name_their_field() {
    let server = TestServer::sandbox().await;
    let mut request = lookup("+62 812-3456-7890", &[pb::Check::AccountPresence]);
    request.options = Some(pb::CheckOptions {
        kyc: Some(pb::KycInput {
            email: "not-an-address".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let status = server.client().lookup_number(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    assert_eq!(
        details.bad_request().unwrap().field_violations[0].field,
        "options.kyc.email"
    );
}

/// Each vendor's failure codes, selected by magic numbers, surface with phonecheck's reason and
/// are never billed.
#[tokio::test]
async fn vendor_failure_codes_are_classified() {
    let server = TestServer::sandbox().await;
    let cases: &[(&str, pb::Check, &str, &str, bool)] = &[
        (
            "13800000429",
            pb::Check::LineStatus,
            "PROVIDER_RATE_LIMITED",
            "429",
            true,
        ),
        (
            "13800000500",
            pb::Check::LineStatus,
            "PROVIDER_UNAVAILABLE",
            "500",
            true,
        ),
        (
            "13800009999",
            pb::Check::SpamLabels,
            "PROVIDER_UNAVAILABLE",
            "9999",
            true,
        ),
        (
            "13800002001",
            pb::Check::SpamLabels,
            "PROVIDER_QUOTA_EXHAUSTED",
            "2001",
            false,
        ),
        (
            "+62 812-3456-0300",
            pb::Check::AccountPresence,
            "PROVIDER_UNAVAILABLE",
            "300",
            true,
        ),
        (
            "+62 812-3456-0303",
            pb::Check::AccountPresence,
            "PROVIDER_QUOTA_EXHAUSTED",
            "303",
            false,
        ),
        (
            "+92 300 123 0305",
            pb::Check::AccountPresence,
            "PROVIDER_QUOTA_EXHAUSTED",
            "305",
            false,
        ),
        (
            "+65 9123 1350",
            pb::Check::AccountPresence,
            "PROVIDER_UNAVAILABLE",
            "11350",
            true,
        ),
        (
            "13800000411",
            pb::Check::RiskProfile,
            "PROVIDER_RATE_LIMITED",
            "411",
            true,
        ),
        (
            "13800000402",
            pb::Check::RiskProfile,
            "PROVIDER_QUOTA_EXHAUSTED",
            "402",
            false,
        ),
        (
            "13800000503",
            pb::Check::RiskProfile,
            "PROVIDER_UNAVAILABLE",
            "503",
            true,
        ),
    ];
    for &(number, check, reason, code, retryable) in cases {
        let r = report(&server, lookup(number, &[check])).await;
        let o = outcome(&r, check);
        // The sandbox routes line status over Thinksms, then Aliyun: Thinksms' failure (rate
        // limited, unavailable) passes the number on, and is its first attempt (never billed).
        let error = match o.attempts.first() {
            Some(attempt) => {
                assert_eq!(
                    (attempt.provider.as_str(), o.provider.as_str()),
                    ("thinksms", "aliyun"),
                    "{number}"
                );
                attempt.error.as_ref().unwrap()
            }
            None => {
                assert_eq!(
                    (o.state(), o.billable),
                    (pb::CheckState::Error, false),
                    "{number}"
                );
                o.error.as_ref().unwrap()
            }
        };
        let info = error_info(error);
        assert_eq!(info.reason, reason, "{number}");
        assert_eq!(info.metadata["vendor_code"], code, "{number}");
        assert_eq!(
            info.metadata["retryable"],
            retryable.to_string(),
            "{number}"
        );
    }
}

#[tokio::test]
async fn wrong_secrets_are_auth_failures_for_every_vendor() {
    let sim = start_sim(SimConfig::default()).await;
    let server = vendors_server(&sim, &Secrets::wrong(), "SHA256").await;
    let cases = [
        ("13800138000", pb::Check::LineStatus),
        ("13800138000", pb::Check::SpamLabels),
        ("+62 812-3456-7890", pb::Check::AccountPresence),
        ("13800138000", pb::Check::RiskProfile),
    ];
    for (number, check) in cases {
        let r = report(&server, lookup(number, &[check])).await;
        let o = outcome(&r, check);
        assert_eq!(
            (o.state(), o.billable),
            (pb::CheckState::Error, false),
            "{check:?}"
        );
        let error = o.error.as_ref().unwrap();
        assert_eq!(
            error_info(error).reason,
            "PROVIDER_AUTH_FAILED",
            "{check:?}: {}",
            error.message
        );
        assert!(!error.message.contains("wrong"), "no secret in messages");
    }
    let stats = sim.stats().snapshot();
    assert!(
        stats
            .iter()
            .filter(|(vendor, _)| **vendor != "aliyun") // not configured here: tests/aliyun.rs
            .all(|(_, s)| s.calls == 1 && s.billable == 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn live_vendors_with_every_yidun_signature_method() {
    let sim = start_sim(SimConfig::default()).await;
    for method in ["MD5", "SHA1", "SHA256", "SM3"] {
        let server = vendors_server(&sim, &Secrets::right(), method).await;
        let r = report(&server, lookup("13800000022", &[pb::Check::RiskProfile])).await;
        assert_eq!(
            outcome(&r, pb::Check::RiskProfile).state(),
            pb::CheckState::Ok,
            "{method}"
        );
        let risk = &r.risk_profile.unwrap().risks[0];
        assert_eq!((risk.level(), risk.r#type), (pb::RiskLevel::Medium, 14003));
        assert!(!r.sandbox);
    }
    assert_eq!(sim.stats().vendor("yidun").billable, 4);
}

#[tokio::test]
async fn list_providers_shows_all_five() {
    let server = TestServer::sandbox().await;
    let providers = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner()
        .providers;
    let shape: Vec<_> = providers
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.checks.clone(),
                p.batch_size,
                p.asynchronous,
                p.sandbox,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                "thinksms",
                vec![pb::Check::LineStatus as i32],
                1,
                false,
                true
            ),
            (
                "aliyun",
                vec![
                    pb::Check::LineStatus as i32,
                    pb::Check::Tenure as i32,
                    pb::Check::Reassigned as i32,
                    pb::Check::CurrentCarrier as i32,
                ],
                1,
                false,
                true
            ),
            (
                "caih",
                vec![pb::Check::SpamLabels as i32],
                10_000,
                true,
                true
            ),
            (
                "tongdun",
                vec![pb::Check::AccountPresence as i32],
                1,
                false,
                true
            ),
            (
                "yidun",
                vec![pb::Check::RiskProfile as i32],
                100,
                false,
                true
            ),
        ]
    );
    assert!(
        providers
            .iter()
            .all(|p| p.health() == pb::ProviderHealth::Serving && p.quota.is_some())
    );
}

/// The TongDun simulator behaves like the three nodes: each takes only its own country.
#[tokio::test]
async fn tongdun_nodes_take_only_their_country() {
    let sim = start_sim(SimConfig::default()).await;
    let http = phonecheck::providers::http_client().unwrap();
    let post = |node: &str, body: serde_json::Value| {
        let url = format!(
            "{}{node}/verification/kyc/phoneverify/v1?partner_code={}&partner_key={}",
            sim.base_url(),
            phonecheck::vendors::tongdun::SANDBOX_PARTNER_CODE,
            phonecheck::vendors::tongdun::SANDBOX_PARTNER_KEY
        );
        let request = http.post(url).json(&body);
        async move {
            request
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let indonesian = serde_json::json!({"country": "ID", "phone_number": "6281234567890"});
    assert_eq!(post("/id", indonesian.clone()).await["code"], 200);
    assert_eq!(post("/pk", indonesian.clone()).await["code"], 11304);
    assert_eq!(
        post(
            "",
            serde_json::json!({"country": "CN", "phone_number": "8613800138000"})
        )
        .await["code"],
        11304
    );
    assert_eq!(
        post("/id", serde_json::json!({"country": "ID"})).await["code"],
        11301
    );
    let bad_kyc = serde_json::json!({"country": "ID", "phone_number": "6281234567890", "id_type": "library_card"});
    assert_eq!(post("/id", bad_kyc).await["code"], 11340);
}
