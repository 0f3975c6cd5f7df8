//! `[jobs.import]`: the bounds an uploaded file is read within, whatever it claims about itself.
//!
//! Every bound is checked while reading, before the memory it guards is taken; sizes a file
//! declares (`uniqueCount`, `<dimension>`, compound-file sector counts, zip entry sizes) are never
//! used to allocate. A file past a bound is refused with `INVALID_ARGUMENT` naming the bound
//! (`jobs.import.max_cell_bytes`) and the value met.

use serde::Deserialize;

use super::JobError;

/// `[jobs.import]`: bounds on reading one uploaded file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportBounds {
    /// Bytes of text in one cell (decoded, UTF-8).
    pub max_cell_bytes: u64,
    /// Bytes of one row: a line (or quoted record) of a text file, or the text of a workbook row.
    pub max_row_bytes: u64,
    /// Cells with a value in one row (a workbook row, or the fields of a text line).
    pub max_cells_per_row: u64,
    /// Columns of a row: a cell past this column (1-based; Excel's last, `XFD`, is 16384) is
    /// refused, so one far-right cell cannot make every row wide.
    pub max_columns: u64,
    /// Strings in a workbook's shared-string table (the XLSX `sharedStrings.xml`, the XLS `SST`).
    pub max_shared_strings: u64,
    /// Bytes of text in the shared-string table, all strings together.
    pub max_shared_string_bytes: u64,
    /// Inflated bytes of one part (zip entry) of an XLSX workbook, counted as it inflates.
    pub max_part_bytes: u64,
    /// Inflated bytes of all parts of an XLSX workbook read, together.
    pub max_inflated_bytes: u64,
    /// Sheets of a workbook (their names are held while it is read).
    pub max_sheets: u64,
    /// Entries in an XLSX zip's central directory (each costs memory while the zip is open).
    pub max_zip_entries: u64,
    /// Size of an XLS (Excel 97–2003) file: its workbook stream is held in memory while read.
    pub max_xls_bytes: u64,
    /// Files read at once by this process (more wait their turn), so the bounds above hold for
    /// the server as a whole, not per upload.
    pub max_concurrent: usize,
    /// Of those, files of one tenant read at once (its others wait, holding no process slot),
    /// so one tenant's heavy files cannot take every slot from the others.
    pub max_concurrent_per_tenant: usize,
}

impl Default for ImportBounds {
    fn default() -> Self {
        ImportBounds {
            max_cell_bytes: 32 * 1024,
            max_row_bytes: 256 * 1024,
            max_cells_per_row: 1_024,
            max_columns: 1_024,
            max_shared_strings: 1_000_000,
            max_shared_string_bytes: 48 * 1024 * 1024,
            max_part_bytes: 512 * 1024 * 1024,
            max_inflated_bytes: 1024 * 1024 * 1024,
            max_sheets: 256,
            max_zip_entries: 10_000,
            max_xls_bytes: 16 * 1024 * 1024,
            max_concurrent: 2,
            max_concurrent_per_tenant: 1,
        }
    }
}

/// Central-directory bytes allowed per allowed zip entry (names, extra fields and comments).
pub(super) const ZIP_DIRECTORY_BYTES_PER_ENTRY: u64 = 512;

impl ImportBounds {
    /// What is wrong with these bounds, one line each, for the start-up configuration check.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut within = |name: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                problems.push(format!(
                    "jobs.import.{name} must be between {min} and {max}"
                ));
            }
        };
        const MIB: u64 = 1024 * 1024;
        within("max_cell_bytes", self.max_cell_bytes, 64, 16 * MIB);
        within("max_row_bytes", self.max_row_bytes, 64, 64 * MIB);
        within("max_cells_per_row", self.max_cells_per_row, 1, 16_384);
        within("max_columns", self.max_columns, 1, 16_384);
        within(
            "max_shared_strings",
            self.max_shared_strings,
            0,
            100_000_000,
        );
        within(
            "max_shared_string_bytes",
            self.max_shared_string_bytes,
            0,
            4 * 1024 * MIB - 1,
        );
        within("max_part_bytes", self.max_part_bytes, 4096, 64 * 1024 * MIB);
        within(
            "max_inflated_bytes",
            self.max_inflated_bytes,
            4096,
            256 * 1024 * MIB,
        );
        within("max_sheets", self.max_sheets, 1, 10_000);
        within("max_zip_entries", self.max_zip_entries, 4, 1_000_000);
        within("max_xls_bytes", self.max_xls_bytes, 0, 1024 * MIB);
        within("max_concurrent", self.max_concurrent as u64, 1, 64);
        if !(1..=self.max_concurrent.max(1)).contains(&self.max_concurrent_per_tenant) {
            problems.push(
                "jobs.import.max_concurrent_per_tenant must be between 1 and max_concurrent"
                    .to_owned(),
            );
        }
        if self.max_cell_bytes > self.max_row_bytes {
            problems.push("jobs.import.max_cell_bytes must not be above max_row_bytes".to_owned());
        }
        problems
    }
}

/// A file past one of the bounds: `where_`: what was being read (`sheet "A" row 3`), `what`:
/// what passed the bound (`a cell of 40000 bytes`).
pub(super) fn over(
    where_: &str,
    what: impl std::fmt::Display,
    bound: &str,
    limit: u64,
) -> JobError {
    let place = if where_.is_empty() {
        String::new()
    } else {
        format!("{where_}: ")
    };
    JobError::invalid(
        "chunk",
        format!("{place}{what} passes jobs.import.{bound} ({limit})"),
    )
}

/// A file that is not what it claims to be (a broken or hostile structure).
pub(super) fn malformed(what: impl std::fmt::Display) -> JobError {
    JobError::invalid("chunk", format!("not a readable workbook: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_zero_is_not() {
        assert!(ImportBounds::default().problems().is_empty());
        let zero = ImportBounds {
            max_cells_per_row: 0,
            max_concurrent: 0,
            ..ImportBounds::default()
        };
        let problems = zero.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("jobs.import.max_cells_per_row"));
    }

    #[test]
    fn the_bounds_are_configured_and_checked_at_start_up() {
        let config =
            crate::config::Config::from_toml("[jobs.import]\nmax_columns = 16384").unwrap();
        assert_eq!(config.jobs.import.max_columns, 16_384);
        let e = crate::config::Config::from_toml("[jobs.import]\nmax_columns = 0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jobs.import.max_columns"), "{e}");
        assert!(crate::config::Config::from_toml("[jobs.import]\nmax_colums = 1").is_err());
    }

    #[test]
    fn a_refusal_names_the_bound_and_the_value() {
        let e = over("row 3", "a cell of 40000 bytes", "max_cell_bytes", 32768);
        assert_eq!(
            e.to_string(),
            "chunk: row 3: a cell of 40000 bytes passes jobs.import.max_cell_bytes (32768)"
        );
    }
}
