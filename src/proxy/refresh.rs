//! Background refresh of a stale (or nearly stale) entry: at most one per key, because it
//! runs as the leader of the key's fill or not at all — and, with the shared tier, only on
//! the instance holding the key's lease.

use super::fill::Fill;
use crate::coalesce::Flight;

/// Starts `fill` in the background unless a fill of its key is already in flight here or on
/// another instance, or its last fill failed less than a backoff ago (the stale entry is
/// served meanwhile; RFC 5861 leaves the retry policy to the cache).
pub(crate) fn spawn(mut fill: Fill) {
    let backing_off = |fill: &Fill| {
        let backoff = fill.shared.refresh_backoff.get(&fill.key);
        backoff.is_some_and(|until| fill.shared.clock.now() < until)
    };
    if backing_off(&fill) {
        return;
    }
    let Flight::Leader(leader) = fill.shared.coalescer.join(fill.key) else {
        // That fill refreshes the entry.
        return;
    };
    // Again as the leader: a fill that failed since the first look set the backoff before it
    // let go of the key.
    if backing_off(&fill) {
        return;
    }
    tracing::debug!(key = %fill.key, "background refresh");
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
