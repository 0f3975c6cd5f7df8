//! Aliyun's tenure, reassigned and current-carrier checks end to end: a real server whose only
//! provider is Aliyun, against the simulator (magic suffixes), through `LookupNumber`, a
//! `CheckNumbers` stream and a batch job; what is billed and what the ledger says; the carrier's
//! per-number frequency limit; the registration time as a required input and part of the
//! answer's identity.

use crate::aliyun::aliyun_config_with;
use crate::common::{
    TestServer, check_numbers, create_job, csv_rows, error_info, export_job, finished_job,
    jobs_client, lookup, outcome, report, start_sim,
};
use phonecheck::pb;
use phonecheck::sim::{SimConfig, SimServer};
use phonecheck::vendors::aliyun::SANDBOX_ACCESS_KEY_SECRET;
use tonic_types::StatusExt;

/// phonecheck with one provider, Aliyun, against `sim`, with a price per check.
async fn server(sim: &SimServer) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let more = r#"
        action_quotas = { tenure = { requests_per_second = 50, burst = 1 } }
        [providers.aliyun.prices]
        line_status = "0.04"
        tenure = "0.03"
        reassigned = "0.05"
        current_carrier = "0.02"
    "#;
    let config = aliyun_config_with(sim, dir.path(), SANDBOX_ACCESS_KEY_SECRET, "NORMAL", more);
    TestServer::start_in(config, dir.path()).await.keep_dir(dir)
}

/// 2021-03-04T05:06:07Z.
const REGISTERED: i64 = 1_614_834_367;

fn registered(seconds: i64) -> pb::CheckOptions {
    pb::CheckOptions {
        registered_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        ..Default::default()
    }
}

fn ask(number: &str, checks: &[pb::Check], options: pb::CheckOptions) -> pb::LookupNumberRequest {
    pb::LookupNumberRequest {
        options: Some(options),
        ..lookup(number, checks)
    }
}

fn nanos(money: &Option<pb::google_type::Money>) -> i64 {
    money
        .as_ref()
        .map(|m| m.units * 1_000_000_000 + i64::from(m.nanos))
        .unwrap_or_default()
}

async fn usage(server: &TestServer) -> pb::GetUsageResponse {
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    pb::usage_service_client::UsageServiceClient::new(server.channel())
        .get_usage(pb::GetUsageRequest {
            from_day: (today - chrono::Duration::days(3)).to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn each_check_through_lookup_and_what_is_billed() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim).await;

    let r = report(&server, lookup("13800000205", &[pb::Check::Tenure])).await;
    let o = outcome(&r, pb::Check::Tenure);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Ok, true));
    assert_eq!(nanos(&o.cost), 30_000_000);
    let t = r.tenure.as_ref().unwrap();
    assert_eq!(
        (
            t.status(),
            t.lower_months,
            t.upper_months,
            t.raw_code.as_str()
        ),
        (pb::TenureStatus::Known, 6, Some(12), "3")
    );
    let r = report(&server, lookup("13800000207", &[pb::Check::Tenure])).await;
    let t = r.tenure.as_ref().unwrap();
    assert_eq!((t.lower_months, t.upper_months), (24, None), "open above");

    // No record (-1): answered, free.
    let r = report(&server, lookup("13800000201", &[pb::Check::Tenure])).await;
    let o = outcome(&r, pb::Check::Tenure);
    assert_eq!(
        (o.state(), o.billable, nanos(&o.cost)),
        (pb::CheckState::Ok, false, 0)
    );
    assert_eq!(
        r.tenure.as_ref().unwrap().status(),
        pb::TenureStatus::NotFound
    );

    let r = report(
        &server,
        ask(
            "13800000302",
            &[pb::Check::Reassigned],
            registered(REGISTERED),
        ),
    )
    .await;
    let o = outcome(&r, pb::Check::Reassigned);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Ok, true));
    let a = r.reassigned.as_ref().unwrap();
    assert_eq!(
        (a.status(), a.raw_code.as_str(), a.carrier_code.as_str()),
        (pb::ReassignedStatus::Recycled, "1", "CMCC")
    );
    // Cannot tell (0): answered, free.
    let r = report(
        &server,
        ask(
            "13800000301",
            &[pb::Check::Reassigned],
            registered(REGISTERED),
        ),
    )
    .await;
    let o = outcome(&r, pb::Check::Reassigned);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Ok, false));
    assert_eq!(
        r.reassigned.as_ref().unwrap().status(),
        pb::ReassignedStatus::Unknown
    );

    let r = report(&server, lookup("13800000402", &[pb::Check::CurrentCarrier])).await;
    let o = outcome(&r, pb::Check::CurrentCarrier);
    assert_eq!((o.state(), o.billable), (pb::CheckState::Ok, true));
    let c = r.current_carrier.as_ref().unwrap();
    assert!(c.ported);
    assert_eq!(c.carrier.as_ref().unwrap().name, "China Unicom");
    assert_eq!(
        (c.basic_carrier.as_str(), c.mvno.as_str()),
        ("中国移动", "")
    );
    assert_eq!(
        r.info.unwrap().carrier.unwrap().name,
        "China Mobile",
        "the segment's"
    );
    let r = report(&server, lookup("13800000403", &[pb::Check::CurrentCarrier])).await;
    let c = r.current_carrier.as_ref().unwrap();
    assert_eq!(c.mvno, "中国移动虚拟运营商");
    assert_eq!(c.carrier.as_ref().unwrap().name, "China Mobile", "its host");

    // The ledger: what phonecheck says is billable is what the simulator billed, and the free
    // answers cost nothing.
    let billed = sim.stats().vendor("aliyun").billable;
    assert_eq!(billed, 5);
    let totals = usage(&server).await.totals.unwrap();
    assert_eq!(totals.billable_calls, 5, "{totals:?}");
    assert_eq!(
        nanos(&totals.cost),
        2 * 30_000_000 + 50_000_000 + 2 * 20_000_000
    );
}

