//! Reading a number as people write it: full-width digits, spaces, dashes, dots, brackets, a
//! leading `+` or `00`, a `tel:` prefix.

/// Why an input is not a number at all. Each names the request field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Nothing but separators.
    #[error("the number is empty")]
    Empty,
    /// A character that is neither a digit nor a separator.
    #[error("the number contains {0:?}, which is neither a digit nor a separator")]
    InvalidCharacter(char),
    /// A `+` anywhere but at the start.
    #[error("a `+` may only stand at the start of the number")]
    MisplacedPlus,
    /// Fewer than three digits.
    #[error("the number has {0} digit(s); at least 3 are needed")]
    TooShort(usize),
    /// More digits than any numbering plan uses.
    #[error("the number has {0} digits; at most {max} are allowed", max = MAX_DIGITS)]
    TooLong(usize),
    /// An international number whose country calling code is not assigned.
    #[error("+{0} is not an assigned country calling code")]
    UnknownCountryCode(String),
    /// The default region is not an ISO 3166-1 alpha-2 code phonecheck knows.
    #[error("default_region {0:?} is not a known ISO 3166-1 alpha-2 region code")]
    UnknownRegion(String),
    /// The digits do not form a number in the region's plan.
    #[error("not a phone number of region {region}: {reason}")]
    NotANumber {
        /// The region tried.
        region: String,
        /// What the parser said.
        reason: String,
    },
}

impl NumberError {
    /// The request field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            NumberError::UnknownRegion(_) => "default_region",
            _ => "number",
        }
    }
}

/// The most digits accepted: China's 106 SMS ports run to 20.
pub const MAX_DIGITS: usize = 20;

/// A number reduced to its digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digits {
    /// True when the input began with `+` or the international prefix `00`.
    pub international: bool,
    /// The digits after `+`/`00`, ASCII.
    pub digits: String,
}

/// Reduces a written number to its digits, refusing anything that is not a number.
pub fn clean(input: &str) -> Result<Digits, NumberError> {
    let trimmed = input.trim_matches(|c: char| c.is_whitespace() || c == '\u{3000}');
    let body = trimmed
        .strip_prefix("tel:")
        .or_else(|| trimmed.strip_prefix("TEL:"))
        .unwrap_or(trimmed);
    let mut digits = String::with_capacity(body.len());
    let mut plus = false;
    for c in body.chars() {
        match c {
            '0'..='9' => digits.push(c),
            // Full-width digits, as typed with a Chinese input method.
            '０'..='９' => digits.push(char::from(b'0' + (c as u32 - '０' as u32) as u8)),
            '+' | '＋' if digits.is_empty() && !plus => plus = true,
            '+' | '＋' => return Err(NumberError::MisplacedPlus),
            c if is_separator(c) => {}
            c => return Err(NumberError::InvalidCharacter(c)),
        }
    }
    let (international, digits) = match digits.strip_prefix("00") {
        Some(rest) if !plus && !rest.is_empty() && !rest.starts_with('0') => {
            (true, rest.to_owned())
        }
        _ => (plus, digits),
    };
    match digits.len() {
        0 => Err(NumberError::Empty),
        n if n < 3 => Err(NumberError::TooShort(n)),
        n if n > MAX_DIGITS => Err(NumberError::TooLong(n)),
        _ => Ok(Digits {
            international,
            digits,
        }),
    }
}

fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.'
                | '('
                | ')'
                | '/'
                | '\u{3000}'
                | '（'
                | '）'
                | '－'
                | '‐'
                | '‑'
                | '–'
                | '—'
                | '．'
                | '·'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> (bool, String) {
        let d = clean(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        (d.international, d.digits)
    }

    #[test]
    fn separators_and_widths() {
        assert_eq!(ok("+86 138-0013-8000"), (true, "8613800138000".into()));
        assert_eq!(ok("008613800138000"), (true, "8613800138000".into()));
        assert_eq!(ok("(010) 6401-2345"), (false, "01064012345".into()));
        assert_eq!(ok("１３８００１３８０００"), (false, "13800138000".into()));
        assert_eq!(
            ok("＋８６　１３８ ００１３ ８０００"),
            (true, "8613800138000".into())
        );
        assert_eq!(ok(" 138.0013.8000 "), (false, "13800138000".into()));
        assert_eq!(ok("tel:+6281234567890"), (true, "6281234567890".into()));
        assert_eq!(
            ok("（０２１）６４０１－２３４５"),
            (false, "02164012345".into())
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(clean(""), Err(NumberError::Empty));
        assert_eq!(clean(" - ( ) "), Err(NumberError::Empty));
        assert_eq!(clean("12"), Err(NumberError::TooShort(2)));
        assert_eq!(clean("abc"), Err(NumberError::InvalidCharacter('a')));
        assert_eq!(
            clean("138001380O0"),
            Err(NumberError::InvalidCharacter('O'))
        );
        assert_eq!(clean("86+13800138000"), Err(NumberError::MisplacedPlus));
        assert_eq!(clean("++8613800138000"), Err(NumberError::MisplacedPlus));
        assert_eq!(
            clean("123456789012345678901"),
            Err(NumberError::TooLong(21))
        );
        assert_eq!(
            clean("13800138000;"),
            Err(NumberError::InvalidCharacter(';'))
        );
    }

    #[test]
    fn errors_name_their_field() {
        assert_eq!(NumberError::Empty.field(), "number");
        assert_eq!(
            NumberError::UnknownRegion("XX".into()).field(),
            "default_region"
        );
    }
}
