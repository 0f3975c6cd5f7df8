//! The hot tier: answers in memory, bounded by bytes (`cache.max_memory`), not by count.
//!
//! An entry is a 16-byte key (two keyed hashes: the number's and the answer's), the fetch time
//! and the answer in its [`Compact`] form: a 56-byte bucket and a control byte in the table and
//! 16 bytes in the eviction queue, which with their spare room (tables 7/16 to 7/8 full, queues
//! half to full) make 81 to 162 bytes; it is counted as [`ENTRY_BYTES`], their middle, plus its
//! heap bytes. The table is split in shards, each under its own lock with its share of the
//! budget, so that a table growing doubles one shard at a time. Measured in BENCHMARKS.md.
//!
//! Eviction is CLOCK (second chance): entries queue in arrival order; the one at the front leaves
//! unless it was read since it last came round, in which case it goes to the back. Expired entries
//! leave when they are read or come round. The answer store keeps what leaves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::codec::Compact;

/// Shards of the table.
const SHARDS: usize = 64;

/// Bytes an entry is counted as besides its answer's heap bytes: its table bucket (56 bytes and a
/// control byte, the table 7/16 to 7/8 full) and its place in the eviction queue (16 bytes, the
/// queue half to full) take 81 to 162 bytes; this is their middle. Right after the tables double
/// the hot tier is up to a third above its count; between doublings, below. Measured: see
/// BENCHMARKS.md, "The answer store".
pub const ENTRY_BYTES: usize = 120;

/// An answer's identity: keyed hashes of the number, and of everything the answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AnswerId {
    /// Keyed hash of the E.164 number.
    pub number: u64,
    /// Keyed hash of the provider, the check, the number and the KYC inputs.
    pub variant: u64,
}

/// One answer in memory.
#[derive(Debug, Clone)]
pub struct HotEntry {
    /// The answer.
    pub value: Compact,
    /// When the vendor answered, Unix milliseconds.
    pub fetched_at: u64,
}

struct Slot {
    entry: HotEntry,
    /// Read since the clock hand last passed.
    visited: bool,
}

#[derive(Default)]
struct Shard {
    map: HashMap<AnswerId, Slot>,
    queue: VecDeque<AnswerId>,
    bytes: usize,
}

impl Shard {
    fn remove(&mut self, id: &AnswerId) -> bool {
        match self.map.remove(id) {
            Some(slot) => {
                self.bytes -= ENTRY_BYTES + slot.entry.value.heap_bytes();
                true
            }
            None => false,
        }
    }

    /// Makes room until the shard is within `budget` bytes and `max_entries` entries.
    fn evict(&mut self, budget: usize, max_entries: usize) -> u64 {
        let mut evicted = 0;
        // Each entry is passed at most twice (once to clear its bit), so this ends.
        let mut steps = 2 * self.queue.len() + 1;
        while (self.bytes > budget || self.map.len() > max_entries) && steps > 0 {
            steps -= 1;
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            match self.map.get_mut(&id) {
                Some(slot) if slot.visited => {
                    slot.visited = false;
                    self.queue.push_back(id);
                }
                Some(_) => {
                    self.remove(&id);
                    evicted += 1;
                }
                // Removed earlier (read after it expired, forgotten): its place was stale.
                None => {}
            }
        }
        // Stale places pile up when entries leave out of turn; drop them now and then.
        if self.queue.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.queue.retain(|id| map.contains_key(id));
        }
        evicted
    }
}

/// What the hot tier holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotStats {
    /// Answers held.
    pub entries: u64,
    /// Bytes they are counted as.
    pub bytes: u64,
}

/// The hot tier.
pub struct HotTier {
    shards: Box<[Mutex<Shard>]>,
    /// Each shard's share of `cache.max_memory`.
    budget: usize,
    /// Each shard's share of `cache.max_entries`.
    max_entries: usize,
}

impl std::fmt::Debug for HotTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotTier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HotTier {
    /// A hot tier of at most `max_memory` bytes (and `max_entries` answers when given).
    pub fn new(max_memory: u64, max_entries: Option<u64>) -> HotTier {
        let share =
            |total: u64| usize::try_from(total.div_ceil(SHARDS as u64)).unwrap_or(usize::MAX);
        HotTier {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            budget: share(max_memory),
            max_entries: max_entries.map_or(usize::MAX, share),
        }
    }