#[tokio::test]
async fn the_registration_time_is_required_and_part_of_the_answers_identity() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim).await;
    let refused = server
        .client()
        .lookup_number(lookup("13800000302", &[pb::Check::Reassigned]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let field = &refused.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(field.field, "options.registered_at");
    let future = server
        .client()
        .lookup_number(ask(
            "13800000302",
            &[pb::Check::Reassigned],
            registered(chrono::Utc::now().timestamp() + 86_400),
        ))
        .await
        .unwrap_err();
    assert_eq!(future.code(), tonic::Code::InvalidArgument);

    let number = "13912340302";
    let checks = [pb::Check::Reassigned, pb::Check::Tenure];
    let first = report(&server, ask(number, &checks, registered(REGISTERED))).await;
    assert!(first.outcomes.iter().all(|o| !o.cached));
    // The same time again: both from the cache.
    let again = report(&server, ask(number, &checks, registered(REGISTERED))).await;
    assert!(again.outcomes.iter().all(|o| o.cached), "{again:?}");
    // Another time: tenure does not depend on it (cached), reassigned does (asked again, and the
    // carrier refuses the same number so soon).
    let other = report(&server, ask(number, &checks, registered(REGISTERED + 1))).await;
    assert!(outcome(&other, pb::Check::Tenure).cached);
    let o = outcome(&other, pb::Check::Reassigned);
    assert!(!o.cached);
    assert_eq!(
        error_info(o.error.as_ref().unwrap()).metadata["vendor_code"],
        "RequestFrequencyLimit"
    );
}

#[tokio::test]
async fn the_frequency_limit_is_a_free_per_number_refusal_that_leaves_the_breaker_closed() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim).await;
    let fresh = pb::CheckOptions {
        max_cache_age: Some(prost_types::Duration::default()),
        ..Default::default()
    };
    let first = report(
        &server,
        ask("13912345678", &[pb::Check::Tenure], fresh.clone()),
    )
    .await;
    assert_eq!(
        outcome(&first, pb::Check::Tenure).state(),
        pb::CheckState::Ok
    );
    for _ in 0..6 {
        let r = report(
            &server,
            ask("13912345678", &[pb::Check::Tenure], fresh.clone()),
        )
        .await;
        let o = outcome(&r, pb::Check::Tenure);
        assert_eq!((o.state(), o.billable), (pb::CheckState::Error, false));
        let info = error_info(o.error.as_ref().unwrap());
        assert_eq!(info.reason, "PROVIDER_RATE_LIMITED");
        assert_eq!(info.metadata["vendor_code"], "RequestFrequencyLimit");
    }
    // Other numbers are still served: the refusals were about one number.
    let other = report(&server, lookup("13912345679", &[pb::Check::Tenure])).await;
    assert_eq!(
        outcome(&other, pb::Check::Tenure).state(),
        pb::CheckState::Ok
    );
    let providers = server
        .client()
        .list_providers(pb::ListProvidersRequest {})
        .await
        .unwrap()
        .into_inner();
    let aliyun = &providers.providers[0];
    assert!(!aliyun.circuit_open, "{aliyun:?}");
    assert_ne!(aliyun.health(), pb::ProviderHealth::Failing, "{aliyun:?}");
}

