//! Indonesian, Singaporean and Pakistani numbers, read the way libphonenumber reads them
//! (`parse`, `number_type`, carrier and geocoder), on the compiled plan ([`super::plan`]) instead
//! of its regular expressions. Regions outside the plan still go through the `phonenumber` crate.

use crate::domain::{Carrier, Location, NetworkType, NumberType};

use super::NumberError;
use super::plan::{Desc, LengthCheck, Plan, RegionPlan};

/// libphonenumber's bounds on a national significant number.
const MIN_NSN: usize = 2;
const MAX_NSN: usize = 17;

/// A number of a planned region, parsed and classified.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The region.
    pub region: &'static RegionPlan,
    /// National significant number, ASCII digits.
    pub national_number: String,
    /// libphonenumber's type; `None` when it says `UNKNOWN` (invalid).
    pub kind: Option<NumberType>,
}

/// Reads `digits` given after `+` (`international`) or as dialled in `default` (a planned region
/// other than China), as libphonenumber's `parse` does. Returns `Ok(None)` when the number belongs
/// to a region outside the plan.
pub fn parse(
    plan: &'static Plan,
    digits: &str,
    international: bool,
    default: Option<&'static RegionPlan>,
) -> Result<Option<Parsed>, NumberError> {
    let (region, number) = if international {
        // Country codes are prefix-free and none of the planned ones begins with another code.
        // China is read by phonecheck's own rules before this.
        match plan
            .regions()
            .iter()
            .find(|r| r.id != "CN" && digits.starts_with(r.calling_code.as_str()))
        {
            Some(region) => (region, &digits[region.calling_code.len()..]),
            None => return Ok(None),
        }
    } else {
        let Some(region) = default else {
            return Ok(None);
        };
        (region, with_country_code(region, digits).unwrap_or(digits))
    };
    let national = national_number(region, number);
    if national.len() < MIN_NSN || national.len() > MAX_NSN {
        return Err(NumberError::NotANumber {
            region: region.id.to_owned(),
            reason: format!(
                "the national number has {} digits; {MIN_NSN} to {MAX_NSN} are possible",
                national.len()
            ),
        });
    }
    Ok(Some(Parsed {
        region,
        national_number: national.to_owned(),
        kind: region.kind(national.as_bytes()),
    }))
}

/// A national number that starts with the region's own country code, written without `+`
/// (`6281234567890` in Indonesia): libphonenumber's `_maybe_extract_country_code` takes the code
/// off when the rest is a number of the region and the whole is not, or the whole is too long.
fn with_country_code<'a>(region: &RegionPlan, digits: &'a str) -> Option<&'a str> {
    let rest = digits.strip_prefix(region.calling_code.as_str())?;
    let rest = strip_national_prefix(region, rest);
    let general = |n: &str| region.pattern_matches(region.matches(n.as_bytes()), Desc::General);
    ((!general(digits) && general(rest))
        || region.test_length(digits.len()) == LengthCheck::TooLong)
        .then_some(rest)
}

/// libphonenumber's `_maybe_strip_national_prefix_carrier_code` for a literal national prefix:
/// the prefix goes unless the number fits the plan with it and not without it.
fn strip_national_prefix<'a>(region: &RegionPlan, number: &'a str) -> &'a str {
    if region.national_prefix.is_empty() {
        return number;
    }
    let Some(rest) = number.strip_prefix(region.national_prefix) else {
        return number;
    };
    let general = |n: &str| region.pattern_matches(region.matches(n.as_bytes()), Desc::General);
    if general(number) && !general(rest) {
        number
    } else {
        rest
    }
}

/// The national significant number: the national prefix stripped when what remains has a
/// possible length (libphonenumber's `parse`).
fn national_number<'a>(region: &RegionPlan, number: &'a str) -> &'a str {
    let stripped = strip_national_prefix(region, number);
    match region.test_length(stripped.len()) {
        LengthCheck::TooShort | LengthCheck::LocalOnly | LengthCheck::InvalidLength => number,
        LengthCheck::Possible | LengthCheck::TooLong => stripped,
    }
}

/// Whether mobile numbers may have moved to another operator since allocation. Singapore (since
/// 1997) and Pakistan (since 2007) have mobile number portability; Indonesia does not.
fn portable(region: &RegionPlan) -> bool {
    matches!(region.id, "SG" | "PK")
}

impl Parsed {
    /// The number in E.164: `+`, country code, national number.
    pub fn e164(&self) -> String {
        let mut out = String::with_capacity(1 + 3 + self.national_number.len());
        out.push('+');
        out.push_str(&self.region.calling_code);
        out.push_str(&self.national_number);
        out
    }

    /// The carrier the number's prefix was allocated to, for the types libphonenumber's carrier
    /// mapper answers (mobile, fixed line or mobile, pager).
    pub fn carrier(&self, plan: &'static Plan, e164: &str) -> Option<Carrier> {
        if !matches!(
            self.kind,
            Some(NumberType::Mobile | NumberType::FixedLineOrMobile | NumberType::Pager)
        ) {
            return None;
        }
        let name = *plan.carriers.lookup(e164.trim_start_matches('+'))?;
        Some(Carrier {
            name,
            local_name: name,
            network_type: NetworkType::Basic,
            host_network: None,
            may_be_ported: portable(self.region),
        })
    }

    /// The place libphonenumber's geocoder names for a geographic number (fixed lines; in
    /// Indonesia also mobiles), when it knows one more precise than the country.
    pub fn place(&self, plan: &'static Plan, e164: &str) -> Option<Location> {
        let geographic = match self.kind {
            Some(NumberType::FixedLine | NumberType::FixedLineOrMobile) => true,
            Some(NumberType::Mobile) => self.region.id == "ID",
            _ => false,
        };
        if !geographic {
            return None;
        }
        plan.places.lookup(e164.trim_start_matches('+')).cloned()
    }
}
