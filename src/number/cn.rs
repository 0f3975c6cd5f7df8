//! China's numbering plan, beyond what libphonenumber knows: mobile segments, fixed lines by area
//! code, and the special numbers (400, 800, 95/96, 1010, 106, 12xxx, 100xx, emergency).
//!
//! Which local numbers an area code has (7 or 8 digits, which first digits) and the premium-rate
//! range come from libphonenumber's metadata, compiled by `tools/gen_number_plan.py`
//! ([`super::plan`]); where phonecheck decides otherwise on purpose, the rule says why.

use crate::domain::{Carrier, Location, NumberType};

use super::location::LocationData;
use super::plan;
use super::segments::{self, CM_IOT_1064};

/// A Chinese number, classified.
#[derive(Debug, Clone, PartialEq)]
pub struct CnNumber {
    /// National significant number (no trunk `0`); empty when it cannot be known (a local fixed
    /// line written without its area code).
    pub national_number: String,
    /// The number type.
    pub number_type: NumberType,
    /// Whether the number is assigned in the plan.
    pub valid: bool,
    /// Carrier by segment.
    pub carrier: Option<Carrier>,
    /// Home location.
    pub location: Option<Location>,
}

impl CnNumber {
    fn new(national_number: &str, number_type: NumberType, valid: bool) -> CnNumber {
        CnNumber {
            national_number: national_number.to_owned(),
            number_type,
            valid,
            carrier: None,
            location: None,
        }
    }
}

const EMERGENCY: &[&str] = &["110", "112", "119", "120", "122"];
/// Three-digit service numbers (directory, weather, time).
const SHORT_SERVICE: &[&str] = &["114", "117", "121"];

/// Classifies a Chinese number. `digits` are what follows `+86` when `international`, otherwise
/// the digits as dialled inside China (possibly with the trunk prefix `0`).
pub fn classify(digits: &str, international: bool, data: &LocationData) -> CnNumber {
    if let Some(rest) = digits.strip_prefix('0').filter(|_| !international) {
        return classify_with_trunk(rest, data);
    }
    if let Some(n) = mobile_like(digits, data) {
        return n;
    }
    let len = digits.len();
    if len == 10 && digits.starts_with("400") {
        return CnNumber::new(digits, NumberType::SharedCost, true);
    }
    if len == 10 && digits.starts_with("800") {
        return CnNumber::new(digits, NumberType::TollFree, true);
    }
    if digits.starts_with("95")
        && len >= 10
        && let Some(n) = fixed_line(digits, data).filter(|n| n.valid)
    {
        // Ningxia's area codes are 951 to 955: `+86 953 2447084` is a fixed line in Wuzhong.
        // No 95 service number of ten or more digits begins with an area code (they are 950...).
        return n;
    }
    if digits.starts_with("95") {
        // 95xxx to 95xxxxxx nationwide service numbers, and libphonenumber's ten- and
        // eleven-digit 950 numbers.
        let valid =
            (5..=8).contains(&len) || (digits.starts_with("950") && (10..=11).contains(&len));
        return CnNumber::new(digits, NumberType::Service, valid);
    }
    if digits.starts_with("96") && !international {
        return CnNumber::new(digits, NumberType::Service, (5..=15).contains(&len));
    }
    // Written with +86, the digits are a national significant number, where a fixed line's
    // area code has no trunk `0`: `+86 10 6401 2345` is Beijing, not a 106 SMS port. One that is
    // no valid fixed line may still be a special number (`+86 1069 0000 00000`, an SMS port).
    let fixed = if international {
        fixed_line(digits, data)
    } else {
        None
    };
    if let Some(n) = fixed.as_ref().filter(|n| n.valid) {
        return n.clone();
    }
    if digits.starts_with("1010") || digits.starts_with("1019") {
        return CnNumber::new(digits, NumberType::Service, (8..=15).contains(&len));
    }
    if digits.starts_with("106") {
        return CnNumber::new(digits, NumberType::SmsPort, (8..=20).contains(&len));
    }
    if digits.starts_with("116") || digits.starts_with("118") {
        return CnNumber::new(digits, NumberType::Service, (4..=23).contains(&len));
    }
    if len == 5 && (digits.starts_with("12") || digits.starts_with("100")) {
        // 12xxx government hotlines (12315, 12345, 12306, ...) and 100xx carrier hotlines.
        return CnNumber::new(digits, NumberType::Service, true);
    }
    if len == 3 && EMERGENCY.contains(&digits) {
        return CnNumber::new(digits, NumberType::Emergency, true);
    }
    if len == 3 && SHORT_SERVICE.contains(&digits) {
        return CnNumber::new(digits, NumberType::Service, true);
    }
    if digits.starts_with("16")
        && plan::cn().kind(digits.as_bytes()) == Some(NumberType::PremiumRate)
    {
        // 160/168 information services (信息服务, 声讯台): eight digits, billed at a premium.
        return CnNumber::new(digits, NumberType::PremiumRate, true);
    }
    if let Some(n) = fixed {
        return n;
    }
    if !international && (7..=8).contains(&len) && matches!(digits.as_bytes()[0], b'2'..=b'8') {
        // A local fixed line written without its area code: real, but not placeable.
        return CnNumber::new("", NumberType::FixedLine, false);
    }
    if digits.starts_with('1') {
        // 1xx of a mobile's length or thereabouts, but in no allocated segment.
        let number_type = if len == 11 {
            NumberType::Mobile
        } else {
            NumberType::Unknown
        };
        return CnNumber::new(digits, number_type, false);
    }
    if let Some(n) = fixed_line(digits, data) {
        return n;
    }
    CnNumber::new(digits, NumberType::Unknown, false)
}

