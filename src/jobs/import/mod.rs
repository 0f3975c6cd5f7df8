//! Reading an uploaded file into rows: format, text encoding, delimiter, header and the number
//! column are detected unless the spec names them. Runs on a blocking thread and hands rows on in
//! batches, so a file of millions of rows never sits in memory.
//!
//! Whatever a file claims about itself, it is read within the bounds of [`ImportBounds`]: text
//! line by bounded line; XLSX by our own streaming reader (zip entries inflated through a counter,
//! XML event by event, rows kept sparse); XLS by our own reader of the compound file and BIFF
//! records, checked against the file's real length. No declared size is used to allocate.

mod bounds;
mod cfb;
mod text;
mod workbook;
mod xls;
mod xlsx;
mod zipdir;

pub use bounds::ImportBounds;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::JobError;
use crate::number::Analyzer;
use crate::pb::FileFormat;
use crate::store::{ImportRow, RowNumber};

/// Rows handed on at once.
pub const BATCH_ROWS: usize = 5_000;
/// Bytes of rows (text and cell slots) handed on at once at most: with wide rows a batch is
/// handed on before it has [`BATCH_ROWS`] rows, so batches in flight stay small.
pub const BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Rows read before the header and the number column are decided.
const SAMPLE_ROWS: usize = 200;
/// Bytes of rows held for that decision at most.
const SAMPLE_BYTES: usize = 4 * 1024 * 1024;
/// Header names of a number column, in order of preference (compared without case; a header
/// containing one of them matches).
const NUMBER_HEADERS: &[&str] = &[
    "手机号码",
    "手机号",
    "手机",
    "电话号码",
    "电话",
    "号码",
    "联系方式",
    "mobile",
    "msisdn",
    "phone",
    "cell",
    "tel",
    "number",
];

/// How to read the file.
#[derive(Debug, Clone, Default)]
pub struct ReadSpec {
    /// The uploaded file's name (its extension helps).
    pub file_name: String,
    /// The format, or unspecified to detect.
    pub format: FileFormat,
    /// The number column: header name, letter or 1-based index; empty to detect.
    pub number_column: String,
    /// The sheet of a workbook; empty for every sheet.
    pub sheet: String,
    /// Region of numbers without a country code.
    pub default_region: String,
    /// Most data rows accepted.
    pub max_rows: u64,
    /// The bounds the file is read within.
    pub limits: ImportBounds,
}

/// What was found out about the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The format read.
    pub format: FileFormat,
    /// The text encoding (empty for workbooks).
    pub encoding: String,
    /// The number column, for people: `手机号 (B)`.
    pub number_column: String,
    /// The header of the first sheet with one, else `column N` names.
    pub columns: Vec<String>,
    /// Sheets rows were read from.
    pub sheets: u32,
}

/// Reads `path`, handing rows to `sink` in file order, in batches of at most [`BATCH_ROWS`] rows
/// and [`BATCH_BYTES`] bytes. Every row keeps its sheet and its row (line) number in the file.
/// This is the one reader of number files: jobs import with it and `phonecheck check` reads its
/// input with it.
pub fn read_file(
    path: &Path,
    spec: &ReadSpec,
    analyzer: &Analyzer,
    sink: &mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
) -> Result<Layout, JobError> {
    let format = detect_format(path, spec)?;
    let mut rows = RowSink::new(spec, analyzer, sink);
    let layout = match format {
        FileFormat::Xlsx | FileFormat::Xls => {
            let mut layout = Layout {
                format,
                encoding: String::new(),
                number_column: String::new(),
                columns: Vec::new(),
                sheets: 0,
            };
            if format == FileFormat::Xlsx {
                xlsx::read(path, spec, &mut rows, &mut layout)?;
            } else {
                xls::read(path, spec, &mut rows, &mut layout)?;
            }
            layout
        }
        _ => text::read_text(path, format, spec, &mut rows)?,
    };
    rows.finish(layout, format)
}

/// Reads a text list from `input`, a stream that cannot be read twice (standard input), as
/// [`read_file`] reads a text file: UTF-8, or UTF-16 with a byte-order mark (the encoding of a
/// file is detected by reading it twice, which a stream cannot be).
pub fn read_stream(
    input: impl Read,
    spec: &ReadSpec,
    analyzer: &Analyzer,
    sink: &mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
) -> Result<Layout, JobError> {
    let mut rows = RowSink::new(spec, analyzer, sink);
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .bom_override(true)
        .build(input);
    let layout = text::read_decoded(decoded, spec.format, "UTF-8".to_owned(), spec, &mut rows)?;
    let format = layout.format;
    rows.finish(layout, format)
}

