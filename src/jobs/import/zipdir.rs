//! An XLSX's zip, read by us: one reader finds the end record, counts and bounds the central
//! directory, checks that the entries lie one after the other without overlapping, and then
//! opens the entries it listed. The count that is checked is the count of the directory that is
//! read (a second end record hidden in the first one's comment cannot show a checker one
//! directory and a reader another), and no compressed byte can be inflated twice (overlapping
//! entries, the "better zip bomb", are refused before anything is inflated).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Take};

use super::JobError;
use super::bounds::{ImportBounds, ZIP_DIRECTORY_BYTES_PER_ENTRY, malformed, over};

/// Fixed part of a central-directory header.
const CENTRAL_HEADER: u64 = 46;
/// Fixed part of a local header.
const LOCAL_HEADER: u64 = 30;
/// Fixed part of the end-of-central-directory record.
const END_RECORD: usize = 22;

/// One entry as the central directory lists it.
#[derive(Debug)]
struct Entry {
    name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    /// Where its local header starts.
    header: u64,
    /// Where the next entry (or the directory) starts: its data must end before.
    end: u64,
}

/// A zip whose directory was read and checked; its entries are opened one at a time.
#[derive(Debug)]
pub(super) struct ZipDir {
    file: File,
    entries: Vec<Entry>,
}

fn u16_at(b: &[u8], i: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[i], b[i + 1]]))
}

fn u32_at(b: &[u8], i: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(bytes)
}

/// Where the central directory is: its entries, start, and end (where the end records begin).
struct Directory {
    entries: u64,
    start: u64,
    end: u64,
}

/// Finds the end record. Of the candidates in the last 64 KiB, the earliest whose comment ends
/// exactly at the end of the file is the real one: a later one lies inside its comment (a
/// record in a comment is text). Failing that (bytes appended after the zip), the last one
/// whose comment fits in the file.
fn find_directory(file: &mut File) -> Result<Directory, JobError> {
    let len = file.metadata()?.len();
    let tail_len = len.min((END_RECORD + 65_535) as u64);
    let tail_start = len - tail_len;
    file.seek(SeekFrom::Start(tail_start))?;
    let mut tail = vec![0; tail_len as usize];
    file.read_exact(&mut tail)?;
    let (mut exact, mut fits) = (None, None);
    for at in (0..(tail.len() + 1).saturating_sub(END_RECORD)).rev() {
        if !tail[at..].starts_with(b"PK\x05\x06") {
            continue;
        }
        let end = at + END_RECORD + u16_at(&tail, at + 20) as usize;
        if end == tail.len() {
            exact = Some(at);
        } else if end < tail.len() && fits.is_none() {
            fits = Some(at);
        }
    }
    let Some(at) = exact.or(fits) else {
        return Err(malformed("no zip end of central directory record"));
    };
    let record = tail_start + at as u64;
    let mut dir = Directory {
        entries: u16_at(&tail, at + 10),
        start: u32_at(&tail, at + 16),
        end: record,
    };
    let zip64 = dir.entries == 0xFFFF || dir.start == 0xFFFF_FFFF;
    if zip64 && at >= 20 && tail[at - 20..].starts_with(b"PK\x06\x07") {
        // Zip64: the real counts are in the zip64 end record, which the locator points to.
        let end64 = u64_at(&tail, at - 20 + 8);
        if end64.saturating_add(56) > record - 20 {
            return Err(malformed("a zip64 end record past its locator"));
        }
        let mut block = [0u8; 56];
        file.seek(SeekFrom::Start(end64))?;
        file.read_exact(&mut block)?;
        if !block.starts_with(b"PK\x06\x06") {
            return Err(malformed("no zip64 end record where the locator points"));
        }
        dir = Directory {
            entries: u64_at(&block, 32),
            start: u64_at(&block, 48),
            end: end64,
        };
    }
    if dir.start > dir.end {
        return Err(malformed("a zip directory said to start after its end"));
    }
    Ok(dir)
}

