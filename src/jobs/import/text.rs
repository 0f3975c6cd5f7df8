//! Text files: encoding detection, delimiter sniffing, and RFC 4180 records with the line each
//! starts on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use encoding_rs::{Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE};

use super::bounds::{ImportBounds, over};
use super::{JobError, Layout, ReadSpec, RowSink};
use crate::pb::FileFormat;

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

pub(super) fn read_text(
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
    let encoding_name = match (encoding.name(), bom) {
        (name, true) => format!("{name} with BOM"),
        (name, false) => name.to_owned(),
    };
    read_decoded(decoded, format, encoding_name, spec, rows)
}

/// Reads UTF-8 text into rows: sniffs the delimiter (unless `format` is TXT), then splits
/// records.
pub(super) fn read_decoded(
    decoded: impl Read,
    format: FileFormat,
    encoding_name: String,
    spec: &ReadSpec,
    rows: &mut RowSink<'_>,
) -> Result<Layout, JobError> {
    let limits = &spec.limits;
    let mut reader = BufReader::with_capacity(64 * 1024, decoded);
    // The delimiter is decided on the first lines: a head of the text is read (a whole line or
    // not) and read again by the records.
    let mut head = Vec::new();
    (&mut reader)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| Records::<&[u8]>::decode_error(1, e))?;
    // A line cut at the head's end would show too few delimiters.
    let whole = match head.iter().rposition(|&b| b == b'\n') {
        Some(end) if head.len() == SNIFF_BYTES => &head[..end],
        _ => &head[..],
    };
    let sample: Vec<String> = whole
        .split(|&b| b == b'\n')
        .take(SNIFF_LINES)
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect();
    let delimiter = match format {
        FileFormat::Txt => None,
        _ => sniff_delimiter(&sample),
    };
    let format = match (format, delimiter) {
        (FileFormat::Unspecified, Some(_)) => FileFormat::Csv,
        (FileFormat::Unspecified, None) => FileFormat::Txt,
        (format, _) => format,
    };
    let text = BufReader::new(std::io::Cursor::new(head).chain(reader));
    let records = Records::new(text, delimiter, limits.clone());
    let read = rows.read_sheet("", records, spec)?;
    Ok(Layout {
        format,
        encoding: encoding_name,
        number_column: read.number_column,
        registered_at_column: read.registered_at_column,
        columns: read.columns,
        sheets: 1,
    })
}

/// Lines read to decide the delimiter, and the most bytes read for it.
const SNIFF_LINES: usize = 50;
const SNIFF_BYTES: usize = 1024 * 1024;

/// Delimited records with the line each starts on, split by `csv-core` (RFC 4180: a quoted field
/// may span lines, `""` inside quotes is a quote). Without a delimiter each line is one cell.
///
/// `csv-core` rather than `csv::Reader`: the reader must know the line a record starts on (the
/// `csv` crate reports the position before the blank lines it skips), and must refuse a record
/// past `max_row_bytes` before holding it (a quote that never closes cannot swallow the file), so
/// this loop feeds the parser itself, never more than the bound. A record is also refused past
/// the bounds on its cells and on the bytes of a cell.
struct Records<R> {
    input: R,
    parser: csv_core::Reader,
    delimiter: Option<u8>,
    /// Line ends (`\n`) consumed so far: the next record starts on the line after them.
    newlines: u64,
    limits: ImportBounds,
    /// Set after an error: the parser is mid-record, so nothing after it can be read.
    failed: bool,
}

/// A byte that never occurs in UTF-8 text: the delimiter of a list with one cell a line.
const NO_DELIMITER: u8 = 0xFF;

/// Bytes handed to the parser at once.
const FEED: usize = 8 * 1024;

impl<R: BufRead> Records<R> {
    /// Records of the UTF-8 text `input`, split at `delimiter` (none: one cell a line).
    fn new(input: R, delimiter: Option<u8>, limits: ImportBounds) -> Records<R> {
        let parser = csv_core::ReaderBuilder::new()
            .delimiter(delimiter.unwrap_or(NO_DELIMITER))
            .quoting(delimiter.is_some())
            .build();
        Records {
            input,
            parser,
            delimiter,
            newlines: 0,
            limits,
            failed: false,
        }
    }

    fn decode_error(line: u64, e: impl std::fmt::Display) -> JobError {
        JobError::invalid("chunk", format!("line {line}: cannot decode the file: {e}"))
    }

