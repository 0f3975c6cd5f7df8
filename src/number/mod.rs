//! Offline analysis, the free part of every report: normalisation to E.164, number type (with
//! China's special numbers), carrier by segment and home province and city.
//!
//! Chinese numbers are classified by the project's own rules ([`cn`], [`segments`]) and data
//! ([`location`]), with fixed-line and premium-rate rules from libphonenumber's metadata
//! ([`plan`]). Indonesian, Singaporean and Pakistani numbers are read as libphonenumber reads them,
//! on the same compiled metadata ([`foreign`]), with carrier and place by prefix. Every other
//! region goes through the `phonenumber` crate (libphonenumber's regular expressions).

pub mod cn;
pub mod foreign;
pub mod location;
pub mod normalize;
pub mod plan;
pub mod segments;

use std::sync::Arc;

use phonenumber::country;

use crate::domain::{NumberInfo, NumberType};

pub use location::{LocationData, LocationDataError};
pub use normalize::NumberError;

/// The region used when a request names none.
pub const DEFAULT_REGION: &str = "CN";

/// Analyses numbers offline. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Analyzer {
    locations: Arc<LocationData>,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(LocationData::embedded())
    }
}

impl Analyzer {
    /// An analyser over the given location data.
    pub fn new(locations: LocationData) -> Analyzer {
        Analyzer {
            locations: Arc::new(locations),
        }
    }

    /// Analyses `input`, read in `default_region` (`CN` when empty) unless it carries a country
    /// code. Fails only when the input is not a number at all; a number outside its plan is
    /// returned with `valid == false`.
    pub fn analyze(&self, input: &str, default_region: &str) -> Result<NumberInfo, NumberError> {
        let region = parse_region(default_region)?;
        let digits = normalize::clean(input)?;
        if digits.international {
            if let Some(nsn) = digits.digits.strip_prefix("86") {
                return Ok(self.china(input, nsn, true));
            }
            if let Some(parsed) = foreign::parse(plan::plan(), &digits.digits, true, None)? {
                return Ok(self.planned(input, parsed));
            }
            return self.foreign(input, &format!("+{}", digits.digits), None);
        }
        if region == country::Id::CN {
            // `8613800138000`: the country code without `+`, as many exports write it.
            if let Some(nsn) = digits.digits.strip_prefix("86")
                && nsn.len() == 11
                && segments::lookup(nsn).is_some()
            {
                return Ok(self.china(input, nsn, true));
            }
            return Ok(self.china(input, &digits.digits, false));
        }
        let planned = plan::plan().region(region.as_ref());
        if planned.is_some()
            && let Some(parsed) = foreign::parse(plan::plan(), &digits.digits, false, planned)?
        {
            return Ok(self.planned(input, parsed));
        }
        self.foreign(input, &digits.digits, Some(region))
    }

    /// A number of a region in the compiled plan, outside China.
    fn planned(&self, input: &str, parsed: foreign::Parsed) -> NumberInfo {
        let e164 = parsed.e164();
        NumberInfo {
            input: input.to_owned(),
            region_code: parsed.region.id.to_owned(),
            number_type: parsed.kind.unwrap_or(NumberType::Unknown),
            valid: parsed.kind.is_some(),
            carrier: parsed.carrier(plan::plan(), &e164),
            location: parsed.place(plan::plan(), &e164),
            e164,
            national_number: parsed.national_number,
            data_version: self.locations.version().clone(),
        }
    }

    fn china(&self, input: &str, digits: &str, international: bool) -> NumberInfo {
        let n = cn::classify(digits, international, &self.locations);
        NumberInfo {
            input: input.to_owned(),
            e164: if n.national_number.is_empty() {
                String::new()
            } else {
                format!("+86{}", n.national_number)
            },
            region_code: DEFAULT_REGION.to_owned(),
            national_number: n.national_number,
            number_type: n.number_type,
            valid: n.valid,
            carrier: n.carrier,
            location: n.location,
            data_version: self.locations.version().clone(),
        }
    }

    fn foreign(
        &self,
        input: &str,
        text: &str,
        region: Option<country::Id>,
    ) -> Result<NumberInfo, NumberError> {
        let number = phonenumber::parse(region, text).map_err(|e| match e {
            phonenumber::ParseError::InvalidCountryCode => NumberError::UnknownCountryCode(
                text.trim_start_matches('+').chars().take(3).collect(),
            ),
            other => NumberError::NotANumber {
                region: region
                    .map_or_else(|| "international".to_owned(), |r| r.as_ref().to_owned()),
                reason: other.to_string(),
            },
        })?;
        let region_code = number
            .country()
            .id()
            .or(region)
            .map(|id| id.as_ref().to_owned())
            .unwrap_or_default();
        let national = number.national();
        let national_number = format!(
            "{}{}",
            "0".repeat(usize::from(national.zeros())),
            national.value()
        );
        Ok(NumberInfo {
            input: input.to_owned(),
            e164: number.format().mode(phonenumber::Mode::E164).to_string(),
            region_code,
            national_number,
            number_type: map_type(number.number_type(&phonenumber::metadata::DATABASE)),
            valid: number.is_valid(),
            carrier: None,
            location: None,
            data_version: self.locations.version().clone(),
        })
    }
}

/// Reads a request's `default_region`: empty means `CN`; otherwise an ISO 3166-1 alpha-2 code, in
/// any case.
pub fn parse_region(region: &str) -> Result<country::Id, NumberError> {
    let trimmed = region.trim();
    if trimmed.is_empty() {
        return Ok(country::Id::CN);
    }
    let upper = trimmed.to_ascii_uppercase();
    if upper.len() != 2 {
        return Err(NumberError::UnknownRegion(region.to_owned()));
    }
    upper
        .parse::<country::Id>()
        .map_err(|_| NumberError::UnknownRegion(region.to_owned()))
}

fn map_type(t: phonenumber::Type) -> NumberType {
    use phonenumber::Type as T;
    match t {
        T::FixedLine => NumberType::FixedLine,
        T::Mobile => NumberType::Mobile,
        T::FixedLineOrMobile => NumberType::FixedLineOrMobile,
        T::TollFree => NumberType::TollFree,
        T::PremiumRate => NumberType::PremiumRate,
        T::SharedCost => NumberType::SharedCost,
        T::PersonalNumber => NumberType::PersonalNumber,
        T::Voip => NumberType::Voip,
        T::Pager => NumberType::Pager,
        T::Uan => NumberType::Uan,
        T::Emergency => NumberType::Emergency,
        T::Voicemail => NumberType::Voicemail,
        T::ShortCode | T::StandardRate | T::Carrier | T::NoInternational => NumberType::Service,
        T::Unknown => NumberType::Unknown,
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_plan;
