//! Money in the billing currency: prices of vendor calls, costs of answers, budgets, estimates.
//!
//! One currency for the whole service (`[billing] currency`), so an amount is a count of nanos
//! (10⁻⁹ of the currency's unit), exact like `google.type.Money`: sums of prices never drift the
//! way binary floating point would, and the ledger's totals equal the sum of its rows.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

const NANOS_PER_UNIT: i64 = 1_000_000_000;

/// The largest amount a price, a budget or a job's `max_cost` may be written with: a billion
/// units, far above any of them, so that sums of many of them stay far from `i64`'s end.
pub const MAX_AMOUNT_UNITS: i64 = 1_000_000_000;

/// An amount of money in the billing currency, in nanos. Never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// A written amount that is not a price.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number.
    #[error("not a decimal amount (write it as a string, e.g. \"0.03\")")]
    NotDecimal,
    /// Below zero.
    #[error("an amount cannot be negative")]
    Negative,
    /// More than nine decimals (finer than a nano).
    #[error("at most 9 decimals")]
    TooPrecise,
    /// Above [`MAX_AMOUNT_UNITS`].
    #[error("above the largest amount accepted ({MAX_AMOUNT_UNITS})")]
    TooLarge,
}

impl Money {
    /// Nothing.
    pub const ZERO: Money = Money(0);

    /// `nanos` nanos of the unit; negative counts are taken as zero.
    pub const fn from_nanos(nanos: i64) -> Money {
        Money(if nanos < 0 { 0 } else { nanos })
    }

    /// Whole units.
    pub const fn from_units(units: i64) -> Money {
        Money::from_nanos(units.saturating_mul(NANOS_PER_UNIT))
    }

    /// The amount in nanos.
    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Whole units and the nanos beyond them, as in `google.type.Money`.
    pub const fn units_and_nanos(self) -> (i64, i32) {
        (self.0 / NANOS_PER_UNIT, (self.0 % NANOS_PER_UNIT) as i32)
    }

    /// From `google.type.Money`'s fields, refusing negative or malformed amounts.
    pub fn from_units_and_nanos(units: i64, nanos: i32) -> Result<Money, MoneyError> {
        if units < 0 || nanos < 0 {
            return Err(MoneyError::Negative);
        }
        if nanos >= NANOS_PER_UNIT as i32 {
            return Err(MoneyError::TooPrecise);
        }
        if units > MAX_AMOUNT_UNITS {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money(units * NANOS_PER_UNIT + i64::from(nanos)))
    }

    /// Whether it is nothing.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The sum, kept at `i64::MAX` nanos (9 billion units) at most.
    pub const fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    /// The difference, zero at least.
    pub const fn saturating_sub(self, other: Money) -> Money {
        Money::from_nanos(self.0.saturating_sub(other.0))
    }

    /// `count` times the amount (a price times calls).
    pub fn times(self, count: u64) -> Money {
        Money(
            i64::try_from(count)
                .unwrap_or(i64::MAX)
                .saturating_mul(self.0),
        )
    }

    /// The amount as a float of units, for metrics only (never for sums kept).
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_UNIT as f64
    }

    fn decimal(self) -> Decimal {
        Decimal::new(self.0, 9).normalize()
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Money, MoneyError> {
        let s = s.trim();
        // Scientific notation, signs on zero and the like are not how prices are written.
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(MoneyError::NotDecimal);
        }
        let decimal = Decimal::from_str_exact(s).map_err(|_| MoneyError::NotDecimal)?;
        if decimal.is_sign_negative() && !decimal.is_zero() {
            return Err(MoneyError::Negative);
        }
        let decimal = decimal.normalize();
        if decimal.scale() > 9 {
            return Err(MoneyError::TooPrecise);
        }
        if decimal > Decimal::from(MAX_AMOUNT_UNITS) {
            return Err(MoneyError::TooLarge);
        }
        let nanos = (decimal * Decimal::from(NANOS_PER_UNIT)).trunc();
        i64::try_from(nanos)
            .map(Money)
            .map_err(|_| MoneyError::TooLarge)
    }
}

impl fmt::Display for Money {
    /// At least two decimals (`0.03`, `12.50`), more when the amount has them (`0.0015`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut decimal = self.decimal();
        if decimal.scale() < 2 {
            decimal.rescale(2);
        }
        fmt::Display::fmt(&decimal, f)
    }
}

impl std::ops::Add for Money {
    type Output = Money;

    fn add(self, other: Money) -> Money {
        self.saturating_add(other)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        *self = self.saturating_add(other);
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// From a string (`"0.03"`): a TOML float would already have lost the exact amount.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let written = String::deserialize(deserializer)?;
        written.parse().map_err(serde::de::Error::custom)
    }
}

/// An ISO 4217 currency code (`CNY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }
}

impl Default for Currency {
    fn default() -> Currency {
        Currency(iso_currency::Currency::CNY)
    }
}

impl FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Currency, String> {
        iso_currency::Currency::from_code(s)
            .map(Currency)
            .ok_or_else(|| format!("{s:?} is not an ISO 4217 currency code (e.g. CNY, USD)"))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Currency, D::Error> {
        let written = String::deserialize(deserializer)?;
        written.parse().map_err(serde::de::Error::custom)
    }
}

/// `[billing]`: the currency every price, cost and budget is written in.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingConfig {
    /// ISO 4217 code; `CNY` by default (the vendors bill in yuan).
    #[serde(default)]
    pub currency: Currency,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_read_exactly_and_written_back() {
        let price: Money = "0.03".parse().unwrap();
        assert_eq!(price.nanos(), 30_000_000);
        assert_eq!(price.to_string(), "0.03");
        assert_eq!(price.times(3).to_string(), "0.09");
        assert_eq!("12.5".parse::<Money>().unwrap().to_string(), "12.50");
        assert_eq!("0.0015".parse::<Money>().unwrap().to_string(), "0.0015");
        assert_eq!("7".parse::<Money>().unwrap().units_and_nanos(), (7, 0));
        assert_eq!(
            "1.000000001".parse::<Money>().unwrap().units_and_nanos(),
            (1, 1)
        );
        // A hundred thousand three-fen answers are exactly three thousand yuan.
        let total: Money = std::iter::repeat_n(price, 100_000).sum();
        assert_eq!(total, Money::from_units(3_000));
    }

    #[test]
    fn what_is_not_a_price_is_refused() {
        for (written, error) in [
            ("", MoneyError::NotDecimal),
            ("abc", MoneyError::NotDecimal),
            ("1e3", MoneyError::NotDecimal),
            ("0.03 CNY", MoneyError::NotDecimal),
            ("-0.01", MoneyError::Negative),
            ("0.0000000001", MoneyError::TooPrecise),
            ("1000000001", MoneyError::TooLarge),
            ("99999999999999999999999", MoneyError::TooLarge),
        ] {
            assert_eq!(written.parse::<Money>(), Err(error), "{written:?}");
        }
        assert_eq!(
            Money::from_units_and_nanos(-1, 0),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Money::from_units_and_nanos(0, 1_000_000_000),
            Err(MoneyError::TooPrecise)
        );
        assert_eq!(
            Money::from_units_and_nanos(2, 500_000_000),
            Ok("2.5".parse().unwrap())
        );
    }

    #[test]
    fn currencies_are_iso_4217() {
        assert_eq!("CNY".parse::<Currency>().unwrap().code(), "CNY");
        assert_eq!(Currency::default().code(), "CNY");
        assert!("XYZ".parse::<Currency>().is_err());
        assert!("cny".parse::<Currency>().is_err());
    }
}
