//! The compound file (OLE2, [MS-CFB]) around an XLS workbook. Every count and sector number the
//! header and tables claim is checked against the file's real length before it is followed, every
//! chain is bounded by the sectors the file holds (so a loop ends), and only the workbook stream
//! is read out, its claimed size checked against its chain.
//!
//! [MS-CFB]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-cfb/

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use super::JobError;
use super::bounds::malformed;

const END_OF_CHAIN: u32 = 0xFFFF_FFFE;
/// Sector numbers above this are markers (free, end of chain, FAT or DIFAT sector).
const MAX_REGULAR: u32 = 0xFFFF_FFFA;
const MINI_SECTOR: u64 = 64;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

struct Sectors<'f> {
    file: &'f mut File,
    len: u64,
    size: u64,
    /// Sectors the file holds after its header (the last may be cut short).
    count: u64,
}

impl Sectors<'_> {
    /// Sector `id`, checked to be in the file; a sector cut short by the file's end is padded.
    fn read(&mut self, id: u32) -> Result<Vec<u8>, JobError> {
        if u64::from(id) >= self.count {
            return Err(malformed(format!(
                "sector {id} is past the end of the compound file ({} sectors of {} bytes)",
                self.count, self.size
            )));
        }
        let start = (u64::from(id) + 1) * self.size;
        let mut sector = vec![0; self.size as usize];
        let available = (self.len - start).min(self.size) as usize;
        self.file.seek(SeekFrom::Start(start))?;
        self.file.read_exact(&mut sector[..available])?;
        Ok(sector)
    }

    /// The sectors of the chain from `start`: each in the file and in the table, and no longer
    /// than the file has sectors (so a loop is refused, not followed).
    fn chain(&self, start: u32, table: &[u32], limit: u64) -> Result<Vec<u32>, JobError> {
        let mut chain = Vec::new();
        let mut id = start;
        while id != END_OF_CHAIN {
            if id > MAX_REGULAR || id as usize >= table.len() {
                return Err(malformed(format!(
                    "a sector chain points to {id:#x}, outside the file's {} table entries",
                    table.len()
                )));
            }
            if chain.len() as u64 >= limit {
                return Err(malformed(format!(
                    "a sector chain longer than the file's {limit} sectors (a loop)"
                )));
            }
            chain.push(id);
            id = table[id as usize];
        }
        Ok(chain)
    }
}

