//! caih is asynchronous: a number is submitted once, answered pending, and labelled later; the
//! submission survives a restart.

use std::time::Duration;

use crate::common::{
    Secrets, TestServer, lookup, outcome, start_sim, vendors_config, vendors_server,
};
use phonecheck::pb;
use phonecheck::sim::SimConfig;

fn sim_config(delay: Duration) -> SimConfig {
    SimConfig {
        async_delay: delay,
        ..SimConfig::default()
    }
}

async fn spam(server: &TestServer, number: &str) -> pb::NumberReport {
    crate::common::report(server, lookup(number, &[pb::Check::SpamLabels])).await
}

#[tokio::test]
async fn pending_then_labelled_after_the_vendor_delay() {
    let sim = start_sim(sim_config(Duration::from_millis(200))).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;

    let first = spam(&server, "13800000012").await;
    let o = outcome(&first, pb::Check::SpamLabels);
    assert_eq!(o.state(), pb::CheckState::Pending);
    assert!(o.billable, "adding a number to monitoring is billed");
    assert!(first.spam_labels.unwrap().pending);

    // The vendor labels the batch after its delay.
    sim.stats().wait_until(|s| s["caih"].ready >= 1).await;

    let second = spam(&server, "13800000012").await;
    let o = outcome(&second, pb::Check::SpamLabels);
    assert_eq!(o.state(), pb::CheckState::Ok);
    assert!(!o.billable, "querying is free");
    let labels = second.spam_labels.unwrap();
    assert!(!labels.pending);
    let sources: Vec<_> = labels.labels.iter().map(|l| l.source()).collect();
    assert_eq!(
        sources,
        vec![
            pb::LabelSource::Qihoo360,
            pb::LabelSource::Baidu,
            pb::LabelSource::Dianhuabang
        ]
    );
    assert_eq!(
        (labels.labels[0].label.as_str(), labels.labels[0].count),
        ("诈骗电话", 530)
    );
    assert_eq!(sim.stats().vendor("caih").billable, 1);
}

#[tokio::test]
async fn concurrent_lookups_of_a_pending_number_submit_it_once() {
    let sim = start_sim(sim_config(Duration::from_secs(3600))).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    let lookups = (0..20).map(|_| {
        let mut client = server.client();
        async move {
            client
                .lookup_number(lookup("13800000011", &[pb::Check::SpamLabels]))
                .await
                .unwrap()
                .into_inner()
                .report
                .unwrap()
        }
    });
    let reports = futures::future::join_all(lookups).await;
    for r in &reports {
        assert_eq!(
            outcome(r, pb::Check::SpamLabels).state(),
            pb::CheckState::Pending
        );
    }
    let billed = reports
        .iter()
        .filter(|r| outcome(r, pb::Check::SpamLabels).billable)
        .count();
    assert_eq!(billed, 1, "one outcome carries the one submission's charge");
    assert_eq!(sim.stats().vendor("caih").billable, 1, "one sign_add");
}

#[tokio::test]
async fn a_pending_submission_survives_a_restart() {
    let sim = start_sim(sim_config(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();

    let before = TestServer::start_in(
        vendors_config(&sim, dir.path(), &Secrets::right(), "MD5"),
        dir.path(),
    )
    .await;
    let r = spam(&before, "13800000013").await;
    assert_eq!(
        outcome(&r, pb::Check::SpamLabels).state(),
        pb::CheckState::Pending
    );
    before.stop().await.unwrap();

    let after = TestServer::start_in(
        vendors_config(&sim, dir.path(), &Secrets::right(), "MD5"),
        dir.path(),
    )
    .await;
    sim.stats().wait_until(|s| s["caih"].ready >= 1).await;
    let r = spam(&after, "13800000013").await;
    assert_eq!(
        outcome(&r, pb::Check::SpamLabels).state(),
        pb::CheckState::Ok
    );
    let labels = r.spam_labels.unwrap().labels;
    assert_eq!(labels[0].display_name, "顺丰速运");
    assert_eq!(
        sim.stats().vendor("caih").billable,
        1,
        "not submitted again after the restart"
    );
}

#[tokio::test]
async fn numbers_caih_does_not_take_are_not_sent() {
    let sim = start_sim(sim_config(Duration::from_secs(1))).await;
    let server = vendors_server(&sim, &Secrets::right(), "MD5").await;
    for number in ["12315", "110", "+6281234567890", "96225"] {
        let r = spam(&server, number).await;
        assert_eq!(
            outcome(&r, pb::Check::SpamLabels).state(),
            pb::CheckState::Skipped,
            "{number}"
        );
    }
    assert_eq!(sim.stats().vendor("caih").calls, 0);
}

/// With tenants kept apart (`cache.share = "tenant"`, the default with tenants), a submission
/// is its tenant's own: another tenant asking for the same number submits (and pays) for it
/// itself instead of being served, or charged for, the first tenant's.
#[tokio::test]
async fn with_share_tenant_a_submission_is_its_tenants_own() {
    const KEY_A: &str = "pck_caih_tenant_a_key_for_tests_only";
    const KEY_B: &str = "pck_caih_tenant_b_key_for_tests_only";
    let sim = start_sim(sim_config(Duration::from_millis(300))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = vendors_config(&sim, dir.path(), &Secrets::right(), "MD5");
    config.tenants = phonecheck::config::Config::from_toml(&format!(
        "[tenants.a]\nkey_sha256 = [\"{}\"]\n[tenants.b]\nkey_sha256 = [\"{}\"]\n",
        phonecheck::auth::key_hash(KEY_A),
        phonecheck::auth::key_hash(KEY_B)
    ))
    .unwrap()
    .tenants;
    let server = TestServer::start_in(config, dir.path()).await;
    let spam_as = |key: &'static str| {
        let mut client = server.client();
        async move {
            let request =
                crate::common::bearer(lookup("13800000014", &[pb::Check::SpamLabels]), key);
            let report = client
                .lookup_number(request)
                .await
                .unwrap()
                .into_inner()
                .report
                .unwrap();
            let o = outcome(&report, pb::Check::SpamLabels);
            (o.state(), o.billable)
        }
    };
    assert_eq!(spam_as(KEY_A).await, (pb::CheckState::Pending, true));
    assert_eq!(
        spam_as(KEY_B).await,
        (pb::CheckState::Pending, true),
        "b submits its own"
    );
    assert_eq!(sim.stats().vendor("caih").billable, 2);
    // The vendor keeps one entry a number: the later submission's labelling readies it.
    sim.stats().wait_until(|s| s["caih"].ready >= 1).await;
    for key in [KEY_A, KEY_B] {
        assert_eq!(spam_as(key).await, (pb::CheckState::Ok, false), "{key}");
    }
    assert_eq!(sim.stats().vendor("caih").billable, 2, "nothing paid twice");
}
