//! Reading the ledger: whose usage a tenant sees, months, and the bounds of a request.

use super::*;

#[tokio::test]
async fn a_tenant_reads_its_own_usage_unless_granted_all() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, true).await;
    lookup_as(&server, Some(ACME), "13712340001", &[pb::Check::LineStatus]).await;
    lookup_as(&server, Some(BETA), "13712340002", &[pb::Check::LineStatus]).await;
    lookup_as(&server, Some(BETA), "13712340003", &[pb::Check::LineStatus]).await;

    let own = get_usage(&server, Some(ACME), all()).await.unwrap();
    assert!(own.rows.iter().all(|r| r.tenant == "acme"), "{own:?}");
    assert_eq!(own.totals.unwrap().billable_calls, 1);
    let named = get_usage(
        &server,
        Some(BETA),
        pb::GetUsageRequest {
            tenant: "beta".into(),
            ..all()
        },
    )
    .await
    .unwrap();
    assert_eq!(named.totals.unwrap().billable_calls, 2);

    let refused = get_usage(
        &server,
        Some(BETA),
        pb::GetUsageRequest {
            tenant: "acme".into(),
            ..all()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(
        refused.get_details_error_info().unwrap().reason,
        "USAGE_NOT_ALLOWED"
    );
    let anonymous = get_usage(&server, None, all()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let everyone = get_usage(&server, Some(AUDITOR), all()).await.unwrap();
    assert_eq!(everyone.totals.unwrap().billable_calls, 3);
    let acme_only = get_usage(
        &server,
        Some(AUDITOR),
        pb::GetUsageRequest {
            tenant: "acme".into(),
            provider: "thinksms".into(),
            check: pb::Check::LineStatus as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(!acme_only.rows.is_empty());
    assert!(acme_only.rows.iter().all(|r| r.tenant == "acme"
        && r.provider == "thinksms"
        && r.check == pb::Check::LineStatus as i32));
    assert_eq!(acme_only.totals.unwrap().billable_calls, 1);
    let other_check = get_usage(
        &server,
        Some(AUDITOR),
        pb::GetUsageRequest {
            check: pb::Check::RiskProfile as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(other_check.rows.is_empty());
}

#[tokio::test]
async fn months_group_days_and_bad_ranges_are_refused_by_field() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim, false).await;
    lookup_as(
        &server,
        None,
        "13612340001",
        &[pb::Check::LineStatus, pb::Check::RiskProfile],
    )
    .await;
    lookup_as(&server, None, "13612340001", &[pb::Check::LineStatus]).await;

    let days = get_usage(&server, None, all()).await.unwrap();
    // Two provider-checks, on one day (two if the test ran across midnight in China).
    assert!((2..=4).contains(&days.rows.len()), "{days:?}");
    assert!(
        days.rows
            .iter()
            .all(|r| r.period.len() == 10 && r.tenant == "anonymous")
    );
    let months = get_usage(
        &server,
        None,
        pb::GetUsageRequest {
            group_by: pb::UsageGrouping::Month as i32,
            ..all()
        },
    )
    .await
    .unwrap();
    assert!(months.rows.len() <= days.rows.len(), "{months:?}");
    for month in &months.rows {
        let of_month = days.rows.iter().filter(|d| {
            d.period.starts_with(&month.period)
                && (&d.provider, d.check) == (&month.provider, month.check)
        });
        assert_eq!(
            of_month.map(|d| d.billable_calls).sum::<i64>(),
            month.billable_calls,
            "{month:?}"
        );
        assert_eq!(month.period.len(), 7, "YYYY-MM");
    }
    assert_eq!(months.totals, days.totals);
    let t = months.totals.unwrap();
    assert_eq!((t.billable_calls, t.cache_hits), (2, 1));
    assert_eq!(nanos(&t.cost), price("thinksms") + price("yidun"));

    for (from, to, field) in [
        ("2026-03-02", "2026-03-01", "from_day"),
        ("2024-01-01", "2026-01-01", "from_day"),
        ("01/03/2026", "", "from_day"),
        ("", "2026-02-30", "to_day"),
    ] {
        let status = get_usage(
            &server,
            None,
            pb::GetUsageRequest {
                from_day: from.into(),
                to_day: to.into(),
                ..all()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{from} {to}");
        let bad = status.get_details_bad_request().expect("a BadRequest");
        assert_eq!(bad.field_violations[0].field, field, "{from} {to}");
    }
}

#[tokio::test]
async fn past_ten_thousand_rows_a_selection_is_refused() {
    use phonecheck::store::{SqliteStore, UsageCounts, UsageKey, UsageStore};
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(config(&sim, dir.path(), false), dir.path()).await;
    // Once the server has its database (an empty ledger), 10,001 rows are written beside it, as
    // another replica would: 1,001 tenants × 10 days.
    assert!(
        get_usage(&server, None, all())
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let mut increments: Vec<(UsageKey, UsageCounts)> = Vec::new();
    for tenant in 0..1_001 {
        for day in 0..10 {
            increments.push((
                UsageKey {
                    tenant: format!("t{tenant:04}"),
                    provider: "thinksms".into(),
                    check: "line-status".into(),
                    day: today - chrono::Duration::days(day),
                },
                UsageCounts {
                    billable_calls: 1,
                    ..UsageCounts::default()
                },
            ));
        }
    }
    store.add_usage(&increments[..10_000]).await.unwrap();
    let ten_days = pb::GetUsageRequest {
        from_day: (today - chrono::Duration::days(9)).to_string(),
        ..all()
    };
    let exactly = get_usage(&server, None, ten_days.clone()).await.unwrap();
    assert_eq!(exactly.rows.len(), 10_000, "the bound itself is served");
    assert_eq!(exactly.totals.unwrap().billable_calls, 10_000);

    store.add_usage(&increments[10_000..]).await.unwrap();
    let status = get_usage(&server, None, ten_days.clone())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("a BadRequest");
    assert_eq!(bad.field_violations[0].field, "from_day");
    assert!(status.message().contains("10000"), "{status:?}");
    // Narrowed, or by month: served.
    let by_month = get_usage(
        &server,
        None,
        pb::GetUsageRequest {
            group_by: pb::UsageGrouping::Month as i32,
            ..ten_days
        },
    )
    .await
    .unwrap();
    assert_eq!(by_month.totals.unwrap().billable_calls, 10_010);
}
