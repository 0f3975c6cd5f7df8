//! XLSX, read by us: the zip's central directory is read and checked by our own zip reader
//! (`zipdir`) before any part is opened, every part is
//! inflated through a counter of the bytes it really yields, and the XML is read event by event
//! with each event (a text, a tag) bounded, so no part is ever held whole. Shared strings go into
//! a bounded table; a sheet's cells become sparse rows.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use quick_xml::events::{BytesStart, Event};

use super::bounds::{ImportBounds, malformed, over};
use super::workbook::{
    SharedStrings, SparseRow, check_cell, check_sheet_count, choose_sheets, float_text, take_sheet,
};
use super::{JobError, Layout, ReadSpec, RowSink};

type Zip = super::zipdir::ZipDir;

/// Deepest XML nesting read (a sheet's cells are 5 deep): the XML reader keeps every open tag's
/// name, so depth is bounded like everything else.
const MAX_DEPTH: usize = 64;

pub(super) fn read(
    path: &Path,
    spec: &ReadSpec,
    rows: &mut RowSink<'_>,
    layout: &mut Layout,
) -> Result<(), JobError> {
    let limits = &spec.limits;
    let mut zip = super::zipdir::ZipDir::open(File::open(path)?, limits)?;
    let spent = Cell::new(0u64);
    let book = read_book(&mut zip, limits, &spent)?;
    let names: Vec<String> = book.sheets.iter().map(|s| s.0.clone()).collect();
    let chosen = choose_sheets(&names, spec)?;
    let mut strings = SharedStrings::new(limits);
    if let Some(part) = &book.shared_strings {
        read_shared_strings(&mut zip, part, limits, &spent, &mut strings)?;
    }
    for i in chosen {
        let (name, part) = &book.sheets[i];
        let Some(xml) = open(&mut zip, part, limits, &spent)? else {
            return Err(malformed(format!("sheet {name:?} has no part {part}")));
        };
        let mut sheet = SheetRows {
            xml,
            buf: Vec::new(),
            strings: &strings,
            limits,
            sheet: name,
            row: SparseRow::new(),
            row_no: 0,
            depth: 0,
            done: false,
        };
        let read = rows.read_sheet(name, &mut sheet, spec)?;
        take_sheet(layout, read);
    }
    Ok(())
}

/// A part's inflated bytes, counted as the XML reader takes them: a part past
/// `max_part_bytes`, the workbook past `max_inflated_bytes`, or one XML event (a text or a tag)
/// past its bound fail the read, and say which.
struct Counted<'a, R> {
    inner: BufReader<R>,
    part: u64,
    event: u64,
    spent: &'a Cell<u64>,
    limits: &'a ImportBounds,
    event_limit: u64,
    tripped: Option<JobError>,
}

impl<R: Read> Counted<'_, R> {
    fn check(&mut self) -> std::io::Result<()> {
        let tripped = if self.part > self.limits.max_part_bytes {
            Some(over(
                "",
                format!(
                    "a workbook part of more than {} bytes inflated",
                    self.limits.max_part_bytes
                ),
                "max_part_bytes",
                self.limits.max_part_bytes,
            ))
        } else if self.spent.get() > self.limits.max_inflated_bytes {
            Some(over(
                "",
                format!(
                    "a workbook of more than {} bytes inflated",
                    self.limits.max_inflated_bytes
                ),
                "max_inflated_bytes",
                self.limits.max_inflated_bytes,
            ))
        } else if self.event > self.event_limit {
            Some(over(
                "",
                format!(
                    "a cell text or tag of more than {} bytes of XML",
                    self.event_limit
                ),
                "max_cell_bytes",
                self.limits.max_cell_bytes,
            ))
        } else {
            None
        };
        match tripped {
            Some(e) => {
                self.tripped = Some(e);
                Err(std::io::Error::other("a bound was passed"))
            }
            None => Ok(()),
        }
    }
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Counted<'_, R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.part += n as u64;
        self.event += n as u64;
        self.spent.set(self.spent.get() + n as u64);
        self.inner.consume(n);
    }
}

type Xml<'a> = quick_xml::Reader<Counted<'a, super::zipdir::EntryReader<'a>>>;

