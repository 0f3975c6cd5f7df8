//! The compact encoding of answers, for the answer store and the hot tier.
//!
//! A line-status answer is a few bytes of data: a status and the vendor's code and description,
//! which come from a small fixed set of texts. On disk it is written as
//! `[FORMAT, flags, LINE, status, len, code, len, description]`; in memory its texts are
//! interned ([`Interner`]) so that a hot entry holds two small numbers instead of two `String`s.
//! Other answers (spam labels, account presence, risk profiles) are rarer and larger: they are
//! kept as `[FORMAT, flags, JSON, json…]`.
//!
//! `flags` bit 0 says that platform profiles were withheld: the answer was paid for by a caller
//! not granted profile details, so they were never stored (a caller who is granted them asks the
//! vendor again).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::domain::{CheckData, LineStatus, LineStatusResult};

const FORMAT: u8 = 1;
const LINE: u8 = 0;
const JSON: u8 = 1;
/// Flag: platform profiles were withheld.
pub const WITHHELD: u8 = 1;

/// Most distinct vendor texts kept interned; past it, texts are stored with each answer.
const MAX_SYMBOLS: usize = 4096;
/// Longest text interned (vendor codes and descriptions are short; anything else is not fixed).
const MAX_SYMBOL_LEN: usize = 256;

/// An answer as the engine hands it around: the data, and whether profiles were withheld.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The answer.
    pub data: CheckData,
    /// Platform profiles were not stored with it.
    pub withheld: bool,
}

/// Encodes an answer for the store.
pub fn encode(data: &CheckData, withheld: bool) -> Vec<u8> {
    let flags = if withheld { WITHHELD } else { 0 };
    match data {
        // A line status with the current carrier of a ported number (Aliyun) is rarer: JSON.
        CheckData::LineStatus(line)
            if line.current_carrier.is_none()
                && !line.ported
                && line.raw_code.len() <= usize::from(u16::MAX)
                && line.description.len() <= usize::from(u16::MAX) =>
        {
            let mut out = Vec::with_capacity(8 + line.raw_code.len() + line.description.len());
            out.extend([FORMAT, flags, LINE, status_code(line.status)]);
            for text in [&line.raw_code, &line.description] {
                out.extend((text.len() as u16).to_le_bytes());
                out.extend(text.as_bytes());
            }
            out
        }
        other => {
            let mut out = vec![FORMAT, flags, JSON];
            // Serialising plain data into a Vec cannot fail.
            serde_json::to_writer(&mut out, other).expect("an answer serialises");
            out
        }
    }
}

/// Decodes what [`encode`] wrote; `None` for anything else (a newer format, damage).
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    let (&[format, flags, kind], rest) = bytes.split_first_chunk::<3>()?;
    if format != FORMAT {
        return None;
    }
    let data = match kind {
        LINE => {
            let (&status, mut rest) = rest.split_first()?;
            let mut text = || {
                let (len, tail) = rest.split_first_chunk::<2>()?;
                let len = usize::from(u16::from_le_bytes(*len));
                let (text, tail) = (tail.get(..len)?, tail.get(len..)?);
                rest = tail;
                String::from_utf8(text.to_vec()).ok()
            };
            let raw_code = text()?;
            let description = text()?;
            CheckData::LineStatus(LineStatusResult::new(
                status_of(status)?,
                raw_code,
                description,
            ))
        }
        JSON => serde_json::from_slice(rest).ok()?,
        _ => return None,
    };
    Some(Decoded {
        data,
        withheld: flags & WITHHELD != 0,
    })
}

fn status_code(status: LineStatus) -> u8 {
    match status {
        LineStatus::Active => 0,
        LineStatus::Empty => 1,
        LineStatus::Suspended => 2,
        LineStatus::Silent => 3,
        LineStatus::Risk => 4,
        LineStatus::PoweredOff => 5,
        LineStatus::NoRecord => 6,
        LineStatus::Invalid => 7,
    }
}

fn status_of(code: u8) -> Option<LineStatus> {
    Some(match code {
        0 => LineStatus::Active,
        1 => LineStatus::Empty,
        2 => LineStatus::Suspended,
        3 => LineStatus::Silent,
        4 => LineStatus::Risk,
        5 => LineStatus::PoweredOff,
        6 => LineStatus::NoRecord,
        7 => LineStatus::Invalid,
        _ => return None,
    })
}

/// An answer in the hot tier: 24 bytes, whatever the vendor's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compact {
    /// A line-status answer whose texts are interned.
    Line {
        /// The status.
        status: u8,
        /// The vendor's code.
        code: u32,
        /// The vendor's description.
        description: u32,
    },
    /// Any other answer, as [`encode`] writes it.
    Encoded(Box<[u8]>),
}

