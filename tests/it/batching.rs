//! The multi-number path: numbers bound for a batch vendor are sent in batches of its size.

use std::sync::Arc;

use crate::common::start_sim;
use phonecheck::domain::{Check, CheckData, CheckState};
use phonecheck::engine::{Engine, LookupRequest};
use phonecheck::number::Analyzer;
use phonecheck::providers::signing::SignatureMethod;
use phonecheck::providers::yidun::{YidunConfig, YidunProvider};
use phonecheck::providers::{BuildContext, SystemClock, http_client};
use phonecheck::sim::{self, SimConfig};
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
    let config = YidunConfig::sandbox(
        sim.base_url(),
        sim::SANDBOX_YIDUN_SECRET_ID,
        sim::SANDBOX_YIDUN_BUSINESS_ID,
        SignatureMethod::Sm3,
    );
    let yidun = YidunProvider::new(
        "yidun",
        &config,
        sim::SANDBOX_YIDUN_SECRET_KEY.to_owned().into(),
        &ctx,
    )
    .unwrap();
    let engine = Engine::new(Analyzer::default(), vec![Arc::new(yidun)]);

    let requests: Vec<LookupRequest> = (0..250)
        .map(|i| LookupRequest {
            number: format!("1391234{i:04}"),
            checks: vec![Check::RiskProfile],
            ..Default::default()
        })
        .collect();
    let reports = engine.lookup_many(&requests).await;

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
        assert!(report.outcomes[0].billable);
    }
    let stats = sim.stats().vendor("yidun");
    assert_eq!((stats.calls, stats.numbers), (3, 250), "100 + 100 + 50");
}