/// A number dialled with the trunk prefix: area code + subscriber, or a mobile with a stray `0`.
fn classify_with_trunk(rest: &str, data: &LocationData) -> CnNumber {
    if rest.len() == 11
        && rest.starts_with('1')
        && !rest.starts_with("10")
        && let Some(n) = mobile_like(rest, data)
    {
        return n;
    }
    if let Some(n) = fixed_line(rest, data) {
        return n;
    }
    CnNumber::new(rest, NumberType::FixedLine, false)
}

/// Mobile, data card, IoT and satellite numbers, by segment.
fn mobile_like(digits: &str, data: &LocationData) -> Option<CnNumber> {
    let len = digits.len();
    let segment = if len == 13 && digits.starts_with(CM_IOT_1064.prefix) {
        &CM_IOT_1064
    } else if (len == 11 || len == 13) && digits.starts_with('1') {
        segments::lookup(digits)?
    } else {
        return None;
    };
    let mut n = CnNumber::new(digits, segment.number_type(), segment.length == len);
    n.carrier = Some(segment.carrier());
    if len == 11 {
        n.location = data.by_mobile_prefix(digits).cloned();
    }
    Some(n)
}

/// Splits a national number into area code (without trunk `0`) and subscriber number, by shape:
/// two-digit area codes are 10 and 2x, the rest have three digits.
pub fn split_area(nsn: &str) -> Option<(&str, &str)> {
    let area_len = if nsn.starts_with("10") || nsn.starts_with('2') {
        2
    } else {
        3
    };
    nsn.get(..area_len).map(|area| (area, &nsn[area_len..]))
}

/// A fixed line (or a 96 service number) given as area code (without trunk) + subscriber.
fn fixed_line(nsn: &str, data: &LocationData) -> Option<CnNumber> {
    let (area, subscriber) = split_area(nsn)?;
    let area_code = format!("0{area}");
    if !data.is_area_code(&area_code) {
        return None;
    }
    let (number_type, valid) = fixed_line_kind(nsn, subscriber);
    let mut n = CnNumber::new(nsn, number_type, valid);
    n.location = data.by_area_code(&area_code).map(|loc| Location {
        area_code: area_code.as_str().into(),
        ..loc.clone()
    });
    Some(n)
}

/// Type and validity of area code + subscriber number.
///
/// The per-area-code rules (which areas dial 7 digits, which 8, which ranges starting with 9 are
/// numbers) are libphonenumber's fixed-line pattern. phonecheck departs from it on purpose in two
/// places, both from the numbering plan (电信网编号计划):
/// - 95 and 96 numbers of five or six digits behind an area code are the city's service numbers
///   (`0571-96225`), so they are reported as such, and as valid; libphonenumber calls them fixed
///   lines or shared cost, and refuses some.
/// - A subscriber number never begins with 0 (the trunk prefix) or 1 (which opens the service
///   codes and mobile numbers: dialled locally, `12345678` reaches the 12345 hotline). The short
///   100xx and 123xx hotlines dialled with an area code are service numbers; any other number starting
///   with 0 or 1 is refused, where libphonenumber accepts eight-digit ones in many areas
///   (its own example `+86 10 1234 5678` among them).
fn fixed_line_kind(nsn: &str, subscriber: &str) -> (NumberType, bool) {
    if (subscriber.starts_with("96") || subscriber.starts_with("95"))
        && (5..=6).contains(&subscriber.len())
    {
        // In their service shapes (95xxx, 96xxxx); longer numbers starting 95 or 96 are
        // ordinary subscriber numbers in the cities that dial eight digits, and follow the plan.
        return (NumberType::Service, true);
    }
    let kind = plan::cn().kind(nsn.as_bytes());
    match subscriber.as_bytes().first() {
        Some(b'1')
            if (5..=6).contains(&subscriber.len())
                && (subscriber.starts_with("100") || subscriber.starts_with("123")) =>
        {
            (NumberType::Service, kind.is_some())
        }
        Some(b'2'..=b'9') => match kind {
            None | Some(NumberType::FixedLine | NumberType::FixedLineOrMobile) => {
                (NumberType::FixedLine, kind.is_some())
            }
            // 010-800 and 021-800 toll-free numbers, for example.
            Some(other) => (other, true),
        },
        _ => (NumberType::FixedLine, false),
    }
}

/// The local-number lengths an area code (with or without trunk `0`) takes for subscriber numbers
/// beginning with `first` (`'2'` to `'9'`), by the compiled plan: 8 in Shenzhen (`0755`), 7 in
/// many smaller cities, both in a few.
pub fn local_number_lengths(area_code: &str, first: char) -> Vec<usize> {
    let area = area_code.strip_prefix('0').unwrap_or(area_code);
    match first {
        '2'..='9' => plan::cn().fixed_line_lengths(area, first as u8),
        _ => Vec::new(),
    }
}
