//! The multi-number path: numbers bound for a batch vendor are sent in batches of its size.
//!
//! Batches of exactly 100 + 100 + 50 need every number to reach the batcher within one linger,
//! which a loaded machine need not give; what is asserted is the property, with slack: no call
//! over the vendor's size (the simulator refuses one), every number answered once, and a few
//! calls, not one per number.

use std::sync::Arc;

use crate::common::start_sim;
use phonecheck::domain::{Check, CheckData, CheckState};
use phonecheck::engine::{Engine, LookupRequest};
use phonecheck::number::Analyzer;
use phonecheck::providers::{BuildContext, SystemClock, http_client};
use phonecheck::sim::SimConfig;
use phonecheck::store::SqliteStore;

#[tokio::test]
async fn two_hundred_fifty_numbers_make_three_yidun_calls() {
    let sim = start_sim(SimConfig::default()).await;
    let ctx = BuildContext {
        http: http_client().unwrap(),
        clock: Arc::new(SystemClock),
        sandbox: false,
        pending: Arc::new(SqliteStore::in_memory().await.unwrap()),
    };
    let vendor = phonecheck::vendors::find("yidun").unwrap();
    let mut config = phonecheck::vendors::ProviderConfig::sandbox(vendor, &sim.base_url()).unwrap();
    // A linger long enough for 250 analyses on a busy machine; full batches go at once anyway.
    config.shared.limits.batch_linger = Some(std::time::Duration::from_millis(250));
    let yidun = config.build("yidun", &ctx).unwrap();
    let engine = Engine::new(Analyzer::default(), vec![yidun]);

    let requests: Vec<LookupRequest> = (0..250)
        .map(|i| LookupRequest {
            number: format!("1391234{i:04}"),
            checks: vec![Check::RiskProfile],
            ..Default::default()
        })
        .collect();
    let reports = futures::future::join_all(requests.iter().map(|r| engine.lookup(r))).await;

    assert_eq!(reports.len(), 250);
    for (request, report) in requests.iter().zip(&reports) {
        let report = report.as_ref().unwrap();
        assert_eq!(
            report.info.national_number, request.number,
            "results stay in order"
        );
        assert!(matches!(
            report.outcomes[0].state,
            CheckState::Ok(CheckData::RiskProfile(_))
        ));
    }
    let stats = sim.stats().vendor("yidun");
    // Yidun bills the call: one billable answer per call, carried by its first number.
    let billable = reports
        .iter()
        .filter(|r| r.as_ref().unwrap().outcomes[0].billable)
        .count() as u64;
    assert_eq!(billable, stats.billable);
    assert_eq!(stats.billable, stats.calls);
    assert_eq!(stats.numbers, 250, "every number sent once");
    assert!(
        (3..=6).contains(&stats.calls),
        "batches of at most 100 (100 + 100 + 50 when all arrive within one linger): {} calls",
        stats.calls
    );
}
