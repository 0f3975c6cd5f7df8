//! The importer's tests: column choice, line numbers and registration times.

use super::*;

#[test]
fn column_letters_round_trip() {
    for (i, s) in [
        (0, "A"),
        (1, "B"),
        (25, "Z"),
        (26, "AA"),
        (27, "AB"),
        (701, "ZZ"),
    ] {
        assert_eq!(column_letter(i), s);
        assert_eq!(letter_column(s), Some(i));
    }
    assert_eq!(letter_column("a1"), None);
}

#[test]
fn header_names_are_ranked() {
    assert_eq!(header_match("手机号码"), Some(0));
    assert_eq!(header_match("Mobile Phone"), header_match("mobile"));
    assert_eq!(header_match("姓名"), None);
}

fn read(name: &str, bytes: &[u8]) -> (Layout, Vec<ImportRow>) {
    read_with(name, bytes, None).unwrap()
}

/// `bytes` read as the file `name`, with registration times wanted as `registered_at` says.
fn read_with(
    name: &str,
    bytes: &[u8],
    registered_at: Option<RegisteredAtRead>,
) -> Result<(Layout, Vec<ImportRow>), JobError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let spec = ReadSpec {
        file_name: name.to_owned(),
        registered_at,
        max_rows: 1_000_000,
        limits: ImportBounds::default(),
        ..ReadSpec::default()
    };
    let mut rows = Vec::new();
    let layout = read_file(&path, &spec, &Analyzer::default(), &mut |batch| {
        rows.extend(batch);
        Ok(())
    })?;
    Ok((layout, rows))
}

#[test]
fn rows_keep_their_line_numbers() {
    let mut text = String::from("name,phone\r\n");
    for i in 0..120 {
        text.push_str(&format!("n{i},1391234{i:04}\r\n"));
    }
    text.push_str("x,\r\n");
    let (layout, rows) = read("a.csv", text.as_bytes());
    assert_eq!(layout.number_column, "phone (B)");
    assert_eq!(rows.len(), 121);
    assert_eq!(rows[0].row_no, 2);
    assert_eq!(rows[119].row_no, 121);
    assert_eq!(rows[120].row_no, 122);
    assert!(rows[120].number.is_err());
}

#[test]
fn a_txt_file_is_one_number_a_line() {
    let (layout, rows) = read("a.txt", b"13800138000\n\n+86 139 0013 9000\r\nabc\n");
    assert_eq!(layout.format, FileFormat::Txt);
    assert_eq!(rows.len(), 3, "the blank line is not a row");
    assert_eq!(rows.iter().map(|r| r.row_no).collect::<Vec<_>>(), [1, 3, 4]);
    assert!(rows[2].number.is_err());
}

/// `text` read as a CSV file with registration times wanted as `wanted` says.
fn read_times(text: &str, wanted: RegisteredAtRead) -> Result<(Layout, Vec<ImportRow>), JobError> {
    read_with("a.csv", text.as_bytes(), Some(wanted))
}

fn field_of(e: &JobError) -> String {
    match e {
        JobError::Invalid { field, .. } => field.clone(),
        other => panic!("not a field error: {other:?}"),
    }
}

#[test]
fn each_row_takes_the_registration_time_of_its_cell() {
    let text = "姓名,手机号,注册时间\n\
                a,13800138000,2021-03-04 05:06:07\n\
                b,13800138000,2022-01-01\n\
                c,13800138000,2021-03-04 05:06:07\n\
                d,13900139000,\n\
                e,13700137000,next tuesday\n";
    let (layout, rows) = read_times(text, RegisteredAtRead::default()).unwrap();
    assert_eq!(layout.number_column, "手机号 (B)");
    assert_eq!(layout.registered_at_column, "注册时间 (C)");
    let number = |i: usize| rows[i].number.as_ref();
    // Beijing time, kept in the number's key: the pair is what is checked.
    assert_eq!(number(0).unwrap().registered_at, Some(1_614_805_567));
    assert_eq!(number(0).unwrap().key, "+8613800138000@1614805567");
    assert_eq!(number(1).unwrap().key, "+8613800138000@1640966400");
    assert_eq!(number(2).unwrap().key, number(0).unwrap().key);
    assert_eq!(
        number(3).unwrap_err(),
        "no registration time in column C",
        "an empty cell without options.registered_at"
    );
    let bad = number(4).unwrap_err();
    assert!(
        bad.starts_with("registration time in column C: \"next tuesday\""),
        "{bad}"
    );
}

