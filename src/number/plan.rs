//! libphonenumber's numbering plans for the regions phonecheck analyses itself (CN, ID, SG, PK),
//! compiled by `tools/gen_number_plan.py` into `data/number_plan.bin`: per region, every number
//! type's pattern as one minimal digit automaton, plus carrier and place names by prefix.
//!
//! libphonenumber decides a type by trying up to eleven regular expressions in turn; here one walk
//! of the automaton (a table look-up per digit) yields a bit per pattern, and [`RegionPlan::kind`]
//! applies libphonenumber's order to the bits. The generator checks the automaton against the
//! expressions; `tools/check_number_agreement.py` checks the answers against libphonenumber.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use crate::domain::{Location, NumberType};

/// The plan file compiled into the binary.
pub const EMBEDDED: &[u8] = include_bytes!("../../data/number_plan.bin");

const MAGIC: &[u8] = b"PCPLAN1\n";
const DEAD: u32 = u32::MAX;

/// The patterns of a region's metadata, in the file's bit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Desc {
    /// Every number of the region (`general_desc`).
    General = 0,
    /// Fixed lines.
    FixedLine,
    /// Mobiles.
    Mobile,
    /// Toll-free numbers.
    TollFree,
    /// Premium-rate numbers.
    PremiumRate,
    /// Shared-cost numbers.
    SharedCost,
    /// Personal numbers.
    PersonalNumber,
    /// VoIP numbers.
    Voip,
    /// Pagers.
    Pager,
    /// Universal access numbers.
    Uan,
    /// Voicemail access numbers.
    Voicemail,
}

const DESC_COUNT: usize = 11;

/// libphonenumber's order of the specific types: the first that matches is the number's type
/// (fixed line and mobile, which may both match, come last and are handled apart).
const TYPE_ORDER: [(Desc, NumberType); 8] = [
    (Desc::PremiumRate, NumberType::PremiumRate),
    (Desc::TollFree, NumberType::TollFree),
    (Desc::SharedCost, NumberType::SharedCost),
    (Desc::Voip, NumberType::Voip),
    (Desc::PersonalNumber, NumberType::PersonalNumber),
    (Desc::Pager, NumberType::Pager),
    (Desc::Uan, NumberType::Uan),
    (Desc::Voicemail, NumberType::Voicemail),
];

/// The bits of every pattern that matched a national number, with its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matches {
    mask: u16,
    len: usize,
}

/// One region's compiled metadata.
#[derive(Debug)]
pub struct RegionPlan {
    /// ISO 3166-1 alpha-2 code.
    pub id: &'static str,
    /// Country calling code.
    pub country_code: u16,
    /// The country calling code as digits.
    pub calling_code: String,
    /// The national prefix stripped when parsing (`0`); empty when the region has none.
    pub national_prefix: &'static str,
    possible: [u32; DESC_COUNT],
    local_only: [u32; DESC_COUNT],
    examples: [&'static str; DESC_COUNT],
    next: Vec<u32>,
    accept: Vec<u16>,
}

/// Length-checking outcome of libphonenumber's `_test_number_length` against the general pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthCheck {
    /// A length the region's numbers have.
    Possible,
    /// A length only dialled locally (without area code).
    LocalOnly,
    /// Shorter than any number of the region.
    TooShort,
    /// Longer than any number of the region.
    TooLong,
    /// Between the shortest and longest, but not a length numbers have.
    InvalidLength,
}

