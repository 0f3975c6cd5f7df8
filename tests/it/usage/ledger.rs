//! The ledger equals what the simulators billed, on every path, and survives a restart.

use super::*;

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

    // Counted where the vendor call completes, before its answer is handed on: asked again, the
    // number joins that call or finds its answer in the cache, either way after it was counted.
    let again = lookup_as(&server, Some(ACME), "13812347777", &[pb::Check::LineStatus]).await;
    assert!(!outcome(&again, pb::Check::LineStatus).billable);
    cached_outcomes += count_cached(std::slice::from_ref(&again));
    let usage = get_usage(&server, Some(AUDITOR), all()).await.unwrap();
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
