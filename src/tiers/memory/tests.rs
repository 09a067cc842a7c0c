use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::MemoryTier;
use crate::cache::{CacheKey, Entry, EntryTimes, Fingerprint};
use crate::tiers::Tier;

const DAY: Duration = Duration::from_secs(86_400);

fn key(i: u32) -> CacheKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    CacheKey(Fingerprint(bytes))
}

fn entry(partition: u8, body_bytes: usize) -> Arc<Entry> {
    let now = SystemTime::now();
    Arc::new(Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from(vec![b'x'; body_bytes]),
        partition: Fingerprint([partition; 32]),
        tags: Vec::new(),
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + DAY,
            stale_while_revalidate_until: now + DAY,
            stale_if_error_until: now + DAY,
            keep_until: now + DAY,
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        },
    })
}

async fn held(tier: &MemoryTier, key: &CacheKey) -> bool {
    tier.get(key)
        .await
        .expect("the memory tier does not fail")
        .is_some()
}

/// The partition bytes the tier accounts for, summed: must equal what the cache holds.
fn accounted(tier: &MemoryTier) -> u64 {
    tier.usage.lock().expect("usage lock").values().sum()
}

#[tokio::test]
async fn an_entry_is_answered_until_its_keep_time_and_never_after() {
    let tier = MemoryTier::new(1 << 20);
    tier.put(&key(1), entry(0, 100), DAY).await.expect("put");
    tier.put(&key(2), entry(0, 100), Duration::from_millis(1))
        .await
        .expect("put");
    // The passage of time is what is tested; there is no event to wait for.
    std::thread::sleep(Duration::from_millis(5));
    assert!(held(&tier, &key(1)).await);
    assert!(
        !held(&tier, &key(2)).await,
        "an entry past its keep time was answered"
    );
    assert_eq!(
        tier.entry_count(),
        1,
        "the read that met the expired entry removes it"
    );
    assert_eq!(accounted(&tier), tier.weighted_size());
}

#[tokio::test]
async fn the_sweep_removes_expired_entries_nobody_asks_for_and_keeps_the_rest() {
    let tier = MemoryTier::new(1 << 20);
    for i in 0..10 {
        let ttl = if i % 2 == 0 {
            DAY
        } else {
            Duration::from_millis(1)
        };
        tier.put(&key(i), entry(0, 100), ttl).await.expect("put");
    }
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(tier.entry_count(), 10);
    tier.remove_expired();
    assert_eq!(tier.entry_count(), 5);
    assert_eq!(accounted(&tier), tier.weighted_size());
    for i in (0..10).step_by(2) {
        assert!(held(&tier, &key(i)).await, "live entry {i} was swept");
    }
}

#[tokio::test]
async fn a_zero_keep_time_is_not_stored() {
    let tier = MemoryTier::new(1 << 20);
    tier.put(&key(1), entry(0, 100), Duration::ZERO)
        .await
        .expect("put");
    assert!(!held(&tier, &key(1)).await);
    assert_eq!(accounted(&tier), 0);
}

#[tokio::test]
async fn memory_stays_within_the_budget_and_the_accounting_follows_evictions() {
    let budget = 1 << 20;
    let tier = MemoryTier::new(budget);
    for i in 0..200 {
        tier.put(&key(i), entry((i % 3) as u8, 32 * 1024), DAY)
            .await
            .expect("put");
    }
    assert!(
        tier.weighted_size() <= budget,
        "{} over {budget}",
        tier.weighted_size()
    );
    assert!(tier.entry_count() < 200, "nothing was evicted");
    assert!(tier.entry_count() > 0);
    assert_eq!(accounted(&tier), tier.weighted_size());
}