impl RegionPlan {
    /// Walks the automaton over a national number's ASCII digits.
    pub fn matches(&self, nsn: &[u8]) -> Matches {
        let mut state = 0u32;
        for &b in nsn {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Matches { mask: 0, len: 0 };
            }
            state = self.next[state as usize * 10 + d as usize];
            if state == DEAD {
                return Matches { mask: 0, len: 0 };
            }
        }
        Matches {
            mask: self.accept[state as usize],
            len: nsn.len(),
        }
    }

    /// libphonenumber's `_match_national_number`: the pattern alone.
    pub fn pattern_matches(&self, m: Matches, desc: Desc) -> bool {
        m.mask & (1 << desc as u8) != 0
    }

    /// libphonenumber's `_is_number_matching_desc`: the pattern and the desc's possible lengths.
    pub fn desc_matches(&self, m: Matches, desc: Desc) -> bool {
        let lengths = self.possible[desc as usize];
        self.pattern_matches(m, desc) && (lengths == 0 || lengths & (1 << m.len.min(31)) != 0)
    }

    /// The number type as libphonenumber decides it; `None` is its `UNKNOWN`, an invalid number.
    pub fn kind(&self, nsn: &[u8]) -> Option<NumberType> {
        let m = self.matches(nsn);
        if !self.desc_matches(m, Desc::General) {
            return None;
        }
        if let Some(&(_, t)) = TYPE_ORDER.iter().find(|(d, _)| self.desc_matches(m, *d)) {
            return Some(t);
        }
        let mobile = self.desc_matches(m, Desc::Mobile);
        if self.desc_matches(m, Desc::FixedLine) {
            return Some(if mobile {
                NumberType::FixedLineOrMobile
            } else {
                NumberType::FixedLine
            });
        }
        mobile.then_some(NumberType::Mobile)
    }

    /// libphonenumber's `_test_number_length` for the general description.
    pub fn test_length(&self, len: usize) -> LengthCheck {
        let possible = self.possible[Desc::General as usize];
        let local = self.local_only[Desc::General as usize];
        let bit = 1u32 << len.min(31);
        if local & bit != 0 {
            return LengthCheck::LocalOnly;
        }
        let min = possible.trailing_zeros() as usize;
        let max = 31 - possible.leading_zeros() as usize;
        if len < min {
            LengthCheck::TooShort
        } else if len > max {
            LengthCheck::TooLong
        } else if possible & bit != 0 {
            LengthCheck::Possible
        } else {
            LengthCheck::InvalidLength
        }
    }

    /// libphonenumber's example number for a desc (empty when it has none).
    pub fn example(&self, desc: Desc) -> &'static str {
        self.examples[desc as usize]
    }

    /// The subscriber-number lengths a fixed line may have behind `area` (an area code without
    /// trunk prefix) when the subscriber number starts with `first`, per libphonenumber's
    /// fixed-line pattern: the per-area-code local-number rule.
    pub fn fixed_line_lengths(&self, area: &str, first: u8) -> Vec<usize> {
        // The language is finite; walk every continuation and record the accepting depths.
        let mut lengths = Vec::new();
        let start = self.matches_prefix(area.as_bytes());
        let Some(start) = start.and_then(|s| self.step(s, first)) else {
            return lengths;
        };
        let mut frontier = vec![start];
        for len in 1..=12 {
            if frontier.iter().any(|&s| {
                self.accept[s as usize] & (1 << Desc::FixedLine as u8) != 0
                    && self.possible[Desc::FixedLine as usize] & (1 << (area.len() + len)) != 0
            }) {
                lengths.push(len);
            }
            let mut next: Vec<u32> = frontier
                .iter()
                .flat_map(|&s| (0..10).filter_map(move |d| self.step(s, b'0' + d)))
                .collect();
            next.sort_unstable();
            next.dedup();
            frontier = next;
        }
        lengths
    }

    fn step(&self, state: u32, digit: u8) -> Option<u32> {
        let next = self.next[state as usize * 10 + usize::from(digit - b'0')];
        (next != DEAD).then_some(next)
    }

    fn matches_prefix(&self, digits: &[u8]) -> Option<u32> {
        digits.iter().try_fold(0u32, |s, &d| self.step(s, d))
    }
}

/// Names by number prefix (country code + digits), longest prefix wins.
#[derive(Debug)]
pub struct PrefixTable<T> {
    entries: HashMap<&'static str, T>,
    longest: usize,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            entries: HashMap::new(),
            longest: 0,
        }
    }
}

impl<T> PrefixTable<T> {
    /// The entry of the longest prefix of `digits` (country code + national number).
    pub fn lookup(&self, digits: &str) -> Option<&T> {
        (1..=self.longest.min(digits.len()))
            .rev()
            .find_map(|n| self.entries.get(&digits[..n]))
    }

    /// Every entry, unordered.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &T)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }
}

