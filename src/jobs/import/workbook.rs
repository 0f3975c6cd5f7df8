//! Workbooks: XLSX and XLS, every sheet or a chosen one, read by our own bounded readers (the
//! `xlsx` and `xls` modules beside this one, which use it); what they share lives here: the
//! shared-string table, the sparse row, sheet choice and how numbers become text.
//!
//! Why not calamine (which this used before): it allocates from sizes a file declares
//! (`uniqueCount` of the shared strings, the XLS `Dimensions`, compound-file sector chains), builds
//! a dense row up to the last column with a cell (one cell in `XFD` is 16,384 cells a row), holds
//! every XLS sheet whole with its formulas parsed, and keeps any cell's text however long. Guarding
//! around it would mean re-reading most of each format anyway, so the two readers are ours, and
//! they read only what an import needs: cell values, sheet names, shared strings.

use super::bounds::{ImportBounds, over};
use super::{JobError, Layout, ReadSpec, SheetRead, column_letter};

/// Records what a sheet's reading found: the first sheet with a number column describes the file.
pub(super) fn take_sheet(layout: &mut Layout, read: SheetRead) {
    if layout.sheets == 0 || layout.number_column.is_empty() {
        layout.number_column = read.number_column;
        layout.registered_at_column = read.registered_at_column;
        layout.columns = read.columns;
    }
    layout.sheets += 1;
}

/// The sheets to read: all, or the one the spec names.
pub(super) fn choose_sheets(names: &[String], spec: &ReadSpec) -> Result<Vec<usize>, JobError> {
    if spec.sheet.is_empty() {
        return Ok((0..names.len()).collect());
    }
    names
        .iter()
        .position(|n| n.trim().eq_ignore_ascii_case(spec.sheet.trim()))
        .map(|i| vec![i])
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

/// Refuses one sheet more than the bound allows, before its name is kept.
pub(super) fn check_sheet_count(count: usize, limits: &ImportBounds) -> Result<(), JobError> {
    if count as u64 > limits.max_sheets {
        return Err(over(
            "",
            format!("a workbook of more than {} sheets", limits.max_sheets),
            "max_sheets",
            limits.max_sheets,
        ));
    }
    Ok(())
}

/// Bytes of one chunk of the shared-string table: strings are packed into chunks that never grow,
/// so the table never reallocates (and never briefly needs twice its size).
const CHUNK: usize = 1024 * 1024;

/// A workbook's shared strings, held compactly and within the bounds on their count and bytes
/// (checked as each string is added, whatever the workbook declares).
#[derive(Debug)]
pub(super) struct SharedStrings {
    chunks: Vec<String>,
    /// Chunk, start and length of each string.
    index: Vec<(u32, u32, u32)>,
    bytes: u64,
    max_count: u64,
    max_bytes: u64,
}

impl SharedStrings {
    pub(super) fn new(limits: &ImportBounds) -> SharedStrings {
        SharedStrings {
            chunks: Vec::new(),
            index: Vec::new(),
            bytes: 0,
            max_count: limits.max_shared_strings,
            max_bytes: limits.max_shared_string_bytes,
        }
    }

    /// Refuses a table that declares more strings than allowed (a cheap early refusal; the count
    /// is never used to allocate).
    pub(super) fn check_declared(&self, declared: u64) -> Result<(), JobError> {
        if declared > self.max_count {
            return Err(over(
                "",
                format!("a shared-string table declaring {declared} strings"),
                "max_shared_strings",
                self.max_count,
            ));
        }
        Ok(())
    }

    pub(super) fn push(&mut self, text: &str) -> Result<(), JobError> {
        if self.index.len() as u64 >= self.max_count {
            return Err(over(
                "",
                format!(
                    "a shared-string table of more than {} strings",
                    self.max_count
                ),
                "max_shared_strings",
                self.max_count,
            ));
        }
        self.bytes += text.len() as u64;
        if self.bytes > self.max_bytes {
            return Err(over(
                "",
                format!(
                    "a shared-string table of more than {} bytes",
                    self.max_bytes
                ),
                "max_shared_string_bytes",
                self.max_bytes,
            ));
        }
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= text.len());
        if !fits {
            self.chunks
                .push(String::with_capacity(CHUNK.max(text.len())));
        }
        let chunk = self.chunks.len() - 1;
        let last = &mut self.chunks[chunk];
        let start = last.len();
        last.push_str(text);
        // Chunks and strings are far below 4 GiB (the bounds are validated at start-up).
        self.index
            .push((chunk as u32, start as u32, text.len() as u32));
        Ok(())
    }

    pub(super) fn get(&self, i: usize) -> Option<&str> {
        let &(chunk, start, len) = self.index.get(i)?;
        let start = start as usize;
        self.chunks
            .get(chunk as usize)?
            .get(start..start + len as usize)
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }
}

