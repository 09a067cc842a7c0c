//! The in-process tier: a quick_cache (S3-FIFO) cache weighed in bytes, each entry kept until
//! its keep time, with a cap on the share of the budget any one partition may hold
//! (per-tenant fairness).
//!
//! A read is a hash lookup under a shard's read lock and one clock read; there is no
//! background work. An entry past its keep time is never answered: the read that meets it
//! removes it, and [`MemoryTier::remove_expired`] (run before each metrics scrape) sweeps the
//! ones nobody asks for. Until then they count against the budget like any other entry, so
//! memory stays bounded by `memory_max_bytes` either way.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use super::{Tier, TierError};
use crate::cache::{CacheKey, Entry, Fingerprint, body_weight};

/// An entry, the instant it stops being kept, and its weight (read on every eviction step, so
/// computed once).
#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    expires: Instant,
    weight: u32,
}

#[derive(Clone)]
struct SlotWeight;

impl Weighter<CacheKey, Slot> for SlotWeight {
    fn weight(&self, _key: &CacheKey, slot: &Slot) -> u64 {
        u64::from(slot.weight)
    }
}

/// Bytes held per partition, kept by inserts, removals and the cache's eviction hook.
// A std mutex: held for a map update, never across an await.
type Usage = Arc<Mutex<HashMap<Fingerprint, u64>>>;

fn release(usage: &Usage, slots: impl IntoIterator<Item = (Fingerprint, u32)>) {
    let mut usage = usage.lock().unwrap_or_else(|p| p.into_inner());
    for (partition, weight) in slots {
        if let Some(bytes) = usage.get_mut(&partition) {
            *bytes = bytes.saturating_sub(u64::from(weight));
            if *bytes == 0 {
                usage.remove(&partition);
            }
        }
    }
}

/// Gives a partition its bytes back when the cache lets go of one of its entries: evicted,
/// replaced under the same key, or refused as too large for a shard.
#[derive(Clone)]
struct Released(Usage);

impl Lifecycle<CacheKey, Slot> for Released {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: CacheKey, slot: Slot) {
        release(&self.0, [(slot.entry.partition, slot.weight)]);
    }
}

type Inner = Cache<CacheKey, Slot, SlotWeight, DefaultHashBuilder, Released>;

/// Headroom over the largest body for its headers and bookkeeping in [`Entry::weight`].
const ENTRY_HEADROOM: u64 = 64 * 1024;

/// The L1 tier. Cloning shares the same cache.
#[derive(Clone)]
pub struct MemoryTier {
    cache: Arc<Inner>,
    usage: Usage,
    /// Most bytes one partition may hold; `u64::MAX` when unlimited.
    partition_cap: u64,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .field("shards", &self.cache.num_shards())
            .finish()
    }
}

impl MemoryTier {
    /// A tier holding at most `max_bytes` of entries (by [`Entry::weight`]).
    pub fn new(max_bytes: u64) -> Self {
        Self::with_limits(max_bytes, 0, 1.0)
    }

    /// A tier holding at most `max_bytes`, able to hold an entry with a body of
    /// `largest_object` bytes, of which one partition may hold at most `max_share`
    /// (`tenant_max_share`): a noisy tenant's new entries skip memory once it is over, so it
    /// cannot evict everyone else's hot keys.
    pub fn with_limits(max_bytes: u64, largest_object: u64, max_share: f64) -> Self {
        let usage: Usage = Arc::default();
        let options = OptionsBuilder::new()
            .weight_capacity(max_bytes)
            .estimated_items_capacity(estimated_items(max_bytes))
            .shards(shards(max_bytes, largest_object))
            .build()
            .unwrap_or_else(|_| unreachable!("both required options are set"));
        let cache = Cache::with_options(
            options,
            SlotWeight,
            DefaultHashBuilder::default(),
            Released(Arc::clone(&usage)),
        );
        let partition_cap = if max_share >= 1.0 {
            u64::MAX
        } else {
            // The share of a byte budget; the float's precision is ample for a cap.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a share of a byte budget, clamped to it"
            )]
            let cap = (max_bytes as f64 * max_share.max(0.0)) as u64;
            cap
        };
        Self {
            cache: Arc::new(cache),
            usage,
            partition_cap,
        }
    }

    /// Bytes currently held, expired entries not yet swept included.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weight()
    }

    /// Number of entries, expired entries not yet swept included.
    pub fn entry_count(&self) -> u64 {
        self.cache.len() as u64
    }

    /// Removes every entry past its keep time; run before each metrics scrape so the figures
    /// count live entries. One pass over each shard under its write lock.
    pub fn remove_expired(&self) {
        let now = Instant::now();
        let released = RefCell::new(Vec::new());
        self.cache.retain(|_, slot| {
            let keep = slot.expires > now;
            if !keep {
                released
                    .borrow_mut()
                    .push((slot.entry.partition, slot.weight));
            }
            keep
        });
        release(&self.usage, released.into_inner());
    }
}

/// Roughly how many entries the budget holds (quick_cache sizes its tables and bounds its
/// shard count by it); an order of magnitude off is fine.
fn estimated_items(max_bytes: u64) -> usize {
    usize::try_from(max_bytes / (8 * 1024))
        .unwrap_or(usize::MAX)
        .clamp(64, 1 << 18)
}

/// Shards let threads read and write in parallel, but each holds an equal part of the budget
/// and an entry must fit in one: as many as quick_cache's default (4 per core) while a shard
/// still holds the largest object.
fn shards(max_bytes: u64, largest_object: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = (cores * 4).next_power_of_two();
    let needed = body_weight(largest_object).saturating_add(ENTRY_HEADROOM);
    // quick_cache refuses an entry over 97 % of its shard's budget (its hot allocation).
    while shards > 1 && (max_bytes / shards as u64) / 100 * 97 < needed {
        shards /= 2;
    }
    shards
}

impl Tier for MemoryTier {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Entry>>, TierError> {
        let Some(slot) = self.cache.get(key) else {
            return Ok(None);
        };
        let now = Instant::now();
        if slot.expires > now {
            return Ok(Some(slot.entry));
        }
        if let Some((_, gone)) = self.cache.remove_if(key, |s| s.expires <= now) {
            release(&self.usage, [(gone.entry.partition, gone.weight)]);
        }
        Ok(None)
    }

    async fn put(&self, key: &CacheKey, entry: Arc<Entry>, ttl: Duration) -> Result<(), TierError> {
        if ttl.is_zero() {
            return Ok(());
        }
        let Some(expires) = Instant::now().checked_add(ttl) else {
            return Ok(());
        };
        let weight = entry.weight();
        {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            let held = usage.entry(entry.partition).or_default();
            if held.saturating_add(u64::from(weight)) > self.partition_cap {
                tracing::debug!(%key, partition = %entry.partition.short(), "partition over its memory share; not kept in memory");
                return Ok(());
            }
            *held += u64::from(weight);
        }
        // The entry it replaces, or this one when no shard can hold it, comes back through
        // `Released`.
        self.cache.insert(
            *key,
            Slot {
                entry,
                expires,
                weight,
            },
        );
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), TierError> {
        if let Some((_, gone)) = self.cache.remove(key) {
            release(&self.usage, [(gone.entry.partition, gone.weight)]);
        }
        Ok(())
    }

    async fn clear(&self) {
        let drained: Vec<_> = self
            .cache
            .drain()
            .map(|(_, slot)| (slot.entry.partition, slot.weight))
            .collect();
        release(&self.usage, drained);
    }
}

#[cfg(test)]
mod tests;
