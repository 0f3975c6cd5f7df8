//! Bulk file jobs through `BatchJobService`: formats and encodings, limits, duplicates, classified
//! exports, the HTML report, cancel, retention and tenant isolation.

mod lifecycle;

use crate::common::*;
use phonecheck::config::Config;
use phonecheck::pb;
use tonic::Code;
use tonic_types::StatusExt;

fn spec(file_name: &str, checks: &[pb::Check]) -> pb::BatchJobSpec {
    pb::BatchJobSpec {
        file_name: file_name.to_owned(),
        checks: checks.iter().map(|&c| c as i32).collect(),
        ..Default::default()
    }
}

fn progress(job: &pb::BatchJob) -> pb::BatchJobProgress {
    job.progress.clone().unwrap()
}

fn bad_request_field(status: &tonic::Status) -> String {
    status
        .get_details_bad_request()
        .expect("a BadRequest")
        .field_violations[0]
        .field
        .clone()
}

/// A CSV as a Chinese spreadsheet exports it: GBK, a header, the number in the second column,
/// duplicates in other spellings, and two rows without a number.
fn gbk_csv() -> Vec<u8> {
    let mut text = String::from("姓名,手机号,备注\r\n");
    for i in 0..200 {
        text.push_str(&format!("客户{i},1391234{:04},第{i}行\r\n", i % 150));
    }
    text.push_str("无号码,,空\r\n");
    text.push_str("乱码,abc,坏\r\n");
    text.push_str("重复,+86 139-1234-0001,另一种写法\r\n");
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    bytes.into_owned()
}

#[tokio::test]
async fn a_gbk_csv_is_read_checked_once_per_number_and_exported_by_category() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let created = create_job(
        &mut client,
        pb::BatchJobSpec {
            label: "spring campaign".into(),
            ..spec("客户.csv", &[pb::Check::LineStatus])
        },
        &gbk_csv(),
        1000,
    )
    .await
    .unwrap();
    assert_eq!(created.format, pb::FileFormat::Csv as i32);
    assert_eq!(created.encoding, "gb18030");
    assert_eq!(created.number_column, "手机号 (B)");
    let p = progress(&created);
    assert_eq!(
        (p.rows_total, p.numbers_total, p.bad_rows),
        (203, 150, 2),
        "203 data rows, 150 distinct numbers (one spelled differently), 2 without a number"
    );
    let bad: Vec<(i64, &str)> = created
        .bad_rows
        .iter()
        .map(|b| (b.row, b.reason.as_str()))
        .collect();
    assert_eq!(bad[0].0, 202, "row numbers count the header line");
    assert_eq!(bad[1].0, 203);
    assert!(bad[1].1.contains("'a'"), "{bad:?}");

    let job = finished_job(&mut client, &created.id).await;
    assert_eq!(job.state, pb::BatchJobState::Succeeded as i32);
    let p = progress(&job);
    assert_eq!((p.numbers_done, p.rows_done), (150, 203));
    assert_eq!(p.billable_calls, 150, "each distinct number is paid once");
    let counted: i64 = p.line_status_counts.iter().map(|c| c.count).sum();
    assert_eq!(counted, 201, "every row with a number has a status");

    let all = csv_rows(
        &export_job(
            &mut client,
            &job.id,
            pb::ExportFormat::Csv,
            pb::LineStatus::Unspecified,
        )
        .await,
    );
    assert_eq!(all.len(), 1 + 203);
    assert_eq!(&all[0][..4], ["row", "姓名", "手机号", "备注"]);
    assert!(all[0].contains(&"line_status".to_owned()));
    assert_eq!(&all[1][..4], ["2", "客户0", "13912340000", "第0行"]);
    assert_eq!(all[202][1], "乱码", "original order, bad rows included");
    assert_eq!(all[203][1], "重复");
    let status_col = all[0].iter().position(|c| c == "line_status").unwrap();
    let error_col = all[0].iter().position(|c| c == "error").unwrap();
    assert_eq!(all[202][status_col], "");
    assert!(all[202][error_col].contains("'a'"));
    // The duplicate in another spelling carries the same answer as its first row.
    let e164_col = all[0].iter().position(|c| c == "e164").unwrap();
    let same: Vec<&Vec<String>> = all
        .iter()
        .filter(|r| r[e164_col] == "+8613912340001")
        .collect();
    assert_eq!(same.len(), 3);
    assert!(same.iter().all(|r| r[status_col] == same[0][status_col]));

    for status in [
        pb::LineStatus::Active,
        pb::LineStatus::Empty,
        pb::LineStatus::Silent,
        pb::LineStatus::Risk,
    ] {
        let rows = csv_rows(&export_job(&mut client, &job.id, pb::ExportFormat::Csv, status).await);
        let name = status
            .as_str_name()
            .trim_start_matches("LINE_STATUS_")
            .to_lowercase();
        assert_eq!(rows.len() as i64 - 1, status_count(&job, status), "{name}");
        assert!(rows[1..].iter().all(|r| r[status_col] == name), "{name}");
    }
}

