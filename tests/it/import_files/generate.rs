//! Structure-aware generators of uploads for the import fuzz tests: text files in several
//! encodings, XLSX and XLS workbooks of random shape with random claims about themselves, then
//! cut short or with bytes changed.

use proptest::prelude::*;

use super::{Entry, XlsCell, sheet_xml, xls, xlsx_frame, zip};

/// A generated upload: its file name and bytes.
#[derive(Debug, Clone)]
pub struct Upload {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn cell_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (13_000_000_000u64..19_999_999_999).prop_map(|n| n.to_string()),
        "\\+86 1[3-9][0-9] [0-9]{4} [0-9]{4}",
        "[a-z0-9 ,;\"\t手机号码姓名]{0,12}",
        "\\PC{0,8}",
        Just(String::new()),
    ]
}

/// Mutations applied to a file's bytes: cut at a fraction, and bytes overwritten.
fn mutate(bytes: Vec<u8>, cut: Option<f64>, flips: &[(f64, u8)]) -> Vec<u8> {
    let mut bytes = bytes;
    for &(at, value) in flips {
        if !bytes.is_empty() {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] = value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate((bytes.len() as f64 * cut) as usize);
    }
    bytes
}

/// Mostly intact: sometimes cut, sometimes a few bytes changed.
fn mutations() -> impl Strategy<Value = (Option<f64>, Vec<(f64, u8)>)> {
    (
        prop::option::weighted(0.15, 0.0..1.0f64),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((0.0..1.0f64, any::<u8>()), 1..4),
        ],
    )
}

/// CSV or TXT files: random lines of random cells, a random delimiter, encoding and line end,
/// perhaps one very long line, perhaps cut short.
pub fn text() -> impl Strategy<Value = Upload> {
    (
        prop::collection::vec(prop::collection::vec(cell_text(), 1..6), 0..40),
        prop::sample::select(vec![",", "\t", ";", "|"]),
        0..6usize,
        prop::bool::ANY,
        prop::option::weighted(0.2, (0..40usize, 1_000..600_000usize)),
        prop::bool::ANY,
        mutations(),
    )
        .prop_map(
            |(lines, delimiter, encoding, crlf, long, csv, (cut, flips))| {
                let end = if crlf { "\r\n" } else { "\n" };
                let mut text = String::new();
                for (i, cells) in lines.iter().enumerate() {
                    if let Some((at, len)) = long
                        && at == i
                    {
                        // A line with no end in sight.
                        text.push_str(&"9".repeat(len));
                    }
                    text.push_str(&cells.join(delimiter));
                    text.push_str(end);
                }
                let bytes = match encoding {
                    0 => text.into_bytes(),
                    1 => [&b"\xEF\xBB\xBF"[..], text.as_bytes()].concat(),
                    2 => encoding_rs::GBK.encode(&text).0.into_owned(),
                    3 => [0xFF, 0xFE]
                        .into_iter()
                        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
                        .collect(),
                    4 => [0xFE, 0xFF]
                        .into_iter()
                        .chain(text.encode_utf16().flat_map(u16::to_be_bytes))
                        .collect(),
                    _ => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
                };
                Upload {
                    name: if csv { "f.csv" } else { "f.txt" }.to_owned(),
                    bytes: mutate(bytes, cut, &flips),
                }
            },
        )
}

/// One generated XLSX cell: column, type and value.
fn xlsx_cell() -> impl Strategy<Value = (u32, u8, String)> {
    (
        prop_oneof![8 => 0..12u32, 1 => 0..16_384u32, 1 => Just(16_383u32)],
        0..6u8,
        cell_text(),
    )
}

