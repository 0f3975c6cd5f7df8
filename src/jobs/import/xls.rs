//! XLS (Excel 97–2003, BIFF8; and Excel 5.0/95, BIFF5), read by us: the file's size is bounded
//! (its workbook stream is held in memory), the compound file is checked against its real length
//! ([`super::cfb`]), the shared-string table is read within its bounds whatever `cstUnique`
//! says, and a sheet's cell records become sparse rows in the order they come. Only values are
//! read: formulas give their cached result, formats are not applied (a date is its serial number).
//!
//! Reference: [MS-XLS](https://learn.microsoft.com/en-us/openspecs/office_file_formats/ms-xls/).

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;

use encoding_rs::Encoding;

use super::bounds::{ImportBounds, malformed, over};
use super::workbook::{
    SharedStrings, SparseRow, check_cell, check_sheet_count, choose_sheets, float_text, take_sheet,
};
use super::{JobError, Layout, ReadSpec, RowSink};

const BOF: u16 = 0x0809;
const EOF: u16 = 0x000A;
const CONTINUE: u16 = 0x003C;

pub(super) fn read(
    path: &Path,
    spec: &ReadSpec,
    rows: &mut RowSink<'_>,
    layout: &mut Layout,
) -> Result<(), JobError> {
    let limits = &spec.limits;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > limits.max_xls_bytes {
        return Err(over(
            "",
            format!("an XLS file of {len} bytes"),
            "max_xls_bytes",
            limits.max_xls_bytes,
        ));
    }
    let stream = super::cfb::workbook_stream(&mut file)?;
    let globals = read_globals(&stream, limits)?;
    let names: Vec<String> = globals.sheets.iter().map(|s| s.0.clone()).collect();
    for i in choose_sheets(&names, spec)? {
        let (name, at) = &globals.sheets[i];
        let mut sheet = SheetRows {
            records: Records::at(&stream, *at),
            globals: &globals,
            limits,
            sheet: name,
            row: SparseRow::new(),
            row_no: 0,
            queue: VecDeque::new(),
            formula_at: None,
            depth: 0,
            started: false,
            done: false,
        };
        let read = rows.read_sheet(name, &mut sheet, spec)?;
        take_sheet(layout, read);
    }
    Ok(())
}

/// BIFF records `(type, data)` from a position; a record cut short by the stream's end ends them.
struct Records<'s> {
    stream: &'s [u8],
    at: usize,
}

