//! Time for signatures and timestamps, injectable so that tests are deterministic.

use std::fmt::Debug;

use chrono::{DateTime, FixedOffset, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// A fresh random nonce of 32 lower-case hex characters.
    fn nonce(&self) -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }

    /// Now in China Standard Time (UTC+8), which the Chinese vendors sign with.
    fn now_china(&self) -> DateTime<FixedOffset> {
        self.now().with_timezone(&china_offset())
    }
}

/// UTC+8.
pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at one instant, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }

    fn nonce(&self) -> String {
        "0123456789abcdef0123456789abcdef".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn china_date_rolls_over_at_utc_16() {
        let late = FixedClock(Utc.with_ymd_and_hms(2024, 3, 9, 16, 30, 0).unwrap());
        assert_eq!(late.now_china().format("%Y%m%d").to_string(), "20240310");
        let early = FixedClock(Utc.with_ymd_and_hms(2024, 3, 9, 15, 59, 59).unwrap());
        assert_eq!(early.now_china().format("%Y%m%d").to_string(), "20240309");
    }
}
