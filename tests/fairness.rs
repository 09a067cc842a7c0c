//! Per-tenant fairness (`[cache] tenant_max_share`): one partition may hold at most that share
//! of the memory tier, so a noisy tenant cannot evict everyone else's hot keys.

mod support;

use support::origin::pattern;
use support::proxy::SERVER;
use support::{Client, Origin, Proxy, Reply};

const NOISY_URLS: usize = 40;

#[tokio::test]
async fn a_noisy_tenant_is_held_to_its_share_and_a_quiet_tenants_hot_key_stays_in_memory() {
    // 32 KiB bodies; a 1 MiB budget with a quarter per tenant holds about 7 of them each.
    let origin =
        Origin::start(|_| Reply::ok(pattern(32 * 1024)).cache_control("max-age=600")).await;
    let config = SERVER.replace(
        "memory_max_bytes = \"64MiB\"",
        "memory_max_bytes = \"1MiB\"\nmax_object_bytes = \"64KiB\"\ntenant_max_share = 0.25",
    ) + &format!(
        "\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\nkey_headers = [\"x-tenant-id\"]\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n",
        origin.url()
    );
    assert!(config.contains("tenant_max_share = 0.25"), "{config}");
    let proxy = Proxy::start(&config).await;
    let client = Client::new(proxy.addr);
    let calm = [("x-tenant-id", "calm")];
    let noisy = [("x-tenant-id", "noisy")];

    client.get("/hot", &calm).await;
    assert!(client.get("/hot", &calm).await.is_hit());
    for i in 0..NOISY_URLS {
        client.get(&format!("/noisy/{i}"), &noisy).await;
    }
    let kept = {
        let mut kept = 0;
        for i in 0..NOISY_URLS {
            if client.get(&format!("/noisy/{i}"), &noisy).await.is_hit() {
                kept += 1;
            }
        }
        kept
    };
    assert!(
        kept <= 8,
        "the noisy tenant kept {kept} entries of 32 KiB, over a quarter of 1 MiB"
    );
    assert!(kept >= 1, "the noisy tenant may still use its share");
    let hot = client.get("/hot", &calm).await;
    assert!(
        hot.is_hit(),
        "the quiet tenant's hot key was evicted: {}",
        hot.cache_status()
    );
    proxy.shutdown().await;
}
