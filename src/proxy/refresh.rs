//! Background refresh of a stale (or nearly stale) entry: at most one per key, because it
//! runs as the leader of the key's fill or not at all — and, with the shared tier, only on
//! the instance holding the key's lease.

use std::sync::Arc;

use super::Shared;
use super::fill::Fill;
use crate::cache::CacheKey;
use crate::coalesce::Flight;

/// Starts the fill `make` builds for `key` in the background unless a fill of the key is
/// already in flight here or on another instance, or its last fill failed less than a backoff
/// ago (the stale entry is served meanwhile; RFC 5861 leaves the retry policy to the cache).
///
/// The fill is built only when it runs: under a burst of stale hits every request but one
/// finds the refresh in flight, and building a fill (headers copied and rewritten) for each
/// of them was about a fifth of the burst's CPU.
pub(crate) fn spawn(shared: &Arc<Shared>, key: CacheKey, make: impl FnOnce() -> Fill) {
    let backing_off = || shared.refresh_backoff.holds(&key, shared.clock.now());
    if backing_off() {
        return;
    }
    let Flight::Leader(leader) = shared.coalescer.join(key) else {
        // That fill refreshes the entry.
        return;
    };
    // Again as the leader: a fill that failed since the first look set the backoff before it
    // let go of the key.
    if backing_off() {
        return;
    }
    let mut fill = make();
    debug_assert_eq!(fill.key, key, "a refresh fills the key it was started for");
    tracing::debug!(%key, "background refresh");
    tokio::spawn(async move {
        let leases = fill
            .shared
            .leases
            .clone()
            .filter(|_| fill.shared.tiers.shared_available());
        if let Some(leases) = leases {
            let ttl = fill.shared.lease_ttl(&fill.route);
            match leases.acquire(&fill.key, ttl).await {
                Ok(Some(lease)) => fill.lease = Some(lease),
                // Another instance refreshes it; dropping the leader wakes any local waiter.
                Ok(None) => return,
                // Redis trouble: refresh locally, as without a shared tier.
                Err(error) => tracing::debug!(key = %fill.key, %error, "refresh without a lease"),
            }
        }
        // Nobody waits for this answer (a failure sets the key's backoff); a streamed one is
        // dropped with its connection.
        let _answer = fill.run(Some(leader)).await;
    });
}