impl<'s> Records<'s> {
    fn at(stream: &'s [u8], at: usize) -> Records<'s> {
        Records { stream, at }
    }

    fn peek_type(&self) -> Option<u16> {
        let head = self.stream.get(self.at..self.at + 2)?;
        Some(u16::from_le_bytes([head[0], head[1]]))
    }
}

impl<'s> Iterator for Records<'s> {
    type Item = (u16, &'s [u8]);

    fn next(&mut self) -> Option<(u16, &'s [u8])> {
        let head = self.stream.get(self.at..self.at + 4)?;
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let data = self.stream.get(self.at + 4..self.at + 4 + len)?;
        self.at += 4 + len;
        Some((kind, data))
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// What the workbook globals say.
struct Globals {
    biff8: bool,
    encoding: &'static Encoding,
    sheets: Vec<(String, usize)>,
    strings: SharedStrings,
}

fn read_globals(stream: &[u8], limits: &ImportBounds) -> Result<Globals, JobError> {
    let mut records = Records::at(stream, 0);
    let biff8 = match records.next() {
        Some((BOF, data)) => match u16_at(data, 0) {
            Some(0x0600) => true,
            Some(0x0500) => false,
            _ => {
                return Err(malformed(
                    "only Excel 97–2003 and 5.0/95 workbooks are read",
                ));
            }
        },
        Some((0x0009 | 0x0209 | 0x0409, _)) => {
            return Err(malformed(
                "only Excel 97–2003 and 5.0/95 workbooks are read",
            ));
        }
        _ => {
            return Err(malformed(
                "the workbook stream does not start with a BOF record",
            ));
        }
    };
    let mut globals = Globals {
        biff8,
        encoding: encoding_rs::WINDOWS_1252,
        sheets: Vec::new(),
        strings: SharedStrings::new(limits),
    };
    while let Some((kind, data)) = records.next() {
        match kind {
            EOF => break,
            // FilePass: the workbook is encrypted.
            0x002F => return Err(malformed("the workbook is password-protected")),
            // CodePage: the encoding of BIFF5 byte strings.
            0x0042 => {
                if let Some(cp) = u16_at(data, 0) {
                    globals.encoding = codepage(cp);
                }
            }
            // BoundSheet8: a sheet's name and where its records start; worksheets only.
            0x0085 => {
                let (Some(at), Some(&kind)) = (u32_at(data, 0), data.get(5)) else {
                    continue;
                };
                if kind != 0 {
                    continue;
                }
                check_sheet_count(globals.sheets.len() + 1, limits)?;
                let cch = usize::from(data.get(6).copied().unwrap_or(0));
                let name = if biff8 {
                    let high = data.get(7).is_some_and(|f| f & 1 == 1);
                    chars(data.get(8..).unwrap_or_default(), cch, high)
                } else {
                    let bytes = data.get(7..).unwrap_or_default();
                    globals
                        .encoding
                        .decode_without_bom_handling(&bytes[..cch.min(bytes.len())])
                        .0
                        .into_owned()
                };
                globals.sheets.push((name, at as usize));
            }
            // SST: the shared strings, continued in CONTINUE records.
            0x00FC => {
                let mut segments = vec![data];
                while records.peek_type() == Some(CONTINUE) {
                    if let Some((_, more)) = records.next() {
                        segments.push(more);
                    }
                }
                read_sst(&segments, limits, &mut globals.strings)?;
            }
            _ => {}
        }
    }
    Ok(globals)
}

/// Windows code pages of BIFF5 files, as encodings.
fn codepage(cp: u16) -> &'static Encoding {
    let label = match cp {
        936 => "gbk",
        950 => "big5",
        932 => "shift_jis",
        949 => "euc-kr",
        1200 => "utf-16le",
        65001 => "utf-8",
        10000 => "macintosh",
        874 | 1250..=1258 => {
            return Encoding::for_label(format!("windows-{cp}").as_bytes())
                .unwrap_or(encoding_rs::WINDOWS_1252);
        }
        _ => "windows-1252",
    };
    Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::WINDOWS_1252)
}

/// `n` characters from `data`: UTF-16LE when `high`, else one byte each (Latin-1).
fn chars(data: &[u8], n: usize, high: bool) -> String {
    if high {
        let units = data
            .chunks_exact(2)
            .take(n)
            .map(|u| u16::from_le_bytes([u[0], u[1]]));
        char::decode_utf16(units)
            .map(|c| c.unwrap_or('\u{FFFD}'))
            .collect()
    } else {
        data.iter().take(n).map(|&b| char::from(b)).collect()
    }
}

/// The SST record and its CONTINUE records, read as one sequence; a string's characters may
/// continue in the next record, which then starts with a byte saying how they are stored.
struct Segments<'a> {
    segments: &'a [&'a [u8]],
    i: usize,
    at: usize,
}

impl Segments<'_> {
    fn left(&self) -> usize {
        self.segments.get(self.i).map_or(0, |s| s.len() - self.at)
    }

    fn done(&mut self) -> bool {
        while self.i < self.segments.len() && self.left() == 0 {
            self.i += 1;
            self.at = 0;
        }
        self.i >= self.segments.len()
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.done() || self.left() < n {
            return None;
        }
        let bytes = &self.segments[self.i][self.at..self.at + n];
        self.at += n;
        Some(bytes)
    }

    fn skip(&mut self, mut n: usize) -> Option<()> {
        while n > 0 {
            if self.done() {
                return None;
            }
            let k = n.min(self.left());
            self.at += k;
            n -= k;
        }
        Some(())
    }
}

