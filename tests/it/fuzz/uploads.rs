//! Uploads: generated text files and workbooks, the hostile workbooks of issue #12 and the
//! regression corpus are read into rows or refused with `INVALID_ARGUMENT`, never a panic, an
//! abort or memory past the bound.

use super::*;

// ---- Uploads ----------------------------------------------------------------------------------

use std::sync::LazyLock;

use crate::import_files::generate::{self, Upload};
use phonecheck::jobs::JobError;
use phonecheck::jobs::import::{ImportBounds, ReadSpec, read_file};
use tonic_types::StatusExt;

static ANALYZER: LazyLock<Analyzer> = LazyLock::new(Analyzer::default);

/// Reads `bytes` as the server does, keeping the last three batches (the server has at most that
/// many in flight); the rows read.
fn read_upload(name: &str, bytes: &[u8], limits: &ImportBounds) -> Result<u64, JobError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    read_path(name, &path, limits)
}

fn read_path(name: &str, path: &std::path::Path, limits: &ImportBounds) -> Result<u64, JobError> {
    let spec = ReadSpec {
        file_name: name.to_owned(),
        max_rows: 1_000_000,
        limits: limits.clone(),
        ..ReadSpec::default()
    };
    let mut rows = 0;
    let mut in_flight = std::collections::VecDeque::new();
    read_file(path, &spec, &ANALYZER, &mut |batch| {
        rows += batch.len() as u64;
        in_flight.push_back(batch);
        if in_flight.len() > 3 {
            in_flight.pop_front();
        }
        Ok(())
    })
    .map(|_| rows)
}

/// Rows, or a refusal of the file itself (never an I/O or store failure).
fn assert_clean(result: &Result<u64, JobError>) {
    match result {
        Ok(_) | Err(JobError::Invalid { .. } | JobError::TooManyRows { .. }) => {}
        Err(e) => panic!("not a clean refusal: {e:?}"),
    }
}

/// Tight bounds, so generated files of a few KB meet every one of them.
fn tight_limits() -> impl Strategy<Value = ImportBounds> {
    (
        64..2_000u64,
        1..40u64,
        1..60u64,
        0..30u64,
        0..2_000u64,
        4_096..100_000u64,
        0..40_000u64,
    )
        .prop_map(
            |(cell, cells, columns, strings, string_bytes, part, xls)| ImportBounds {
                max_cell_bytes: cell,
                max_row_bytes: cell * 4,
                max_cells_per_row: cells,
                max_columns: columns,
                max_shared_strings: strings,
                max_shared_string_bytes: string_bytes,
                max_part_bytes: part,
                max_inflated_bytes: part * 2,
                max_xls_bytes: xls,
                ..ImportBounds::default()
            },
        )
}