/// XLSX workbooks: random sheets and rows, cells of every type anywhere up to XFD, shared
/// strings with a random claimed count, a random `<dimension>`, then perhaps cut or changed.
pub fn xlsx() -> impl Strategy<Value = Upload> {
    (
        prop::collection::vec(
            prop::collection::vec(
                (
                    prop_oneof![9 => 1..200u64, 1 => any::<u64>()],
                    prop::collection::vec(xlsx_cell(), 0..8),
                ),
                0..30,
            ),
            1..3,
        ),
        prop::collection::vec(cell_text(), 0..12),
        prop::option::of(any::<u64>()),
        "[A-Z]{1,4}[0-9]{1,8}",
        mutations(),
    )
        .prop_map(|(sheets, strings, declared, dimension, (cut, flips))| {
            let mut entries = xlsx_frame(sheets.len(), true);
            for (i, rows) in sheets.iter().enumerate() {
                let mut xml = String::new();
                for (row, cells) in rows {
                    xml.push_str(&format!(r#"<row r="{row}">"#));
                    for (col, kind, text) in cells {
                        let at = format!("{}{row}", letters(*col));
                        let text = escape(text);
                        xml.push_str(&match kind {
                            0 => format!(r#"<c r="{at}"><v>{}</v></c>"#, text.len() * 1_000),
                            1 => format!(
                                r#"<c r="{at}" t="s"><v>{}</v></c>"#,
                                text.len() % (strings.len() + 2)
                            ),
                            2 => format!(r#"<c r="{at}" t="inlineStr"><is><t>{text}</t></is></c>"#),
                            3 => format!(r#"<c r="{at}" t="b"><v>1</v></c>"#),
                            4 => format!(r#"<c r="{at}" t="str"><f>A1</f><v>{text}</v></c>"#),
                            _ => format!(r#"<c r="{at}" s="3"/>"#),
                        });
                    }
                    xml.push_str("</row>");
                }
                let xml = sheet_xml(&xml).replacen(
                    "<sheetData>",
                    &format!(r#"<dimension ref="A1:{dimension}"/><sheetData>"#),
                    1,
                );
                entries.push(Entry::deflate(
                    &format!("xl/worksheets/sheet{}.xml", i + 1),
                    xml.as_bytes(),
                ));
            }
            let count = declared.unwrap_or(strings.len() as u64);
            let mut sst = format!(r#"<sst uniqueCount="{count}">"#);
            for s in &strings {
                sst.push_str(&format!("<si><t>{}</t></si>", escape(s)));
            }
            sst.push_str("</sst>");
            entries.push(Entry::deflate("xl/sharedStrings.xml", sst.as_bytes()));
            Upload {
                name: "f.xlsx".into(),
                bytes: mutate(zip(&entries), cut, &flips),
            }
        })
}

/// XLS workbooks: random cells and shared strings, then header counts and sector numbers set to
/// random values, bytes changed, or the file cut.
pub fn xls_file() -> impl Strategy<Value = Upload> {
    (
        prop::collection::vec(cell_text(), 0..10),
        prop::collection::vec(
            (
                prop_oneof![9 => 0..100u16, 1 => any::<u16>()],
                prop_oneof![9 => 0..10u16, 1 => any::<u16>()],
                0..3u8,
                cell_text(),
            ),
            0..60,
        ),
        prop::option::weighted(
            0.4,
            (
                prop::sample::select(vec![30usize, 44, 48, 56, 60, 64, 68, 72, 76]),
                any::<u32>(),
            ),
        ),
        mutations(),
    )
        .prop_map(|(strings, cells, header, (cut, flips))| {
            let cells = cells
                .into_iter()
                .map(|(row, col, kind, text)| {
                    let cell = match kind {
                        0 => XlsCell::Number(text.len() as f64 * 1e9),
                        1 => XlsCell::Shared(text.len() as u32 % (strings.len() as u32 + 2)),
                        _ => XlsCell::Label(text),
                    };
                    (row, col, cell)
                })
                .collect();
            let mut bytes = xls(&strings, &[("S".to_owned(), cells)]);
            if let Some((at, value)) = header {
                bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            Upload {
                name: "f.xls".into(),
                bytes: mutate(bytes, cut, &flips),
            }
        })
}

/// Any upload.
pub fn upload() -> impl Strategy<Value = Upload> {
    prop_oneof![text(), xlsx(), xls_file()]
}

fn letters(mut col: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (col % 26) as u8);
        if col < 26 {
            break;
        }
        col = col / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
