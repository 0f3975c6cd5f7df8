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
mod registered;
mod text;
mod workbook;
mod xls;
mod xlsx;
mod zipdir;

pub use bounds::ImportBounds;
pub use registered::RegisteredAtRead;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

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
    /// Where each row's registration time comes from, when a check takes one; `None` when none
    /// does (no column is looked for).
    pub registered_at: Option<RegisteredAtRead>,
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
    /// The registration-time column, for people: `注册时间 (C)`; empty when none was read.
    pub registered_at_column: String,
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
                registered_at_column: String::new(),
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

/// What reading a sheet found out: its columns and the ones read, for people.
pub(super) struct SheetRead {
    /// The number column, as `header (letter)`; empty when the sheet has none.
    pub number_column: String,
    /// The registration-time column, likewise; empty when none was read.
    pub registered_at_column: String,
    /// The header, or `column N` names.
    pub columns: Vec<String>,
}

/// The columns a sheet's rows are read from.
#[derive(Debug, Clone, Copy)]
struct ReadColumns {
    /// The numbers' (`usize::MAX`: the sheet has none).
    number: usize,
    /// The registration times' (none: every row takes the spec's time, if any is wanted).
    registered_at: Option<usize>,
}

/// Turns records into [`ImportRow`]s and hands them on in batches.
struct RowSink<'a> {
    analyzer: &'a Analyzer,
    region: String,
    registered_at: Option<RegisteredAtRead>,
    /// What "in the future" is measured against, for registration times.
    now: SystemTime,
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
            registered_at: spec.registered_at.clone(),
            now: SystemTime::now(),
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

    /// Reads one sheet (or text file): decides its header, number column and registration-time
    /// column on the first rows, then converts every row. Blank rows are not data and are
    /// skipped.
    fn read_sheet(
        &mut self,
        sheet: &str,
        records: impl Iterator<Item = Result<(u64, Vec<String>), JobError>>,
        spec: &ReadSpec,
    ) -> Result<SheetRead, JobError> {
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
            return Ok(SheetRead {
                number_column: String::new(),
                registered_at_column: String::new(),
                columns: Vec::new(),
            });
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
        let registered_at = match column {
            usize::MAX => None,
            number => self.choose_registered_at(&header, data, number)?,
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
        let describe = |column: usize| match header.get(column).filter(|h| !h.is_empty()) {
            Some(name) => format!("{name} ({})", column_letter(column)),
            None => column_letter(column),
        };
        let read = SheetRead {
            number_column: if column == usize::MAX {
                String::new()
            } else {
                describe(column)
            },
            registered_at_column: registered_at.map(describe).unwrap_or_default(),
            columns,
        };
        let at = ReadColumns {
            number: column,
            registered_at,
        };
        let rest = sample
            .into_iter()
            .skip(usize::from(has_header))
            .map(Ok)
            .chain(records);
        for record in rest {
            let (row_no, cells) = record?;
            self.push(sheet, row_no, cells, at)?;
        }
        Ok(read)
    }

    /// The registration-time column of a sheet whose numbers are in column `number`: the one the
    /// spec names, else the best-named header whose sample cells (`data`) mostly read as times;
    /// none when no check takes a registration time, or no column is found and the spec gives a
    /// time for every row.
    fn choose_registered_at(
        &self,
        header: &[String],
        data: &[(u64, Vec<String>)],
        number: usize,
    ) -> Result<Option<usize>, JobError> {
        const FIELD: &str = "spec.registered_at_column";
        let Some(wanted) = &self.registered_at else {
            return Ok(None);
        };
        if !wanted.column.trim().is_empty() {
            return named_column(header, &wanted.column, FIELD).map(Some);
        }
        // A header alone can mislead (a column of sign-up channels, of registration numbers): the
        // column found must hold times.
        let holds_times = |column: usize| {
            let cells: Vec<&str> = data
                .iter()
                .filter_map(|(_, cells)| cells.get(column).map(|c| c.trim()))
                .filter(|c| !c.is_empty())
                .collect();
            let times = cells
                .iter()
                .filter(|c| registered::parse_cell(c, self.now).is_ok())
                .count();
            cells.is_empty() || times * 2 >= cells.len()
        };
        let by_name = header
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != number)
            .filter_map(|(i, h)| registered::header_match(h).map(|rank| (rank, i)))
            .filter(|&(_, i)| holds_times(i))
            .min();
        match (by_name, wanted.default) {
            (Some((_, i)), _) => Ok(Some(i)),
            (None, Some(_)) => Ok(None),
            (None, None) => Err(JobError::invalid(
                FIELD,
                format!(
                    "a check of the job takes each number's registration time, and no column of \
                     the file is named like one and holds times ({}): name it here, or give one \
                     time for every row in spec.options.registered_at",
                    if header.is_empty() {
                        "the file has no header".to_owned()
                    } else {
                        header.join(", ")
                    }
                ),
            )),
        }
    }

    fn choose_column(
        &self,
        header: &[String],
        data: &[(u64, Vec<String>)],
        spec: &ReadSpec,
    ) -> Result<Option<usize>, JobError> {
        if !spec.number_column.trim().is_empty() {
            return named_column(header, &spec.number_column, "spec.number_column").map(Some);
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
        at: ReadColumns,
    ) -> Result<(), JobError> {
        let column = at.number;
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
                    registered_at: None,
                }),
                Err(e) => Err(e.to_string()),
            },
        };
        let number = match (number, &self.registered_at) {
            (Ok(number), Some(_)) => self.with_registered_at(number, &cells, at.registered_at),
            (number, _) => number,
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

    /// `number` with the registration time in its row's `column` (the spec's time when the cell
    /// is empty, or the sheet has no such column), or why the row has none. The pair is what is
    /// checked, so the time is part of the number's key, whichever way it came: one pair has one
    /// key across the sheets of a workbook.
    fn with_registered_at(
        &self,
        mut number: RowNumber,
        cells: &[String],
        column: Option<usize>,
    ) -> Result<RowNumber, String> {
        let default = self.registered_at.as_ref().and_then(|r| r.default);
        let cell = column.and_then(|c| cells.get(c)).map(|c| c.trim());
        let letter = || column.map(column_letter).unwrap_or_default();
        let seconds = match cell {
            None | Some("") => {
                default.ok_or_else(|| format!("no registration time in column {}", letter()))?
            }
            Some(cell) => registered::parse_cell(cell, self.now)
                .map_err(|e| format!("registration time in column {}: {e}", letter()))?,
        };
        number.key = format!("{}@{seconds}", number.key);
        number.registered_at = Some(seconds);
        Ok(number)
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

/// The column `wanted` names among `header`: a header (without case), a 1-based number or a
/// letter; else refused naming `field`.
fn named_column(header: &[String], wanted: &str, field: &str) -> Result<usize, JobError> {
    let wanted = wanted.trim();
    if let Some(i) = header.iter().position(|h| h.eq_ignore_ascii_case(wanted)) {
        return Ok(i);
    }
    if let Ok(n) = wanted.parse::<usize>()
        && n >= 1
    {
        return Ok(n - 1);
    }
    letter_column(wanted).ok_or_else(|| {
        JobError::invalid(
            field,
            format!(
                "{wanted:?} is neither a header of the file ({}), a column letter nor a 1-based \
                 column number",
                header.join(", ")
            ),
        )
    })
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
mod tests;