impl ZipDir {
    /// Reads and checks the directory of the zip in `file`: at most `max_zip_entries` entries,
    /// their names, extra fields and comments within [`ZIP_DIRECTORY_BYTES_PER_ENTRY`] each,
    /// and each entry's local header and data before the next entry's (in the directory's
    /// order, which is the file's), the last one's before the directory. Nothing is inflated.
    pub(super) fn open(mut file: File, limits: &ImportBounds) -> Result<ZipDir, JobError> {
        let dir = find_directory(&mut file)?;
        if dir.entries > limits.max_zip_entries {
            return Err(over(
                "",
                format!("a zip of {} entries", dir.entries),
                "max_zip_entries",
                limits.max_zip_entries,
            ));
        }
        let allowed = limits.max_zip_entries * ZIP_DIRECTORY_BYTES_PER_ENTRY;
        let mut variable = 0u64;
        let mut entries: Vec<Entry> = Vec::with_capacity(dir.entries as usize);
        let mut reader = BufReader::new(&mut file);
        reader.seek(SeekFrom::Start(dir.start))?;
        let mut at = dir.start;
        // Where the previous entry's local header and data end, at the least.
        let mut taken = 0u64;
        for n in 0..dir.entries {
            let mut header = [0u8; CENTRAL_HEADER as usize];
            if at + CENTRAL_HEADER > dir.end {
                return Err(malformed(format!(
                    "the zip directory ends before its entry {}",
                    n + 1
                )));
            }
            reader.read_exact(&mut header)?;
            if !header.starts_with(b"PK\x01\x02") {
                return Err(malformed(format!(
                    "zip directory entry {} is broken",
                    n + 1
                )));
            }
            let (name_len, extra_len, comment_len) = (
                u16_at(&header, 28),
                u16_at(&header, 30),
                u16_at(&header, 32),
            );
            variable += name_len + extra_len + comment_len;
            if variable > allowed {
                return Err(over(
                    "",
                    format!("a zip directory with more than {allowed} bytes of names and fields"),
                    "max_zip_entries",
                    limits.max_zip_entries,
                ));
            }
            at += CENTRAL_HEADER + name_len + extra_len + comment_len;
            if at > dir.end {
                return Err(malformed(format!(
                    "zip directory entry {} runs past the directory",
                    n + 1
                )));
            }
            let mut name = vec![0; name_len as usize];
            reader.read_exact(&mut name)?;
            let mut extra = vec![0; extra_len as usize];
            reader.read_exact(&mut extra)?;
            reader.seek_relative(comment_len as i64)?;
            if u16_at(&header, 8) & 1 != 0 {
                return Err(malformed("an encrypted zip entry"));
            }
            let mut compressed = u32_at(&header, 20);
            let mut header_at = u32_at(&header, 42);
            zip64_fields(&extra, u32_at(&header, 24), &mut compressed, &mut header_at);
            if header_at < taken {
                return Err(malformed(format!(
                    "zip entry {} starts at byte {header_at}, inside the one before it \
                     (overlapping or out of order)",
                    n + 1
                )));
            }
            taken = header_at
                .saturating_add(LOCAL_HEADER + name_len)
                .saturating_add(compressed);
            if let Some(previous) = entries.last_mut() {
                previous.end = header_at;
            }
            entries.push(Entry {
                name: String::from_utf8_lossy(&name).into_owned(),
                method: u16_at(&header, 10) as u16,
                crc: u32_at(&header, 16) as u32,
                compressed,
                header: header_at,
                end: dir.start,
            });
        }
        if taken > dir.start {
            return Err(malformed(
                "the last zip entry runs into the directory (overlapping)",
            ));
        }
        drop(reader);
        Ok(ZipDir { file, entries })
    }

    /// Entries the directory lists.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry of this name, or else of this name in another case (some writers change it).
    pub(super) fn index_for_name(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.name == name)
            .or_else(|| {
                self.entries
                    .iter()
                    .position(|e| e.name.eq_ignore_ascii_case(name))
            })
    }

    /// Opens entry `index` for reading: inflated (or stored) as it is read, its CRC-32 checked
    /// at its end. Its data must lie before the next entry's local header.
    pub(super) fn by_index(&mut self, index: usize) -> Result<EntryReader<'_>, JobError> {
        let entry = &self.entries[index];
        let mut local = [0u8; LOCAL_HEADER as usize];
        self.file.seek(SeekFrom::Start(entry.header))?;
        if self.file.read_exact(&mut local).is_err() || !local.starts_with(b"PK\x03\x04") {
            return Err(malformed(format!(
                "zip entry {} has no local header",
                entry.name
            )));
        }
        let data = entry.header + LOCAL_HEADER + u16_at(&local, 26) + u16_at(&local, 28);
        if data.saturating_add(entry.compressed) > entry.end {
            return Err(malformed(format!(
                "zip entry {} runs into the next one (overlapping)",
                entry.name
            )));
        }
        self.file.seek(SeekFrom::Start(data))?;
        let raw = BufReader::with_capacity(32 * 1024, &mut self.file).take(entry.compressed);
        let inner = match entry.method {
            0 => Inner::Stored(raw),
            8 => Inner::Deflated(Box::new(flate2::bufread::DeflateDecoder::new(raw))),
            other => {
                return Err(malformed(format!(
                    "zip entry {} uses compression method {other} (only stored and deflated \
                     are read)",
                    entry.name
                )));
            }
        };
        Ok(EntryReader {
            inner,
            crc: flate2::Crc::new(),
            expected: entry.crc,
            checked: false,
        })
    }
}

