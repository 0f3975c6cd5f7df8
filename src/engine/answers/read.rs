//! Reading answers: from the hot tier ([`Answers::peek`]), or the hot tier then the store
//! ([`Answers::lookup`], counted; [`Answers::find`], not), each usable only while younger than
//! the check's TTL and the caller's `max_cache_age`, and with platform profiles when the caller
//! is granted them.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::codec::{self, Decoded};
use super::{AnswerId, Answers, Hit, Tier, millis, now_millis};
use crate::domain::Check;

/// What a caller accepts from the cache: an answer to `check` younger than the check's TTL and
/// than `max_age` (the caller's `max_cache_age`), with platform profiles when `profiles` (a
/// caller granted them is not served an answer stored without them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    /// The check answered.
    pub check: Check,
    /// The oldest answer accepted, besides the TTL.
    pub max_age: Option<Duration>,
    /// Whether the caller is granted platform profiles.
    pub profiles: bool,
}

impl Answers {
    fn usable(&self, wanted: Wanted, fetched_at: u64, decoded: Decoded, tier: Tier) -> Option<Hit> {
        let Wanted {
            check,
            max_age,
            profiles,
        } = wanted;
        let fetched_at = SystemTime::UNIX_EPOCH + Duration::from_millis(fetched_at);
        let age = SystemTime::now()
            .duration_since(fetched_at)
            .unwrap_or_default();
        let fresh = age < self.ttl(check) && max_age.is_none_or(|max| age <= max);
        // A caller granted profiles is not served an answer stored without them.
        (fresh && !(profiles && decoded.withheld)).then_some(Hit {
            data: decoded.data,
            fetched_at,
            tier,
        })
    }

    /// Until when an answer fetched at `fetched_at` may serve `check` to a caller whose
    /// `max_cache_age` is `max_age` (the check's TTL and that age, whichever ends first).
    pub fn usable_until(
        &self,
        check: Check,
        fetched_at: SystemTime,
        max_age: Option<Duration>,
    ) -> SystemTime {
        let age = max_age.map_or(self.ttl(check), |m| m.min(self.ttl(check)));
        fetched_at + age
    }

    /// The answer in the hot tier, if usable; not counted as a lookup.
    pub fn peek(&self, id: &AnswerId, wanted: Wanted) -> Option<Hit> {
        let entry = self.hot.get(id, now_millis(), self.ttl(wanted.check))?;
        let decoded = self.interner.expand(&entry.value)?;
        self.usable(wanted, entry.fetched_at, decoded, Tier::Memory)
    }

    /// The answer in the hot tier or, failing that, the store (then brought into the hot tier),
    /// if usable for `wanted`.
    pub async fn lookup(&self, id: &AnswerId, wanted: Wanted) -> Option<Hit> {
        let hit = self.find(id, wanted).await;
        self.count(hit.as_ref());
        hit
    }

    /// Like [`Answers::lookup`], without counting it (see [`Answers::count`]).
    pub async fn find(&self, id: &AnswerId, wanted: Wanted) -> Option<Hit> {
        match self.peek(id, wanted) {
            Some(hit) => Some(hit),
            None => self.stored(id, wanted).await,
        }
    }

    /// Counts one lookup, and its hit if it had one.
    pub fn count(&self, hit: Option<&Hit>) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        if let Some(hit) = hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            let tier = match hit.tier {
                Tier::Memory => "memory",
                Tier::Store => "store",
            };
            metrics::counter!(crate::metrics::ANSWER_CACHE_HITS, "tier" => tier).increment(1);
        }
    }

    /// The answer in the store, if usable (then brought into the hot tier).
    async fn stored(&self, id: &AnswerId, wanted: Wanted) -> Option<Hit> {
        let check = wanted.check;
        // "Always ask the vendor" needs no disk read.
        if wanted.max_age.is_some_and(|m| m.is_zero()) {
            return None;
        }
        let store = self.store.as_ref()?;
        if !self.presence.may_hold(id) {
            return None;
        }
        let stored = match store.get(id.number as i64, id.variant as i64).await {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!(error = %e, "answer store: a read failed; asking as if not stored");
                return None;
            }
        };
        if usize::from(stored.check) != check as usize {
            return None;
        }
        let fetched_at = u64::try_from(stored.fetched_at).unwrap_or(0);
        if now_millis().saturating_sub(fetched_at) >= millis(self.ttl(check)) {
            return None;
        }
        let decoded = codec::decode(&stored.data)?;
        // Later callers find it in memory.
        self.keep(*id, &decoded, fetched_at, &stored.data);
        self.usable(wanted, fetched_at, decoded, Tier::Store)
    }
}
