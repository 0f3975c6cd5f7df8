//! The Yidun simulator checks what Yidun checks; the client surfaces each code.

use std::sync::Arc;

use crate::common::start_sim;
use chrono::{Duration as Days, Utc};
use phonecheck::domain::Check;
use phonecheck::number::Analyzer;
use phonecheck::providers::{
    Clock, FixedClock, Provider, ProviderError, Query, SystemClock, http_client,
};
use phonecheck::sim::{SimConfig, SimServer};

async fn provider(sim: &SimServer, clock: Arc<dyn Clock>, secret_id: &str) -> Arc<dyn Provider> {
    crate::common::vendor_client(
        "yidun",
        sim,
        clock,
        serde_json::json!({ "secret_id": secret_id, "signature_method": "SHA1" }),
        None,
    )
    .await
}

fn queries(n: usize) -> Vec<Query> {
    let analyzer = Analyzer::default();
    (0..n)
        .map(|i| Query::from(analyzer.analyze(&format!("1391234{i:04}"), "").unwrap()))
        .collect()
}

fn vendor_code(results: &[Result<phonecheck::providers::Answer, ProviderError>]) -> Option<String> {
    results[0]
        .as_ref()
        .err()
        .and_then(|e| e.vendor_code().map(str::to_owned))
}

#[tokio::test]
async fn a_clock_off_by_a_day_is_refused_with_420() {
    let sim = start_sim(SimConfig::default()).await;
    let late = provider(
        &sim,
        Arc::new(FixedClock(Utc::now() - Days::days(1))),
        phonecheck::vendors::yidun::SANDBOX_SECRET_ID,
    )
    .await;
    let results = late.call(Check::RiskProfile, &queries(1)).await;
    assert_eq!(vendor_code(&results).as_deref(), Some("420"));
    assert!(
        !results[0].as_ref().unwrap_err().retryable(),
        "fix the clock, do not retry blindly"
    );
}

#[tokio::test]
async fn a_reused_nonce_is_refused_with_430() {
    let sim = start_sim(SimConfig::default()).await;
    // A stopped clock also hands out one nonce forever.
    let stopped = provider(
        &sim,
        Arc::new(FixedClock(Utc::now())),
        phonecheck::vendors::yidun::SANDBOX_SECRET_ID,
    )
    .await;
    assert!(stopped.call(Check::RiskProfile, &queries(1)).await[0].is_ok());
    let again = stopped.call(Check::RiskProfile, &queries(1)).await;
    assert_eq!(vendor_code(&again).as_deref(), Some("430"));
    // With fresh nonces every call goes through.
    let live = provider(
        &sim,
        Arc::new(SystemClock),
        phonecheck::vendors::yidun::SANDBOX_SECRET_ID,
    )
    .await;
    for _ in 0..3 {
        assert!(live.call(Check::RiskProfile, &queries(1)).await[0].is_ok());
    }
}

#[tokio::test]
async fn more_than_a_hundred_phones_are_refused_with_414() {
    let sim = start_sim(SimConfig::default()).await;
    let yidun = provider(
        &sim,
        Arc::new(SystemClock),
        phonecheck::vendors::yidun::SANDBOX_SECRET_ID,
    )
    .await;
    let results = yidun.call(Check::RiskProfile, &queries(101)).await;
    assert_eq!(results.len(), 101, "one result per number, failure or not");
    assert_eq!(vendor_code(&results).as_deref(), Some("414"));
    assert!(
        yidun
            .call(Check::RiskProfile, &queries(100))
            .await
            .iter()
            .all(Result::is_ok)
    );
}

#[tokio::test]
async fn wrong_and_missing_ids() {
    let sim = start_sim(SimConfig::default()).await;
    let wrong = provider(&sim, Arc::new(SystemClock), "not-our-secret-id").await;
    assert_eq!(
        vendor_code(&wrong.call(Check::RiskProfile, &queries(1)).await).as_deref(),
        Some("401")
    );
    let missing = provider(&sim, Arc::new(SystemClock), "").await;
    assert_eq!(
        vendor_code(&missing.call(Check::RiskProfile, &queries(1)).await).as_deref(),
        Some("400")
    );
    // A malformed form is a parameter error, not a crash.
    let http = http_client().unwrap();
    let body: serde_json::Value = http
        .post(format!(
            "{}/v1/profile/phone/multiple/query",
            sim.base_url()
        ))
        .body("%%%")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["code"], 400);
}
