//! Background refresh of a stale (or nearly stale) entry: at most one per key, because it
//! runs as the leader of the key's fill or not at all.

use super::fill::Fill;
use crate::coalesce::Flight;

/// Starts `fill` in the background unless a fill of its key is already in flight.
pub(crate) fn spawn(fill: Fill) {
    match fill.shared.coalescer.join(fill.key) {
        Flight::Leader(leader) => {
            tracing::debug!(key = %fill.key, "background refresh");
            tokio::spawn(async move {
                // Nobody waits for this answer; a streamed one is dropped with its connection.
                let _answer = fill.run(Some(leader)).await;
            });
        }
        // That fill refreshes the entry.
        Flight::Follower(_) => {}
    }
}
