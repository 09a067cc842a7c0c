//! The in-process tier: a moka cache weighed in bytes, each entry expiring at its keep time,
//! with a cap on the share of the budget any one partition may hold (per-tenant fairness).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::{Tier, TierError};
use crate::cache::{CacheKey, Entry, Fingerprint};

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

/// Bytes held per partition, kept by inserts and moka's removal notifications.
// A std mutex: held for a map update, never across an await.
type Usage = Arc<Mutex<HashMap<Fingerprint, u64>>>;

/// The L1 tier. Cloning shares the same cache.
#[derive(Clone)]
pub struct MemoryTier {
    cache: Cache<CacheKey, Slot>,
    usage: Usage,
    /// Most bytes one partition may hold; `u64::MAX` when unlimited.
    partition_cap: u64,
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
        Self::with_partition_share(max_bytes, 1.0)
    }

    /// A tier holding at most `max_bytes`, of which one partition may hold at most
    /// `max_share` (`tenant_max_share`): a noisy tenant's new entries skip memory once it is
    /// over, so it cannot evict everyone else's hot keys.
    pub fn with_partition_share(max_bytes: u64, max_share: f64) -> Self {
        let usage: Usage = Arc::default();
        let released = Arc::clone(&usage);
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, slot: &Slot| slot.entry.weight())
            .expire_after(SlotExpiry)
            .eviction_listener(move |_key, slot: Slot, _cause| {
                let mut usage = released.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bytes) = usage.get_mut(&slot.entry.partition) {
                    *bytes = bytes.saturating_sub(u64::from(slot.entry.weight()));
                    if *bytes == 0 {
                        usage.remove(&slot.entry.partition);
                    }
                }
            })
            .build();
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
            cache,
            usage,
            partition_cap,
        }
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
        if ttl.is_zero() {
            return Ok(());
        }
        let weight = u64::from(entry.weight());
        {
            let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
            let held = usage.entry(entry.partition).or_default();
            if held.saturating_add(weight) > self.partition_cap {
                tracing::debug!(%key, partition = %entry.partition.short(), "partition over its memory share; not kept in memory");
                return Ok(());
            }
            *held += weight;
        }
        self.cache.insert(*key, Slot { entry, ttl }).await;
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