#[tokio::test]
async fn text_encodings_are_detected() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let numbers = "手机号\n13800138000\n13900139000\n+86 137 0013 7000\n";
    let utf16 = |le: bool, bom: bool| {
        let mut out = Vec::new();
        if bom {
            out.extend(if le { [0xFF, 0xFE] } else { [0xFE, 0xFF] });
        }
        for unit in numbers.encode_utf16() {
            out.extend(if le {
                unit.to_le_bytes()
            } else {
                unit.to_be_bytes()
            });
        }
        out
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("UTF-8", numbers.as_bytes().to_vec()),
        (
            "UTF-8 with BOM",
            [&b"\xEF\xBB\xBF"[..], numbers.as_bytes()].concat(),
        ),
        (
            "gb18030",
            encoding_rs::GB18030.encode(numbers).0.into_owned(),
        ),
        ("UTF-16LE with BOM", utf16(true, true)),
        ("UTF-16BE with BOM", utf16(false, true)),
        ("UTF-16LE", utf16(true, false)),
    ];
    for (encoding, bytes) in cases {
        let job = create_job(&mut client, spec("list.txt", &[]), &bytes, 7)
            .await
            .unwrap_or_else(|e| panic!("{encoding}: {e:?}"));
        assert_eq!(job.encoding, encoding);
        assert_eq!(job.format, pb::FileFormat::Txt as i32, "{encoding}");
        let p = progress(&job);
        assert_eq!(
            (p.rows_total, p.numbers_total, p.bad_rows),
            (3, 3, 0),
            "{encoding}"
        );
    }
}

/// A workbook with two sheets of numbers (one stored as numbers, one as text with the column
/// elsewhere) and a notes sheet.
fn workbook() -> Vec<u8> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let first = book.add_worksheet().set_name("客户").unwrap();
    first.write_string(0, 0, "mobile").unwrap();
    first.write_string(0, 1, "name").unwrap();
    for i in 0..40u32 {
        first
            .write_number(i + 1, 0, 13_800_000_000.0 + f64::from(i))
            .unwrap();
        first.write_string(i + 1, 1, format!("n{i}")).unwrap();
    }
    let second = book.add_worksheet().set_name("B").unwrap();
    second.write_string(0, 0, "id").unwrap();
    second.write_string(0, 2, "手机号码").unwrap();
    for i in 0..25u32 {
        second.write_number(i + 1, 0, f64::from(i)).unwrap();
        second
            .write_string(i + 1, 2, format!("139 0000 {:04}", i))
            .unwrap();
    }
    book.save_to_buffer().unwrap()
}

#[tokio::test]
async fn workbooks_are_read_sheet_by_sheet() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let file = workbook();

    let every = create_job(&mut client, spec("customers.xlsx", &[]), &file, 4096)
        .await
        .unwrap();
    assert_eq!(every.format, pb::FileFormat::Xlsx as i32);
    let p = progress(&every);
    assert_eq!((p.rows_total, p.numbers_total, p.bad_rows), (65, 65, 0));

    let one = create_job(
        &mut client,
        pb::BatchJobSpec {
            sheet: "b".into(),
            ..spec("customers.xlsx", &[])
        },
        &file,
        4096,
    )
    .await
    .unwrap();
    assert_eq!(progress(&one).rows_total, 25);
    assert_eq!(one.number_column, "手机号码 (C)");

    let missing = create_job(
        &mut client,
        pb::BatchJobSpec {
            sheet: "nope".into(),
            ..spec("customers.xlsx", &[])
        },
        &file,
        4096,
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    assert_eq!(bad_request_field(&missing), "spec.sheet");
    assert!(missing.message().contains("客户"), "{}", missing.message());

    let every = finished_job(&mut client, &every.id).await;
    let xlsx = export_job(
        &mut client,
        &every.id,
        pb::ExportFormat::Xlsx,
        pb::LineStatus::Unspecified,
    )
    .await;
    use calamine::Reader;
    let mut book: calamine::Xlsx<_> = calamine::Xlsx::new(std::io::Cursor::new(xlsx)).unwrap();
    let range = book.worksheet_range("results 1").unwrap();
    assert_eq!(range.height(), 1 + 65);
    let header: Vec<String> = range
        .rows()
        .next()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(&header[..3], ["sheet", "row", "mobile"]);
    let first: Vec<String> = range
        .rows()
        .nth(1)
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(&first[..3], ["客户", "2", "13800000000"]);
}

#[tokio::test]
async fn a_column_can_be_named_and_a_file_without_numbers_is_refused() {
    let server = TestServer::sandbox().await;
    let mut client = jobs_client(&server);
    let file = b"a;b;c\n1;13800138000;x\n2;13900139000;y\n";
    for column in ["b", "B", "2"] {
        let job = create_job(
            &mut client,
            pb::BatchJobSpec {
                number_column: column.into(),
                ..spec("x.csv", &[])
            },
            file,
            5,
        )
        .await
        .unwrap();
        assert_eq!(job.number_column, "b (B)", "{column}");
        assert_eq!(progress(&job).numbers_total, 2);
    }
    let wrong = create_job(
        &mut client,
        pb::BatchJobSpec {
            number_column: "phone".into(),
            ..spec("x.csv", &[])
        },
        file,
        100,
    )
    .await
    .unwrap_err();
    assert_eq!(bad_request_field(&wrong), "spec.number_column");

    for (name, bytes) in [
        ("names.csv", &b"name,city\nalice,paris\nbob,rome\n"[..]),
        ("empty.txt", b""),
        ("broken.xlsx", b"PK\x03\x04 this is not a zip archive"),
    ] {
        let refused = create_job(&mut client, spec(name, &[]), bytes, 100)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{name}");
        assert_eq!(bad_request_field(&refused), "chunk", "{name}");
    }
    // A stream that does not start with the spec.
    let no_spec = client
        .create_batch_job(tokio_stream::iter(vec![pb::CreateBatchJobRequest {
            payload: Some(pb::create_batch_job_request::Payload::Chunk(b"1".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(bad_request_field(&no_spec), "spec");
    let list = client
        .list_batch_jobs(pb::ListBatchJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.jobs.len(), 3, "only the three good uploads exist");
}