#[tokio::test]
async fn replacing_removing_and_clearing_give_a_partition_its_bytes_back() {
    let tier = MemoryTier::new(1 << 20);
    for _ in 0..50 {
        tier.put(&key(7), entry(1, 1000), DAY).await.expect("put");
    }
    assert_eq!(tier.entry_count(), 1);
    assert_eq!(accounted(&tier), tier.weighted_size());
    tier.put(&key(8), entry(1, 1000), DAY).await.expect("put");
    tier.remove(&key(7)).await.expect("remove");
    assert_eq!(accounted(&tier), tier.weighted_size());
    tier.clear().await;
    assert_eq!(tier.entry_count(), 0);
    assert_eq!(accounted(&tier), 0);
    assert!(tier.usage.lock().expect("usage lock").is_empty());
}

#[tokio::test]
async fn a_partition_over_its_share_is_refused_and_admitted_again_once_it_has_room() {
    // Each entry weighs a little over 100 KiB; a quarter of 1 MiB holds two of them.
    let tier = MemoryTier::with_limits(1 << 20, 128 * 1024, 0.25);
    let mut kept = 0;
    for i in 0..10 {
        tier.put(&key(i), entry(1, 100 * 1024), DAY)
            .await
            .expect("put");
        if held(&tier, &key(i)).await {
            kept += 1;
        }
    }
    assert_eq!(
        kept, 2,
        "the partition kept {kept} entries of about 100 KiB"
    );
    tier.put(&key(100), entry(2, 100 * 1024), DAY)
        .await
        .expect("put");
    assert!(
        held(&tier, &key(100)).await,
        "another partition has its own share"
    );
    for i in 0..10 {
        tier.remove(&key(i)).await.expect("remove");
    }
    tier.put(&key(50), entry(1, 100 * 1024), DAY)
        .await
        .expect("put");
    assert!(held(&tier, &key(50)).await, "the share was not given back");
}

/// Stores an object of `largest` bytes in a tier sized for it and checks that it is held.
async fn assert_largest_object_fits(budget: u64, largest: usize) {
    let tier = MemoryTier::with_limits(budget, largest as u64, 1.0);
    tier.put(&key(1), entry(0, largest), DAY)
        .await
        .expect("put");
    assert!(
        held(&tier, &key(1)).await,
        "an object within max_object_bytes was not held"
    );
    assert_eq!(accounted(&tier), tier.weighted_size());
}

#[tokio::test]
async fn the_largest_allowed_object_fits_in_a_shard() {
    // quick_cache splits the budget between shards; a 600 KiB body fits only in a shard of
    // at least that much, which a 1 MiB budget allows once.
    assert_largest_object_fits(1 << 20, 600 * 1024).await;
}

#[tokio::test]
async fn a_body_weighs_a_sixteenth_more_than_its_bytes() {
    // The allocator's fragmentation under churn grows with the body; without this slack the
    // memory soak (load-tests/chaos/soak.sh) reached its RSS bound.
    let tier = MemoryTier::new(1 << 20);
    tier.put(&key(1), entry(0, 64 * 1024), DAY)
        .await
        .expect("put");
    assert!(held(&tier, &key(1)).await);
    assert!(
        tier.weighted_size() >= 64 * 1024 + 4 * 1024,
        "weighed {} bytes",
        tier.weighted_size()
    );
}

#[tokio::test]
async fn the_largest_allowed_object_fits_in_a_shard_with_its_slack() {
    // 1 900 KiB weighs about 2 020 KiB with its sixteenth: more than 97 % of a 2 MiB shard,
    // which the largest object's bytes and headroom alone (1 964 KiB) would have allowed.
    assert_largest_object_fits(4 << 20, 1900 * 1024).await;
}

#[tokio::test]
async fn an_entry_no_shard_can_hold_is_refused_without_leaking_its_share() {
    let tier = MemoryTier::new(1 << 20);
    tier.put(&key(1), entry(0, 2 << 20), DAY)
        .await
        .expect("put");
    assert!(!held(&tier, &key(1)).await);
    assert_eq!(
        accounted(&tier),
        0,
        "the refused entry's bytes stayed counted"
    );
}
