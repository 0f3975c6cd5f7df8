//! Reading an uploaded file into rows: format, text encoding, delimiter, header and the number
//! column are detected unless the spec names them. Runs on a blocking thread and hands rows on in
//! batches, so a file of millions of rows never sits in memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use calamine::{DataRef, Reader};
use encoding_rs::{Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE};

use super::JobError;
use crate::number::Analyzer;
use crate::pb::FileFormat;
use crate::store::{ImportRow, RowNumber};

/// Rows handed on at once.
pub const BATCH_ROWS: usize = 5_000;
/// Rows read before the header and the number column are decided.
const SAMPLE_ROWS: usize = 200;
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

/// Reads `path`, handing rows to `sink` in batches of [`BATCH_ROWS`].
pub fn read_file(
    path: &Path,
    spec: &ReadSpec,
    analyzer: &Analyzer,
    sink: &mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
) -> Result<Layout, JobError> {
    let format = detect_format(path, spec)?;
    let mut rows = RowSink::new(spec, analyzer, sink);
    let mut layout = match format {
        FileFormat::Xlsx | FileFormat::Xls => read_workbook(path, format, spec, &mut rows)?,
        _ => read_text(path, format, spec, &mut rows)?,
    };
    rows.flush()?;
    if rows.numbers == 0 {
        return Err(JobError::invalid(
            "chunk",
            if rows.total == 0 {
                "the file holds no rows".to_owned()
            } else {
                format!(
                    "none of the file's {} rows holds a phone number in column {}",
                    rows.total, layout.number_column
                )
            },
        ));
    }
    layout.format = format;
    Ok(layout)
}

fn detect_format(path: &Path, spec: &ReadSpec) -> Result<FileFormat, JobError> {
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

/// Detects the text encoding: a byte-order mark, else UTF-16 by its zero bytes, else UTF-8 if the
/// whole file is valid UTF-8, else GB18030 (the superset of GBK that Excel in China writes).
pub fn detect_encoding(file: &mut File) -> Result<(&'static Encoding, bool), JobError> {
    let mut head = vec![0u8; 4096];
    let n = read_up_to(file, &mut head)?;
    head.truncate(n);
    file.rewind()?;
    if let Some((encoding, _)) = Encoding::for_bom(&head) {
        return Ok((encoding, true));
    }
    let pairs = head.len() / 2;
    if pairs >= 2 {
        let zeros_even = head.iter().step_by(2).filter(|&&b| b == 0).count();
        let zeros_odd = head.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
        if zeros_odd * 10 > pairs * 3 && zeros_even * 10 < pairs {
            return Ok((UTF_16LE, false));
        }
        if zeros_even * 10 > pairs * 3 && zeros_odd * 10 < pairs {
            return Ok((UTF_16BE, false));
        }
    }
    let valid = is_utf8(&mut *file)?;
    file.rewind()?;
    Ok((if valid { UTF_8 } else { GB18030 }, false))
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Whether everything `reader` yields is UTF-8, checked a block at a time.
fn is_utf8(reader: &mut dyn Read) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut carry = 0;
    loop {
        let n = reader.read(&mut buf[carry..])?;
        if n == 0 {
            return Ok(carry == 0);
        }
        let filled = carry + n;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => carry = 0,
            // A character cut at the block's end continues in the next block.
            Err(e) if e.error_len().is_none() => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..filled, 0);
                carry = filled - valid;
            }
            Err(_) => return Ok(false),
        }
    }
}

fn read_text(
    path: &Path,
    format: FileFormat,
    spec: &ReadSpec,
    rows: &mut RowSink<'_>,
) -> Result<Layout, JobError> {
    let mut file = File::open(path)?;
    let (encoding, bom) = detect_encoding(&mut file)?;
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .build(file);
    let mut reader = BufReader::with_capacity(64 * 1024, decoded);
    // The delimiter is decided on the first lines.
    let mut sample = Vec::new();
    for _ in 0..50 {
        let mut line = String::new();
        if reader
            .read_line(&mut line)
            .map_err(|e| JobError::invalid("chunk", format!("cannot decode the file: {e}")))?
            == 0
        {
            break;
        }
        sample.push(line);
    }
    let delimiter = match format {
        FileFormat::Txt => None,
        _ => sniff_delimiter(&sample),
    };
    let format = match (format, delimiter) {
        (FileFormat::Unspecified, Some(_)) => FileFormat::Csv,
        (FileFormat::Unspecified, None) => FileFormat::Txt,
        (format, _) => format,
    };
    let encoding_name = match (encoding.name(), bom) {
        (name, true) => format!("{name} with BOM"),
        (name, false) => name.to_owned(),
    };
    let text = BufReader::new(std::io::Cursor::new(sample.concat().into_bytes()).chain(reader));
    let records = Records {
        lines: text,
        delimiter,
        line: 0,
    };
    let (column, columns) = rows.read_sheet("", records, spec)?;
    Ok(Layout {
        format,
        encoding: encoding_name,
        number_column: column,
        columns,
        sheets: 1,
    })
}

