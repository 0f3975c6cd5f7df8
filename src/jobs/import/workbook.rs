//! Workbooks: XLSX streamed cell by cell, XLS through its range; every sheet or a chosen one.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use calamine::{DataRef, Reader};

use super::{JobError, Layout, ReadSpec, RowSink};
use crate::pb::FileFormat;

pub(super) fn read_workbook(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_floats_are_digits() {
        assert_eq!(float_text(13800138000.0), "13800138000");
        assert_eq!(float_text(1.5), "1.5");
    }
}
