//! The central directory of an XLSX's zip, checked before the zip crate opens it: the zip crate
//! keeps every entry it lists (name, extra fields, comment), so their number and size are bounded
//! first, counted on the entries as they are in the file, whatever the end record claims.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use super::JobError;
use super::limits::{ImportLimits, ZIP_DIRECTORY_BYTES_PER_ENTRY, malformed, over};

/// The zip's central directory, checked before the zip crate reads it (it keeps every entry):
/// at most `max_zip_entries` entries, and their names, extra fields and comments within
/// [`ZIP_DIRECTORY_BYTES_PER_ENTRY`] each, counted on the entries as they are in the file.
pub(super) fn check_directory(file: &mut File, limits: &ImportLimits) -> Result<(), JobError> {
    let len = file.metadata()?.len();
    let tail_len = len.min(22 + 65_535);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0; tail_len as usize];
    file.read_exact(&mut tail)?;
    let Some(at) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
    else {
        return Err(malformed("no zip central directory"));
    };
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap()));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    let mut entries = u16_at(&tail, at + 10);
    let mut start = u32_at(&tail, at + 16);
    if (entries == 0xFFFF || start == 0xFFFF_FFFF)
        && at >= 20
        && tail[at - 20..].starts_with(b"PK\x06\x07")
    {
        // Zip64: the real counts are in the zip64 end record.
        let record = u64_at(&tail, at - 20 + 8);
        if record.saturating_add(56) > len {
            return Err(malformed("a zip64 end record past the end of the file"));
        }
        let mut end64 = [0u8; 56];
        file.seek(SeekFrom::Start(record))?;
        file.read_exact(&mut end64)?;
        if !end64.starts_with(b"PK\x06\x06") {
            return Err(malformed("no zip64 end record where the locator points"));
        }
        entries = u64_at(&end64, 32);
        start = u64_at(&end64, 48);
    }
    if entries > limits.max_zip_entries {
        return Err(over(
            "",
            format!("a zip of {entries} entries"),
            "max_zip_entries",
            limits.max_zip_entries,
        ));
    }
    let allowed = limits.max_zip_entries * ZIP_DIRECTORY_BYTES_PER_ENTRY;
    let mut reader = BufReader::new(&mut *file);
    reader.seek(SeekFrom::Start(start.min(len)))?;
    let mut variable = 0u64;
    for _ in 0..entries {
        let mut header = [0u8; 46];
        if reader.read_exact(&mut header).is_err() || !header.starts_with(b"PK\x01\x02") {
            // The zip crate will say what is wrong with it.
            break;
        }
        let extra = u16_at(&header, 28) + u16_at(&header, 30) + u16_at(&header, 32);
        variable += extra;
        if variable > allowed {
            return Err(over(
                "",
                format!("a zip directory with more than {allowed} bytes of names and fields"),
                "max_zip_entries",
                limits.max_zip_entries,
            ));
        }
        reader.seek_relative(extra as i64)?;
    }
    Ok(())
}