/// Longest record, in bytes: past it an unclosed quote is reported rather than swallowing the file.
const MAX_RECORD: usize = 64 * 1024;

/// Delimited records with the line each starts on. A quoted field may span lines (RFC 4180);
/// `""` inside quotes is a quote. Without a delimiter, each line is one cell.
struct Records<R> {
    lines: R,
    delimiter: Option<u8>,
    line: u64,
}

impl<R: BufRead> Records<R> {
    fn next_line(&mut self, into: &mut String) -> Result<bool, JobError> {
        let n = self.lines.read_line(into).map_err(|e| {
            JobError::invalid(
                "chunk",
                format!("line {}: cannot decode the file: {e}", self.line + 1),
            )
        })?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        while into.ends_with(['\n', '\r']) {
            into.pop();
        }
        Ok(true)
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<(u64, Vec<String>), JobError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut text = String::new();
        match self.next_line(&mut text) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        let first = self.line;
        let Some(delimiter) = self.delimiter else {
            return Some(Ok((first, vec![text.trim().to_owned()])));
        };
        loop {
            match split_record(&text, char::from(delimiter)) {
                Some(cells) => return Some(Ok((first, cells))),
                None if text.len() > MAX_RECORD => {
                    return Some(Err(JobError::invalid(
                        "chunk",
                        format!("line {first}: a quote opened here is never closed"),
                    )));
                }
                None => {
                    text.push('\n');
                    match self.next_line(&mut text) {
                        Ok(true) => {}
                        Ok(false) => {
                            return Some(Err(JobError::invalid(
                                "chunk",
                                format!("line {first}: a quote opened here is never closed"),
                            )));
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}

/// Splits one record; `None` while a quoted field is still open.
fn split_record(text: &str, delimiter: char) -> Option<Vec<String>> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cell.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else if c == delimiter {
            cells.push(std::mem::take(&mut cell).trim().to_owned());
            at_start = true;
            continue;
        } else if c == '"' && at_start && cell.trim().is_empty() {
            cell.clear();
            quoted = true;
        } else {
            cell.push(c);
        }
        at_start = false;
    }
    if quoted {
        return None;
    }
    cells.push(cell.trim().to_owned());
    Some(cells)
}

/// The delimiter used consistently on the sample lines, if any.
fn sniff_delimiter(lines: &[String]) -> Option<u8> {
    let lines: Vec<&str> = lines
        .iter()
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    [b',', b'\t', b';', b'|'].into_iter().find(|&d| {
        let counts: Vec<usize> = lines
            .iter()
            .map(|l| l.bytes().filter(|&b| b == d).count())
            .collect();
        let mut sorted = counts.clone();
        sorted.sort_unstable();
        let typical = sorted[sorted.len() / 2];
        typical > 0 && counts.iter().filter(|&&c| c == typical).count() * 10 >= counts.len() * 8
    })
}

fn read_workbook(
    path: &Path,
    format: FileFormat,
    spec: &ReadSpec,
    rows: &mut RowSink<'_>,
) -> Result<Layout, JobError> {
    let malformed = |e: &dyn std::fmt::Display| {
        JobError::invalid("chunk", format!("not a readable workbook: {e}"))
    };
    let file = BufReader::new(File::open(path)?);
    let mut layout = Layout {
        format,
        encoding: String::new(),
        number_column: String::new(),
        columns: Vec::new(),
        sheets: 0,
    };
    let take = |layout: &mut Layout, (column, columns): (String, Vec<String>)| {
        if layout.sheets == 0 || layout.number_column.is_empty() {
            layout.number_column = column;
            layout.columns = columns;
        }
        layout.sheets += 1;
    };
    match format {
        FileFormat::Xlsx => {
            let mut book: calamine::Xlsx<_> =
                calamine::Xlsx::new(file).map_err(|e| malformed(&e))?;
            for name in sheets(&book.sheet_names(), spec)? {
                let mut cells = book
                    .worksheet_cells_reader(&name)
                    .map_err(|e| malformed(&e))?;
                let mut pending: Option<(u64, Vec<String>)> = None;
                let mut failed = None;
                let mut ended = false;
                // Cells come row by row; a row is complete when the next one starts.
                let records = std::iter::from_fn(|| {
                    loop {
                        if ended {
                            return pending.take().map(Ok);
                        }
                        match cells.next_cell() {
                            Ok(Some(cell)) => {
                                let (row, col) = cell.get_position();
                                let row = u64::from(row) + 1;
                                let text = cell_text(cell.get_value());
                                match &mut pending {
                                    Some((r, cells)) if *r == row => put(cells, col as usize, text),
                                    _ => {
                                        let mut fresh = Vec::new();
                                        put(&mut fresh, col as usize, text);
                                        if let Some(done) = pending.replace((row, fresh)) {
                                            return Some(Ok(done));
                                        }
                                    }
                                }
                            }
                            Ok(None) => ended = true,
                            Err(e) => {
                                failed = Some(e.to_string());
                                ended = true;
                                pending = None;
                            }
                        }
                    }
                });
                let read = rows.read_sheet(&name, records, spec)?;
                if let Some(e) = failed {
                    return Err(malformed(&e));
                }
                take(&mut layout, read);
            }
        }
        _ => {
            let mut book: calamine::Xls<_> = calamine::Xls::new(file).map_err(|e| malformed(&e))?;
            for name in sheets(&book.sheet_names(), spec)? {
                let range = book.worksheet_range(&name).map_err(|e| malformed(&e))?;
                let start = range.start().map_or(0, |(r, _)| u64::from(r));
                let first_col = range.start().map_or(0, |(_, c)| c as usize);
                let records = range.rows().enumerate().map(|(i, cells)| {
                    let mut row = vec![String::new(); first_col];
                    row.extend(cells.iter().map(cell_text_owned));
                    Ok((start + i as u64 + 1, row))
                });
                let read = rows.read_sheet(&name, records, spec)?;
                take(&mut layout, read);
            }
        }
    }
    Ok(layout)
}

fn put(row: &mut Vec<String>, col: usize, text: String) {
    if row.len() <= col {
        row.resize(col + 1, String::new());
    }
    row[col] = text;
}

fn sheets(names: &[String], spec: &ReadSpec) -> Result<Vec<String>, JobError> {
    if spec.sheet.is_empty() {
        return Ok(names.to_vec());
    }
    names
        .iter()
        .find(|n| n.trim().eq_ignore_ascii_case(spec.sheet.trim()))
        .map(|n| vec![n.clone()])
        .ok_or_else(|| {
            JobError::invalid(
                "spec.sheet",
                format!(
                    "the workbook has no sheet {:?}; it has {}",
                    spec.sheet,
                    names.join(", ")
                ),
            )
        })
}

/// A cell as text; whole numbers without a decimal point (Excel stores phone numbers as floats).
fn cell_text(value: &DataRef<'_>) -> String {
    match value {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => float_text(*f),
        DataRef::String(s) => s.trim().to_owned(),
        DataRef::SharedString(s) => s.trim().to_owned(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => d.as_f64().to_string(),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => format!("#{e:?}"),
        DataRef::Empty => String::new(),
    }
}

fn cell_text_owned(value: &calamine::Data) -> String {
    use calamine::Data;
    match value {
        Data::Int(i) => i.to_string(),
        Data::Float(f) => float_text(*f),
        Data::String(s) => s.trim().to_owned(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// Turns records into [`ImportRow`]s and hands them on in batches.
struct RowSink<'a> {
    analyzer: &'a Analyzer,
    region: String,
    max_rows: u64,
    sink: &'a mut dyn FnMut(Vec<ImportRow>) -> Result<(), JobError>,
    batch: Vec<ImportRow>,
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
            batch: Vec::with_capacity(BATCH_ROWS),
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
        for record in records.by_ref().take(SAMPLE_ROWS) {
            sample.push(record?);
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
        self.batch.push(ImportRow {
            sheet: sheet.to_owned(),
            row_no,
            cells,
            number,
        });
        if self.batch.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), JobError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        (self.sink)(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(BATCH_ROWS),
        ))
    }
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
    fn records_are_split_like_rfc_4180() {
        let split = |s: &str| split_record(s, ',');
        assert_eq!(split("a, b ,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split(r#""x, y","say ""hi""",z"#).unwrap(),
            ["x, y", r#"say "hi""#, "z"]
        );
        assert_eq!(split(",,").unwrap(), ["", "", ""]);
        assert_eq!(split(r#""open"#), None);
        let text = "a,\"two\nlines\"\nb,c\n";
        let records: Vec<_> = Records {
            lines: text.as_bytes(),
            delimiter: Some(b','),
            line: 0,
        }
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            records[0],
            (1, vec!["a".to_owned(), "two\nlines".to_owned()])
        );
        assert_eq!(records[1], (3, vec!["b".to_owned(), "c".to_owned()]));
    }

    #[test]
    fn delimiters_are_sniffed() {
        let lines = |s: &str| s.lines().map(|l| format!("{l}\n")).collect::<Vec<_>>();
        assert_eq!(sniff_delimiter(&lines("a,b\n1,2\n3,4")), Some(b','));
        assert_eq!(sniff_delimiter(&lines("a\tb\n1\t2")), Some(b'\t'));
        assert_eq!(sniff_delimiter(&lines("a;b;c\n1;2;3")), Some(b';'));
        assert_eq!(sniff_delimiter(&lines("13800138000\n13900139000")), None);
    }

    #[test]
    fn utf8_is_checked_across_block_boundaries() {
        let text = "手机号\n".repeat(30_000);
        assert!(is_utf8(&mut text.as_bytes()).unwrap());
        let (gbk, _, _) = GB18030.encode(&text);
        assert!(!is_utf8(&mut gbk.as_ref()).unwrap());
    }

    #[test]
    fn header_names_are_ranked() {
        assert_eq!(header_match("手机号码"), Some(0));
        assert_eq!(header_match("Mobile Phone"), header_match("mobile"));
        assert_eq!(header_match("姓名"), None);
        assert_eq!(float_text(13800138000.0), "13800138000");
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