#[test]
fn the_spec_time_fills_empty_cells_and_rows_of_a_file_without_the_column() {
    let wanted = RegisteredAtRead {
        column: String::new(),
        default: Some(1_500_000_000),
    };
    let text = "phone,registered\n13800138000,\n13900139000,1614805567\n";
    let (_, rows) = read_times(text, wanted.clone()).unwrap();
    assert_eq!(
        rows[0].number.as_ref().unwrap().registered_at,
        Some(1_500_000_000)
    );
    assert_eq!(
        rows[1].number.as_ref().unwrap().registered_at,
        Some(1_614_805_567)
    );
    // No column named like one: every row takes the spec's time, keyed as a cell's would be.
    let (layout, rows) = read_times("phone,name\n13800138000,a\n", wanted.clone()).unwrap();
    assert_eq!(layout.registered_at_column, "");
    let number = rows[0].number.as_ref().unwrap();
    assert_eq!(
        (number.key.as_str(), number.registered_at),
        ("+8613800138000@1500000000", Some(1_500_000_000))
    );
    // A column named like one that holds no times (sign-up channels) is not read as one.
    let text = "phone,注册渠道,registered\n13800138000,app,web\n";
    let (layout, rows) = read_times(text, wanted).unwrap();
    assert_eq!(layout.registered_at_column, "");
    assert_eq!(
        rows[0].number.as_ref().unwrap().registered_at,
        Some(1_500_000_000)
    );
}

#[test]
fn a_registration_column_is_named_or_found_or_the_job_is_refused() {
    let text = "phone,signed\n13800138000,2021-03-04\n";
    let named = |column: &str| RegisteredAtRead {
        column: column.to_owned(),
        default: None,
    };
    for column in ["signed", "B", "2"] {
        let (layout, rows) = read_times(text, named(column)).unwrap();
        assert_eq!(layout.registered_at_column, "signed (B)", "{column}");
        assert!(rows[0].number.as_ref().unwrap().registered_at.is_some());
    }
    let refused = read_times(text, named("joined")).unwrap_err();
    assert_eq!(field_of(&refused), "spec.registered_at_column");
    // Not named, not found, no time for every row.
    let refused = read_times(text, RegisteredAtRead::default()).unwrap_err();
    assert_eq!(field_of(&refused), "spec.registered_at_column");
    assert!(refused.to_string().contains("phone, signed"), "{refused}");
    // A list of numbers alone has no header to find it by.
    let refused = read_times("13800138000\n", RegisteredAtRead::default()).unwrap_err();
    assert!(refused.to_string().contains("no header"), "{refused}");
}

#[test]
fn a_workbooks_date_cells_are_registration_times() {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    let date = Format::new().set_num_format("yyyy-mm-dd hh:mm");
    sheet.write_string(0, 0, "手机号").unwrap();
    sheet.write_string(0, 1, "注册日期").unwrap();
    sheet.write_string(1, 0, "13800138000").unwrap();
    let at = ExcelDateTime::parse_from_str("2021-03-04 06:00:00").unwrap();
    sheet.write_datetime_with_format(1, 1, &at, &date).unwrap();
    let bytes = workbook.save_to_buffer().unwrap();
    let (layout, rows) =
        read_with("signups.xlsx", &bytes, Some(RegisteredAtRead::default())).unwrap();
    assert_eq!(layout.registered_at_column, "注册日期 (B)");
    // Six in the morning of 2021-03-04 in Beijing.
    let number = rows[0].number.as_ref().unwrap();
    assert_eq!(number.registered_at, Some(1_614_787_200 + 6 * 3600));
}