/// The `Workbook` (BIFF8) or `Book` (BIFF5) stream of the compound file `file`.
pub(super) fn workbook_stream(file: &mut File) -> Result<Vec<u8>, JobError> {
    let len = file.metadata()?.len();
    let mut header = [0u8; 512];
    file.rewind()?;
    if len < 512 || file.read_exact(&mut header).is_err() {
        return Err(malformed("shorter than a compound-file header"));
    }
    if !header.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Err(malformed("not a compound file (no OLE2 signature)"));
    }
    let size: u64 = match u16_at(&header, 30) {
        9 => 512,
        12 => 4096,
        shift => return Err(malformed(format!("a sector shift of {shift}"))),
    };
    if u16_at(&header, 32) != 6 {
        return Err(malformed("a mini-sector size other than 64"));
    }
    let count = len.saturating_sub(size).div_ceil(size);
    let claims = |what: &str, n: u64| -> Result<(), JobError> {
        if n > count {
            return Err(malformed(format!(
                "the compound-file header claims {n} {what} sectors; the file of {len} bytes \
                 holds {count} (the bound: the file's own length)"
            )));
        }
        Ok(())
    };
    let fat_sectors = u64::from(u32_at(&header, 44));
    let difat_sectors = u64::from(u32_at(&header, 72));
    let mini_fat_sectors = u64::from(u32_at(&header, 64));
    claims("FAT", fat_sectors)?;
    claims("DIFAT", difat_sectors)?;
    claims("mini-FAT", mini_fat_sectors)?;
    let directory_start = u32_at(&header, 48);
    let cutoff = u64::from(u32_at(&header, 56));
    let mini_fat_start = u32_at(&header, 60);
    let mut next_difat = u32_at(&header, 68);
    let major = u16_at(&header, 26);
    let mut sectors = Sectors {
        file,
        len,
        size,
        count,
    };

    // The FAT's sectors: 109 in the header, the rest in the DIFAT chain (at most as many
    // sectors as the header claims, each checked to be in the file).
    let per_sector = (size / 4) as usize;
    let mut fat_ids: Vec<u32> = (0..109).map(|i| u32_at(&header, 76 + 4 * i)).collect();
    for _ in 0..difat_sectors {
        if next_difat > MAX_REGULAR || fat_ids.len() as u64 >= fat_sectors {
            break;
        }
        let sector = sectors.read(next_difat)?;
        fat_ids.extend((0..per_sector - 1).map(|i| u32_at(&sector, 4 * i)));
        next_difat = u32_at(&sector, 4 * (per_sector - 1));
    }
    let mut fat = Vec::new();
    for &id in fat_ids
        .iter()
        .filter(|&&id| id <= MAX_REGULAR)
        .take(fat_sectors as usize)
    {
        // Entries past the file's sectors could only point outside it.
        if fat.len() as u64 >= count {
            break;
        }
        let sector = sectors.read(id)?;
        fat.extend((0..per_sector).map(|i| u32_at(&sector, 4 * i)));
    }

    // The directory: find the root (it holds the mini stream) and the workbook stream.
    let mut root = None;
    let mut book = None;
    for id in sectors.chain(directory_start, &fat, count)? {
        let sector = sectors.read(id)?;
        for entry in sector.chunks_exact(128) {
            let kind = entry[66];
            let name_len = (usize::from(u16_at(entry, 64)) / 2).min(32);
            let name: String = char::decode_utf16((0..name_len).map(|i| u16_at(entry, 2 * i)))
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .take_while(|&c| c != '\0')
                .collect();
            let start = u32_at(entry, 116);
            let mut stream_len = u64::from_le_bytes(entry[120..128].try_into().unwrap());
            if major == 3 {
                // Version 3 files may leave garbage in the high half.
                stream_len &= 0xFFFF_FFFF;
            }
            match kind {
                5 if root.is_none() => root = Some((start, stream_len)),
                2 if book.is_none()
                    && (name.eq_ignore_ascii_case("Workbook")
                        || name.eq_ignore_ascii_case("Book")) =>
                {
                    book = Some((start, stream_len));
                }
                _ => {}
            }
        }
    }
    let Some((start, stream_len)) = book else {
        return Err(malformed("no Workbook stream in the compound file"));
    };
    if stream_len > len {
        return Err(malformed(format!(
            "the workbook stream claims {stream_len} bytes; the file has {len}"
        )));
    }

    let mut stream = Vec::with_capacity(stream_len as usize);
    if stream_len < cutoff {
        // A small stream lives in the mini stream: 64-byte sectors inside the root's chain.
        let Some((root_start, root_len)) = root else {
            return Err(malformed("no root entry in the compound file"));
        };
        let root_chain = sectors.chain(root_start, &fat, count)?;
        if root_len > root_chain.len() as u64 * size {
            return Err(malformed(
                "the mini stream claims more than its chain holds",
            ));
        }
        let mut mini_fat = Vec::new();
        for id in sectors
            .chain(mini_fat_start, &fat, count)?
            .into_iter()
            .take(mini_fat_sectors as usize)
        {
            let sector = sectors.read(id)?;
            mini_fat.extend((0..per_sector).map(|i| u32_at(&sector, 4 * i)));
        }
        let minis = root_len / MINI_SECTOR;
        for mini in sectors.chain(start, &mini_fat, minis)? {
            let at = u64::from(mini) * MINI_SECTOR;
            if at >= root_len {
                return Err(malformed("a mini sector past the mini stream"));
            }
            let sector = sectors.read(root_chain[(at / size) as usize])?;
            let within = (at % size) as usize;
            stream.extend_from_slice(&sector[within..within + MINI_SECTOR as usize]);
            if stream.len() as u64 >= stream_len {
                break;
            }
        }
    } else {
        for id in sectors.chain(start, &fat, count)? {
            stream.extend_from_slice(&sectors.read(id)?);
            if stream.len() as u64 >= stream_len {
                break;
            }
        }
    }
    if (stream.len() as u64) < stream_len {
        return Err(malformed(format!(
            "the workbook stream claims {stream_len} bytes; its chain holds {}",
            stream.len()
        )));
    }
    stream.truncate(stream_len as usize);
    Ok(stream)
}
