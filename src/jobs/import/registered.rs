//! The registration-time column of a file, for the checks that take a registration time (the
//! reassigned check): which column it is, and what a cell in it says.
//!
//! Lists of sign-ups come out of every kind of system, so a cell is read in the shapes they
//! write: `2021-03-04 05:06:07`, `2021-03-04`, `2021/3/4 5:06`, RFC 3339 with an offset,
//! `20210304`, Unix seconds or milliseconds, and a workbook's date (Excel keeps a date as a
//! number of days since 1899-12-30, which is what the workbook readers hand on). A time without
//! an offset is Beijing time, the vendor's. Every cell is bounded by the reader already; the
//! parsers here take no more than its text.

use std::time::{Duration, SystemTime};

use chrono::{NaiveDate, NaiveDateTime, TimeZone};

/// Header names of a registration-time column, in order of preference, compared without case
/// and with spaces and dashes as underscores: a header containing one of these matches. Not
/// 入网时间 (when the number joined its network: another fact, which the tenure check answers).
const HEADERS: &[&str] = &[
    "注册时间",
    "注册日期",
    "开户时间",
    "开户日期",
    "registered_at",
    "registration_time",
    "registration_date",
    "registered_on",
    "signup_time",
    "signup_date",
    "sign_up_time",
    "sign_up_date",
];

/// Words that name a registration-time column only as the whole header: inside a longer one
/// they name something else (注册渠道 is a sign-up channel, `registration_no` a number).
const WHOLE_HEADERS: &[&str] = &["注册", "registered", "registration", "signup", "sign_up"];

/// Where a job's registration times come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegisteredAtRead {
    /// The column as the spec names it (header, letter or 1-based index); empty to find it by
    /// header name.
    pub column: String,
    /// The time for rows whose cell is empty, and for every row when no column is found
    /// (`options.registered_at`, Unix seconds).
    pub default: Option<i64>,
}

/// The preference rank of a header that names a registration-time column.
pub(super) fn header_match(header: &str) -> Option<usize> {
    let header: String = header
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '-' { '_' } else { c })
        .collect();
    if header.is_empty() {
        return None;
    }
    HEADERS
        .iter()
        .position(|name| header.contains(name))
        .or_else(|| {
            WHOLE_HEADERS
                .iter()
                .position(|name| header == *name)
                .map(|i| HEADERS.len() + i)
        })
}

/// Excel's day 0 (1899-12-30, so that its 1900 leap-year bug lands before any real date).
const EXCEL_EPOCH_DAYS: i64 = -25_569;
/// The last day Excel has, 9999-12-31.
const EXCEL_LAST_DAY: f64 = 2_958_465.0;

/// Reads a registration time from `cell` and checks it against `now` (after 1970, not in the
/// future). Returns Unix seconds, or why the cell is not a time, for people.
pub(super) fn parse_cell(cell: &str, now: SystemTime) -> Result<i64, String> {
    let text = cell.trim();
    let seconds = parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a time (yyyy-MM-dd HH:mm:ss, yyyy-MM-dd, RFC 3339, Unix seconds or a \
             workbook date)"
        )
    })?;
    let at = u64::try_from(seconds)
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| format!("{text:?}: {}", crate::domain::RegisteredAtError::TooEarly))?;
    crate::domain::registered_at(at, now).map_err(|e| format!("{text:?}: {e}"))
}

fn parse(text: &str) -> Option<i64> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.timestamp());
    }
    let beijing = crate::clock::china_offset();
    let in_beijing = |naive: NaiveDateTime| {
        beijing
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.timestamp())
    };
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return number(text, in_beijing);
    }
    // Date and time, with `-` or `/`, a space or `T`, with or without seconds.
    let unified: String = text
        .chars()
        .map(|c| match c {
            '/' => '-',
            'T' => ' ',
            c => c,
        })
        .collect();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&unified, format) {
            return in_beijing(naive);
        }
    }
    NaiveDate::parse_from_str(&unified, "%Y-%m-%d")
        .ok()
        .and_then(|d| in_beijing(d.and_hms_opt(0, 0, 0)?))
}