#[tokio::test]
async fn a_stream_carries_each_items_registration_time() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim).await;
    let items = ["13800000302", "13800000303", "13800000305"]
        .iter()
        .enumerate()
        .map(|(i, n)| pb::CheckNumbersRequest {
            request_id: i.to_string(),
            number: (*n).to_owned(),
            checks: vec![
                pb::Check::Reassigned as i32,
                pb::Check::CurrentCarrier as i32,
            ],
            options: Some(registered(REGISTERED)),
            ..Default::default()
        })
        .collect();
    let (results, summary) = check_numbers(&server, items).await;
    assert_eq!(results.len(), 3);
    let mut statuses: Vec<(String, pb::ReassignedStatus)> = results
        .iter()
        .map(|r| {
            let Some(pb::check_numbers_result::Outcome::Report(report)) = &r.outcome else {
                panic!("{r:?}")
            };
            (
                r.request_id.clone(),
                report.reassigned.as_ref().unwrap().status(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("0".to_owned(), pb::ReassignedStatus::Recycled),
            ("1".to_owned(), pb::ReassignedStatus::NotRecycled),
            ("2".to_owned(), pb::ReassignedStatus::Transferred),
        ]
    );
    assert_eq!(summary.billable_calls, 6, "{summary:?}");
}

/// The job's CSV export, row by row (the header first).
async fn csv_export(
    jobs: &mut pb::batch_job_service_client::BatchJobServiceClient<tonic::transport::Channel>,
    id: &str,
) -> Vec<Vec<String>> {
    let csv = export_job(jobs, id, pb::ExportFormat::Csv, pb::LineStatus::Unspecified).await;
    csv_rows(&csv)
}

/// A job of `file_name` asking the three checks, registered at [`REGISTERED`].
fn three_checks(file_name: &str) -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: file_name.into(),
        checks: vec![
            pb::Check::Tenure as i32,
            pb::Check::Reassigned as i32,
            pb::Check::CurrentCarrier as i32,
        ],
        options: Some(registered(REGISTERED)),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_job_exports_tenure_reassigned_and_the_current_carrier() {
    let sim = start_sim(SimConfig::default()).await;
    let server = server(&sim).await;
    let mut jobs = jobs_client(&server);
    let file = "phone\n13800000204\n13800000402\n13800000304\n";
    let created = create_job(
        &mut jobs,
        three_checks("numbers.csv"),
        file.as_bytes(),
        4096,
    )
    .await
    .unwrap();
    let job = finished_job(&mut jobs, &created.id).await;
    assert_eq!(job.state, pb::BatchJobState::Succeeded as i32, "{job:?}");
    let rows = csv_export(&mut jobs, &created.id).await;
    let header = &rows[0];
    let column = |name: &str| header.iter().position(|h| h == name).expect(name);
    let (tenure, reassigned, carrier, ported) = (
        column("tenure_months"),
        column("reassigned"),
        column("current_carrier"),
        column("ported"),
    );
    assert_eq!(rows[1][tenure], "3-6");
    assert_eq!(rows[2][carrier], "中国联通");
    assert_eq!(rows[2][ported], "true");
    assert_eq!(rows[3][reassigned], "deactivated");

    // The HTML report: the tenure histogram, the reassigned counts, the ported current carrier.
    let html = export_job(
        &mut jobs,
        &created.id,
        pb::ExportFormat::Html,
        pb::LineStatus::Unspecified,
    )
    .await;
    let html = String::from_utf8(html).unwrap();
    for expected in [
        "Tenure 在网时长",
        "3–6 months",
        "Reassigned 二次号",
        "deactivated 销号",
        "Current carrier 当前运营商",
        "中国联通",
        "of which ported 携号转网",
    ] {
        assert!(html.contains(expected), "{expected}: {html}");
    }

    // A dry run prices each check at its price: a fresh list of 2 is 2 × (0.03 + 0.05 + 0.02).
    let dry = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            dry_run: true,
            ..three_checks("fresh.csv")
        },
        b"phone\n13912340001\n13912340002\n",
        4096,
    )
    .await
    .unwrap();
    let estimate = dry.estimate.expect("an estimate");
    assert_eq!(nanos(&estimate.cost), 2 * 100_000_000, "{estimate:?}");
    let paid: Vec<(i32, i64)> = estimate.checks.iter().map(|c| (c.check, c.paid)).collect();
    assert_eq!(
        paid,
        [
            (pb::Check::Tenure as i32, 2),
            (pb::Check::Reassigned as i32, 2),
            (pb::Check::CurrentCarrier as i32, 2)
        ]
    );

    // Without a registration time, in a column or for every row, a job asking for the
    // reassigned check is refused.
    let refused = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            file_name: "numbers.csv".into(),
            checks: vec![pb::Check::Reassigned as i32],
            ..Default::default()
        },
        file.as_bytes(),
        4096,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        refused.get_details_bad_request().unwrap().field_violations[0].field,
        "spec.registered_at_column"
    );
}