fn limits() -> impl Strategy<Value = ImportBounds> {
    prop_oneof![Just(ImportBounds::default()), tight_limits()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn generated_uploads_are_read_or_refused_cleanly(upload in generate::upload(), limits in limits()) {
        assert_clean(&read_upload(&upload.name, &upload.bytes, &limits));
    }
}

/// The hostile files of issue #12 and the regression corpus, by name.
fn corpus() -> Vec<(String, Vec<u8>)> {
    // The two big ones are built (deterministically); the small ones are files.
    let mut files = vec![
        (
            "xfd-20000-rows.xlsx".to_owned(),
            crate::import_files::xfd_rows(20_000),
        ),
        (
            "inflating-cell-600mib.xlsx".to_owned(),
            crate::import_files::inflating_cell(600),
        ),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/import");
    let mut stored: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    stored.sort();
    for path in stored {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        files.push((name, std::fs::read(&path).unwrap()));
    }
    files
}

#[test]
fn the_corpus_is_read_or_refused_cleanly() {
    let small = ImportBounds {
        max_cell_bytes: 100,
        max_row_bytes: 400,
        max_cells_per_row: 4,
        max_columns: 8,
        max_shared_strings: 3,
        max_shared_string_bytes: 50,
        max_part_bytes: 10_000,
        max_inflated_bytes: 20_000,
        max_xls_bytes: 20_000,
        ..ImportBounds::default()
    };
    for (name, bytes) in corpus() {
        for limits in [&ImportBounds::default(), &small] {
            let result = read_upload(&name, &bytes, limits);
            assert_clean(&result);
        }
    }
}

/// What a refused upload's `BadRequest` says.
fn violation(status: &tonic::Status) -> String {
    let details = status.get_details_bad_request().expect("a BadRequest");
    let v = &details.field_violations[0];
    format!("{}: {}", v.field, v.description)
}

#[tokio::test]
async fn the_hostile_workbooks_of_issue_12_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(
        phonecheck::config::Config::from_toml("").unwrap(),
        dir.path(),
    )
    .await;
    let mut client = crate::common::jobs_client(&server);
    let spec = |name: &str| pb::BatchJobSpec {
        file_name: name.to_owned(),
        ..Default::default()
    };
    let cases = [
        (
            "bomb.xlsx",
            crate::import_files::unique_count_bomb(),
            vec!["jobs.import.max_shared_strings (1000000)", "99999999999999"],
        ),
        (
            "xfd.xlsx",
            crate::import_files::xfd_rows(20_000),
            vec!["jobs.import.max_columns (1024)", "column XFD (16384)"],
        ),
        (
            "inflating.xlsx",
            crate::import_files::inflating_cell(600),
            vec!["jobs.import.max_cell_bytes (32768)"],
        ),
        (
            "fat.xls",
            crate::import_files::fat_bomb_xls(),
            vec!["claims 2147483647 FAT sectors", "the file's own length"],
        ),
    ];
    for (name, file, wanted) in cases {
        let refused = crate::common::create_job(&mut client, spec(name), &file, 64 * 1024)
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{name}: {refused:?}"
        );
        let said = violation(&refused);
        assert!(said.starts_with("chunk: "), "{name}: {said}");
        for w in wanted {
            assert!(said.contains(w), "{name}: {said:?} does not say {w:?}");
        }
    }
    // Nothing of them is left: no job, no spooled upload.
    let list = client
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.jobs.is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count(),
        0
    );

    // The server still serves, and a well-formed XLS makes a job.
    let job = crate::common::create_job(
        &mut client,
        spec("customers.xls"),
        &crate::import_files::small_xls(30),
        4096,
    )
    .await
    .unwrap();
    let progress = job.progress.clone().unwrap();
    assert_eq!((progress.rows_total, progress.numbers_total), (30, 30));
    assert_eq!(job.number_column, "手机号 (B)");
    assert_eq!(job.format, pb::FileFormat::Xls as i32);
}

#[test]
fn generated_xls_files_read_the_same_as_calamine_reads_them() {
    use calamine::Reader;
    let file = crate::import_files::small_xls(300);
    let mut book: calamine::Xls<_> =
        calamine::Xls::new(std::io::Cursor::new(file.clone())).unwrap();
    let range = book.worksheet_range("客户").unwrap();
    assert_eq!(range.height(), 301);
    assert_eq!(range.get((5, 1)).unwrap().to_string(), "13800000005");
    assert_eq!(
        read_upload("a.xls", &file, &ImportBounds::default()).unwrap(),
        300
    );
}