fn read_sst(
    segments: &[&[u8]],
    limits: &ImportBounds,
    strings: &mut SharedStrings,
) -> Result<(), JobError> {
    let truncated = || malformed("a shared string is cut short");
    let mut s = Segments {
        segments,
        i: 0,
        at: 0,
    };
    let head = s.take(8).ok_or_else(truncated)?;
    // cstUnique is only ever used to refuse early, never to allocate.
    strings.check_declared(u64::from(u32::from_le_bytes([
        head[4], head[5], head[6], head[7],
    ])))?;
    while !s.done() {
        let place = || format!("shared string {}", strings.len() + 1);
        let head = s.take(3).ok_or_else(truncated)?;
        let mut left = usize::from(u16::from_le_bytes([head[0], head[1]]));
        let flags = head[2];
        let mut high = flags & 1 == 1;
        let runs = if flags & 8 != 0 {
            let b = s.take(2).ok_or_else(truncated)?;
            usize::from(u16::from_le_bytes([b[0], b[1]]))
        } else {
            0
        };
        let ext = if flags & 4 != 0 {
            let b = s.take(4).ok_or_else(truncated)?;
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
        } else {
            0
        };
        let mut text = String::new();
        while left > 0 {
            if s.left() == 0 {
                // The characters go on in the next record, which says how they are stored.
                s.done();
                let flag = s.take(1).ok_or_else(truncated)?;
                high = flag[0] & 1 == 1;
            }
            let width = if high { 2 } else { 1 };
            let n = left.min(s.left() / width);
            if n == 0 {
                return Err(truncated());
            }
            let bytes = s.take(n * width).ok_or_else(truncated)?;
            text.push_str(&chars(bytes, n, high));
            check_cell(text.len(), limits, &place)?;
            left -= n;
        }
        s.skip(runs * 4 + ext).ok_or_else(truncated)?;
        strings.push(text.trim())?;
    }
    Ok(())
}

/// A sheet's rows from its cell records, in the order they come (a row met again later is handed
/// on again, under its own number).
struct SheetRows<'a> {
    records: Records<'a>,
    globals: &'a Globals,
    limits: &'a ImportBounds,
    sheet: &'a str,
    row: SparseRow,
    row_no: u64,
    /// Cells read but not yet placed (a MULRK record holds several).
    queue: VecDeque<(u64, u32, String)>,
    /// The cell of the last formula whose string result follows in a STRING record.
    formula_at: Option<(u64, u32)>,
    /// Nesting of substreams (an embedded chart) inside the sheet, skipped.
    depth: usize,
    started: bool,
    done: bool,
}

impl SheetRows<'_> {
    /// The next cells, from the next cell record; `None` at the sheet's end.
    fn fill(&mut self) -> Result<bool, JobError> {
        while self.queue.is_empty() {
            let Some((kind, data)) = self.records.next() else {
                return Ok(false);
            };
            if !self.started {
                if kind != BOF {
                    return Err(malformed(format!(
                        "sheet {:?} does not start where the workbook says",
                        self.sheet
                    )));
                }
                self.started = true;
                continue;
            }
            match kind {
                BOF => self.depth += 1,
                EOF if self.depth == 0 => return Ok(false),
                EOF => self.depth -= 1,
                _ if self.depth > 0 => {}
                _ => self.cell_record(kind, data)?,
            }
        }
        Ok(true)
    }

    fn cell_record(&mut self, kind: u16, data: &[u8]) -> Result<(), JobError> {
        let (Some(row), Some(col)) = (u16_at(data, 0), u16_at(data, 2)) else {
            return Ok(());
        };
        let (row, col) = (u64::from(row) + 1, u32::from(col));
        let text = match kind {
            // Number
            0x0203 => data
                .get(6..14)
                .map(|b| float_text(f64::from_le_bytes(b.try_into().unwrap_or_default()))),
            // RK
            0x027E => u32_at(data, 6).map(|rk| float_text(rk_value(rk))),
            // MulRk: several RK cells of one row.
            0x00BD => {
                let n = data.len().saturating_sub(6) / 6;
                for i in 0..n {
                    if let Some(rk) = u32_at(data, 4 + i * 6 + 2) {
                        let at = col.saturating_add(i as u32);
                        self.queue.push_back((row, at, float_text(rk_value(rk))));
                    }
                }
                None
            }
            // LabelSst
            0x00FD => match u32_at(data, 6) {
                Some(i) => Some(
                    self.globals
                        .strings
                        .get(i as usize)
                        .ok_or_else(|| {
                            malformed(format!(
                                "sheet {:?} row {row}: shared string {i} of {}",
                                self.sheet,
                                self.globals.strings.len()
                            ))
                        })?
                        .to_owned(),
                ),
                None => None,
            },
            // Label, RString
            0x0204 | 0x00D6 => Some(self.string(data.get(6..).unwrap_or_default())),
            // BoolErr
            0x0205 => match (data.get(6), data.get(7)) {
                (Some(&v), Some(0)) => Some((v != 0).to_string()),
                (Some(&v), Some(_)) => Some(error_text(v).to_owned()),
                _ => None,
            },
            // Formula: its cached result.
            0x0006 => match data.get(6..14) {
                Some(v) if v[6..8] == [0xFF, 0xFF] => match v[0] {
                    0 => {
                        self.formula_at = Some((row, col));
                        None
                    }
                    1 => Some((v[2] != 0).to_string()),
                    2 => Some(error_text(v[2]).to_owned()),
                    _ => None,
                },
                Some(v) => Some(float_text(f64::from_le_bytes(
                    v.try_into().unwrap_or_default(),
                ))),
                None => None,
            },
            _ => None,
        };
        if let Some(text) = text {
            self.queue.push_back((row, col, text));
        }
        Ok(())
    }
}

