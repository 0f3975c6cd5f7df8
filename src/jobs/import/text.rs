//! Text files: encoding detection, delimiter sniffing, and RFC 4180 records with the line each
//! starts on.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use encoding_rs::{Encoding, GB18030, UTF_8, UTF_16BE, UTF_16LE};

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
