//! The in-process tier: a moka cache weighed in bytes, each entry expiring at its keep time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::{Tier, TierError};
use crate::cache::{CacheKey, Entry};

/// Entry with the duration it was inserted for; moka reads the expiry from it.
#[derive(Clone)]
struct Slot {
    entry: Arc<Entry>,
    ttl: Duration,
}

struct SlotExpiry;

impl Expiry<CacheKey, Slot> for SlotExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        slot: &Slot,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        slot: &Slot,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(slot.ttl)
    }
}

/// The L1 tier. Cloning shares the same cache.
#[derive(Clone)]
pub struct MemoryTier {
    cache: Cache<CacheKey, Slot>,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.entry_count())
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

impl MemoryTier {
    /// A tier holding at most `max_bytes` of entries (by [`Entry::weight`]).
    pub fn new(max_bytes: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, slot: &Slot| slot.entry.weight())
            .expire_after(SlotExpiry)
            .build();
        Self { cache }
    }

    /// Bytes currently held (moka's weighted size; eventually consistent).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Number of entries (eventually consistent).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies moka's pending evictions and counts; for tests and metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

impl Tier for MemoryTier {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Entry>>, TierError> {
        Ok(self.cache.get(key).await.map(|slot| slot.entry))
    }

    async fn put(&self, key: &CacheKey, entry: Arc<Entry>, ttl: Duration) -> Result<(), TierError> {
        if !ttl.is_zero() {
            self.cache.insert(*key, Slot { entry, ttl }).await;
        }
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), TierError> {
        self.cache.invalidate(key).await;
        Ok(())
    }

    async fn clear(&self) {
        // Entries inserted before this call are invisible at once; moka frees them lazily.
        self.cache.invalidate_all();
    }
}
