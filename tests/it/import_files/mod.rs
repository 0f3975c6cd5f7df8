//! Builders of uploaded files for the import tests: XLSX (our own small zip writer, so a part can
//! be any bytes, including a pre-deflated bomb), XLS (a compound file around BIFF8 records), and
//! the hostile workbooks of issue #12.

#![allow(dead_code)]

pub mod generate;

use std::io::Write;

/// One zip entry: its name, the bytes stored (deflated or not), and what the headers claim.
pub struct Entry {
    pub name: String,
    pub data: Vec<u8>,
    pub deflated: bool,
    pub crc: u32,
    pub size: u64,
}

impl Entry {
    /// An entry deflated from `content`.
    pub fn deflate(name: &str, content: &[u8]) -> Entry {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(content).unwrap();
        let mut crc = flate2::Crc::new();
        crc.update(content);
        Entry {
            name: name.to_owned(),
            data: encoder.finish().unwrap(),
            deflated: true,
            crc: crc.sum(),
            size: content.len() as u64,
        }
    }
}

impl Entry {
    /// An entry stored as it is (no compression): cheap to build however big.
    pub fn stored(name: &str, content: Vec<u8>) -> Entry {
        let mut crc = flate2::Crc::new();
        crc.update(&content);
        Entry {
            name: name.to_owned(),
            size: content.len() as u64,
            data: content,
            deflated: false,
            crc: crc.sum(),
        }
    }
}