/// One row being read: only the cells with a value, as (column, text), each checked against the
/// bounds as it arrives; made dense (up to its last cell) only when complete.
#[derive(Debug)]
pub(super) struct SparseRow {
    cells: Vec<(u32, String)>,
    bytes: u64,
    last: u32,
}

impl SparseRow {
    pub(super) fn new() -> SparseRow {
        SparseRow {
            cells: Vec::new(),
            bytes: 0,
            last: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Adds a cell (0-based column). Empty text is no cell: a styled but empty cell far to the
    /// right costs nothing. `place` names the row for an error.
    pub(super) fn push(
        &mut self,
        col: u32,
        text: String,
        limits: &ImportBounds,
        place: &dyn Fn() -> String,
    ) -> Result<(), JobError> {
        if text.is_empty() {
            return Ok(());
        }
        if u64::from(col) >= limits.max_columns {
            let column = if col == u32::MAX {
                "past XFD".to_owned()
            } else {
                format!("{} ({})", column_letter(col as usize), u64::from(col) + 1)
            };
            return Err(over(
                &place(),
                format!("a cell in column {column}"),
                "max_columns",
                limits.max_columns,
            ));
        }
        check_cell(text.len(), limits, place)?;
        if self.cells.len() as u64 >= limits.max_cells_per_row {
            return Err(over(
                &place(),
                format!("more than {} cells", limits.max_cells_per_row),
                "max_cells_per_row",
                limits.max_cells_per_row,
            ));
        }
        self.bytes += text.len() as u64;
        if self.bytes > limits.max_row_bytes {
            return Err(over(
                &place(),
                format!("a row of more than {} bytes", limits.max_row_bytes),
                "max_row_bytes",
                limits.max_row_bytes,
            ));
        }
        self.last = self.last.max(col);
        self.cells.push((col, text));
        Ok(())
    }

    /// The row's cells, dense from column A to its last cell (a later cell of the same column
    /// wins), and the row emptied for the next.
    pub(super) fn take(&mut self) -> Vec<String> {
        let mut dense = Vec::new();
        if !self.cells.is_empty() {
            dense.resize(self.last as usize + 1, String::new());
            for (col, text) in self.cells.drain(..) {
                dense[col as usize] = text;
            }
        }
        self.bytes = 0;
        self.last = 0;
        dense
    }
}

/// Refuses a cell of more than the bound allows.
pub(super) fn check_cell(
    bytes: usize,
    limits: &ImportBounds,
    place: &dyn Fn() -> String,
) -> Result<(), JobError> {
    if bytes as u64 > limits.max_cell_bytes {
        return Err(over(
            &place(),
            format!("a cell of more than {} bytes", limits.max_cell_bytes),
            "max_cell_bytes",
            limits.max_cell_bytes,
        ));
    }
    Ok(())
}

/// A number as text: whole numbers without a decimal point (Excel stores phone numbers as floats).
pub(super) fn float_text(f: f64) -> String {
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

    #[test]
    fn shared_strings_are_bounded_by_count_and_bytes() {
        let limits = ImportBounds {
            max_shared_strings: 3,
            max_shared_string_bytes: 10,
            ..ImportBounds::default()
        };
        let mut strings = SharedStrings::new(&limits);
        strings.push("abc").unwrap();
        strings.push("").unwrap();
        strings.push("手机").unwrap();
        assert_eq!(strings.get(0), Some("abc"));
        assert_eq!(strings.get(2), Some("手机"));
        assert_eq!(strings.get(3), None);
        let e = strings.push("x").unwrap_err().to_string();
        assert!(e.contains("jobs.import.max_shared_strings (3)"), "{e}");
        let mut strings = SharedStrings::new(&limits);
        let e = strings.push("0123456789a").unwrap_err().to_string();
        assert!(e.contains("max_shared_string_bytes"), "{e}");
        assert!(strings.check_declared(99_999_999_999_999).is_err());
    }

    #[test]
    fn a_sparse_row_is_bounded_and_dense_to_its_last_cell() {
        let limits = ImportBounds {
            max_cells_per_row: 2,
            max_columns: 30,
            ..ImportBounds::default()
        };
        let place = || "row 1".to_owned();
        let mut row = SparseRow::new();
        row.push(3, "x".into(), &limits, &place).unwrap();
        row.push(29, String::new(), &limits, &place).unwrap();
        row.push(1, "y".into(), &limits, &place).unwrap();
        let e = row.push(0, "z".into(), &limits, &place).unwrap_err();
        assert!(e.to_string().contains("max_cells_per_row"), "{e}");
        assert_eq!(row.take(), ["", "y", "", "x"]);
        let e = row.push(30, "z".into(), &limits, &place).unwrap_err();
        assert!(
            e.to_string()
                .contains("a cell in column AE (31) passes jobs.import.max_columns (30)"),
            "{e}"
        );
    }
}