/// Opens a part for reading, or `None` if the workbook has none of that name.
fn open<'a>(
    zip: &'a mut Zip,
    name: &str,
    limits: &'a ImportBounds,
    spent: &'a Cell<u64>,
) -> Result<Option<Xml<'a>>, JobError> {
    let Some(index) = zip.index_for_name(name) else {
        return Ok(None);
    };
    let entry = zip.by_index(index)?;
    let counted = Counted {
        inner: BufReader::with_capacity(32 * 1024, entry),
        part: 0,
        event: 0,
        spent,
        limits,
        event_limit: limits.max_cell_bytes.saturating_mul(8) + 64 * 1024,
        tripped: None,
    };
    let mut xml = quick_xml::Reader::from_reader(counted);
    xml.config_mut().trim_text(false);
    Ok(Some(xml))
}

/// The next event, with the bound on one event renewed and nesting bounded.
fn next<'b>(
    xml: &mut Xml<'_>,
    buf: &'b mut Vec<u8>,
    depth: &mut usize,
) -> Result<Event<'b>, JobError> {
    buf.clear();
    xml.get_mut().event = 0;
    match xml.read_event_into(buf) {
        Ok(event) => {
            match &event {
                Event::Start(_) => {
                    *depth += 1;
                    if *depth > MAX_DEPTH {
                        return Err(malformed(format!("XML nested more than {MAX_DEPTH} deep")));
                    }
                }
                Event::End(_) => *depth = depth.saturating_sub(1),
                _ => {}
            }
            Ok(event)
        }
        Err(e) => Err(match xml.get_mut().tripped.take() {
            Some(bound) => bound,
            None => malformed(e),
        }),
    }
}

/// Appends an event's text to `into` if it is text (escaped text, CDATA, a character or entity
/// reference), within the bound on a cell.
fn append_text(
    event: &Event<'_>,
    into: &mut String,
    limits: &ImportBounds,
    place: &dyn Fn() -> String,
) -> Result<(), JobError> {
    match event {
        Event::Text(t) => into.push_str(&t.xml10_content()),
        Event::CData(t) => into.push_str(&t.xml10_content()),
        Event::GeneralRef(r) => match r.resolve_char_ref() {
            Ok(Some(c)) => into.push(c),
            _ => match r.xml10_content().as_ref() {
                "amp" => into.push('&'),
                "lt" => into.push('<'),
                "gt" => into.push('>'),
                "quot" => into.push('"'),
                "apos" => into.push('\''),
                other => {
                    into.push('&');
                    into.push_str(other);
                    into.push(';');
                }
            },
        },
        _ => return Ok(()),
    }
    check_cell(into.len(), limits, place)
}

fn attr(e: &BytesStart<'_>, local: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        (a.key.local_name().as_ref() == local).then(|| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.clone().into_owned())
        })
    })
}

/// What `xl/workbook.xml` and its relationships say: the worksheets' names and parts, and the
/// shared strings' part.
struct Book {
    sheets: Vec<(String, String)>,
    shared_strings: Option<String>,
}

