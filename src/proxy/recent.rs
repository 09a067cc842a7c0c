//! [`RecentKeys`]: keys remembered until a time — hit-for-miss records and refresh backoffs.
//!
//! A fixed-size, direct-mapped table: a key has one slot, a newer key mapped to the same slot
//! replaces it. Forgetting is always safe here (a forgotten hit-for-miss key costs one
//! coalesced wait, a forgotten backoff one refresh attempt), and it makes a record a lock, a
//! compare and a store: the miss path records one for every not-storable response, and a
//! general-purpose cache (moka) there cost 16 % of the proxy's CPU per miss.
//!
//! Keys are BLAKE3 hashes of what clients send; slots are picked from them mixed with a
//! per-process random seed, so nobody can aim keys at another key's slot.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::CacheKey;

/// Slots per lock; a power of two.
const SLOTS_PER_STRIPE: usize = 512;
/// Locks; a power of two. 64 × 512 = 32 768 slots of 40 bytes, 1.25 MiB.
const STRIPES: usize = 64;

/// One remembered key; `until_ms == 0` is an empty slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: CacheKey,
    /// Milliseconds since the Unix epoch, by the proxy's clock.
    until_ms: u64,
}

const EMPTY: Slot = Slot {
    key: CacheKey(crate::cache::Fingerprint([0; 32])),
    until_ms: 0,
};

/// Keys with a time until which they count; lossy, bounded, cheap.
pub(crate) struct RecentKeys {
    stripes: Box<[Mutex<Box<[Slot]>>]>,
    seed: u64,
}

impl std::fmt::Debug for RecentKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentKeys")
            .field("slots", &(STRIPES * SLOTS_PER_STRIPE))
            .finish_non_exhaustive()
    }
}

impl RecentKeys {
    /// An empty table whose slot placement is mixed with `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        let stripes = (0..STRIPES)
            .map(|_| Mutex::new(vec![EMPTY; SLOTS_PER_STRIPE].into_boxed_slice()))
            .collect();
        Self { stripes, seed }
    }

    /// Remembers `key` until `until`, replacing whatever its slot held.
    pub(crate) fn insert(&self, key: CacheKey, until: SystemTime) {
        let (mut stripe, index) = self.slot(&key);
        // At least 1: zero marks an empty slot, and a time before 1970 has passed anyway.
        stripe[index] = Slot {
            key,
            until_ms: unix_ms(until).max(1),
        };
    }

    /// The time `key` is remembered until, if it is still held (not replaced nor removed).
    pub(crate) fn until(&self, key: &CacheKey) -> Option<SystemTime> {
        let (stripe, index) = self.slot(key);
        let slot = stripe[index];
        (slot.until_ms != 0 && slot.key == *key)
            .then(|| UNIX_EPOCH + Duration::from_millis(slot.until_ms))
    }

    /// Whether `key` is remembered for a time after `now`.
    pub(crate) fn holds(&self, key: &CacheKey, now: SystemTime) -> bool {
        self.until(key).is_some_and(|until| until > now)
    }

    /// Forgets `key`.
    pub(crate) fn remove(&self, key: &CacheKey) {
        let (mut stripe, index) = self.slot(key);
        if stripe[index].key == *key {
            stripe[index] = EMPTY;
        }
    }

    /// The locked stripe holding `key`'s slot, and the slot's index in it.
    fn slot(&self, key: &CacheKey) -> (MutexGuard<'_, Box<[Slot]>>, usize) {
        let (stripe, index) = self.place(key);
        let stripe = self.stripes[stripe]
            .lock()
            // A slot is written whole; a panic elsewhere cannot leave one half-written.
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (stripe, index)
    }

    /// `key`'s stripe and slot: the top bits of a multiplicative hash of its first 8 bytes
    /// mixed with the seed (they depend on every bit of the word).
    fn place(&self, key: &CacheKey) -> (usize, usize) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&key.0.0[..8]);
        let mixed = (u64::from_le_bytes(word) ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let stripe_bits = STRIPES.trailing_zeros();
        let slot_bits = SLOTS_PER_STRIPE.trailing_zeros();
        let top = |bits: u32, skip: u32| {
            usize::try_from((mixed << skip) >> (64 - bits)).unwrap_or_default()
        };
        (top(stripe_bits, 0), top(slot_bits, stripe_bits))
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Fingerprint;

    fn key(n: u64) -> CacheKey {
        CacheKey(Fingerprint(*blake3::hash(&n.to_le_bytes()).as_bytes()))
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn a_key_is_held_until_its_time_then_not() {
        let recent = RecentKeys::new(7);
        recent.insert(key(1), at(10));
        assert!(recent.holds(&key(1), at(9)));
        assert!(!recent.holds(&key(1), at(10)));
        assert_eq!(recent.until(&key(1)), Some(at(10)));
        assert!(!recent.holds(&key(2), at(0)), "never inserted");
    }

    #[test]
    fn removed_keys_are_forgotten_and_removing_another_key_changes_nothing() {
        let recent = RecentKeys::new(7);
        recent.insert(key(1), at(10));
        recent.remove(&key(2));
        assert!(recent.holds(&key(1), at(0)));
        recent.remove(&key(1));
        assert!(!recent.holds(&key(1), at(0)));
        assert_eq!(recent.until(&key(1)), None);
    }

    #[test]
    fn a_newer_key_in_the_same_slot_replaces_the_older_and_never_answers_for_it() {
        let recent = RecentKeys::new(7);
        let first = key(0);
        let rival = (1..1_000_000)
            .map(key)
            .find(|k| recent.place(k) == recent.place(&first))
            .expect("a key sharing the slot among 10^6");
        recent.insert(first, at(10));
        recent.insert(rival, at(20));
        assert!(!recent.holds(&first, at(0)), "replaced");
        assert_eq!(recent.until(&rival), Some(at(20)));
        recent.remove(&first);
        assert!(
            recent.holds(&rival, at(0)),
            "removing the replaced key keeps the rival"
        );
    }

    #[test]
    fn the_table_keeps_many_keys_at_once() {
        let recent = RecentKeys::new(7);
        let n = 10_000;
        for i in 0..n {
            recent.insert(key(i), at(10));
        }
        let held = (0..n).filter(|&i| recent.holds(&key(i), at(0))).count();
        // 10^4 keys in 32 768 slots: about 86 % survive their neighbours.
        assert!(held > 8_000, "{held} of {n} held");
    }

    #[test]
    fn the_seed_moves_keys_between_slots() {
        let a = RecentKeys::new(1);
        let b = RecentKeys::new(2);
        let moved = (0..100)
            .filter(|&i| a.place(&key(i)) != b.place(&key(i)))
            .count();
        assert!(moved > 90, "{moved} of 100 keys moved");
    }
}
