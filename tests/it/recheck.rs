//! Re-checks (`BatchJobSpec.recheck_of`): a new job over an earlier job's rows that pays only for
//! answers older than `options.max_cache_age`, says per number what changed, and keeps to the
//! tenant's own jobs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::*;
use phonecheck::auth::key_hash;
use phonecheck::config::Config;
use phonecheck::pb;
use phonecheck::sim::{self, SimConfig};
use tonic::Code;

const NUMBERS: u32 = 60;

/// A CSV of `NUMBERS` distinct numbers (none of the simulator's magic ones), each on one row,
/// the first ten twice, and one row without a number.
fn list() -> (Vec<u8>, Vec<String>) {
    let numbers: Vec<String> = (0..NUMBERS)
        .map(|i| format!("1395550{:04}", 1_000 + i * 37))
        .collect();
    let mut file = String::from("name,mobile\n");
    for (i, n) in numbers.iter().enumerate() {
        file.push_str(&format!("c{i},{n}\n"));
    }
    for (i, n) in numbers.iter().take(10).enumerate() {
        file.push_str(&format!("again{i},{n}\n"));
    }
    file.push_str("nobody,n/a\n");
    (file.into_bytes(), numbers)
}

fn line_status_spec() -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: "list.csv".into(),
        checks: vec![pb::Check::LineStatus as i32],
        ..Default::default()
    }
}

/// A re-check of `earlier`, asking again answers older than `max_age`.
fn recheck_spec(earlier: &str, max_age: Duration, dry_run: bool) -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        recheck_of: earlier.to_owned(),
        checks: vec![pb::Check::LineStatus as i32],
        options: Some(pb::CheckOptions {
            max_cache_age: Some(max_age.try_into().unwrap()),
            ..Default::default()
        }),
        dry_run,
        ..Default::default()
    }
}

/// The CSV export of `id`, parsed: header and rows.
async fn export_csv(server: &TestServer, id: &str, changed_only: bool) -> Vec<Vec<String>> {
    let mut chunks = jobs_client(server)
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: id.to_owned(),
            format: pb::ExportFormat::Csv as i32,
            changed_only,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        bytes.extend(chunk.chunk);
    }
    csv_rows(&bytes)
}

/// The cells of `column` in `table` (header first), by row.
fn column<'a>(table: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let at = table[0].iter().position(|h| h == name).expect(name);
    table[1..].iter().map(|row| row[at].as_str()).collect()
}

/// A server against `sim` (quota off), its jobs in PostgreSQL at `database` or else in SQLite,
/// whose first job over [`list`] has ended.
async fn server_with_a_first_job(
    sim: &sim::SimServer,
    database: Option<&str>,
) -> (TestServer, pb::BatchJob) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::from_toml(&thinksms_toml(sim, dir.path(), 0, "")).unwrap();
    if let Some(url) = database {
        config.storage.database_url = Some(phonecheck::config::SecretRef::File(
            crate::postgres::url_file(dir.path(), url),
        ));
    }
    let server = TestServer::start_in(config, dir.path()).await.keep_dir(dir);
    let mut client = jobs_client(&server);
    let first = create_job(&mut client, line_status_spec(), &list().0, 4096)
        .await
        .unwrap();
    let first = finished_job(&mut client, &first.id).await;
    assert_eq!(
        first.progress.clone().unwrap().billable_calls,
        i64::from(NUMBERS)
    );
    (server, first)
}

#[tokio::test]
async fn a_recheck_within_the_answers_age_pays_nothing_and_nothing_changes() {
    let sim = start_sim(SimConfig::default()).await;
    let (server, first) = server_with_a_first_job(&sim, None).await;
    let mut client = jobs_client(&server);
    let bill = sim.stats().vendor("thinksms").billable;

    // The rows are read as the earlier job read them: another way is refused, not ignored.
    let spec = pb::BatchJobSpec {
        number_column: "name".into(),
        ..recheck_spec(&first.id, Duration::from_secs(3600), false)
    };
    let refused = create_job(&mut client, spec, &[], 1).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("number_column"), "{refused:?}");

    let spec = recheck_spec(&first.id, Duration::from_secs(3600), false);
    let again = create_job(&mut client, spec, &[], 1).await.unwrap();
    let again = finished_job(&mut client, &again.id).await;
    assert_eq!(again.state(), pb::BatchJobState::Succeeded);
    let progress = again.progress.unwrap();
    assert_eq!(
        (
            progress.rows_total,
            progress.numbers_total,
            progress.bad_rows
        ),
        (i64::from(NUMBERS) + 11, i64::from(NUMBERS), 1),
        "the earlier job's rows"
    );
    assert_eq!(progress.billable_calls, 0);
    assert_eq!(
        sim.stats().vendor("thinksms").billable,
        bill,
        "paid nothing"
    );

    let table = export_csv(&server, &again.id, false).await;
    assert_eq!(table.len(), NUMBERS as usize + 12, "header and every row");
    let changed = column(&table, "line_status_changed");
    assert_eq!(
        changed.iter().filter(|c| **c == "no").count(),
        NUMBERS as usize + 10
    );
    assert_eq!(
        changed.iter().filter(|c| c.is_empty()).count(),
        1,
        "the row without a number"
    );
    assert_eq!(
        column(&table, "previous_line_status"),
        column(&table, "line_status")
    );
    assert_eq!(
        export_csv(&server, &again.id, true).await.len(),
        1,
        "only the header"
    );
}