/// The format of the file at `path`: as the spec says, else by its first bytes, its name's
/// extension or (text) its content ([`FileFormat::Unspecified`] until read).
pub fn detect_format(path: &Path, spec: &ReadSpec) -> Result<FileFormat, JobError> {
    if spec.format != FileFormat::Unspecified {
        return Ok(spec.format);
    }
    let mut magic = [0u8; 8];
    let n = File::open(path)?.read(&mut magic)?;
    let magic = &magic[..n];
    if magic.starts_with(b"PK\x03\x04") {
        return Ok(FileFormat::Xlsx);
    }
    if magic.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Ok(FileFormat::Xls);
    }
    let name = spec.file_name.to_ascii_lowercase();
    Ok(if name.ends_with(".txt") {
        FileFormat::Txt
    } else if name.ends_with(".csv") || name.ends_with(".tsv") {
        FileFormat::Csv
    } else {
        // Decided by the content: a consistent delimiter makes it CSV.
        FileFormat::Unspecified
    })
}

/// Turns records into [`ImportRow`]s and hands them on in batches.
struct RowSink<'a> {
    analyzer: &'a Analyzer,
    region: String,
    max_rows: u64,
    sink: &'a mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
    batch: Vec<ImportRow>,
    batch_bytes: usize,
    total: u64,
    numbers: u64,
}

impl<'a> RowSink<'a> {
    fn new(
        spec: &ReadSpec,
        analyzer: &'a Analyzer,
        sink: &'a mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
    ) -> RowSink<'a> {
        RowSink {
            analyzer,
            region: spec.default_region.clone(),
            max_rows: spec.max_rows,
            sink,
            batch: Vec::new(),
            batch_bytes: 0,
            total: 0,
            numbers: 0,
        }
    }

    fn is_number(&self, cell: &str) -> bool {
        self.analyzer
            .analyze(cell, &self.region)
            .is_ok_and(|info| info.valid)
    }

    /// Reads one sheet (or text file): decides its header and number column on the first rows,
    /// then converts every row. Blank rows are not data and are skipped. Returns the column's
    /// description and the header.
    fn read_sheet(
        &mut self,
        sheet: &str,
        records: impl Iterator<Item = Result<(u64, Vec<String>), JobError>>,
        spec: &ReadSpec,
    ) -> Result<(String, Vec<String>), JobError> {
        let mut records = records.filter(|r| {
            r.as_ref()
                .map_or(true, |(_, cells)| cells.iter().any(|c| !c.is_empty()))
        });
        let mut sample = Vec::new();
        let mut sampled = 0;
        while sample.len() < SAMPLE_ROWS && sampled < SAMPLE_BYTES {
            let Some(record) = records.next() else { break };
            let record = record?;
            sampled += row_bytes(&record.1);
            sample.push(record);
        }
        if sample.is_empty() {
            return Ok((String::new(), Vec::new()));
        }
        let has_header = {
            let first = &sample[0].1;
            let named = first.iter().any(|c| header_match(c).is_some());
            let numbers_below = sample[1..]
                .iter()
                .any(|(_, cells)| cells.iter().any(|c| self.is_number(c)));
            named || (!first.iter().any(|c| self.is_number(c)) && numbers_below)
        };
        let header: Vec<String> = if has_header {
            sample[0].1.clone()
        } else {
            Vec::new()
        };
        let data = &sample[usize::from(has_header)..];
        let column = match self.choose_column(&header, data, spec)? {
            Some(column) => column,
            // A sheet without numbers (notes, a cover page): its rows are reported, not dropped.
            None => usize::MAX,
        };
        let width = sample.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let columns = (0..width)
            .map(|i| {
                header
                    .get(i)
                    .filter(|h| !h.is_empty())
                    .cloned()
                    .unwrap_or_else(|| format!("column {}", i + 1))
            })
            .collect();
        let described = if column == usize::MAX {
            String::new()
        } else {
            match header.get(column).filter(|h| !h.is_empty()) {
                Some(name) => format!("{name} ({})", column_letter(column)),
                None => column_letter(column),
            }
        };
        let rest = sample
            .into_iter()
            .skip(usize::from(has_header))
            .map(Ok)
            .chain(records);
        for record in rest {
            let (row_no, cells) = record?;
            self.push(sheet, row_no, cells, column)?;
        }
        Ok((described, columns))
    }

    fn choose_column(
        &self,
        header: &[String],
        data: &[(u64, Vec<String>)],
        spec: &ReadSpec,
    ) -> Result<Option<usize>, JobError> {
        let wanted = spec.number_column.trim();
        if !wanted.is_empty() {
            if let Some(i) = header.iter().position(|h| h.eq_ignore_ascii_case(wanted)) {
                return Ok(Some(i));
            }
            if let Ok(n) = wanted.parse::<usize>()
                && n >= 1
            {
                return Ok(Some(n - 1));
            }
            if let Some(i) = letter_column(wanted) {
                return Ok(Some(i));
            }
            return Err(JobError::invalid(
                "spec.number_column",
                format!(
                    "{wanted:?} is neither a header of the file ({}), a column letter nor a \
                     1-based column number",
                    header.join(", ")
                ),
            ));
        }
        let by_name = header
            .iter()
            .enumerate()
            .filter_map(|(i, h)| header_match(h).map(|rank| (rank, i)))
            .min();
        if let Some((_, i)) = by_name {
            return Ok(Some(i));
        }
        let width = data.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let best = (0..width)
            .map(|i| {
                let hits = data
                    .iter()
                    .filter(|(_, cells)| cells.get(i).is_some_and(|c| self.is_number(c)))
                    .count();
                (hits, std::cmp::Reverse(i))
            })
            .max();
        Ok(best.filter(|(hits, _)| *hits > 0).map(|(_, i)| i.0))
    }

    fn push(
        &mut self,
        sheet: &str,
        row_no: u64,
        cells: Vec<String>,
        column: usize,
    ) -> Result<(), JobError> {
        self.total += 1;
        if self.total > self.max_rows {
            return Err(JobError::TooManyRows {
                limit: self.max_rows,
            });
        }
        let number = match cells.get(column).map(String::as_str) {
            _ if column == usize::MAX => Err("the sheet has no column of phone numbers".to_owned()),
            None | Some("") => Err(format!("no number in column {}", column_letter(column))),
            Some(cell) => match self.analyzer.analyze(cell, &self.region) {
                Ok(info) => Ok(RowNumber {
                    key: if info.e164.is_empty() {
                        format!("{}:{}", info.region_code, info.national_number)
                    } else {
                        info.e164.clone()
                    },
                    input: cell.to_owned(),
                    carrier: info
                        .carrier
                        .map(|c| c.local_name.to_owned())
                        .unwrap_or_default(),
                    province: info
                        .location
                        .map(|l| l.province.to_string())
                        .unwrap_or_default(),
                }),
                Err(e) => Err(e.to_string()),
            },
        };
        self.numbers += u64::from(number.is_ok());
        self.batch_bytes += row_bytes(&cells);
        self.batch.push(ImportRow {
            sheet: sheet.to_owned(),
            row_no,
            cells,
            number_cell: (column != usize::MAX).then_some(column),
            number,
        });
        if self.batch.len() >= BATCH_ROWS || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands on the last batch; refuses a file without any number.
    fn finish(mut self, mut layout: Layout, format: FileFormat) -> Result<Layout, JobError> {
        self.flush()?;
        if self.numbers == 0 {
            return Err(JobError::invalid(
                "chunk",
                if self.total == 0 {
                    "the file holds no rows".to_owned()
                } else {
                    format!(
                        "none of the file's {} rows holds a phone number in column {}",
                        self.total, layout.number_column
                    )
                },
            ));
        }
        if format != FileFormat::Unspecified {
            layout.format = format;
        }
        Ok(layout)
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.batch_bytes = 0;
        (self.sink)(std::mem::take(&mut self.batch))
    }
}