    /// Consumes the line ends (so the blank lines) before the next record, counting them; false
    /// at the end of the text.
    fn skip_line_ends(&mut self) -> Result<bool, JobError> {
        loop {
            let buf = self
                .input
                .fill_buf()
                .map_err(|e| Self::decode_error(self.newlines + 1, e))?;
            if buf.is_empty() {
                return Ok(false);
            }
            let ends = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            let lines = buf[..ends].iter().filter(|&&b| b == b'\n').count() as u64;
            let more = ends < buf.len();
            self.input.consume(ends);
            self.newlines += lines;
            if more {
                return Ok(true);
            }
        }
    }

    /// Reads the record that starts on line `first`: its cells (at most `keep`) and how many
    /// there were.
    fn read_record(&mut self, first: u64) -> Result<(Vec<String>, usize), JobError> {
        let max = self.limits.max_row_bytes;
        let keep = usize::try_from(self.limits.max_cells_per_row.max(self.limits.max_columns))
            .unwrap_or(usize::MAX);
        let too_long = |line: u64| {
            over(
                &format!("line {line}"),
                format!("a record of more than {max} bytes"),
                "max_row_bytes",
                max,
            )
        };
        // The cells' text, one after another, and where each kept cell ends in it.
        let mut text = Vec::new();
        let mut kept_ends = Vec::new();
        let mut count = 0usize;
        let mut out = [0u8; FEED];
        let mut ends = [0usize; 64];
        // Bytes of the record fed (quotes, delimiters and line ends included).
        let mut used = 0u64;
        let mut quotes = QuoteState::default();
        let mut last = 0u8;
        loop {
            let buf = self
                .input
                .fill_buf()
                .map_err(|e| Self::decode_error(self.newlines + 1, e))?;
            let at_end = buf.is_empty();
            // The bound and the record's own line end, never more.
            let room = usize::try_from((max + 1).saturating_sub(used)).unwrap_or(usize::MAX);
            if room == 0 && !at_end {
                // Named by the line it starts on: that is where a stray quote is.
                return Err(too_long(first));
            }
            let input = &buf[..buf.len().min(room).min(FEED)];
            let (result, nin, nout, nend) = self.parser.read_record(input, &mut out, &mut ends);
            let fed = &input[..nin];
            if let Some(&b) = fed.last() {
                last = b;
            }
            quotes.feed(fed, self.delimiter);
            self.newlines += fed.iter().filter(|&&b| b == b'\n').count() as u64;
            used += nin as u64;
            self.input.consume(nin);
            text.extend_from_slice(&out[..nout]);
            for &end in &ends[..nend] {
                count += 1;
                if kept_ends.len() < keep {
                    kept_ends.push(end);
                }
            }
            match result {
                csv_core::ReadRecordResult::Record => {
                    // The line end that closed the record is not part of it.
                    let closed = !at_end && matches!(last, b'\n' | b'\r');
                    if used - u64::from(closed) > max {
                        return Err(too_long(first));
                    }
                    if at_end && quotes == QuoteState::Quoted {
                        return Err(JobError::invalid(
                            "chunk",
                            format!("line {first}: a quote opened here is never closed"),
                        ));
                    }
                    let mut cells = Vec::with_capacity(kept_ends.len());
                    let mut start = 0;
                    for end in kept_ends {
                        let cell = std::str::from_utf8(&text[start..end])
                            .map_err(|e| Self::decode_error(first, e))?;
                        cells.push(cell.trim().to_owned());
                        start = end;
                    }
                    return Ok((cells, count));
                }
                csv_core::ReadRecordResult::End => return Ok((Vec::new(), 0)),
                // More input (or room for output) is all it needs.
                _ => {}
            }
        }
    }

    fn check(&self, first: u64, cells: &[String], count: usize) -> Result<(), JobError> {
        let place = format!("line {first}");
        let limits = &self.limits;
        if count as u64 > limits.max_cells_per_row {
            return Err(over(
                &place,
                format!("{count} cells"),
                "max_cells_per_row",
                limits.max_cells_per_row,
            ));
        }
        if count as u64 > limits.max_columns {
            return Err(over(
                &place,
                format!("{count} columns"),
                "max_columns",
                limits.max_columns,
            ));
        }
        if let Some(cell) = cells
            .iter()
            .find(|c| c.len() as u64 > limits.max_cell_bytes)
        {
            return Err(over(
                &place,
                format!("a cell of {} bytes", cell.len()),
                "max_cell_bytes",
                limits.max_cell_bytes,
            ));
        }
        Ok(())
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<(u64, Vec<String>), JobError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let record = match self.skip_line_ends() {
            Ok(true) => {
                let first = self.newlines + 1;
                self.read_record(first).and_then(|(cells, count)| {
                    self.check(first, &cells, count)?;
                    Ok((first, cells))
                })
            }
            Ok(false) => return None,
            Err(e) => Err(e),
        };
        self.failed = record.is_err();
        Some(record)
    }
}

