//! `[cache]`: how long a vendor's answer is reused, where it is kept, and how much memory the
//! hot tier may take. The engine owns it; `config` only assembles it.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::domain::{Check, PerCheck};

/// `[cache]`: how long a vendor's answer is reused, per check (counted from when the vendor gave
/// it). Negative answers (an empty number, no labels, no risk) are kept like any other; failures
/// and pending answers never are.
///
/// Answers live in two tiers: a compact in-memory hot tier bounded by bytes (`max_memory`), and
/// the answer store, a file in the data directory (`store`), so that a restart never pays twice.
///
/// Each check's TTL is written under the check's key (`line_status = "3d"`); a check not
/// written keeps its default ([`crate::domain::CheckSpec::default_ttl`]).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// How long each check's answers are reused.
    pub ttl: PerCheck<Duration>,
    /// The other settings.
    pub settings: CacheSettings,
}

/// `[cache]` but the TTLs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Memory the hot tier may take, in bytes (`"192MiB"`, `"1GiB"` or a number of bytes); the
    /// least recently used answers leave it first (they stay in the store).
    #[serde(default = "default_max_memory", deserialize_with = "deserialize_bytes")]
    pub max_memory: u64,
    /// An additional cap on the hot tier's answers, by count; none by default (memory decides).
    #[serde(default)]
    pub max_entries: Option<u64>,
    /// Keep paid answers in the answer store (`answers.db` in the data directory), so that a
    /// restart does not pay for them again. Off: memory only.
    #[serde(default = "default_true")]
    pub store: bool,
    /// Largest size of the answer store on disk, in bytes; none by default (the volume's size).
    /// When it is reached, new answers are kept in memory only until expired ones are purged.
    #[serde(default, deserialize_with = "deserialize_optional_bytes")]
    pub max_disk: Option<u64>,
    /// How often expired answers are purged from the store.
    #[serde(default = "default_purge_interval", with = "humantime_serde")]
    pub purge_interval: Duration,
    /// Whose paid answers a tenant is served: only its own (`tenant`, the default) or any
    /// tenant's (`all`).
    #[serde(default)]
    pub share: Share,
}

/// `cache.share`: whether one tenant is served answers another tenant paid for.
///
/// A served answer tells its receiver that someone asked about the number, and when
/// (`cached`, `fetched_at`, the cost of zero, the latency, an estimate's `answered` count):
/// across companies that is a leak, so the default keeps each tenant's answers its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Each tenant is served only answers it paid for itself, and joins only its own calls in
    /// flight; another tenant's answer to the same number is never seen nor used.
    #[default]
    Tenant,
    /// Every tenant is served every tenant's answers (one vendor call per number for the whole
    /// deployment): cheaper, but a tenant learns that a number was checked, and when.
    All,
}

impl<'de> Deserialize<'de> for CacheConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut ttl = CacheConfig::default().ttl;
        for spec in &crate::domain::CHECKS {
            if let Some(value) = table.remove(spec.key) {
                let text = value.as_str().ok_or_else(|| {
                    D::Error::custom(format!("{}: a duration such as \"3d\"", spec.key))
                })?;
                ttl[spec.check] = humantime::parse_duration(text)
                    .map_err(|e| D::Error::custom(format!("{}: {e}", spec.key)))?;
            }
        }
        let settings = CacheSettings::deserialize(serde_json::Value::Object(table))
            .map_err(D::Error::custom)?;
        Ok(CacheConfig { ttl, settings })
    }
}

impl std::ops::Deref for CacheConfig {
    type Target = CacheSettings;

    fn deref(&self) -> &CacheSettings {
        &self.settings
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: PerCheck::from_fn(|check| check.spec().default_ttl),
            settings: CacheSettings::default(),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_memory: default_max_memory(),
            max_entries: None,
            store: true,
            max_disk: None,
            purge_interval: default_purge_interval(),
            share: Share::default(),
        }
    }
}

impl CacheConfig {
    /// The TTL of a check's answers.
    pub fn ttl(&self, check: Check) -> Duration {
        self.ttl[check]
    }

    /// Every check's TTL as a closure, for the layers below the engine (the shared answers in
    /// Redis), which must not know this type.
    pub fn ttl_fn(&self) -> crate::replicas::TtlFn {
        let ttls = self.ttl;
        std::sync::Arc::new(move |check| ttls[check])
    }

    /// Problems with this configuration, for start-up validation.
    pub fn problems(&self) -> Vec<String> {
        self.settings.problems()
    }
}

impl CacheSettings {
    /// Problems with these settings.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_memory < MIN_MEMORY {
            problems.push(format!(
                "cache.max_memory must be at least {} MiB",
                MIN_MEMORY >> 20
            ));
        }
        if self.max_entries == Some(0) {
            problems.push("cache.max_entries must be at least 1 when set".to_owned());
        }
        if self.max_disk.is_some_and(|d| d < MIN_DISK) {
            problems.push(format!(
                "cache.max_disk must be at least {} KiB when set",
                MIN_DISK >> 10
            ));
        }
        if self.purge_interval < Duration::from_secs(1) {
            problems.push("cache.purge_interval must be at least 1s".to_owned());
        }
        problems
    }
}

/// Smallest hot tier accepted: a few thousand answers.
const MIN_MEMORY: u64 = 1 << 20;
/// Smallest store size accepted: SQLite's own pages, the schema, and a few hundred answers.
const MIN_DISK: u64 = 64 << 10;

/// 192 MiB: about 1.5 million line-status answers. The Helm chart's limit is 1 GiB; the rest
/// leaves room for a running job (about 100 MiB at a million rows), streams, the store's page
/// cache and the allocator's slack.
fn default_max_memory() -> u64 {
    192 << 20
}

fn default_purge_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_true() -> bool {
    true
}

/// A size written as a number of bytes or a number with a unit (`B`, `KiB`, `MiB`, `GiB`, `KB`,
/// `MB`, `GB`; case and spaces do not matter).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| "expected a size such as \"192MiB\" or a number of bytes".to_owned())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err("unknown unit; use B, KiB, MiB, GiB, KB, MB or GB".to_owned()),
    };
    let bytes = number * scale as f64;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err("size out of range".to_owned());
    }
    Ok(bytes as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes<E: serde::de::Error>(self) -> Result<u64, E> {
        match self {
            Size::Bytes(n) => Ok(n),
            Size::Text(text) => parse_bytes(&text).map_err(E::custom),
        }
    }
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Size::deserialize(d)?.bytes()
}

fn deserialize_optional_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<Size>::deserialize(d)?.map(Size::bytes).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_units() {
        assert_eq!(parse_bytes("192MiB"), Ok(192 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs").is_err());
    }

    #[test]
    fn ttls_follow_the_checks() {
        let mut config = CacheConfig::default();
        config.ttl[Check::SpamLabels] = Duration::from_secs(5);
        let ttl = config.ttl_fn();
        for check in Check::ALL {
            assert_eq!(ttl(check), config.ttl(check));
        }
    }
}