/// What a row's cells take in memory: their text and a slot each.
fn row_bytes(cells: &[String]) -> usize {
    cells
        .iter()
        .map(|c| c.len() + std::mem::size_of::<String>())
        .sum::<usize>()
        + std::mem::size_of::<ImportRow>()
}

/// The preference rank of a header that names a number column.
fn header_match(header: &str) -> Option<usize> {
    let header = header.trim().to_lowercase();
    if header.is_empty() {
        return None;
    }
    NUMBER_HEADERS.iter().position(|name| header.contains(name))
}

/// `A` → 0, `AB` → 27.
fn letter_column(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    Some(
        s.bytes().fold(0usize, |n, b| {
            n * 26 + usize::from(b.to_ascii_uppercase() - b'A') + 1
        }) - 1,
    )
}

/// 0 → `A`, 27 → `AB`.
fn column_letter(mut i: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (i % 26) as u8);
        if i < 26 {
            break;
        }
        i = i / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
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
}

#[cfg(test)]
mod file_tests {
    use super::*;

    fn read(name: &str, bytes: &[u8]) -> (Layout, Vec<ImportRow>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let spec = ReadSpec {
            file_name: name.to_owned(),
            max_rows: 1_000_000,
            limits: ImportBounds::default(),
            ..ReadSpec::default()
        };
        let mut rows = Vec::new();
        let layout = read_file(&path, &spec, &Analyzer::default(), &mut |batch| {
            rows.extend(batch);
            Ok(())
        })
        .unwrap();
        (layout, rows)
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
}
