//! The paid checks, in one table ([`CHECKS`]) that every consumer reads: names in the command
//! line, configuration and metrics, the contract's value, how long answers are kept by default,
//! and the columns a check adds to an export. A new check is a variant of [`Check`] and a row.

use std::time::Duration;

/// A paid check a vendor can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Line status (空号检测).
    LineStatus,
    /// Spam labels from caller-ID apps.
    SpamLabels,
    /// Social-account presence and KYC signals.
    AccountPresence,
    /// Risk profile.
    RiskProfile,
    /// How long the number has been on its network (在网时长).
    Tenure,
    /// Whether the number changed owner since a registration time (二次号).
    Reassigned,
    /// The carrier serving the number now (携号转网).
    CurrentCarrier,
}

/// What phonecheck knows of a check: a row of [`CHECKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSpec {
    /// The check.
    pub check: Check,
    /// Its kebab-case name: the command line, metrics, usage (`line-status`).
    pub name: &'static str,
    /// Its key in configuration tables (`prices`, `[cache]`, `[routes]`): `line_status`.
    pub key: &'static str,
    /// Its value in the contract's `phonecheck.v1.Check`.
    pub proto: i32,
    /// How long its answers are kept unless `[cache]` says otherwise.
    pub default_ttl: Duration,
    /// Whether a tenant's key may ask for it unless `allowed_checks` says otherwise (account
    /// presence, KYC data, must be granted).
    pub granted_by_default: bool,
    /// The columns it adds to an export and to `phonecheck check`'s CSV.
    pub export_columns: &'static [&'static str],
    /// Whether it needs the registration time of the number (`CheckOptions.registered_at`, a
    /// job's registration column): asked without one, the request is refused, and its answers
    /// are kept per number and registration time.
    pub takes_registration_time: bool,
}

const DAY: u64 = 86_400;

/// Every check, in contract order: `CHECKS[check as usize]` is `check`'s row.
pub const CHECKS: [CheckSpec; 7] = [
    CheckSpec {
        check: Check::LineStatus,
        name: "line-status",
        key: "line_status",
        proto: 1,
        default_ttl: Duration::from_secs(3 * DAY),
        granted_by_default: true,
        export_columns: &["line_status", "line_status_code"],
        takes_registration_time: false,
    },
    CheckSpec {
        check: Check::SpamLabels,
        name: "spam-labels",
        key: "spam_labels",
        proto: 2,
        default_ttl: Duration::from_secs(DAY),
        granted_by_default: true,
        export_columns: &["spam_labels", "spam_labels_pending"],
        takes_registration_time: false,
    },
    CheckSpec {
        check: Check::AccountPresence,
        name: "account-presence",
        key: "account_presence",
        proto: 3,
        default_ttl: Duration::from_secs(7 * DAY),
        granted_by_default: false,
        export_columns: &[
            "account_valid",
            "account_active",
            "fraud_score",
            "registered_on",
        ],
        takes_registration_time: false,
    },
    CheckSpec {
        check: Check::RiskProfile,
        name: "risk-profile",
        key: "risk_profile",
        proto: 4,
        default_ttl: Duration::from_secs(7 * DAY),
        granted_by_default: true,
        export_columns: &["risks", "under18"],
        takes_registration_time: false,
    },
    // Tenure moves from one bucket to the next over months: a month-old answer is at most one
    // bucket behind.
    CheckSpec {
        check: Check::Tenure,
        name: "tenure",
        key: "tenure",
        proto: 5,
        default_ttl: Duration::from_secs(30 * DAY),
        granted_by_default: true,
        export_columns: &["tenure_months", "tenure_code"],
        takes_registration_time: false,
    },
    // The answer is for one registration time, and a number can be recycled any day after it:
    // a week, like other ownership signals.
    CheckSpec {
        check: Check::Reassigned,
        name: "reassigned",
        key: "reassigned",
        proto: 6,
        default_ttl: Duration::from_secs(7 * DAY),
        granted_by_default: true,
        export_columns: &["reassigned", "reassigned_code"],
        takes_registration_time: true,
    },
    // Porting takes days and is rare for one number: a month.
    CheckSpec {
        check: Check::CurrentCarrier,
        name: "current-carrier",
        key: "current_carrier",
        proto: 7,
        default_ttl: Duration::from_secs(30 * DAY),
        granted_by_default: true,
        export_columns: &["current_carrier", "ported", "mvno"],
        takes_registration_time: false,
    },
];

impl Check {
    /// Every check, in contract order.
    pub const ALL: [Check; CHECKS.len()] = {
        let mut all = [Check::LineStatus; CHECKS.len()];
        let mut i = 0;
        while i < CHECKS.len() {
            all[i] = CHECKS[i].check;
            i += 1;
        }
        all
    };

    /// The check's row of [`CHECKS`].
    pub fn spec(self) -> &'static CheckSpec {
        &CHECKS[self as usize]
    }

    /// The check's kebab-case name, as used on the command line and in metrics.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The check's key in configuration tables (`line_status`).
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// The check whose contract value is `proto`.
    pub fn from_proto(proto: i32) -> Option<Check> {
        CHECKS.iter().find(|s| s.proto == proto).map(|s| s.check)
    }

    /// The check named `name`, by its name or its key.
    pub fn named(name: &str) -> Option<Check> {
        CHECKS
            .iter()
            .find(|s| s.name == name || s.key == name)
            .map(|s| s.check)
    }

    /// Every check's key, for error messages: `line_status, spam_labels, ...`.
    pub fn keys() -> String {
        CHECKS.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Check {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Check::named(s).ok_or_else(|| {
            let names: Vec<&str> = CHECKS.iter().map(|s| s.name).collect();
            format!("unknown check `{s}`; expected one of {}", names.join(", "))
        })
    }
}

/// A value per check, indexed by [`Check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PerCheck<T>(pub [T; CHECKS.len()]);

impl<T> PerCheck<T> {
    /// The value of each check, from `f`.
    pub fn from_fn(f: impl Fn(Check) -> T) -> PerCheck<T> {
        PerCheck(Check::ALL.map(f))
    }
}

impl<T> std::ops::Index<Check> for PerCheck<T> {
    type Output = T;

    fn index(&self, check: Check) -> &T {
        &self.0[check as usize]
    }
}

impl<T> std::ops::IndexMut<Check> for PerCheck<T> {
    fn index_mut(&mut self, check: Check) -> &mut T {
        &mut self.0[check as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_is_at_its_checks_index_and_names_are_unique() {
        for (i, spec) in CHECKS.iter().enumerate() {
            assert_eq!(spec.check as usize, i, "{spec:?}");
            assert_eq!(Check::named(spec.name), Some(spec.check));
            assert_eq!(Check::named(spec.key), Some(spec.check));
            assert_eq!(Check::from_proto(spec.proto), Some(spec.check));
            assert_eq!(spec.name.replace('-', "_"), spec.key);
        }
        assert_eq!(Check::from_proto(0), None, "UNSPECIFIED is no check");
        // The contract's values, as the generated code names them.
        for spec in &CHECKS {
            let proto = crate::pb::Check::try_from(spec.proto).unwrap();
            assert_eq!(
                proto.as_str_name(),
                format!("CHECK_{}", spec.key.to_ascii_uppercase())
            );
        }
        for value in 1..64 {
            if crate::pb::Check::try_from(value).is_ok() {
                assert!(
                    Check::from_proto(value).is_some(),
                    "check {value} has no row"
                );
            }
        }
        assert!(
            "colour"
                .parse::<Check>()
                .unwrap_err()
                .contains("line-status")
        );
    }
}
