//! Home province and city of Chinese numbers: by 7-digit prefix for mobiles, by area code for fixed
//! lines. The data is a compact file (`data/cn_location.bin`, made by
//! `tools/gen_location_data.py`) embedded in the binary; a newer file can be given at start-up.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::domain::Location;

/// The data file compiled into the binary.
pub const EMBEDDED: &[u8] = include_bytes!("../../data/cn_location.bin");

const MAGIC: &[u8] = b"PCLOC1\n";
const NO_REGION: u16 = u16::MAX;

/// A location data file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocationDataError {
    /// The file could not be opened or read.
    #[error("cannot read location data {path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a phonecheck location file, or is damaged.
    #[error("location data is malformed: {0}")]
    Malformed(&'static str),
}

/// Province/city tables for Chinese numbers.
#[derive(Debug)]
pub struct LocationData {
    version: Arc<str>,
    regions: Vec<Location>,
    area_codes: HashMap<Box<str>, u16>,
    run_starts: Vec<u32>,
    run_regions: Vec<u16>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LocationDataError> {
        if self.bytes.len() < n {
            return Err(LocationDataError::Malformed("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, LocationDataError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, LocationDataError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, LocationDataError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self) -> Result<&'a str, LocationDataError> {
        let len = self.u8()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| LocationDataError::Malformed("bad UTF-8"))
    }
}

impl LocationData {
    /// The data compiled into the binary.
    pub fn embedded() -> LocationData {
        // The embedded file is checked by a unit test; it cannot be malformed in a built binary.
        Self::parse(EMBEDDED).expect("embedded location data is valid")
    }

    /// Reads a data file from disk.
    pub fn from_path(path: &Path) -> Result<LocationData, LocationDataError> {
        let bytes = std::fs::read(path).map_err(|source| LocationDataError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// Parses a data file.
    pub fn parse(bytes: &[u8]) -> Result<LocationData, LocationDataError> {
        let mut r = Reader { bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(LocationDataError::Malformed(
                "not a phonecheck location file",
            ));
        }
        let version: Arc<str> = r.str()?.into();
        let region_count = r.u16()? as usize;
        let mut regions = Vec::with_capacity(region_count);
        for _ in 0..region_count {
            regions.push(Location {
                province: r.str()?.into(),
                city: r.str()?.into(),
                area_code: r.str()?.into(),
            });
        }
        let area_count = r.u16()? as usize;
        let mut area_codes = HashMap::with_capacity(area_count);
        for _ in 0..area_count {
            let code = r.str()?;
            let region = r.u16()?;
            if region as usize >= regions.len() {
                return Err(LocationDataError::Malformed(
                    "area code points past the regions",
                ));
            }
            area_codes.insert(code.into(), region);
        }
        let run_count = r.u32()? as usize;
        let mut run_starts = Vec::with_capacity(run_count);
        for _ in 0..run_count {
            run_starts.push(r.u32()?);
        }
        let mut run_regions = Vec::with_capacity(run_count);
        for _ in 0..run_count {
            let region = r.u16()?;
            if region != NO_REGION && region as usize >= regions.len() {
                return Err(LocationDataError::Malformed("run points past the regions"));
            }
            run_regions.push(region);
        }
        if !run_starts.is_sorted_by(|a, b| a < b) {
            return Err(LocationDataError::Malformed("runs are not sorted"));
        }
        if !r.bytes.is_empty() {
            return Err(LocationDataError::Malformed("trailing bytes"));
        }
        Ok(LocationData {
            version,
            regions,
            area_codes,
            run_starts,
            run_regions,
        })
    }

    /// The data set's version, reported as `data_version`.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// Location of a Chinese mobile number by its first seven digits.
    pub fn by_mobile_prefix(&self, national_number: &str) -> Option<&Location> {
        let prefix: u32 = national_number.get(..7)?.parse().ok()?;
        let run = self.run_starts.partition_point(|&start| start <= prefix);
        let region = *self.run_regions.get(run.checked_sub(1)?)?;
        self.regions.get(usize::from(region))
    }

    /// Location of a Chinese area code given with its trunk prefix (`010`, `0755`).
    pub fn by_area_code(&self, area_code: &str) -> Option<&Location> {
        let region = *self.area_codes.get(area_code)?;
        self.regions.get(usize::from(region))
    }

    /// Whether `area_code` (with trunk prefix) is a known Chinese area code.
    pub fn is_area_code(&self, area_code: &str) -> bool {
        self.area_codes.contains_key(area_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_parses() {
        let data = LocationData::embedded();
        assert!(data.version().starts_with("phone.dat-"));
        assert!(data.regions.len() > 300);
    }

    #[test]
    fn known_mobile_prefixes() {
        let data = LocationData::embedded();
        let cases = [
            ("13800138000", "北京", "北京", "010"),
            ("13912345678", "江苏", "常州", "0519"),
            ("18621000000", "上海", "上海", "021"),
            ("13531000000", "广东", "湛江", "0759"),
            ("15800000000", "广东", "广州", "020"),
        ];
        for (number, province, city, area) in cases {
            let loc = data
                .by_mobile_prefix(number)
                .unwrap_or_else(|| panic!("{number}"));
            assert_eq!(
                (&*loc.province, &*loc.city, &*loc.area_code),
                (province, city, area),
                "{number}"
            );
        }
    }

    #[test]
    fn unknown_prefixes_have_no_location() {
        let data = LocationData::embedded();
        assert!(data.by_mobile_prefix("1000000").is_none());
        assert!(data.by_mobile_prefix("1790000").is_none());
        assert!(data.by_mobile_prefix("99999999999").is_none());
        assert!(data.by_mobile_prefix("123").is_none());
    }

    #[test]
    fn area_codes_name_the_principal_city() {
        let data = LocationData::embedded();
        for (code, city) in [
            ("010", "北京"),
            ("024", "沈阳"),
            ("0755", "深圳"),
            ("029", "西安"),
        ] {
            assert_eq!(&*data.by_area_code(code).unwrap().city, city, "{code}");
        }
        assert!(data.by_area_code("0999999").is_none());
    }

    #[test]
    fn damaged_files_are_refused() {
        assert!(LocationData::parse(b"nonsense").is_err());
        let mut truncated = EMBEDDED.to_vec();
        truncated.truncate(EMBEDDED.len() - 1);
        assert!(LocationData::parse(&truncated).is_err());
        let mut trailing = EMBEDDED.to_vec();
        trailing.push(0);
        assert!(LocationData::parse(&trailing).is_err());
    }
}