/// 2021-03-04 05:06:07 and 2022-01-01 00:00:00, Beijing time.
const SIGNED_UP: [i64; 2] = [1_614_805_567, 1_640_966_400];

#[tokio::test]
async fn a_job_reads_each_rows_registration_time_from_its_column() {
    // The carrier's frequency limit off: here one number is asked with two times at once.
    let sim = start_sim(SimConfig {
        repeat_window: Some(std::time::Duration::ZERO),
        ..SimConfig::default()
    })
    .await;
    let server = server(&sim).await;
    let mut jobs = jobs_client(&server);
    let reassigned = |file_name: &str| pb::BatchJobSpec {
        file_name: file_name.into(),
        checks: vec![pb::Check::Reassigned as i32],
        ..Default::default()
    };
    // One number with two registration times (the first written twice, in two shapes), a time
    // that is not one, and a row without a time.
    let file = "手机号,注册时间\n\
                13912340001,2021-03-04 05:06:07\n\
                13912340001,2022/1/1\n\
                13912340001,2021-03-04T05:06:07+08:00\n\
                13912340002,next tuesday\n\
                13912340003,\n";
    let created = create_job(&mut jobs, reassigned("signups.csv"), file.as_bytes(), 4096)
        .await
        .unwrap();
    assert_eq!(created.registered_at_column, "注册时间 (B)");
    let job = finished_job(&mut jobs, &created.id).await;
    assert_eq!(job.state, pb::BatchJobState::Succeeded as i32, "{job:?}");
    let progress = job.progress.as_ref().unwrap();
    // Each (number, registration time) pair once, and paid once.
    assert_eq!(
        (
            progress.numbers_total,
            progress.bad_rows,
            progress.billable_calls
        ),
        (2, 2, 2),
        "{progress:?}"
    );
    let problems: Vec<&str> = created.bad_rows.iter().map(|b| b.reason.as_str()).collect();
    assert!(
        problems[0].starts_with("registration time in column B: \"next tuesday\""),
        "{problems:?}"
    );
    assert_eq!(problems[1], "no registration time in column B");

    // Each pair was asked with its own time: a lookup with that time is answered from what the
    // job paid for.
    for seconds in SIGNED_UP {
        let asked = ask("13912340001", &[pb::Check::Reassigned], registered(seconds));
        let answer = report(&server, asked).await;
        let o = outcome(&answer, pb::Check::Reassigned);
        assert!(o.cached && !o.billable, "{seconds}: {o:?}");
    }
    let rows = csv_export(&mut jobs, &created.id).await;
    let column = rows[0].iter().position(|h| h == "reassigned").unwrap();
    assert!(!rows[1][column].is_empty(), "{rows:?}");
    assert_eq!(
        rows[1][column], rows[3][column],
        "the same pair, the same answer"
    );
    let preview = jobs
        .preview_batch_job(pb::PreviewBatchJobRequest {
            job_id: created.id.clone(),
            rows: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            preview.number_column_index,
            preview.registered_at_column_index
        ),
        (0, 1)
    );

    // A re-check asks the same pairs: the earlier job's times came with its numbers.
    let again = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            recheck_of: created.id.clone(),
            ..reassigned("")
        },
        b"",
        4096,
    )
    .await
    .unwrap();
    let again = finished_job(&mut jobs, &again.id).await;
    let progress = again.progress.unwrap();
    assert_eq!((progress.billable_calls, progress.cache_hits), (0, 2));

    // A column named in the spec, by letter; a name the file does not have is refused.
    let named = |column: &str| pb::BatchJobSpec {
        registered_at_column: column.into(),
        ..reassigned("named.csv")
    };
    let file = b"phone,joined\n13912340004,2021-03-04\n";
    let created = create_job(&mut jobs, named("B"), file, 4096).await.unwrap();
    assert_eq!(created.registered_at_column, "joined (B)");
    let refused = create_job(&mut jobs, named("signed up"), file, 4096)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let violation = &refused.get_details_bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "spec.registered_at_column");
    assert!(
        violation.description.contains("phone, joined"),
        "{violation:?}"
    );

    // A re-check asking for the reassigned check of a job that read no times needs one time.
    let plain = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            checks: vec![pb::Check::Tenure as i32],
            ..reassigned("plain.csv")
        },
        b"phone\n13912340005\n",
        4096,
    )
    .await
    .unwrap();
    finished_job(&mut jobs, &plain.id).await;
    let refused = create_job(
        &mut jobs,
        pb::BatchJobSpec {
            recheck_of: plain.id.clone(),
            ..reassigned("")
        },
        b"",
        4096,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.get_details_bad_request().unwrap().field_violations[0].field,
        "spec.registered_at_column"
    );
}