/// The compiled plans and prefix tables.
#[derive(Debug)]
pub struct Plan {
    /// `libphonenumber-<version>`.
    pub version: &'static str,
    regions: Vec<RegionPlan>,
    /// Carrier names by prefix (English), for CN, ID, SG and PK.
    pub carriers: PrefixTable<&'static str>,
    /// Place names by prefix (English), for ID and PK, as report locations.
    pub places: PrefixTable<Location>,
}

/// The embedded plan, parsed on first use.
pub static PLAN: LazyLock<Plan> =
    LazyLock::new(|| Plan::parse(EMBEDDED).expect("embedded number plan is valid"));

/// The embedded plan.
pub fn plan() -> &'static Plan {
    &PLAN
}

struct Reader {
    bytes: &'static [u8],
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<&'static [u8], &'static str> {
        if self.bytes.len() < n {
            return Err("truncated");
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, &'static str> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self) -> Result<&'static str, &'static str> {
        let len = usize::from(self.u8()?);
        std::str::from_utf8(self.take(len)?).map_err(|_| "bad UTF-8")
    }
}

impl Plan {
    /// Parses a plan file. Names borrow from the (static) bytes, so carriers cost nothing per call.
    pub fn parse(bytes: &'static [u8]) -> Result<Plan, &'static str> {
        let mut r = Reader { bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return Err("not a phonecheck number plan");
        }
        let version = r.str()?;
        let mut regions = Vec::new();
        for _ in 0..r.u8()? {
            regions.push(Self::read_region(&mut r)?);
        }
        let mut carriers = PrefixTable::default();
        let mut places = PrefixTable::default();
        for _ in 0..r.u8()? {
            let name = r.str()?;
            let count = r.u32()?;
            for _ in 0..count {
                let prefix = r.str()?;
                let text = r.str()?;
                match name {
                    "carrier" => insert(&mut carriers, prefix, text),
                    "place" => insert(
                        &mut places,
                        prefix,
                        Location {
                            province: Arc::from(""),
                            city: Arc::from(text),
                            area_code: Arc::from(""),
                        },
                    ),
                    _ => return Err("unknown prefix table"),
                }
            }
        }
        if !r.bytes.is_empty() {
            return Err("trailing bytes");
        }
        Ok(Plan {
            version,
            regions,
            carriers,
            places,
        })
    }

    fn read_region(r: &mut Reader) -> Result<RegionPlan, &'static str> {
        let id = r.str()?;
        let country_code = r.u16()?;
        let national_prefix = r.str()?;
        if usize::from(r.u8()?) != DESC_COUNT {
            return Err("unexpected number of descs");
        }
        let mut possible = [0; DESC_COUNT];
        let mut local_only = [0; DESC_COUNT];
        let mut examples = [""; DESC_COUNT];
        for i in 0..DESC_COUNT {
            possible[i] = r.u32()?;
            local_only[i] = r.u32()?;
            examples[i] = r.str()?;
        }
        let states = r.u32()? as usize;
        let mut next = Vec::with_capacity(states * 10);
        let mut accept = Vec::with_capacity(states);
        for _ in 0..states {
            accept.push(r.u16()?);
            for _ in 0..10 {
                let target = r.u32()?;
                if target != DEAD && target as usize >= states {
                    return Err("transition past the states");
                }
                next.push(target);
            }
        }
        if states == 0 {
            return Err("empty automaton");
        }
        Ok(RegionPlan {
            id,
            country_code,
            calling_code: country_code.to_string(),
            national_prefix,
            possible,
            local_only,
            examples,
            next,
            accept,
        })
    }

    /// A region's plan by ISO code.
    pub fn region(&self, id: &str) -> Option<&RegionPlan> {
        self.regions.iter().find(|r| r.id == id)
    }

    /// Every compiled region.
    pub fn regions(&self) -> &[RegionPlan] {
        &self.regions
    }
}

fn insert<T>(table: &mut PrefixTable<T>, prefix: &'static str, value: T) {
    table.longest = table.longest.max(prefix.len());
    table.entries.insert(prefix, value);
}

/// China's compiled plan.
pub fn cn() -> &'static RegionPlan {
    plan().region("CN").expect("the plan has CN")
}
