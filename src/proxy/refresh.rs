//! Background refresh of a stale (or nearly stale) entry: at most one per key, because it
//! runs as the leader of the key's fill or not at all — and, with the shared tier, only on
//! the instance holding the key's lease.

use super::fill::Fill;
use crate::coalesce::Flight;

/// Starts `fill` in the background unless a fill of its key is already in flight here or on
/// another instance.
pub(crate) fn spawn(mut fill: Fill) {
    let Flight::Leader(leader) = fill.shared.coalescer.join(fill.key) else {
        // That fill refreshes the entry.
        return;
    };
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
        // Nobody waits for this answer; a streamed one is dropped with its connection.
        let _answer = fill.run(Some(leader)).await;
    });
}
