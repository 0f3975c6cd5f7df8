//! Which answers the store may hold: a Bloom filter over answer ids, so that a number never paid
//! for (every number of a new list) costs no disk read. A "no" is certain; a "maybe" costs one
//! read. Answers that leave the store (purged, forgotten) keep their bits until the next start,
//! which only makes more "maybe"s.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::hot::AnswerId;

/// 2^26 bits (8 MiB): one false "maybe" in about 7,000 misses at a million stored answers, one in
/// 20 at ten million.
const BITS_LOG2: u32 = 26;
const HASHES: u64 = 3;

/// The filter.
pub struct Presence {
    words: Box<[AtomicU64]>,
    /// False until the store's existing answers are all in: until then everything is a "maybe".
    ready: AtomicBool,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Presence {
    fn default() -> Self {
        Presence {
            words: (0..1usize << (BITS_LOG2 - 6))
                .map(|_| AtomicU64::new(0))
                .collect(),
            ready: AtomicBool::new(false),
        }
    }
}

impl Presence {
    /// A filter that holds nothing and takes no memory (no store: never asked).
    pub fn empty() -> Presence {
        Presence {
            words: Box::new([]),
            ready: AtomicBool::new(false),
        }
    }

    fn positions(id: &AnswerId) -> impl Iterator<Item = u64> {
        // Double hashing over the two (independent, keyed) halves of the id.
        let (a, b) = (id.variant, id.number | 1);
        (0..HASHES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) & ((1 << BITS_LOG2) - 1))
    }

    /// Notes that the store holds (or is about to hold) `id`.
    pub fn insert(&self, id: &AnswerId) {
        if self.words.is_empty() {
            return;
        }
        for bit in Self::positions(id) {
            self.words[(bit >> 6) as usize].fetch_or(1 << (bit & 63), Ordering::Relaxed);
        }
    }

    /// False only when the store certainly does not hold `id`.
    pub fn may_hold(&self, id: &AnswerId) -> bool {
        !self.ready.load(Ordering::Acquire)
            || Self::positions(id).all(|bit| {
                self.words[(bit >> 6) as usize].load(Ordering::Relaxed) & (1 << (bit & 63)) != 0
            })
    }

    /// Every answer the store held at start-up is in: "no" may now be said.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_is_certain_and_maybe_is_rare() {
        let presence = Presence::default();
        let id = |i: u64| AnswerId {
            number: i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            variant: i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(17),
        };
        assert!(presence.may_hold(&id(1)), "not ready: maybe");
        for i in 0..100_000 {
            presence.insert(&id(i));
        }
        presence.set_ready();
        assert!((0..100_000).all(|i| presence.may_hold(&id(i))));
        let false_maybes = (100_000..200_000)
            .filter(|&i| presence.may_hold(&id(i)))
            .count();
        assert!(false_maybes < 10, "{false_maybes}");
    }
}