impl Compact {
    /// Heap bytes the entry holds beyond its slot (allocator rounding included).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Compact::Line { .. } => 0,
            // glibc and mimalloc round to 16 bytes and keep a word of their own.
            Compact::Encoded(bytes) => bytes.len().div_ceil(16) * 16 + 16,
        }
    }
}

/// The vendors' texts, each kept once. Bounded: a vendor that sent a different text with every
/// answer would otherwise grow it without end; past [`MAX_SYMBOLS`] texts are kept with each
/// answer instead.
#[derive(Debug, Default)]
pub struct Interner {
    inner: RwLock<Symbols>,
}

#[derive(Debug, Default)]
struct Symbols {
    by_text: HashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
}

impl Interner {
    fn intern(&self, text: &str) -> Option<u32> {
        if let Some(&sym) = self
            .inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_text
            .get(text)
        {
            return Some(sym);
        }
        if text.len() > MAX_SYMBOL_LEN {
            return None;
        }
        let mut symbols = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(&sym) = symbols.by_text.get(text) {
            return Some(sym);
        }
        if symbols.texts.len() >= MAX_SYMBOLS {
            return None;
        }
        let sym = symbols.texts.len() as u32;
        let text: Arc<str> = text.into();
        symbols.texts.push(text.clone());
        symbols.by_text.insert(text, sym);
        Some(sym)
    }

    fn text(&self, sym: u32) -> Option<String> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .texts
            .get(sym as usize)
            .map(|t| t.to_string())
    }

    /// The hot-tier form of an answer (`encoded` is its store form, reused when it is not a
    /// line status).
    pub fn compact(&self, data: &CheckData, encoded: &[u8]) -> Compact {
        if let CheckData::LineStatus(line) = data
            && line.current_carrier.is_none()
            && !line.ported
            && let (Some(code), Some(description)) =
                (self.intern(&line.raw_code), self.intern(&line.description))
        {
            return Compact::Line {
                status: status_code(line.status),
                code,
                description,
            };
        }
        Compact::Encoded(encoded.into())
    }

    /// The answer a hot entry stands for.
    pub fn expand(&self, compact: &Compact) -> Option<Decoded> {
        match compact {
            Compact::Line {
                status,
                code,
                description,
            } => Some(Decoded {
                data: CheckData::LineStatus(LineStatusResult::new(
                    status_of(*status)?,
                    self.text(*code)?,
                    self.text(*description)?,
                )),
                withheld: false,
            }),
            Compact::Encoded(bytes) => decode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountPresence, Activity, Registration, SpamLabels};

    fn line(code: &str, description: &str) -> CheckData {
        CheckData::LineStatus(LineStatusResult::new(LineStatus::Silent, code, description))
    }

    #[test]
    fn answers_round_trip() {
        let presence = CheckData::AccountPresence(AccountPresence {
            valid: true,
            active: Activity::Active,
            fraud_score: Some(12),
            carrier: "China Mobile".to_owned(),
            line_type: "mobile".to_owned(),
            registrations: vec![Registration {
                platform: "wechat".to_owned(),
                registered: crate::domain::Presence::Registered,
                profile: None,
            }],
            total_registered: 1,
            history: None,
        });
        for (data, withheld) in [
            (line("3", "沉默号"), false),
            (line("", ""), false),
            (CheckData::SpamLabels(SpamLabels::default()), false),
            (presence, true),
        ] {
            let bytes = encode(&data, withheld);
            assert_eq!(decode(&bytes), Some(Decoded { data, withheld }));
        }
        // A line-status answer is a few bytes.
        assert_eq!(encode(&line("3", "silent"), false).len(), 4 + 2 + 1 + 2 + 6);
    }

    #[test]
    fn damage_and_unknown_formats_decode_to_nothing() {
        let bytes = encode(&line("3", "silent"), false);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(&[2, 0, 0, 0]), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[FORMAT, 0, LINE, 99, 0, 0, 0, 0]), None);
    }

    #[test]
    fn line_texts_are_interned_and_bounded() {
        let interner = Interner::default();
        let data = line("3", "沉默号");
        let encoded = encode(&data, false);
        let a = interner.compact(&data, &encoded);
        let b = interner.compact(&data, &encoded);
        assert_eq!(a, b);
        assert!(matches!(a, Compact::Line { .. }));
        assert_eq!(interner.expand(&a).unwrap().data, data);
        for i in 0..MAX_SYMBOLS {
            interner.intern(&i.to_string());
        }
        let other = line("new code", "new text");
        let compact = interner.compact(&other, &encode(&other, false));
        assert!(matches!(compact, Compact::Encoded(_)), "past the bound");
        assert_eq!(interner.expand(&compact).unwrap().data, other);
        assert!(std::mem::size_of::<Compact>() <= 24);
    }
}