/// A cell of digits: `yyyyMMdd`, Unix seconds or milliseconds, or a workbook's day number
/// (with a fraction for the time of day). The magnitudes do not overlap: days since 1900 stay
/// under 3 million, dates as `yyyyMMdd` lie between 19000101 and 99991231, and Unix seconds since
/// 2001-09-09 have ten digits (earlier ones are not told apart from the others and refused).
fn number(text: &str, in_beijing: impl Fn(NaiveDateTime) -> Option<i64>) -> Option<i64> {
    let digits = text.split('.').next().unwrap_or_default();
    if !text.contains('.') {
        match digits.len() {
            8 => {
                let date = NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
                return in_beijing(date.and_hms_opt(0, 0, 0)?);
            }
            10 => return digits.parse().ok(),
            13 => return digits.parse::<i64>().ok().map(|ms| ms / 1000),
            _ => {}
        }
    }
    let days: f64 = text.parse().ok()?;
    if !(1.0..=EXCEL_LAST_DAY).contains(&days) || digits.len() > 7 {
        return None;
    }
    // To the second, in Beijing time (a workbook's dates carry no zone).
    let seconds = (days * 86_400.0).round() as i64;
    let naive = chrono::DateTime::from_timestamp(EXCEL_EPOCH_DAYS * 86_400 + seconds, 0)?;
    in_beijing(naive.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Result<i64, String> {
        // 2026-01-01T00:00:00Z.
        parse_cell(
            text,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        )
    }

    #[test]
    fn the_shapes_of_a_time_are_read_in_beijing_time() {
        // 2021-03-04 05:06:07 in Beijing is 2021-03-03T21:06:07Z.
        let expected = 1_614_805_567;
        for text in [
            "2021-03-04 05:06:07",
            " 2021-03-04T05:06:07 ",
            "2021/03/04 05:06:07",
            "2021/3/4 5:06:07",
            "2021-03-04T05:06:07+08:00",
            "2021-03-03T21:06:07Z",
            "1614805567",
            "1614805567000",
        ] {
            assert_eq!(at(text), Ok(expected), "{text}");
        }
        assert_eq!(at("2021-03-04 05:06"), Ok(expected - 7));
        // Midnight in Beijing.
        for text in ["2021-03-04", "2021/3/4", "20210304"] {
            assert_eq!(at(text), Ok(1_614_787_200), "{text}");
        }
    }

    #[test]
    fn workbook_dates_are_days_since_1899_12_30() {
        // 44259 is 2021-03-04; .25 is six in the morning.
        assert_eq!(at("44259"), Ok(1_614_787_200));
        assert_eq!(at("44259.25"), Ok(1_614_787_200 + 6 * 3600));
    }

    #[test]
    fn what_is_not_a_time_is_refused_with_the_cell() {
        for text in [
            "",
            "yesterday",
            "2021-13-01",
            "2021-02-30 10:00:00",
            "123456789",
            "1e9",
            "-5",
            "0",
            "99999999999",
        ] {
            let refused = at(text).unwrap_err();
            assert!(refused.contains(&format!("{:?}", text.trim())), "{refused}");
        }
        assert!(at("2030-01-01").unwrap_err().contains("future"));
        assert!(at("1969-12-31T00:00:00Z").unwrap_err().contains("1970"));
    }

    #[test]
    fn registration_headers_are_ranked_and_not_network_join_time() {
        assert_eq!(header_match(" 注册时间 "), Some(0));
        assert_eq!(header_match("Registered At"), Some(4));
        assert_eq!(header_match("user registered_at"), Some(4));
        assert_eq!(header_match("User Signup Date"), Some(9));
        assert_eq!(header_match("Sign-up date"), Some(11));
        assert_eq!(header_match("Registered"), Some(HEADERS.len() + 1));
        assert_eq!(header_match("注册"), Some(HEADERS.len()));
        // Other facts that share a word.
        for other in [
            "入网时间",
            "注册渠道",
            "注册地",
            "registration_no",
            "手机号",
        ] {
            assert_eq!(header_match(other), None, "{other}");
        }
    }
}