/// Whether a quoted field is open, followed alongside the parser: `csv-core` prefers a parse to
/// an error and ends an open quote at the end of the text silently, which would glue the rest of
/// a file with one stray quote into one cell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum QuoteState {
    /// At the start of a field.
    #[default]
    Start,
    /// In an unquoted field (a quote there is text).
    Field,
    /// In a quoted field.
    Quoted,
    /// Just after a quote in a quoted field: it closed the field, or a second one follows.
    Closing,
}

impl QuoteState {
    fn feed(&mut self, bytes: &[u8], delimiter: Option<u8>) {
        let Some(delimiter) = delimiter else { return };
        for &b in bytes {
            *self = match (*self, b) {
                (QuoteState::Quoted, b'"') => QuoteState::Closing,
                (QuoteState::Quoted, _) => QuoteState::Quoted,
                (QuoteState::Start | QuoteState::Closing, b'"') => QuoteState::Quoted,
                (_, b) if b == delimiter || b == b'\n' || b == b'\r' => QuoteState::Start,
                _ => QuoteState::Field,
            };
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, delimiter: Option<u8>) -> Vec<Result<(u64, Vec<String>), JobError>> {
        Records::new(text.as_bytes(), delimiter, ImportBounds::default()).collect()
    }

    fn split(text: &str) -> Vec<(u64, Vec<String>)> {
        records(text, Some(b','))
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }

    fn cells(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn records_are_split_like_rfc_4180() {
        assert_eq!(split("a, b ,c"), [(1, cells(&["a", "b", "c"]))]);
        assert_eq!(
            split(r#""x, y","say ""hi""",z"#),
            [(1, cells(&["x, y", r#"say "hi""#, "z"]))]
        );
        assert_eq!(split(",,"), [(1, cells(&["", "", ""]))]);
        assert_eq!(
            split("a,\"two\r\nlines\"\r\n\r\n\nb,c\r\nd"),
            [
                (1, cells(&["a", "two\r\nlines"])),
                (5, cells(&["b", "c"])),
                (6, cells(&["d"])),
            ],
            "a record keeps the line it starts on, past quoted line ends and blank lines"
        );
    }

    #[test]
    fn a_quote_that_never_closes_is_refused_at_its_line() {
        let read = records("a,b\nc,\"open\nd,e\n", Some(b','));
        assert_eq!(read[0].as_ref().unwrap().0, 1);
        let e = read[1].as_ref().unwrap_err().to_string();
        assert!(
            e.contains("line 2: a quote opened here is never closed"),
            "{e}"
        );
        // A quote inside an unquoted field is text, and a closed one is fine at the end.
        assert_eq!(split("a\"b,\"c\"\"\""), [(1, cells(&["a\"b", "c\""]))]);
    }

    #[test]
    fn without_a_delimiter_a_line_is_one_cell() {
        let read: Vec<_> = records(" 138 0013 8000 \n\"x\",y\r\n", None)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            read,
            [(1, cells(&["138 0013 8000"])), (2, cells(&["\"x\",y"]))]
        );
    }

    #[test]
    fn records_are_refused_past_their_bounds() {
        let limits = ImportBounds {
            max_row_bytes: 64,
            max_cell_bytes: 10,
            max_cells_per_row: 3,
            ..ImportBounds::default()
        };
        let read = |text: &str| -> Vec<Result<(u64, Vec<String>), JobError>> {
            Records::new(text.as_bytes(), Some(b','), limits.clone()).collect()
        };
        // Exactly at the bound, with either line end, is fine.
        let at = format!("1{}\r\n2\n", " ".repeat(63));
        let read_at = read(&at);
        assert!(
            read_at.iter().all(Result::is_ok) && read_at.len() == 2,
            "{read_at:?}"
        );
        for (text, bound, line) in [
            (format!("a\n{}\n", "x".repeat(65)), "max_row_bytes", 2),
            (format!("a\n\"{}", "x\n".repeat(40)), "max_row_bytes", 2),
            ("a\nb\n1,2,3,4\n".to_owned(), "max_cells_per_row", 3),
            ("a\n12345678901\n".to_owned(), "max_cell_bytes", 2),
        ] {
            let e = read(&text)
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{text:?} passes"))
                .to_string();
            assert!(
                e.contains(&format!("line {line}:")) && e.contains(bound),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn a_file_without_line_ends_is_never_held_whole() {
        let limits = ImportBounds {
            max_row_bytes: 1024,
            ..ImportBounds::default()
        };
        // An endless reader: the record is refused after the bound, not read to the end.
        let endless = std::io::BufReader::new(std::io::repeat(b'9'));
        let e = Records::new(endless, Some(b','), limits)
            .next()
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_row_bytes"), "{e}");
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
}