/// A zip of `entries` (no zip64: every entry and the whole stay under 4 GiB).
pub fn zip(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let method: u16 = if e.deflated { 8 } else { 0 };
        let header = |sig: &[u8], central: bool| {
            let mut h = sig.to_vec();
            if central {
                h.extend(20u16.to_le_bytes()); // made by
            }
            h.extend(20u16.to_le_bytes()); // needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(method.to_le_bytes());
            h.extend([0, 0, 0x21, 0]); // time, date
            h.extend(e.crc.to_le_bytes());
            h.extend((e.data.len() as u32).to_le_bytes());
            h.extend((e.size.min(u64::from(u32::MAX)) as u32).to_le_bytes());
            h.extend((e.name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attributes
                h.extend(0u32.to_le_bytes()); // external attributes
                h.extend(offset.to_le_bytes());
            }
            h.extend(e.name.as_bytes());
            h
        };
        out.extend(header(b"PK\x03\x04", false));
        out.extend(&e.data);
        central.extend(header(b"PK\x01\x02", true));
    }
    let start = out.len() as u32;
    out.extend(&central);
    out.extend(b"PK\x05\x06");
    out.extend([0, 0, 0, 0]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// The parts every XLSX has, for `sheets` sheets, with or without shared strings.
pub fn xlsx_frame(sheets: usize, shared_strings: bool) -> Vec<Entry> {
    let mut types = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>"#,
    );
    let mut book = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>"#,
    );
    let mut rels = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">"#,
    );
    for i in 1..=sheets {
        types.push_str(&format!(r#"<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#));
        book.push_str(&format!(
            r#"<sheet name="Sheet{i}" sheetId="{i}" r:id="rId{i}"/>"#
        ));
        rels.push_str(&format!(r#"<Relationship Id="rId{i}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{i}.xml"/>"#));
    }
    if shared_strings {
        types.push_str(r#"<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>"#);
        rels.push_str(r#"<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>"#);
    }
    types.push_str("</Types>");
    book.push_str("</sheets></workbook>");
    rels.push_str("</Relationships>");
    vec![
        Entry::deflate("[Content_Types].xml", types.as_bytes()),
        Entry::deflate("_rels/.rels", br#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
        Entry::deflate("xl/workbook.xml", book.as_bytes()),
        Entry::deflate("xl/_rels/workbook.xml.rels", rels.as_bytes()),
    ]
}

/// A worksheet part around `rows` (the `<row>` elements).
pub fn sheet_xml(rows: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{rows}</sheetData></worksheet>"#
    )
}

/// An XLSX of one sheet, and shared strings if given.
pub fn xlsx(sheet_rows: &str, shared: Option<&str>) -> Vec<u8> {
    let mut entries = xlsx_frame(1, shared.is_some());
    entries.push(Entry::deflate(
        "xl/worksheets/sheet1.xml",
        sheet_xml(sheet_rows).as_bytes(),
    ));
    if let Some(sst) = shared {
        entries.push(Entry::deflate("xl/sharedStrings.xml", sst.as_bytes()));
    }
    zip(&entries)
}

/// Issue #12: a 2.7 KB workbook whose shared strings claim `uniqueCount="99999999999999"`.
pub fn unique_count_bomb() -> Vec<u8> {
    let mut rows = String::from(r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row>"#);
    for i in 2..=40 {
        rows.push_str(&format!(
            r#"<row r="{i}"><c r="A{i}"><v>138001380{i:02}</v></c></row>"#
        ));
    }
    let sst = r#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="99999999999999" uniqueCount="99999999999999"><si><t>手机号</t></si></sst>"#;
    xlsx(&rows, Some(sst))
}

/// Issue #12: `rows` rows, each with one cell (a phone number) in column XFD.
pub fn xfd_rows(rows: u32) -> Vec<u8> {
    let mut xml = String::new();
    for i in 1..=rows {
        xml.push_str(&format!(
            r#"<row r="{i}"><c r="XFD{i}"><v>1380013{:04}</v></c></row>"#,
            i % 10_000
        ));
    }
    xlsx(&xml, None)
}

/// Raw deflate of `content`, byte-aligned and not final, from a fresh encoder: pieces made so can
/// be put one after another.
fn deflate_piece(content: &[u8], last: bool) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(content).unwrap();
    if last {
        return encoder.finish().unwrap();
    }
    encoder.flush().unwrap();
    let piece = encoder.get_ref().clone();
    std::mem::forget(encoder);
    piece
}

/// Issue #12: one cell whose text inflates to `mib` MiB (600 makes a zip of about 600 KB),
/// made by repeating one deflated MiB, so building it costs nothing like inflating it.
pub fn inflating_cell(mib: u32) -> Vec<u8> {
    let prefix =
        sheet_xml(r#"<row r="1"><c r="A1"><v>13800138000</v></c><c r="B1" t="inlineStr"><is><t>"#);
    let prefix = &prefix[..prefix.len() - "</sheetData></worksheet>".len()];
    let suffix = "</t></is></c></row></sheetData></worksheet>";
    let chunk = vec![b'A'; 1 << 20];
    let mut data = deflate_piece(prefix.as_bytes(), false);
    let piece = deflate_piece(&chunk, false);
    let mut crc = flate2::Crc::new();
    crc.update(prefix.as_bytes());
    let mut chunk_crc = flate2::Crc::new();
    chunk_crc.update(&chunk);
    for _ in 0..mib {
        data.extend(&piece);
        crc.combine(&chunk_crc);
    }
    data.extend(deflate_piece(suffix.as_bytes(), true));
    crc.update(suffix.as_bytes());
    let mut entries = xlsx_frame(1, false);
    entries.push(Entry {
        name: "xl/worksheets/sheet1.xml".into(),
        data,
        deflated: true,
        crc: crc.sum(),
        size: prefix.len() as u64 + (u64::from(mib) << 20) + suffix.len() as u64,
    });
    zip(&entries)
}

/// A BIFF8 record.
fn record(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut r = kind.to_le_bytes().to_vec();
    r.extend((data.len() as u16).to_le_bytes());
    r.extend(data);
    r
}

/// An XLS sheet: its name and cells `(row, column, value)`.
pub type XlsSheet = (String, Vec<(u16, u16, XlsCell)>);

/// A cell of an XLS sheet.
#[derive(Debug, Clone)]
pub enum XlsCell {
    Number(f64),
    /// An index into the shared strings.
    Shared(u32),
    Label(String),
}

/// The BIFF8 workbook stream of `sheets` (name and cells `(row, col, value)`), with `strings` as
/// its shared strings.
pub fn biff8(strings: &[String], sheets: &[XlsSheet]) -> Vec<u8> {
    let bof = |kind: u16| {
        let mut d = 0x0600u16.to_le_bytes().to_vec();
        d.extend(kind.to_le_bytes());
        d.extend([0; 12]);
        record(0x0809, &d)
    };
    let utf16 = |s: &str| -> (u16, Vec<u8>) {
        let units: Vec<u16> = s.encode_utf16().collect();
        (
            units.len() as u16,
            units.iter().flat_map(|u| u.to_le_bytes()).collect(),
        )
    };
    let mut globals = bof(0x0005);
    globals.extend(record(0x0042, &1200u16.to_le_bytes()));
    let mut bound_at = Vec::new();
    for (name, _) in sheets {
        bound_at.push(globals.len() + 4);
        let (cch, chars) = utf16(name);
        let mut d = vec![0; 4];
        d.extend([0, 0, cch as u8, 1]);
        d.extend(chars);
        globals.extend(record(0x0085, &d));
    }
    // One record holds at most 8224 bytes; the rest goes on in CONTINUE records, cut between
    // strings (what Excel does for short ones).
    let mut sst = (strings.len() as u32).to_le_bytes().to_vec();
    sst.extend((strings.len() as u32).to_le_bytes());
    let mut kind = 0x00FC;
    for s in strings {
        let (cch, chars) = utf16(s);
        let mut one = cch.to_le_bytes().to_vec();
        one.push(1);
        one.extend(chars);
        if sst.len() + one.len() > 8224 {
            globals.extend(record(kind, &sst));
            kind = 0x003C;
            sst.clear();
        }
        sst.extend(one);
    }
    globals.extend(record(kind, &sst));
    globals.extend(record(0x000A, &[]));
    let mut stream = globals;
    for (i, (_, cells)) in sheets.iter().enumerate() {
        let at = stream.len() as u32;
        stream[bound_at[i]..bound_at[i] + 4].copy_from_slice(&at.to_le_bytes());
        stream.extend(bof(0x0010));
        for (row, col, cell) in cells {
            let mut d = row.to_le_bytes().to_vec();
            d.extend(col.to_le_bytes());
            d.extend(0u16.to_le_bytes());
            match cell {
                XlsCell::Number(f) => {
                    d.extend(f.to_le_bytes());
                    stream.extend(record(0x0203, &d));
                }
                XlsCell::Shared(i) => {
                    d.extend(i.to_le_bytes());
                    stream.extend(record(0x00FD, &d));
                }
                XlsCell::Label(s) => {
                    let (cch, chars) = utf16(s);
                    d.extend(cch.to_le_bytes());
                    d.push(1);
                    d.extend(chars);
                    stream.extend(record(0x0204, &d));
                }
            }
        }
        stream.extend(record(0x000A, &[]));
    }
    stream
}

const END: u32 = 0xFFFF_FFFE;
const FREE: u32 = 0xFFFF_FFFF;

/// A compound file (512-byte sectors) holding `stream` as its `Workbook` stream (padded to the
/// 4096 bytes under which a stream would go to the mini stream).
pub fn cfb(stream: &[u8]) -> Vec<u8> {
    let mut stream = stream.to_vec();
    let stream_len = stream.len().max(4096);
    stream.resize(stream_len.div_ceil(512) * 512, 0);
    let stream_sectors = stream.len() / 512;
    // Sectors: FAT sectors, one directory sector, then the stream.
    let mut fat_sectors = 1;
    while fat_sectors * 128 < fat_sectors + 1 + stream_sectors {
        fat_sectors += 1;
    }
    assert!(fat_sectors <= 109, "a test stream this big needs a DIFAT");
    let dir = fat_sectors as u32;
    let first = dir + 1;
    let mut fat = vec![FREE; fat_sectors * 128];
    for s in fat.iter_mut().take(fat_sectors) {
        *s = 0xFFFF_FFFD;
    }
    fat[dir as usize] = END;
    for i in 0..stream_sectors as u32 {
        fat[(first + i) as usize] = if i + 1 == stream_sectors as u32 {
            END
        } else {
            first + i + 1
        };
    }
    let mut header = vec![0u8; 512];
    header[..8].copy_from_slice(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    header[24..26].copy_from_slice(&0x3Eu16.to_le_bytes());
    header[26..28].copy_from_slice(&3u16.to_le_bytes());
    header[28..30].copy_from_slice(&0xFFFEu16.to_le_bytes());
    header[30..32].copy_from_slice(&9u16.to_le_bytes());
    header[32..34].copy_from_slice(&6u16.to_le_bytes());
    header[44..48].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
    header[48..52].copy_from_slice(&dir.to_le_bytes());
    header[56..60].copy_from_slice(&4096u32.to_le_bytes());
    header[60..64].copy_from_slice(&END.to_le_bytes());
    header[68..72].copy_from_slice(&END.to_le_bytes());
    for i in 0..109 {
        let id = if i < fat_sectors { i as u32 } else { FREE };
        header[76 + 4 * i..80 + 4 * i].copy_from_slice(&id.to_le_bytes());
    }
    let entry = |name: &str, kind: u8, start: u32, len: u32| {
        let mut e = vec![0u8; 128];
        let units: Vec<u16> = name.encode_utf16().collect();
        for (i, u) in units.iter().enumerate() {
            e[2 * i..2 * i + 2].copy_from_slice(&u.to_le_bytes());
        }
        e[64..66].copy_from_slice(&(((units.len() + 1) * 2) as u16).to_le_bytes());
        e[66] = kind;
        e[68..80].copy_from_slice(&[0xFF; 12]); // no siblings, no child
        e[116..120].copy_from_slice(&start.to_le_bytes());
        e[120..124].copy_from_slice(&len.to_le_bytes());
        e
    };
    let mut root = entry("Root Entry", 5, END, 0);
    root[76..80].copy_from_slice(&1u32.to_le_bytes()); // child: the stream
    let mut directory = root;
    directory.extend(entry("Workbook", 2, first, stream_len as u32));
    directory.resize(512, 0);
    let mut out = header;
    out.extend(fat.iter().flat_map(|v| v.to_le_bytes()));
    out.extend(directory);
    out.extend(stream);
    out
}

/// An XLS of `sheets`.
pub fn xls(strings: &[String], sheets: &[XlsSheet]) -> Vec<u8> {
    cfb(&biff8(strings, sheets))
}

/// A small valid XLS: a header row and `n` numbers, in shared strings and as numbers.
pub fn small_xls(n: u16) -> Vec<u8> {
    let strings = vec!["姓名".to_owned(), "手机号".to_owned()];
    let mut cells = vec![(0, 0, XlsCell::Shared(0)), (0, 1, XlsCell::Shared(1))];
    for i in 1..=n {
        cells.push((i, 0, XlsCell::Label(format!("客户{i}"))));
        cells.push((i, 1, XlsCell::Number(13_800_000_000.0 + f64::from(i))));
    }
    xls(&strings, &[("客户".to_owned(), cells)])
}

/// Issue #12: an XLS whose compound-file header claims absurd FAT and DIFAT sector counts.
pub fn fat_bomb_xls() -> Vec<u8> {
    let mut file = small_xls(5);
    file[44..48].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    file[68..72].copy_from_slice(&0u32.to_le_bytes());
    file[72..76].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    file
}

/// Issue #21: a zip of `entries` empty stored entries whose end record's comment is a second,
/// false end record claiming none (what a checker that reads its own end record would see).
pub fn false_end_record(entries: usize) -> Vec<u8> {
    let list: Vec<Entry> = (0..entries)
        .map(|i| Entry::stored(&format!("e{i}"), Vec::new()))
        .collect();
    let mut bytes = zip(&list);
    bytes.truncate(bytes.len() - 2);
    bytes.extend(22u16.to_le_bytes());
    bytes.extend(b"PK\x05\x06");
    bytes.extend([0; 18]);
    bytes
}

/// Issue #21: an XLSX whose shared strings are the sheet's own compressed bytes: its last
/// directory entry points at the one before it (overlapping entries, the "better zip bomb"),
/// and the sheet inflates to `mib` MiB of blanks.
pub fn overlapping_entries(mib: usize) -> Vec<u8> {
    let sheet = sheet_xml(&" ".repeat(mib << 20));
    let mut entries = xlsx_frame(1, true);
    entries.push(Entry::deflate("xl/worksheets/sheet1.xml", sheet.as_bytes()));
    entries.push(Entry::deflate("xl/sharedStrings.xml", sheet.as_bytes()));
    let mut bytes = zip(&entries);
    let end = bytes.len() - 22;
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let mut at = u32::from_le_bytes(bytes[end + 16..end + 20].try_into().unwrap()) as usize;
    let mut headers = Vec::new();
    while at < end {
        headers.push(at);
        at += 46 + u16_at(&bytes, at + 28) + u16_at(&bytes, at + 30) + u16_at(&bytes, at + 32);
    }
    let (previous, last) = (headers[headers.len() - 2], headers[headers.len() - 1]);
    let offset: [u8; 4] = bytes[previous + 42..previous + 46].try_into().unwrap();
    bytes[last + 42..last + 46].copy_from_slice(&offset);
    bytes
}
