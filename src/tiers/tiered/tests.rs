use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::Semaphore as Gate;

use super::*;
use crate::cache::{CodecError, EntryTimes, Fingerprint};
use crate::tiers::MemoryTier;

/// How the scripted shared tier answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Works,
    Down,
    TimesOut,
    CommandError,
    Corrupt,
}

/// A shared tier whose answers the test chooses; writes wait for a gate the test opens.
struct Scripted {
    entries: StdMutex<HashMap<CacheKey, Arc<Entry>>>,
    mode: StdMutex<Mode>,
    calls: AtomicUsize,
    gate: Arc<Gate>,
}

impl Scripted {
    fn new() -> Self {
        Self {
            entries: StdMutex::default(),
            mode: StdMutex::new(Mode::Works),
            calls: AtomicUsize::new(0),
            gate: Arc::new(Gate::new(Gate::MAX_PERMITS)),
        }
    }

    fn answer(&self) -> Result<(), TierError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *self.mode.lock().unwrap() {
            Mode::Works => Ok(()),
            Mode::Down => Err(TierError::Unavailable("connection refused".into())),
            Mode::TimesOut => Err(TierError::Timeout),
            Mode::CommandError => Err(TierError::Command("WRONGTYPE".into())),
            Mode::Corrupt => Err(TierError::Corrupt(CodecError::Corrupt("test"))),
        }
    }
}

impl Tier for Arc<Scripted> {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Entry>>, TierError> {
        self.answer()?;
        Ok(self.entries.lock().unwrap().get(key).cloned())
    }

    async fn put(
        &self,
        key: &CacheKey,
        entry: Arc<Entry>,
        _ttl: Duration,
    ) -> Result<(), TierError> {
        drop(self.gate.acquire().await.unwrap());
        self.answer()?;
        self.entries.lock().unwrap().insert(*key, entry);
        Ok(())
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), TierError> {
        self.answer()?;
        self.entries.lock().unwrap().remove(key);
        Ok(())
    }
}

fn key(n: u8) -> CacheKey {
    CacheKey(Fingerprint([n; 32]))
}

fn entry(now: SystemTime, keep: Duration) -> Arc<Entry> {
    Arc::new(Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"hello"),
        partition: Fingerprint([0; 32]),
        tags: Vec::new(),
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + keep,
            stale_while_revalidate_until: now + keep,
            stale_if_error_until: now + keep,
            keep_until: now + keep,
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        },
    })
}