#[test]
fn generated_uploads_through_the_server_make_a_job_or_invalid_argument() {
    let rt = runtime();
    let _inside = rt.enter();
    let server = rt.block_on(TestServer::sandbox());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    });
    runner
        .run(&generate::upload(), |upload: Upload| {
            rt.block_on(async {
                let mut client = crate::common::jobs_client(&server);
                let spec = pb::BatchJobSpec {
                    file_name: upload.name.clone(),
                    ..Default::default()
                };
                if let Err(status) =
                    crate::common::create_job(&mut client, spec, &upload.bytes, 8192).await
                {
                    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
                    violation(&status);
                }
            });
            Ok(())
        })
        .unwrap();
    rt.block_on(async {
        server
            .client()
            .lookup_number(pb::LookupNumberRequest {
                number: "13800138000".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

// ---- Memory -----------------------------------------------------------------------------------

/// The README's bound on memory taken by reading one upload, above the server's idle.
const MEMORY_BOUND_MIB: u64 = 256;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Files near every bound, and the hostile ones: what reading them costs at most.
fn heavy_files() -> Vec<(String, Vec<u8>)> {
    let mut files = corpus();
    // Issue #21: 60,005 entries behind a false end record claiming none.
    files.push((
        "false_end_record.xlsx".into(),
        crate::import_files::false_end_record(60_005),
    ));
    // Shared strings up to their byte bound (48 MiB of text in 1,000,000 strings).
    let mut sst = String::from("<sst>");
    for i in 0..1_000_000 {
        sst.push_str(&format!("<si><t>{i:0>48}</t></si>"));
    }
    sst.push_str("</sst>");
    let mut entries = crate::import_files::xlsx_frame(1, true);
    entries.push(crate::import_files::Entry::stored(
        "xl/sharedStrings.xml",
        sst.into_bytes(),
    ));
    let mut rows = String::new();
    for i in 1..=200_000u32 {
        rows.push_str(&format!(
            r#"<row r="{i}"><c r="A{i}" t="s"><v>{}</v></c><c r="B{i}"><v>1380013{:04}</v></c><c r="C{i}" t="s"><v>{}</v></c></row>"#,
            i % 1_000_000,
            i % 10_000,
            (i * 7) % 1_000_000
        ));
    }
    entries.push(crate::import_files::Entry::stored(
        "xl/worksheets/sheet1.xml",
        crate::import_files::sheet_xml(&rows).into_bytes(),
    ));
    files.push((
        "shared-strings-at-the-bound.xlsx".into(),
        crate::import_files::zip(&entries),
    ));
    // Wide rows of long cells: 200 lines of 8 cells of 30 KB, then many lines of 1,000 cells.
    let mut csv = String::new();
    let long = vec!["x".repeat(30_000); 8].join(",");
    for i in 0..200 {
        csv.push_str(&format!("1380013{i:04},{long}\n"));
    }
    let wide = vec!["abcdefghijklmnopqrstuvwxyz0123456789"; 1_000].join(",");
    for i in 0..2_000 {
        csv.push_str(&format!("1380013{i:04},{wide}\n"));
    }
    files.push(("wide.csv".into(), csv.into_bytes()));
    // One line of 50 MB with no end.
    files.push(("no-line-end.txt".into(), vec![b'9'; 50 << 20]));
    // An XLS of 6 MB, mostly shared strings (the test writer makes no DIFAT, so no bigger).
    let strings: Vec<String> = (0..200_000).map(|i| format!("{i:0>12}")).collect();
    let cells = (0..60_000u16)
        .map(|i| (i, 0, crate::import_files::XlsCell::Shared(u32::from(i))))
        .collect();
    files.push((
        "big.xls".into(),
        crate::import_files::xls(&strings, &[("S".into(), cells)]),
    ));
    files
}

#[test]
fn reading_any_upload_stays_within_the_memory_bound() {
    // Each file is read in a process of its own (this test binary again, running only the
    // probe), so neither another test's memory nor what an earlier read left to the allocator
    // hides what reading it takes.
    let dir = tempfile::tempdir().unwrap();
    let mut report = String::new();
    for (name, bytes) in heavy_files() {
        let path = dir.path().join(&name);
        std::fs::write(&path, bytes).unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fuzz::uploads::memory_probe",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PHONECHECK_MEMORY_PROBE", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("peak ").map(|(_, m)| m))
            .unwrap_or_else(|| panic!("{name}: no measure in {stdout}"));
        let mib: u64 = line.split(' ').nth(1).unwrap().parse().unwrap();
        report.push_str(line);
        report.push('\n');
        assert!(mib <= MEMORY_BOUND_MIB, "{name} took {mib} MiB");
    }
    println!("{report}");
}

#[test]
#[ignore = "run in a process of its own by reading_any_upload_stays_within_the_memory_bound"]
fn memory_probe() {
    let Some(path) = std::env::var_os("PHONECHECK_MEMORY_PROBE") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(&path).unwrap().len();
    LazyLock::force(&ANALYZER);
    let idle = status_kib("VmRSS:");
    let result = read_path(&name, &path, &ImportBounds::default());
    let peak = status_kib("VmHWM:").saturating_sub(idle) / 1024;
    let outcome = match &result {
        Ok(rows) => format!("{rows} rows"),
        Err(e) => e.to_string(),
    };
    println!("peak {name} {peak} MiB above idle; {size} bytes; {outcome}");
    assert_clean(&result);
}