impl SheetRows<'_> {
    /// A formula's string result (STRING records carry no position: it is the last formula's).
    fn string(&self, data: &[u8]) -> String {
        let cch = usize::from(u16_at(data, 0).unwrap_or(0));
        if self.globals.biff8 {
            let high = data.get(2).is_some_and(|f| f & 1 == 1);
            chars(data.get(3..).unwrap_or_default(), cch, high)
        } else {
            let bytes = data.get(2..).unwrap_or_default();
            self.globals
                .encoding
                .decode_without_bom_handling(&bytes[..cch.min(bytes.len())])
                .0
                .into_owned()
        }
    }

    fn next_row(&mut self) -> Result<Option<(u64, Vec<String>)>, JobError> {
        loop {
            // STRING records (a formula's text) are picked up here, where the record order is.
            if !self.fill_with_strings()? {
                return Ok((!self.row.is_empty()).then(|| (self.row_no, self.row.take())));
            }
            let Some((row, _, _)) = self.queue.front() else {
                continue;
            };
            if *row != self.row_no && !self.row.is_empty() {
                let done = (self.row_no, self.row.take());
                self.row_no = *row;
                return Ok(Some(done));
            }
            let (row, col, text) = self.queue.pop_front().expect("a queued cell");
            self.row_no = row;
            let (sheet, limits) = (self.sheet, self.limits);
            let place = move || format!("sheet {sheet:?} row {row}");
            self.row.push(col, text.trim().to_owned(), limits, &place)?;
        }
    }

    fn fill_with_strings(&mut self) -> Result<bool, JobError> {
        if !self.queue.is_empty() {
            return Ok(true);
        }
        if let Some((row, col)) = self.formula_at
            && self.records.peek_type() == Some(0x0207)
            && let Some((_, data)) = self.records.next()
        {
            self.formula_at = None;
            let text = self.string(data);
            self.queue.push_back((row, col, text));
            return Ok(true);
        }
        self.fill()
    }
}

impl Iterator for SheetRows<'_> {
    type Item = Result<(u64, Vec<String>), JobError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let row = self.next_row();
        if !matches!(row, Ok(Some(_))) {
            self.done = true;
        }
        row.transpose()
    }
}

/// An RK number: a 30-bit integer or the high bits of a float, perhaps divided by 100.
fn rk_value(rk: u32) -> f64 {
    let value = if rk & 2 != 0 {
        f64::from((rk as i32) >> 2)
    } else {
        f64::from_bits(u64::from(rk & 0xFFFF_FFFC) << 32)
    };
    if rk & 1 != 0 { value / 100.0 } else { value }
}

fn error_text(code: u8) -> &'static str {
    match code {
        0x00 => "#NULL!",
        0x07 => "#DIV/0!",
        0x0F => "#VALUE!",
        0x17 => "#REF!",
        0x1D => "#NAME?",
        0x24 => "#NUM!",
        _ => "#N/A",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rk_numbers_decode() {
        assert_eq!(rk_value((1380 << 2) | 2), 1380.0);
        assert_eq!(rk_value((12345 << 2) | 3), 123.45);
        let bits = 1.5f64.to_bits();
        assert_eq!(rk_value((bits >> 32) as u32), 1.5);
    }

    #[test]
    fn shared_strings_continue_across_records() {
        // Two strings: "ab" (compressed), then "手机" split over a CONTINUE record.
        let mut sst = vec![2, 0, 0, 0, 2, 0, 0, 0];
        sst.extend([2, 0, 0, b'a', b'b']);
        sst.extend([2, 0, 1]);
        sst.extend("手".encode_utf16().flat_map(u16::to_le_bytes));
        let mut more = vec![1];
        more.extend("机".encode_utf16().flat_map(u16::to_le_bytes));
        let limits = ImportBounds::default();
        let mut strings = SharedStrings::new(&limits);
        read_sst(&[&sst, &more], &limits, &mut strings).unwrap();
        assert_eq!(strings.get(0), Some("ab"));
        assert_eq!(strings.get(1), Some("手机"));
    }
}
