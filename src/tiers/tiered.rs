//! [`Tiered`]: the memory tier (L1) in front of an optional shared tier (L2). Lookups try L1,
//! then L2, and promote an L2 hit into L1; stores write L1 at once and L2 off the caller's
//! path. The shared tier sits behind a circuit breaker, and its errors stop here: they are
//! counted, fed to the breaker and answered as misses.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::breaker::{Breaker, BreakerConfig, BreakerState};
use super::{Tier, TierError};
use crate::cache::{CacheKey, Entry, Epoch};

/// Where a lookup found its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The in-process tier.
    Memory,
    /// The shared tier (`detail=shared`); the entry is now in memory too.
    Shared,
}

/// Counters of the tiered cache, for metrics and `/readyz`.
#[derive(Debug, Default)]
pub struct TierStats {
    pub l2_hits: AtomicU64,
    pub l2_misses: AtomicU64,
    /// Connection faults and command errors of the shared tier (corrupt blobs not included).
    pub l2_errors: AtomicU64,
    /// Shared-tier calls not made because the breaker was open.
    pub l2_skipped: AtomicU64,
    /// Shared-tier writes dropped because `max_inflight_writes` were already running.
    pub dropped_writes: AtomicU64,
    /// Blobs that could not be decoded (misses; deleted from the shared tier).
    pub corrupt_blobs: AtomicU64,
    /// Times the memory tier was cleared because the shared tier lost its data.
    pub epoch_clears: AtomicU64,
    /// Time spent in shared-tier reads (microseconds), and how many were timed.
    pub l2_get_micros: AtomicU64,
    pub l2_gets_timed: AtomicU64,
    breaker: AtomicU8,
}

