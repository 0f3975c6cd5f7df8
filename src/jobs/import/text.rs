//! Text files: encoding detection, delimiter sniffing, and RFC 4180 records with the line each
//! starts on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use encoding_rs::{Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE};

use super::limits::{ImportLimits, over};
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
    let limits = &spec.limits;
    let mut file = File::open(path)?;
    let (encoding, bom) = detect_encoding(&mut file)?;
    let decoded = encoding_rs_io::DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .build(file);
    let mut reader = BufReader::with_capacity(64 * 1024, decoded);
    // The delimiter is decided on the first lines (each within the line bound).
    let mut sample = Vec::new();
    let mut sampled = 0;
    while sample.len() < SNIFF_LINES && sampled < SNIFF_BYTES {
        let mut line = String::new();
        match read_line(&mut reader, &mut line, limits.max_row_bytes) {
            Ok(0) => break,
            Ok(n) => sampled += n,
            Err(e) => return Err(line_error(e, sample.len() as u64 + 1, limits)),
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
        limits: limits.clone(),
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

/// Lines read to decide the delimiter, and the most bytes read for it.
const SNIFF_LINES: usize = 50;
const SNIFF_BYTES: usize = 1024 * 1024;

/// Why a line could not be read.
#[derive(Debug)]
enum LineError {
    /// The line (without its end) passes the row bound.
    TooLong,
    /// The decoder or the file failed.
    Io(std::io::Error),
}

fn line_error(e: LineError, line: u64, limits: &ImportLimits) -> JobError {
    match e {
        LineError::TooLong => over(
            &format!("line {line}"),
            format!("a line of more than {} bytes", limits.max_row_bytes),
            "max_row_bytes",
            limits.max_row_bytes,
        ),
        LineError::Io(e) => {
            JobError::invalid("chunk", format!("line {line}: cannot decode the file: {e}"))
        }
    }
}

/// Appends one line (with its end) to `into`, refusing one of more than `limit` bytes before it
/// is read whole: a file without line ends is never held in memory. Returns the bytes read.
fn read_line(reader: &mut impl BufRead, into: &mut String, limit: u64) -> Result<usize, LineError> {
    let mut bytes = Vec::new();
    loop {
        let buf = reader.fill_buf().map_err(LineError::Io)?;
        if buf.is_empty() {
            break;
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let content = bytes.len() + take - usize::from(done);
        // A line end of `\r\n` is not content either.
        if content as u64 > limit.saturating_add(1) {
            return Err(LineError::TooLong);
        }
        bytes.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            break;
        }
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if body.len() as u64 > limit {
        return Err(LineError::TooLong);
    }
    let n = bytes.len();
    let text = String::from_utf8(bytes)
        .map_err(|e| LineError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    into.push_str(&text);
    Ok(n)
}

/// Delimited records with the line each starts on. A quoted field may span lines (RFC 4180);
/// `""` inside quotes is a quote. Without a delimiter, each line is one cell. A record is
/// refused past the bounds on its bytes (a quote that never closes cannot swallow the file),
/// its cells, and the bytes of a cell.
struct Records<R> {
    lines: R,
    delimiter: Option<u8>,
    line: u64,
    limits: ImportLimits,
}

impl<R: BufRead> Records<R> {
    /// Reads the next line into `into` (its end removed), within what is left of the record's
    /// bound after `used` bytes.
    fn next_line(&mut self, into: &mut String, first: u64, used: usize) -> Result<bool, JobError> {
        let left = self.limits.max_row_bytes.saturating_sub(used as u64);
        let n = match read_line(&mut self.lines, into, left) {
            Ok(n) => n,
            Err(e) => return Err(line_error(e, first.max(self.line + 1), &self.limits)),
        };
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        while into.ends_with(['\n', '\r']) {
            into.pop();
        }
        Ok(true)
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
        let mut text = String::new();
        let first = self.line + 1;
        match self.next_line(&mut text, first, 0) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        let Some(delimiter) = self.delimiter else {
            let cells = vec![text.trim().to_owned()];
            return Some(self.check(first, &cells, 1).map(|()| (first, cells)));
        };
        let mut splitter = Splitter::new(
            char::from(delimiter),
            usize::try_from(self.limits.max_cells_per_row.max(self.limits.max_columns))
                .unwrap_or(usize::MAX),
        );
        let mut used = text.len();
        loop {
            if splitter.feed(&text) {
                let count = splitter.count;
                let cells = splitter.cells;
                return Some(self.check(first, &cells, count).map(|()| (first, cells)));
            }
            // A quoted field goes on on the next line.
            text.clear();
            match self.next_line(&mut text, first, used + 1) {
                Ok(true) => used += text.len() + 1,
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

/// Splits one record fed a line at a time, so a record of many lines is read once, not again
/// for every line added. Keeps at most `max_cells` cells (counting the rest).
struct Splitter {
    delimiter: char,
    max_cells: usize,
    cells: Vec<String>,
    count: usize,
    cell: String,
    quoted: bool,
    at_start: bool,
    lines: usize,
}

impl Splitter {
    fn new(delimiter: char, max_cells: usize) -> Splitter {
        Splitter {
            delimiter,
            max_cells,
            cells: Vec::new(),
            count: 0,
            cell: String::new(),
            quoted: false,
            at_start: true,
            lines: 0,
        }
    }

    fn end_cell(&mut self) {
        self.count += 1;
        let cell = std::mem::take(&mut self.cell);
        if self.cells.len() < self.max_cells {
            self.cells.push(cell.trim().to_owned());
        }
    }

    /// Feeds the next line (without its end); true when the record is complete.
    fn feed(&mut self, line: &str) -> bool {
        if self.lines > 0 {
            // Only a quoted field spans lines; the line end is part of it.
            self.cell.push('\n');
        }
        self.lines += 1;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if self.quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        self.cell.push('"');
                    } else {
                        self.quoted = false;
                    }
                } else {
                    self.cell.push(c);
                }
            } else if c == self.delimiter {
                self.end_cell();
                self.at_start = true;
                continue;
            } else if c == '"' && self.at_start && self.cell.trim().is_empty() {
                self.cell.clear();
                self.quoted = true;
            } else {
                self.cell.push(c);
            }
            self.at_start = false;
        }
        if self.quoted {
            return false;
        }
        self.end_cell();
        true
    }
}

/// Splits one record; `None` while a quoted field is still open.
#[cfg(test)]
fn split_record(text: &str, delimiter: char) -> Option<Vec<String>> {
    let mut splitter = Splitter::new(delimiter, usize::MAX);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    if splitter.feed(first) {
        return lines.next().is_none().then_some(splitter.cells);
    }
    for line in lines {
        if splitter.feed(line) {
            return Some(splitter.cells);
        }
    }
    None
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
            limits: ImportLimits::default(),
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
}