    fn shard(&self, id: &AnswerId) -> std::sync::MutexGuard<'_, Shard> {
        // The variant hash is uniform: its low bits pick the shard.
        self.shards[(id.variant as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `id` if one is there and younger than `ttl` at `now` (Unix ms); an expired one
    /// is dropped.
    pub fn get(&self, id: &AnswerId, now: u64, ttl: Duration) -> Option<HotEntry> {
        let mut shard = self.shard(id);
        let slot = shard.map.get_mut(id)?;
        if now.saturating_sub(slot.entry.fetched_at) >= ttl_millis(ttl) {
            shard.remove(id);
            return None;
        }
        slot.visited = true;
        Some(slot.entry.clone())
    }

    /// Holds `entry` under `id` (replacing what was there); returns how many entries left to
    /// make room.
    pub fn insert(&self, id: AnswerId, entry: HotEntry) -> u64 {
        let bytes = ENTRY_BYTES + entry.value.heap_bytes();
        let mut shard = self.shard(&id);
        let slot = Slot {
            entry,
            visited: false,
        };
        match shard.map.insert(id, slot) {
            Some(old) => shard.bytes -= ENTRY_BYTES + old.entry.value.heap_bytes(),
            None => shard.queue.push_back(id),
        }
        shard.bytes += bytes;
        let (budget, max_entries) = (self.budget, self.max_entries);
        shard.evict(budget, max_entries)
    }

    /// Drops every entry about these numbers (keyed hashes); returns how many.
    pub fn forget(&self, numbers: &HashSet<u64>) -> u64 {
        let mut forgotten = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let ids: Vec<AnswerId> = shard
                .map
                .keys()
                .filter(|id| numbers.contains(&id.number))
                .copied()
                .collect();
            for id in ids {
                shard.remove(&id);
                forgotten += 1;
            }
        }
        forgotten
    }

    /// What it holds.
    pub fn stats(&self) -> HotStats {
        self.shards.iter().fold(HotStats::default(), |acc, shard| {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            HotStats {
                entries: acc.entries + shard.map.len() as u64,
                bytes: acc.bytes + shard.bytes as u64,
            }
        })
    }
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fetched_at: u64) -> HotEntry {
        HotEntry {
            value: Compact::Line {
                status: 0,
                code: 0,
                description: 0,
            },
            fetched_at,
        }
    }

    fn id(i: u64) -> AnswerId {
        AnswerId {
            number: i,
            variant: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn bounded_by_bytes() {
        let budget = 1 << 20;
        let hot = HotTier::new(budget, None);
        for i in 0..100_000 {
            hot.insert(id(i), entry(0));
        }
        let stats = hot.stats();
        assert!(
            stats.bytes <= budget + (SHARDS * ENTRY_BYTES) as u64,
            "{stats:?}"
        );
        assert!(
            stats.entries >= budget / ENTRY_BYTES as u64 * 9 / 10,
            "{stats:?}"
        );
    }

    #[test]
    fn a_read_entry_gets_a_second_chance() {
        let hot = HotTier::new(u64::MAX, Some(SHARDS as u64 * 100));
        // Fill one shard: ids whose variant falls in shard 0.
        let mine: Vec<AnswerId> = (0..)
            .map(id)
            .filter(|i| (i.variant as usize).is_multiple_of(SHARDS))
            .take(150)
            .collect();
        hot.insert(mine[0], entry(0));
        for i in &mine[1..100] {
            hot.insert(*i, entry(0));
        }
        assert!(hot.get(&mine[0], 0, TTL).is_some());
        for i in &mine[100..150] {
            hot.insert(*i, entry(0));
        }
        assert!(hot.get(&mine[0], 0, TTL).is_some(), "read: kept");
        assert!(hot.get(&mine[1], 0, TTL).is_none(), "not read: gone first");
    }

    #[test]
    fn expired_and_forgotten_entries_are_gone() {
        let hot = HotTier::new(1 << 20, None);
        hot.insert(id(1), entry(1_000));
        hot.insert(id(2), entry(1_000));
        assert!(hot.get(&id(1), 1_000 + 59_999, TTL).is_some());
        assert!(hot.get(&id(1), 1_000 + 60_000, TTL).is_none());
        assert_eq!(hot.stats().entries, 1);
        assert_eq!(hot.forget(&HashSet::from([2])), 1);
        assert_eq!(hot.stats(), HotStats::default());
    }
}
