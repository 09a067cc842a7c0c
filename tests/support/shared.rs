//! Helpers for proxy-level tests of the shared tier: a bounded `eventually` for cross-instance
//! propagation, and what Redis holds (entry keys under the default `key_prefix`).

use std::time::{Duration, Instant};

use redis::Commands;

use super::redis::{RedisCluster, RedisServer};

/// The default `key_prefix`: entry keys are `cachet:<hex key>`, control keys `{cachet:ctl}:..`.
pub(crate) const ENTRY_PATTERN: &str = "cachet:*";
/// How often [`eventually`] polls.
const POLL: Duration = Duration::from_millis(20);

/// Runs `check` every 20ms until it returns true or `within` passes; whether it did. Only for
/// effects that cross processes or instances (Redis writes, epoch polls, failover).
pub(crate) async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The entry keys one node holds, sorted: `cachet:<key>` only, neither control keys nor
/// per-entry helpers such as fill leases (`cachet:<key>:lease`).
pub(crate) fn entry_keys(node: &RedisServer) -> Vec<String> {
    let mut conn = node.client();
    let mut keys: Vec<String> = conn
        .scan_match::<_, String>(ENTRY_PATTERN)
        .expect("scan")
        .collect::<Result<Vec<_>, _>>()
        .expect("scan keys")
        .into_iter()
        .filter(|key| !key[ENTRY_PATTERN.len() - 1..].contains(':'))
        .collect();
    keys.sort();
    keys
}

/// The entry keys each master of `cluster` holds, one list per master.
pub(crate) fn entry_keys_per_master(cluster: &mut RedisCluster) -> Vec<Vec<String>> {
    cluster
        .masters()
        .into_iter()
        .map(|master| entry_keys(master))
        .collect()
}

/// Waits (bounded) until `node` holds at least `n` entry keys; the keys it then holds.
pub(crate) async fn await_entry_keys(
    node: &RedisServer,
    n: usize,
    within: Duration,
) -> Vec<String> {
    let mut keys = Vec::new();
    let reached = eventually(within, async || {
        keys = entry_keys(node);
        keys.len() >= n
    })
    .await;
    assert!(
        reached,
        "Redis holds {} entry keys after {within:?}, expected {n}",
        keys.len()
    );
    keys
}