/// The sizes and offset that do not fit 32 bits, from a zip64 extra field (id 1), which holds
/// only those that are `0xFFFFFFFF` in the header, in this order.
fn zip64_fields(extra: &[u8], size: u64, compressed: &mut u64, header: &mut u64) {
    let mut i = 0;
    while i + 4 <= extra.len() {
        let (id, len) = (u16_at(extra, i), u16_at(extra, i + 2) as usize);
        let block = &extra[i + 4..(i + 4 + len).min(extra.len())];
        if id == 1 {
            let mut at = 0;
            let mut take = |wanted: bool, field: &mut u64| {
                if wanted && at + 8 <= block.len() {
                    *field = u64_at(block, at);
                    at += 8;
                }
            };
            let mut ignored = size;
            take(size == 0xFFFF_FFFF, &mut ignored);
            take(*compressed == 0xFFFF_FFFF, compressed);
            take(*header == 0xFFFF_FFFF, header);
            return;
        }
        i += 4 + len;
    }
}

type Raw<'a> = Take<BufReader<&'a mut File>>;

enum Inner<'a> {
    Stored(Raw<'a>),
    Deflated(Box<flate2::bufread::DeflateDecoder<Raw<'a>>>),
}

/// An entry being read: what it yields is checked against its CRC-32 when it ends.
pub(super) struct EntryReader<'a> {
    inner: Inner<'a>,
    crc: flate2::Crc,
    expected: u32,
    checked: bool,
}

impl Read for EntryReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            Inner::Stored(r) => r.read(out)?,
            Inner::Deflated(r) => r.read(out)?,
        };
        if n > 0 {
            self.crc.update(&out[..n]);
        } else if !out.is_empty() && !self.checked {
            self.checked = true;
            if self.crc.sum() != self.expected {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a zip entry's CRC-32 does not match its data (damaged or cut short)",
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of stored entries (name, content), with `comment` after the end record.
    fn zip(entries: &[(&str, &[u8])], comment: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data) in entries {
            let mut crc = flate2::Crc::new();
            crc.update(data);
            let offset = out.len() as u32;
            let fields = |h: &mut Vec<u8>| {
                h.extend(20u16.to_le_bytes());
                h.extend(0u16.to_le_bytes());
                h.extend(0u16.to_le_bytes());
                h.extend([0, 0, 0x21, 0]);
                h.extend(crc.sum().to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((data.len() as u32).to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes());
            };
            out.extend(b"PK\x03\x04");
            fields(&mut out);
            out.extend(name.as_bytes());
            out.extend(*data);
            central.extend(b"PK\x01\x02");
            central.extend(20u16.to_le_bytes());
            fields(&mut central);
            central.extend([0; 10]);
            central.extend(offset.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let start = out.len() as u32;
        out.extend(&central);
        out.extend(b"PK\x05\x06\0\0\0\0");
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(start.to_le_bytes());
        out.extend((comment.len() as u16).to_le_bytes());
        out.extend(comment);
        out
    }

    fn open(bytes: &[u8], limits: &ImportBounds) -> Result<ZipDir, JobError> {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(bytes).unwrap();
        ZipDir::open(file, limits)
    }

    fn read(zip: &mut ZipDir, name: &str) -> std::io::Result<Vec<u8>> {
        let i = zip.index_for_name(name).unwrap();
        let mut out = Vec::new();
        zip.by_index(i).unwrap().read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn entries_are_listed_and_read() {
        let bytes = zip(&[("a.xml", b"alpha"), ("B.xml", b"beta")], b"");
        let mut zip = open(&bytes, &ImportBounds::default()).unwrap();
        assert_eq!(zip.len(), 2);
        assert_eq!(read(&mut zip, "a.xml").unwrap(), b"alpha");
        assert_eq!(read(&mut zip, "b.xml").unwrap(), b"beta");
        assert!(zip.index_for_name("c.xml").is_none());
    }

    #[test]
    fn a_false_end_record_in_the_comment_is_not_the_directory_read() {
        let limits = ImportBounds {
            max_zip_entries: 4,
            ..ImportBounds::default()
        };
        let five: Vec<(String, &[u8])> = (0..5).map(|i| (format!("{i}"), &b"x"[..])).collect();
        let five: Vec<(&str, &[u8])> = five.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        // A record claiming no entries, as the comment of the real one.
        let fake = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        let e = open(&zip(&five, fake), &limits).unwrap_err().to_string();
        assert!(
            e.contains("a zip of 5 entries passes jobs.import.max_zip_entries (4)"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_entries_are_refused_before_inflating() {
        let mut bytes = zip(&[("a", b"0123456789"), ("b", b"0123456789")], b"");
        // Point the second entry's directory header at the first one's local header.
        let second = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        bytes[second + 42..second + 46].copy_from_slice(&0u32.to_le_bytes());
        let e = open(&bytes, &ImportBounds::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlapping or out of order"), "{e}");
    }

    #[test]
    fn a_damaged_entry_fails_its_crc() {
        let mut bytes = zip(&[("a", b"0123456789")], b"");
        bytes[30 + 1 + 3] = b'X';
        let mut zip = open(&bytes, &ImportBounds::default()).unwrap();
        assert!(read(&mut zip, "a").is_err());
    }
}