fn tiered(max_inflight_writes: usize) -> (Tiered<MemoryTier, Arc<Scripted>>, Arc<Scripted>) {
    let l2 = Arc::new(Scripted::new());
    let options = TieredOptions {
        max_inflight_writes,
        breaker: BreakerConfig {
            failure_threshold: 3,
            ..BreakerConfig::default()
        },
    };
    (
        Tiered::new(MemoryTier::new(1 << 20), Some(Arc::clone(&l2)), options),
        l2,
    )
}

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_shared_hit_is_promoted_into_memory() {
    let (tiered, l2) = tiered(8);
    let now = SystemTime::now();
    l2.entries
        .lock()
        .unwrap()
        .insert(key(1), entry(now, MINUTE));
    let (_, source) = tiered.get(&key(1), now).await.expect("in L2");
    assert_eq!(source, Source::Shared);
    let (_, source) = tiered.get(&key(1), now).await.expect("promoted");
    assert_eq!(source, Source::Memory);
    assert_eq!(
        l2.calls.load(Ordering::SeqCst),
        1,
        "the second lookup never reached L2"
    );
    assert_eq!(tiered.stats().l2_hits.load(Ordering::Relaxed), 1);
    assert!(tiered.get(&key(2), now).await.is_none());
    assert_eq!(tiered.stats().l2_misses.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn connection_faults_open_the_breaker_and_calls_skip_the_shared_tier() {
    for mode in [Mode::Down, Mode::TimesOut] {
        let (tiered, l2) = tiered(8);
        *l2.mode.lock().unwrap() = mode;
        let now = SystemTime::now();
        for _ in 0..3 {
            assert!(
                tiered.get(&key(1), now).await.is_none(),
                "{mode:?}: errors are misses"
            );
        }
        assert_eq!(
            tiered.stats().breaker_state(),
            BreakerState::Open,
            "{mode:?}"
        );
        assert_eq!(tiered.stats().l2_errors.load(Ordering::Relaxed), 3);
        assert!(tiered.get(&key(1), now).await.is_none());
        tiered.put(&key(1), entry(now, MINUTE), now).await;
        tiered.remove(&key(2)).await;
        tiered.flush().await;
        assert_eq!(
            l2.calls.load(Ordering::SeqCst),
            3,
            "{mode:?}: no call while open"
        );
        assert_eq!(tiered.stats().l2_skipped.load(Ordering::Relaxed), 3);
        assert!(tiered.get(&key(1), now).await.is_some(), "L1 still serves");
    }
}

#[tokio::test]
async fn command_errors_and_corrupt_blobs_do_not_open_the_breaker() {
    let (tiered, l2) = tiered(8);
    let now = SystemTime::now();
    *l2.mode.lock().unwrap() = Mode::CommandError;
    for _ in 0..5 {
        assert!(tiered.get(&key(1), now).await.is_none());
    }
    *l2.mode.lock().unwrap() = Mode::Corrupt;
    for _ in 0..5 {
        assert!(tiered.get(&key(1), now).await.is_none());
    }
    let stats = tiered.stats();
    assert_eq!(stats.breaker_state(), BreakerState::Closed);
    assert_eq!(stats.l2_errors.load(Ordering::Relaxed), 5);
    assert_eq!(stats.corrupt_blobs.load(Ordering::Relaxed), 5);
    assert_eq!(l2.calls.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn stores_reach_memory_at_once_and_the_shared_tier_in_the_background() {
    let (tiered, l2) = tiered(8);
    let now = SystemTime::now();
    let held = l2
        .gate
        .acquire_many(Gate::MAX_PERMITS as u32)
        .await
        .unwrap();
    tiered.put(&key(1), entry(now, MINUTE), now).await;
    assert_eq!(
        tiered.get(&key(1), now).await.map(|(_, s)| s),
        Some(Source::Memory)
    );
    assert!(
        l2.entries.lock().unwrap().is_empty(),
        "the L2 write is still held"
    );
    drop(held);
    tiered.flush().await;
    assert!(l2.entries.lock().unwrap().contains_key(&key(1)));
}

#[tokio::test]
async fn writes_beyond_the_in_flight_bound_are_dropped_and_counted() {
    let (tiered, l2) = tiered(2);
    let now = SystemTime::now();
    let held = l2
        .gate
        .acquire_many(Gate::MAX_PERMITS as u32)
        .await
        .unwrap();
    for n in 0..5 {
        tiered.put(&key(n), entry(now, MINUTE), now).await;
    }
    assert_eq!(tiered.stats().dropped_writes.load(Ordering::Relaxed), 3);
    drop(held);
    tiered.flush().await;
    assert_eq!(l2.entries.lock().unwrap().len(), 2);
    for n in 0..5 {
        assert!(
            tiered.get(&key(n), now).await.is_some(),
            "every entry is in memory"
        );
    }
}

#[tokio::test]
async fn put_through_waits_for_the_shared_tier() {
    let (tiered, l2) = tiered(8);
    let now = SystemTime::now();
    assert!(tiered.put_through(&key(1), entry(now, MINUTE), now).await);
    assert!(l2.entries.lock().unwrap().contains_key(&key(1)));
    *l2.mode.lock().unwrap() = Mode::Down;
    assert!(!tiered.put_through(&key(2), entry(now, MINUTE), now).await);
    assert!(
        !tiered
            .put_through(&key(3), entry(now, Duration::ZERO), now)
            .await,
        "zero keep"
    );
}

#[tokio::test]
async fn without_a_shared_tier_memory_works_alone() {
    let tiered: Tiered<MemoryTier, Arc<Scripted>> = Tiered::new(
        MemoryTier::new(1 << 20),
        None,
        TieredOptions {
            max_inflight_writes: 8,
            breaker: BreakerConfig::default(),
        },
    );
    let now = SystemTime::now();
    assert!(tiered.get(&key(1), now).await.is_none());
    tiered.put(&key(1), entry(now, MINUTE), now).await;
    assert_eq!(
        tiered.get(&key(1), now).await.map(|(_, s)| s),
        Some(Source::Memory)
    );
    assert!(!tiered.put_through(&key(2), entry(now, MINUTE), now).await);
    tiered.remove(&key(1)).await;
    assert!(tiered.get(&key(1), now).await.is_none());
    assert!(tiered.shared().is_none());
}

#[tokio::test]
async fn expired_entries_are_neither_stored_nor_promoted() {
    let (tiered, l2) = tiered(8);
    let now = SystemTime::now();
    tiered.put(&key(1), entry(now, Duration::ZERO), now).await;
    tiered.flush().await;
    assert!(l2.entries.lock().unwrap().is_empty());
    l2.entries
        .lock()
        .unwrap()
        .insert(key(2), entry(now, MINUTE));
    let later = now + MINUTE * 2;
    assert_eq!(
        tiered.get(&key(2), later).await.map(|(_, s)| s),
        Some(Source::Shared)
    );
    assert_eq!(
        tiered.get(&key(2), later).await.map(|(_, s)| s),
        Some(Source::Shared),
        "not promoted"
    );
}

#[tokio::test]
async fn an_epoch_change_clears_memory_but_the_first_epoch_does_not() {
    let (tiered, _l2) = tiered(8);
    let now = SystemTime::now();
    let (epochs, changes) = watch::channel(None);
    let task = tiered.clear_on_epoch_change(changes);
    tiered.put(&key(1), entry(now, MINUTE), now).await;

    epochs.send(Some(Epoch([1; 16]))).unwrap();
    epochs.send(Some(Epoch([1; 16]))).unwrap();
    tokio::task::yield_now().await;
    assert!(
        tiered.get(&key(1), now).await.is_some(),
        "first epoch: nothing to clear"
    );

    epochs.send(Some(Epoch([2; 16]))).unwrap();
    for _ in 0..1000 {
        if tiered.stats().epoch_clears.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(tiered.stats().epoch_clears.load(Ordering::Relaxed), 1);
    let in_memory = tiered.memory().get(&key(1)).await.unwrap();
    assert!(in_memory.is_none(), "memory cleared");
    drop(epochs);
    task.await.unwrap();
}