#[tokio::test]
async fn a_recheck_after_the_world_moved_on_reports_exactly_the_changed_numbers() {
    the_world_moves_on(None).await;
}

/// A first job, the simulated world a day later, and a re-check of the job (estimated, then
/// run) that reports exactly the numbers whose answer changed; jobs in PostgreSQL at `database`
/// or else in SQLite (`postgres::` runs it on PostgreSQL).
pub(crate) async fn the_world_moves_on(database: Option<&str>) {
    let epoch = Arc::new(AtomicU64::new(0));
    let sim = start_sim(SimConfig {
        answer_epoch: epoch.clone(),
        ..SimConfig::default()
    })
    .await;
    let (server, first) = server_with_a_first_job(&sim, database).await;
    let mut client = jobs_client(&server);
    let numbers = list().1;
    let bill = sim.stats().vendor("thinksms").billable;

    // A day later, by rule: some numbers answer otherwise.
    epoch.store(1, Ordering::SeqCst);
    let expected: BTreeSet<&str> = numbers
        .iter()
        .filter(|n| {
            phonecheck::vendors::thinksms::sim::answer_for(n, 0).0
                != phonecheck::vendors::thinksms::sim::answer_for(n, 1).0
        })
        .map(String::as_str)
        .collect();
    assert!(!expected.is_empty() && expected.len() < numbers.len());

    // Estimated first: every number is to be asked again (max_cache_age 0).
    let spec = recheck_spec(&first.id, Duration::ZERO, true);
    let estimated = create_job(&mut client, spec, &[], 1).await.unwrap();
    assert_eq!(estimated.state(), pb::BatchJobState::Estimated);
    let paid: i64 = estimated
        .estimate
        .unwrap()
        .checks
        .iter()
        .map(|c| c.paid)
        .sum();
    assert_eq!(paid, i64::from(NUMBERS));
    client
        .start_batch_job(pb::StartBatchJobRequest {
            job_id: estimated.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let again = finished_job(&mut client, &estimated.id).await;
    assert_eq!(again.state(), pb::BatchJobState::Succeeded);
    assert_eq!(again.progress.unwrap().billable_calls, i64::from(NUMBERS));
    assert_eq!(
        sim.stats().vendor("thinksms").billable - bill,
        u64::from(NUMBERS),
        "the bill is the distinct numbers"
    );

    let changed = export_csv(&server, &again.id, true).await;
    let reported: BTreeSet<&str> = column(&changed, "mobile").into_iter().collect();
    assert_eq!(
        reported, expected,
        "exactly the numbers whose answer changed"
    );
    assert!(
        column(&changed, "line_status_changed")
            .iter()
            .all(|c| *c == "yes")
    );
    // The first ten numbers are on two rows each.
    let rows = expected
        .iter()
        .map(|n| {
            if numbers[..10].iter().any(|m| m == n) {
                2
            } else {
                1
            }
        })
        .sum::<usize>();
    assert_eq!(changed.len() - 1, rows);

    // The report counts them.
    let mut chunks = client
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: again.id.clone(),
            format: pb::ExportFormat::Html as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut html = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        html.extend(chunk.chunk);
    }
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains(&format!("{} numbers changed line status", expected.len())),
        "{html}"
    );
}

#[tokio::test]
async fn only_a_tenants_own_ended_jobs_can_be_rechecked() {
    const KEY_A: &str = "pck_recheck_tenant_a_key_for_tests_only";
    const KEY_B: &str = "pck_recheck_tenant_b_key_for_tests_only";
    let sim = start_sim(SimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let tenants = format!(
        "[tenants.a]\nkey_sha256 = [\"{}\"]\n[tenants.b]\nkey_sha256 = [\"{}\"]\n",
        key_hash(KEY_A),
        key_hash(KEY_B)
    );
    let server = TestServer::start_in(
        Config::from_toml(&thinksms_toml(&sim, dir.path(), 0, &tenants)).unwrap(),
        dir.path(),
    )
    .await;
    let (mut a, mut b) = (
        jobs_client_as(&server, KEY_A),
        jobs_client_as(&server, KEY_B),
    );
    let (file, _) = list();
    // An estimated job has not ended.
    let estimated = create_job(
        &mut a,
        pb::BatchJobSpec {
            dry_run: true,
            ..line_status_spec()
        },
        &file,
        4096,
    )
    .await
    .unwrap();
    let spec = recheck_spec(&estimated.id, Duration::ZERO, false);
    let refused = create_job(&mut a, spec, &[], 1).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Another tenant's job is not found; so is a deleted one.
    let spec = recheck_spec(&estimated.id, Duration::ZERO, false);
    let refused = create_job(&mut b, spec, &[], 1).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    a.delete_batch_job(pb::DeleteBatchJobRequest {
        job_id: estimated.id.clone(),
    })
    .await
    .unwrap();
    let spec = recheck_spec(&estimated.id, Duration::ZERO, false);
    let refused = create_job(&mut a, spec, &[], 1).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    // A re-check takes no file.
    let spec = recheck_spec(&estimated.id, Duration::ZERO, false);
    let refused = create_job(&mut a, spec, &file, 4096).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("recheck_of"), "{refused:?}");
    // Only a re-check's export has changes to keep.
    let plain = create_job(&mut a, line_status_spec(), &file, 4096)
        .await
        .unwrap();
    let refused = a
        .export_batch_job_results(pb::ExportBatchJobResultsRequest {
            job_id: plain.id.clone(),
            format: pb::ExportFormat::Csv as i32,
            changed_only: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
}