impl TierStats {
    /// The shared tier's breaker state (closed when there is no shared tier).
    pub fn breaker_state(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How the tiered cache treats its shared tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredOptions {
    /// Shared-tier writes running at once; beyond this, writes are dropped and counted.
    pub max_inflight_writes: usize,
    pub breaker: BreakerConfig,
}

/// The `max_inflight_writes` default of `[cache.redis]`: enough for bursts of fills, small
/// enough that a slow Redis cannot pile up unbounded memory in pending writes.
pub const DEFAULT_MAX_INFLIGHT_WRITES: usize = 1024;

impl Default for TieredOptions {
    fn default() -> Self {
        Self {
            max_inflight_writes: DEFAULT_MAX_INFLIGHT_WRITES,
            breaker: BreakerConfig::default(),
        }
    }
}

/// The shared tier with its breaker; shared with the write tasks.
struct Shared<L2> {
    tier: L2,
    // A std mutex: held for a few comparisons, never across an await.
    breaker: Mutex<Breaker>,
    stats: Arc<TierStats>,
}

impl<L2: Tier> Shared<L2> {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the breaker; counts a skipped call.
    fn allow(&self) -> bool {
        let mut breaker = self.breaker();
        let allowed = breaker.allow(Instant::now());
        self.stats
            .breaker
            .store(breaker.state() as u8, Ordering::Relaxed);
        if !allowed {
            TierStats::bump(&self.stats.l2_skipped);
        }
        allowed
    }

    /// Feeds a call's outcome to the breaker and the counters.
    fn record<T>(&self, key: &CacheKey, op: &'static str, result: &Result<T, TierError>) {
        let now = Instant::now();
        let mut breaker = self.breaker();
        match result {
            Err(error) if error.is_connection_fault() => breaker.on_failure(now),
            _ => breaker.on_success(now),
        }
        self.stats
            .breaker
            .store(breaker.state() as u8, Ordering::Relaxed);
        drop(breaker);
        match result {
            Err(TierError::Corrupt(_)) => TierStats::bump(&self.stats.corrupt_blobs),
            Err(error) => {
                TierStats::bump(&self.stats.l2_errors);
                tracing::debug!(%key, op, %error, "shared tier call failed; treated as a miss");
            }
            Ok(_) => {}
        }
    }

    /// Writes through the breaker; whether the shared tier now holds the entry.
    async fn write(&self, key: &CacheKey, entry: Arc<Entry>, ttl: std::time::Duration) -> bool {
        if !self.allow() {
            return false;
        }
        let result = self.tier.put(key, entry, ttl).await;
        self.record(key, "put", &result);
        result.is_ok()
    }
}

/// L1 in front of an optional L2 (`None`: the proxy runs on its memory tier alone).
pub struct Tiered<L1, L2> {
    l1: Arc<L1>,
    l2: Option<Arc<Shared<L2>>>,
    writes: Arc<Semaphore>,
    max_inflight_writes: u32,
    stats: Arc<TierStats>,
    /// Cleared while this instance is not in sync with the shared tier's purges: its entries
    /// are not read then (DESIGN.md "Never backwards, never resurrected").
    shared_reads: Arc<AtomicBool>,
}

impl<L1, L2> fmt::Debug for Tiered<L1, L2> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tiered")
            .field("shared", &self.l2.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<L1: Tier, L2: Tier> Tiered<L1, L2> {
    /// Puts `l1` in front of `l2`.
    pub fn new(l1: L1, l2: Option<L2>, options: TieredOptions) -> Self {
        let max_inflight_writes =
            u32::try_from(options.max_inflight_writes.min(Semaphore::MAX_PERMITS))
                .unwrap_or(u32::MAX);
        let stats = Arc::new(TierStats::default());
        let l2 = l2.map(|tier| {
            Arc::new(Shared {
                tier,
                breaker: Mutex::new(Breaker::new(options.breaker)),
                stats: Arc::clone(&stats),
            })
        });
        Self {
            l1: Arc::new(l1),
            l2,
            writes: Arc::new(Semaphore::new(max_inflight_writes as usize)),
            max_inflight_writes,
            stats,
            shared_reads: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the shared tier is there and its breaker closed: callers that talk to Redis
    /// outside this type (fill leases) skip it otherwise, adding no Redis latency.
    pub fn shared_available(&self) -> bool {
        self.l2.is_some() && self.stats.breaker_state() == BreakerState::Closed
    }

    /// The switch that allows or stops reads from the shared tier (writes go on).
    pub fn shared_reads(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared_reads)
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TierStats> {
        &self.stats
    }

    /// The memory tier.
    pub fn memory(&self) -> &L1 {
        &self.l1
    }

    /// The shared tier, if there is one.
    pub fn shared(&self) -> Option<&L2> {
        self.l2.as_deref().map(|shared| &shared.tier)
    }

    /// The memory tier's entry under `key` when it can answer without waiting (one poll of its
    /// read): the hit path needs no task state of its own then. `None` when it has none, fails
    /// or would wait; [`Tiered::get`] is the whole lookup.
    pub fn memory_now(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.l1.get(key).now_or_never()?.ok().flatten()
    }

    /// The entry under `key` and where it was found: L1, else L2 when the breaker allows (an L2
    /// hit is promoted into L1 for its remaining keep time at `now`). Errors are misses.
    pub async fn get(&self, key: &CacheKey, now: SystemTime) -> Option<(Arc<Entry>, Source)> {
        match self.l1.get(key).await {
            Ok(Some(entry)) => return Some((entry, Source::Memory)),
            Ok(None) => {}
            Err(error) => tracing::debug!(%key, %error, "memory tier read failed"),
        }
        let shared = self.l2.as_ref()?;
        if !self.shared_reads.load(Ordering::Acquire) || !shared.allow() {
            return None;
        }
        let started = Instant::now();
        let result = shared.tier.get(key).await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats
            .l2_get_micros
            .fetch_add(micros, Ordering::Relaxed);
        TierStats::bump(&self.stats.l2_gets_timed);
        shared.record(key, "get", &result);
        let Ok(Some(entry)) = result else {
            if matches!(result, Ok(None)) {
                TierStats::bump(&self.stats.l2_misses);
            }
            return None;
        };
        TierStats::bump(&self.stats.l2_hits);
        let keep = entry.keep_for(now);
        if !keep.is_zero() {
            if let Err(error) = self.l1.put(key, Arc::clone(&entry), keep).await {
                tracing::debug!(%key, %error, "promotion into the memory tier failed");
            }
        }
        Some((entry, Source::Shared))
    }

    /// Stores `entry` for its keep time at `now`: in L1 now, in L2 from a background task. The
    /// caller never waits for L2; when `max_inflight_writes` are running the L2 write is
    /// dropped and counted.
    pub async fn put(&self, key: &CacheKey, entry: Arc<Entry>, now: SystemTime) {
        let ttl = entry.keep_for(now);
        if ttl.is_zero() {
            return;
        }
        if let Err(error) = self.l1.put(key, Arc::clone(&entry), ttl).await {
            tracing::debug!(%key, %error, "memory tier write failed");
        }
        let Some(shared) = &self.l2 else { return };
        let Ok(permit) = Arc::clone(&self.writes).try_acquire_owned() else {
            TierStats::bump(&self.stats.dropped_writes);
            tracing::debug!(%key, "shared tier write dropped: too many in flight");
            return;
        };
        let shared = Arc::clone(shared);
        let key = *key;
        tokio::spawn(async move {
            shared.write(&key, entry, ttl).await;
            drop(permit);
        });
    }

    /// Stores `entry` in L1 and waits for the L2 write (a lease holder writes before it
    /// publishes). Whether the shared tier now holds the entry (`false` without one).
    pub async fn put_through(&self, key: &CacheKey, entry: Arc<Entry>, now: SystemTime) -> bool {
        let ttl = entry.keep_for(now);
        if ttl.is_zero() {
            return false;
        }
        if let Err(error) = self.l1.put(key, Arc::clone(&entry), ttl).await {
            tracing::debug!(%key, %error, "memory tier write failed");
        }
        match &self.l2 {
            Some(shared) => shared.write(key, entry, ttl).await,
            None => false,
        }
    }

    /// Forgets `key` in both tiers (L2 when the breaker allows).
    pub async fn remove(&self, key: &CacheKey) {
        if let Err(error) = self.l1.remove(key).await {
            tracing::debug!(%key, %error, "memory tier remove failed");
        }
        if let Some(shared) = self.l2.as_ref().filter(|shared| shared.allow()) {
            let result = shared.tier.remove(key).await;
            shared.record(key, "remove", &result);
        }
    }

    /// Waits until every background L2 write started so far has finished (for tests and
    /// shutdown).
    pub async fn flush(&self) {
        if let Ok(all) = self.writes.acquire_many(self.max_inflight_writes).await {
            drop(all);
        }
    }

    /// Clears L1 whenever `changes` moves from one epoch to another (the shared tier lost its
    /// data, so what was cached from it may have been purged since). The task ends when the
    /// sender is dropped.
    pub fn clear_on_epoch_change(
        &self,
        mut changes: watch::Receiver<Option<Epoch>>,
    ) -> JoinHandle<()> {
        let l1 = Arc::clone(&self.l1);
        let stats = Arc::clone(&self.stats);
        let mut last = *changes.borrow_and_update();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let current = *changes.borrow_and_update();
                if let (Some(old), Some(new)) = (last, current) {
                    if old != new {
                        l1.clear().await;
                        TierStats::bump(&stats.epoch_clears);
                        tracing::warn!(%old, %new, "memory tier cleared: the shared tier lost its data");
                    }
                }
                last = current.or(last);
            }
        })
    }
}

#[cfg(test)]
mod tests;
