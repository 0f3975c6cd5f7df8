//! What outcomes, streams, jobs and providers show each answer cost.

use super::*;

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
        // The configuration prices each provider's first check (the others of a vendor serving
        // several, Aliyun, are free here).
        for p in &provider.prices {
            let priced = p.check == provider.checks[0];
            let expected = if priced { price(&provider.name) } else { 0 };
            assert_eq!(nanos(&p.price), expected, "{provider:?}");
        }
    }
}
