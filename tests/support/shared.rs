//! Helpers for proxy-level tests of the shared tier: a bounded `eventually` for cross-instance
//! propagation, and what Redis holds (entry keys under the default `key_prefix`).

use std::time::{Duration, Instant};

use redis::Commands;

use super::redis::{RedisCluster, RedisServer};
use super::{Client, Proxy};

/// The default `key_prefix`: entry keys are `cachet:<hex key>`, control keys `{cachet:ctl}:..`.
pub(crate) const ENTRY_PATTERN: &str = "cachet:*";
/// The `Host` every request to the instances carries, as behind one load balancer: the
/// authority is part of the cache key, and each instance's own address would split it.
pub(crate) const HOST: (&str, &str) = ("host", "api.shared.test");
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

/// `proxy`'s `/readyz` body (`ready`, `shared_tier`, `breaker`); `/readyz` itself must answer
/// 200 whatever the shared tier's state.
pub(crate) async fn readiness(proxy: &Proxy) -> serde_json::Value {
    let ready = Client::new(proxy.admin).get("/readyz", &[]).await;
    assert_eq!(ready.status, 200, "/readyz: {ready:?}");
    serde_json::from_slice(&ready.body).expect("a JSON body")
}

/// The `shared_tier` field of `/readyz`: `none`, `up` or `down`.
pub(crate) async fn shared_tier_state(proxy: &Proxy) -> String {
    let body = readiness(proxy).await;
    body["shared_tier"].as_str().unwrap_or_default().to_owned()
}

/// Waits (bounded) until `proxy` reports its shared tier `up`: reachable, with its purges in
/// sync, which is when an instance reads the shared tier at all.
pub(crate) async fn await_shared_tier_up(proxy: &Proxy, within: Duration) {
    let mut last = String::new();
    let up = eventually(within, async || {
        last = shared_tier_state(proxy).await;
        last == "up"
    })
    .await;
    assert!(up, "the shared tier is still {last:?} after {within:?}");
}