fn read_book(zip: &mut Zip, limits: &ImportBounds, spent: &Cell<u64>) -> Result<Book, JobError> {
    let mut buf = Vec::new();
    let mut depth = 0;
    // Sheets by relationship id, in workbook order.
    let mut sheets: Vec<(String, String)> = Vec::new();
    {
        let Some(mut xml) = open(zip, "xl/workbook.xml", limits, spent)? else {
            return Err(malformed("no xl/workbook.xml"));
        };
        loop {
            match next(&mut xml, &mut buf, &mut depth)? {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "sheet" => {
                    check_sheet_count(sheets.len() + 1, limits)?;
                    let name = attr(&e, "name").unwrap_or_default();
                    let id = attr(&e, "id").unwrap_or_default();
                    sheets.push((name, id));
                }
                Event::Eof => break,
                _ => {}
            }
        }
    }
    let mut targets: Vec<Option<String>> = vec![None; sheets.len()];
    let mut shared_strings = None;
    if let Some(mut xml) = open(zip, "xl/_rels/workbook.xml.rels", limits, spent)? {
        loop {
            match next(&mut xml, &mut buf, &mut depth)? {
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "Relationship" => {
                    let id = attr(&e, "Id").unwrap_or_default();
                    let kind = attr(&e, "Type").unwrap_or_default();
                    let target = attr(&e, "Target").unwrap_or_default();
                    if kind.ends_with("/sharedStrings") {
                        shared_strings = Some(part_path(&target));
                    } else if kind.ends_with("/worksheet") {
                        // Only relationships a sheet names are kept, so their number is bounded.
                        for (i, (_, sheet_id)) in sheets.iter().enumerate() {
                            if *sheet_id == id {
                                targets[i] = Some(part_path(&target));
                            }
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
    }
    // Chart sheets and dialogs have no worksheet relationship: they hold no rows.
    let sheets = sheets
        .into_iter()
        .zip(targets)
        .filter_map(|((name, _), target)| target.map(|t| (name, t)))
        .collect();
    Ok(Book {
        sheets,
        shared_strings: shared_strings.or_else(|| {
            zip.index_for_name("xl/sharedStrings.xml")
                .map(|_| "xl/sharedStrings.xml".to_owned())
        }),
    })
}

/// A relationship target as a part name: relative to `xl/`, or absolute from the root.
fn part_path(target: &str) -> String {
    match target.strip_prefix('/') {
        Some(absolute) => absolute.to_owned(),
        None => match target.strip_prefix("../") {
            Some(root) => root.to_owned(),
            None => format!("xl/{target}"),
        },
    }
}

fn read_shared_strings(
    zip: &mut Zip,
    part: &str,
    limits: &ImportBounds,
    spent: &Cell<u64>,
    strings: &mut SharedStrings,
) -> Result<(), JobError> {
    let Some(mut xml) = open(zip, part, limits, spent)? else {
        return Ok(());
    };
    let mut buf = Vec::new();
    let mut depth = 0;
    let mut text = String::new();
    let (mut in_t, mut in_phonetic) = (false, false);
    loop {
        let event = next(&mut xml, &mut buf, &mut depth)?;
        match &event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "sst" => {
                    // The declared count is only ever used to refuse early, never to allocate.
                    if let Some(declared) = attr(e, "uniqueCount").and_then(|c| c.parse().ok()) {
                        strings.check_declared(declared)?;
                    }
                }
                "si" if matches!(event, Event::Empty(_)) => strings.push("")?,
                "si" => text.clear(),
                "t" => in_t = matches!(event, Event::Start(_)),
                "rPh" => in_phonetic = matches!(event, Event::Start(_)),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "si" => {
                    let trimmed = text.trim();
                    strings.push(trimmed)?;
                }
                "t" => in_t = false,
                "rPh" => in_phonetic = false,
                _ => {}
            },
            Event::Eof => break,
            other if in_t && !in_phonetic => {
                let n = strings.len() + 1;
                append_text(other, &mut text, limits, &|| format!("shared string {n}"))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A worksheet's rows, read as its XML streams by: a row is handed on when it closes.
struct SheetRows<'a> {
    xml: Xml<'a>,
    buf: Vec<u8>,
    strings: &'a SharedStrings,
    limits: &'a ImportBounds,
    sheet: &'a str,
    row: SparseRow,
    row_no: u64,
    depth: usize,
    done: bool,
}

/// The cell being read.
struct CellState {
    col: u32,
    kind: String,
    value: String,
    in_value: bool,
    in_phonetic: bool,
}

impl SheetRows<'_> {
    fn place(&self) -> String {
        format!("sheet {:?} row {}", self.sheet, self.row_no)
    }

    fn next_row(&mut self) -> Result<Option<(u64, Vec<String>)>, JobError> {
        let mut cell: Option<CellState> = None;
        let mut next_col = 0u32;
        loop {
            let (sheet, row_no) = (self.sheet, self.row_no);
            let place = move || format!("sheet {sheet:?} row {row_no}");
            let event = next(&mut self.xml, &mut self.buf, &mut self.depth)?;
            match &event {
                Event::Start(e) | Event::Empty(e) => {
                    let empty = matches!(event, Event::Empty(_));
                    match e.local_name().as_ref() {
                        "row" => {
                            self.row_no = match attr(e, "r").and_then(|r| r.parse().ok()) {
                                Some(r) => r,
                                None => self.row_no + 1,
                            };
                            next_col = 0;
                        }
                        "c" if !empty => {
                            let col = match attr(e, "r") {
                                Some(r) => reference_column(&r).ok_or_else(|| {
                                    malformed(format!("a cell reference {:?}", truncate(&r)))
                                })?,
                                None => next_col,
                            };
                            next_col = col.saturating_add(1);
                            cell = Some(CellState {
                                col,
                                kind: attr(e, "t").unwrap_or_default(),
                                value: String::new(),
                                in_value: false,
                                in_phonetic: false,
                            });
                        }
                        "c" => {
                            next_col = attr(e, "r")
                                .and_then(|r| reference_column(&r))
                                .unwrap_or(next_col)
                                .saturating_add(1);
                        }
                        "v" | "t" if !empty => {
                            if let Some(c) = &mut cell {
                                c.in_value = true;
                            }
                        }
                        "rPh" if !empty => {
                            if let Some(c) = &mut cell {
                                c.in_phonetic = true;
                            }
                        }
                        _ => {}
                    }
                }
                Event::End(e) => match e.local_name().as_ref() {
                    "v" | "t" => {
                        if let Some(c) = &mut cell {
                            c.in_value = false;
                        }
                    }
                    "rPh" => {
                        if let Some(c) = &mut cell {
                            c.in_phonetic = false;
                        }
                    }
                    "c" => {
                        if let Some(c) = cell.take() {
                            let text = self.cell_text(&c.kind, c.value)?;
                            self.row.push(c.col, text, self.limits, &place)?;
                        }
                    }
                    "row" => {
                        let cells = self.row.take();
                        return Ok(Some((self.row_no, cells)));
                    }
                    "sheetData" => return Ok(None),
                    _ => {}
                },
                Event::Eof => return Ok(None),
                other => {
                    if let Some(c) = &mut cell
                        && c.in_value
                        && !c.in_phonetic
                    {
                        append_text(other, &mut c.value, self.limits, &place)?;
                    }
                }
            }
        }
    }

    /// A cell's value as text, by its type.
    fn cell_text(&self, kind: &str, value: String) -> Result<String, JobError> {
        Ok(match kind {
            "s" => {
                let i: usize = value.trim().parse().map_err(|_| {
                    malformed(format!(
                        "{}: a shared string index {:?}",
                        self.place(),
                        truncate(&value)
                    ))
                })?;
                match self.strings.get(i) {
                    Some(s) => s.trim().to_owned(),
                    None => {
                        return Err(malformed(format!(
                            "{}: shared string {i} of {}",
                            self.place(),
                            self.strings.len()
                        )));
                    }
                }
            }
            "b" => match value.trim() {
                "1" => "true".to_owned(),
                "0" => "false".to_owned(),
                other => other.to_owned(),
            },
            "inlineStr" | "str" | "e" | "d" => value.trim().to_owned(),
            _ => match value.trim().parse::<f64>() {
                Ok(f)
                    if value
                        .trim()
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
                {
                    float_text(f)
                }
                _ => value.trim().to_owned(),
            },
        })
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

/// The 0-based column of a reference like `AB12`; `u32::MAX` for letters past `XFD`'s width.
fn reference_column(reference: &str) -> Option<u32> {
    let letters = reference
        .bytes()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    if letters == 0 || !reference[letters..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if letters > 3 {
        return Some(u32::MAX);
    }
    let n = reference[..letters].bytes().fold(0u32, |n, b| {
        n * 26 + u32::from(b.to_ascii_uppercase() - b'A') + 1
    });
    Some(n - 1)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(16) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_give_columns() {
        assert_eq!(reference_column("A1"), Some(0));
        assert_eq!(reference_column("AB12"), Some(27));
        assert_eq!(reference_column("XFD1048576"), Some(16_383));
        assert_eq!(reference_column("ABCD1"), Some(u32::MAX));
        assert_eq!(reference_column("1A"), None);
        assert_eq!(reference_column("A1B"), None);
    }

    #[test]
    fn targets_become_part_names() {
        assert_eq!(
            part_path("worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(part_path("/xl/worksheets/s.xml"), "xl/worksheets/s.xml");
    }
}
