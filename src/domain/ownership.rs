//! Answers about a number's life on its network: how long it has been there (tenure, 在网时长),
//! whether it changed owner since a given time (reassigned, 二次号), and who serves it now
//! (current carrier, 携号转网).

use std::time::{Duration, SystemTime};

/// Whether the vendor knows a number's tenure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TenureStatus {
    /// Known: the bounds say how long.
    Known,
    /// The vendor found no record (not billed).
    NotFound,
    /// The number is in an abnormal state, for example it does not exist.
    Abnormal,
}

/// How long a number has been on its network: `[lower_months, upper_months)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TenureResult {
    /// Whether the bounds mean anything.
    pub status: TenureStatus,
    /// Lower bound in months, inclusive; 0 unless known.
    pub lower_months: u32,
    /// Upper bound in months, exclusive; `None` when open or unknown.
    pub upper_months: Option<u32>,
    /// The vendor's code, as sent.
    pub raw_code: String,
    /// The vendor's carrier code, as sent; empty when none.
    pub carrier_code: String,
}

impl TenureResult {
    /// The range as text for exports and reports: `3-6`, `24+`, or the status when unknown.
    pub fn range(&self) -> String {
        match (self.status, self.upper_months) {
            (TenureStatus::Known, Some(upper)) => format!("{}-{upper}", self.lower_months),
            (TenureStatus::Known, None) => format!("{}+", self.lower_months),
            (TenureStatus::NotFound, _) => "not_found".to_owned(),
            (TenureStatus::Abnormal, _) => "abnormal".to_owned(),
        }
    }
}

/// Whether a number changed owner after the registration time asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Reassigned {
    /// The vendor cannot tell (not billed).
    Unknown,
    /// Recycled and given out again since.
    Recycled,
    /// Not recycled since.
    NotRecycled,
    /// Deactivated.
    Deactivated,
    /// Transferred to a new owner.
    Transferred,
}

impl Reassigned {
    /// The short lower-case name, for exports and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reassigned::Unknown => "unknown",
            Reassigned::Recycled => "recycled",
            Reassigned::NotRecycled => "not_recycled",
            Reassigned::Deactivated => "deactivated",
            Reassigned::Transferred => "transferred",
        }
    }
}

/// A reassigned-number answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReassignedResult {
    /// The canonical answer.
    pub status: Reassigned,
    /// The vendor's code, as sent.
    pub raw_code: String,
    /// The vendor's carrier code, as sent; empty when none.
    pub carrier_code: String,
}

/// Who serves a number now.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CurrentCarrierResult {
    /// English name of the network serving it now (for an MVNO's number, its host); empty when
    /// phonecheck does not know the vendor's name.
    pub name: String,
    /// Local name of that network (`中国移动`); empty when unknown.
    pub local_name: String,
    /// The basic carrier (the segment's network), as the vendor names it.
    pub basic_carrier: String,
    /// The virtual operator serving it, as the vendor names it; `None` for a basic carrier.
    pub mvno: Option<String>,
    /// Whether the vendor says it was ported.
    pub ported: bool,
    /// The vendor's current carrier, as sent.
    pub raw_code: String,
    /// Province, as the vendor names it.
    pub province: String,
    /// City, as the vendor names it.
    pub city: String,
}

/// Why a registration time is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisteredAtError {
    /// Not after 1970-01-01 (the vendor's rule).
    #[error("must be after 1970-01-01T00:00:00Z")]
    TooEarly,
    /// Later than now (a registration cannot be in the future).
    #[error("must not be in the future")]
    Future,
}

/// Checks a registration time against `now` and keeps it to the second (the vendor's precision:
/// answers are kept per second, not per nanosecond). Returns seconds since the Unix epoch.
pub fn registered_at(at: SystemTime, now: SystemTime) -> Result<i64, RegisteredAtError> {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| RegisteredAtError::TooEarly)?;
    if since < Duration::from_secs(1) {
        return Err(RegisteredAtError::TooEarly);
    }
    // A minute of slack for the caller's clock.
    if at > now + Duration::from_secs(60) {
        return Err(RegisteredAtError::Future);
    }
    i64::try_from(since.as_secs()).map_err(|_| RegisteredAtError::Future)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_times_are_bounded_and_kept_to_the_second() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_600_000_000_900);
        assert_eq!(registered_at(at, now), Ok(1_600_000_000));
        assert_eq!(
            registered_at(SystemTime::UNIX_EPOCH, now),
            Err(RegisteredAtError::TooEarly)
        );
        assert_eq!(
            registered_at(now + Duration::from_secs(3600), now),
            Err(RegisteredAtError::Future)
        );
    }

    #[test]
    fn only_the_checks_that_take_it_are_asked_and_kept_with_the_registration_time() {
        use crate::domain::{Check, CheckOptions, KycInput};
        let options = CheckOptions {
            kyc: Some(KycInput {
                registered_at: Some(1_600_000_000),
                ..KycInput::default()
            }),
            ..CheckOptions::default()
        };
        let reassigned = options.inputs_for(Check::Reassigned).unwrap();
        assert_eq!(reassigned.registered_at, Some(1_600_000_000));
        assert_eq!(
            options.inputs_for(Check::Tenure),
            None,
            "no input, same cache entry"
        );
        assert_eq!(options.inputs_for(Check::LineStatus), None);
        // Answers cached before the field existed keep their identity.
        let json = serde_json::to_string(&KycInput::default()).unwrap();
        assert!(!json.contains("registered_at"), "{json}");
    }

    #[test]
    fn tenure_ranges_read_as_text() {
        let mut t = TenureResult {
            status: TenureStatus::Known,
            lower_months: 3,
            upper_months: Some(6),
            raw_code: "2".into(),
            carrier_code: String::new(),
        };
        assert_eq!(t.range(), "3-6");
        t.upper_months = None;
        t.lower_months = 24;
        assert_eq!(t.range(), "24+");
        t.status = TenureStatus::NotFound;
        assert_eq!(t.range(), "not_found");
    }
}
