//! The shared tier through the whole proxy: two Cachet instances on one real `redis-server`
//! (or a real Redis Cluster) and one origin. An entry one instance stores is served by the
//! other from Redis (`detail=shared`), then from its memory; partitions hold across instances;
//! what may not be stored never reaches Redis; a Cluster failover costs no client an error.
//!
//! L2 writes run off the response path, so a test waits (bounded) until Redis holds the entry
//! before asking the other instance; every other step is synchronous.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cachet::clock::ManualClock;
use support::proxy::{Options, one_route_shared, redis_cluster, redis_url};
use support::redis::{RedisCluster, RedisServer};
use support::shared::{
    HOST, await_entry_keys, await_shared_tier_up, entry_keys, entry_keys_per_master, eventually,
};
use support::{Client, Origin, Proxy, Reply};

const MAX_AGE_60: &str = "max-age=60";
/// How long a background L2 write may take to land (parallel tests on two cores).
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How long an instance may take to connect and load the purge state.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// How long a Cluster may take to fail over and clients to follow it.
const FAILOVER_WAIT: Duration = Duration::from_secs(40);

/// Two instances with one config on one manual clock, so both compute the same `ttl`; both
/// reading the shared tier (an instance reads it only once its purges are in sync).
async fn two_instances(config: &str) -> (Proxy, Proxy) {
    let options = Options {
        clock: Some(Arc::new(ManualClock::new(SystemTime::now()))),
        ..Options::default()
    };
    let a = Proxy::start_with(config, options.clone()).await;
    let b = Proxy::start_with(config, options).await;
    await_shared_tier_up(&a, SYNC_WAIT).await;
    await_shared_tier_up(&b, SYNC_WAIT).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_stored_by_one_instance_is_served_by_another_from_redis() {
    let redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "");
    let (a, b) = two_instances(&config).await;
    let (to_a, to_b) = (Client::new(a.addr), Client::new(b.addr));

    let miss = to_a.get("/across", &[HOST]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    await_entry_keys(&redis, 1, WRITE_WAIT).await;

    let shared = to_b.get("/across", &[HOST]).await;
    assert_eq!(shared.status, 200);
    assert_eq!(shared.cache_status(), "cachet; hit; ttl=60; detail=shared");
    assert_eq!(shared.text(), "/across #1");
    assert_eq!(shared.age(), Some(0));
    assert_eq!(origin.hits_for("/across"), 1, "B did not ask the origin");

    let memory = to_b.get("/across", &[HOST]).await;
    assert_eq!(memory.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(memory.text(), "/across #1");
    assert_eq!(origin.hits_for("/across"), 1);
    assert_eq!(entry_keys(&redis).len(), 1, "one entry, written once");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_entry_in_redis_is_never_served_to_another_tenant_by_another_instance() {
    let redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let route = "key_headers = [\"x-tenant-id\"]\n";
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), route);
    let (a, b) = two_instances(&config).await;
    let (to_a, to_b) = (Client::new(a.addr), Client::new(b.addr));
    let acme = [HOST, ("x-tenant-id", "acme")];
    let globex = [HOST, ("x-tenant-id", "globex")];

    let stored = to_a.get("/tenants", &acme).await;
    assert_eq!(stored.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(stored.text(), "/tenants #1");
    await_entry_keys(&redis, 1, WRITE_WAIT).await;

    let other = to_b.get("/tenants", &globex).await;
    assert_eq!(other.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(
        other.text(),
        "/tenants #2",
        "globex never gets acme's entry"
    );
    let anonymous = to_b.get("/tenants", &[HOST]).await;
    assert!(
        anonymous.cache_status().starts_with("cachet; fwd=miss"),
        "{}",
        anonymous.cache_status()
    );
    assert_eq!(
        anonymous.text(),
        "/tenants #3",
        "no key header, no tenant's entry"
    );
    let own = to_b.get("/tenants", &acme).await;
    assert_eq!(own.cache_status(), "cachet; hit; ttl=60; detail=shared");
    assert_eq!(
        own.text(),
        "/tenants #1",
        "acme gets its own entry from Redis"
    );

    // The other way round: B's globex entry reaches A, and only for globex.
    await_entry_keys(&redis, 3, WRITE_WAIT).await;
    let back = to_a.get("/tenants", &globex).await;
    assert_eq!(back.cache_status(), "cachet; hit; ttl=60; detail=shared");
    assert_eq!(back.text(), "/tenants #2");
    assert_eq!(to_a.get("/tenants", &acme).await.text(), "/tenants #1");
    assert_eq!(to_a.get("/tenants", &[HOST]).await.text(), "/tenants #3");
    assert_eq!(origin.hits_for("/tenants"), 3);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_lifetime_or_not_storable_are_never_written_to_redis() {
    let redis = RedisServer::start();
    let origin = Origin::start(|seen| match seen.path() {
        "/unstored/no-store" => Reply::ok("a").cache_control("no-store, max-age=60"),
        "/unstored/private" => Reply::ok("b").cache_control("private, max-age=60"),
        "/unstored/max-age-0" => Reply::ok("c").cache_control("max-age=0"),
        "/unstored/s-maxage-0" => Reply::ok("d").cache_control("max-age=60, s-maxage=0"),
        "/unstored/no-freshness" => Reply::ok("e"),
        "/unstored/set-cookie" => Reply::ok("f")
            .cache_control("public, max-age=60")
            .header("set-cookie", "session=s3cr3t"),
        "/unstored/error" => Reply::ok("g").status(500),
        _ => Reply::ok("stored").cache_control(MAX_AGE_60),
    })
    .await;
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "");
    let (a, b) = two_instances(&config).await;
    let (to_a, to_b) = (Client::new(a.addr), Client::new(b.addr));
    let unstored = [
        "/unstored/no-store",
        "/unstored/private",
        "/unstored/max-age-0",
        "/unstored/s-maxage-0",
        "/unstored/no-freshness",
        "/unstored/set-cookie",
        "/unstored/error",
    ];
    for path in unstored {
        for _ in 0..2 {
            let answer = to_a.get(path, &[HOST]).await;
            assert!(
                !answer.cache_status().contains("hit;"),
                "{path}: {answer:?}"
            );
        }
    }
    // A storable response afterwards: once its write has landed, the others' would have too.
    assert_eq!(
        to_a.get("/unstored/control", &[HOST]).await.cache_status(),
        "cachet; fwd=miss; stored"
    );
    await_entry_keys(&redis, 1, WRITE_WAIT).await;
    assert_eq!(
        entry_keys(&redis).len(),
        1,
        "only the storable response is in Redis"
    );
    for path in unstored {
        let before = origin.hits_for(path);
        let answer = to_b.get(path, &[HOST]).await;
        assert!(
            !answer.cache_status().contains("hit;"),
            "{path}: {answer:?}"
        );
        assert_eq!(
            origin.hits_for(path),
            before + 1,
            "{path} came from the origin"
        );
    }
    assert_eq!(
        to_b.get("/unstored/control", &[HOST]).await.cache_status(),
        "cachet; hit; ttl=60; detail=shared"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// The answers that were not 200 (the origin always answers 200).
fn not_ok(statuses: &[(String, u16)]) -> Vec<&(String, u16)> {
    statuses.iter().filter(|(_, s)| *s != 200).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_a_cluster_and_survive_a_master_failover_without_errors() {
    let mut cluster = RedisCluster::start();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=3600")).await;
    let config = one_route_shared(&origin.url(), &redis_cluster(&cluster.urls()), "");
    let (a, b) = two_instances(&config).await;
    let (to_a, to_b) = (Client::new(a.addr), Client::new(b.addr));
    let paths: Vec<String> = (0..30).map(|n| format!("/cluster/{n}")).collect();

    for path in &paths {
        let miss = to_a.get(path, &[HOST]).await;
        assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored", "{path}");
    }
    let mut per_master = Vec::new();
    let written = eventually(WRITE_WAIT, async || {
        per_master = entry_keys_per_master(&mut cluster);
        per_master.iter().map(Vec::len).sum::<usize>() == paths.len()
    })
    .await;
    assert!(written, "entries per master: {per_master:?}");
    assert_eq!(per_master.len(), 3);
    for (n, keys) in per_master.iter().enumerate() {
        assert!(!keys.is_empty(), "master {n} holds entries: {per_master:?}");
    }
    for path in &paths {
        let shared = to_b.get(path, &[HOST]).await;
        assert_eq!(
            shared.cache_status(),
            "cachet; hit; ttl=3600; detail=shared",
            "{path}"
        );
    }
    for path in &paths {
        assert_eq!(
            to_b.get(path, &[HOST]).await.cache_status(),
            "cachet; hit; ttl=3600"
        );
    }
    assert_eq!(
        origin.hits(),
        paths.len(),
        "B answered everything from the cluster"
    );

    // Every replica has everything before its master dies.
    for master in cluster.masters() {
        master.info(&["WAIT", "1", "2000"]);
    }
    cluster.masters()[0].kill();

    // Traffic through both instances during and after the failover: old paths (memory) and
    // new ones (Redis is read, then written), until the cluster is healthy again and beyond.
    let mut statuses: Vec<(String, u16)> = Vec::new();
    let mut healthy_rounds = 0;
    let mut round = 0;
    let recovered = eventually(FAILOVER_WAIT, async || {
        round += 1;
        for n in 0..5 {
            let path = format!("/cluster/during/{round}/{n}");
            for client in [&to_a, &to_b] {
                statuses.push((
                    path.clone(),
                    client.get(&path, &[HOST]).await.status.as_u16(),
                ));
            }
        }
        for path in paths.iter().step_by(3) {
            statuses.push((path.clone(), to_a.get(path, &[HOST]).await.status.as_u16()));
        }
        if cluster.wait_healthy(Duration::from_millis(60)) {
            healthy_rounds += 1;
        }
        healthy_rounds >= 5
    })
    .await;
    assert!(recovered, "the cluster never became healthy again");
    assert_eq!(cluster.masters().len(), 3, "a replica was promoted");
    assert!(statuses.len() > 100, "{} requests", statuses.len());
    assert!(
        not_ok(&statuses).is_empty(),
        "errors during the failover: {:?}",
        not_ok(&statuses)
    );

    // Both instances use the new topology: A's new entries reach B again.
    let mut n = 0;
    let resumed = eventually(FAILOVER_WAIT, async || {
        n += 1;
        let path = format!("/cluster/after/{n}");
        let before: usize = entry_keys_per_master(&mut cluster)
            .iter()
            .map(Vec::len)
            .sum();
        assert!(to_a.get(&path, &[HOST]).await.status.is_success());
        let landed = eventually(Duration::from_secs(2), async || {
            entry_keys_per_master(&mut cluster)
                .iter()
                .map(Vec::len)
                .sum::<usize>()
                > before
        })
        .await;
        let answer = to_b.get(&path, &[HOST]).await;
        assert!(answer.status.is_success(), "{path}: {answer:?}");
        landed && answer.cache_status().ends_with("detail=shared")
    })
    .await;
    assert!(resumed, "shared hits did not resume after the failover");

    // The promoted replica kept the killed master's entries: a new instance finds them all.
    let c = Proxy::start(&config).await;
    await_shared_tier_up(&c, FAILOVER_WAIT).await;
    let to_c = Client::new(c.addr);
    for path in &paths {
        let answer = to_c.get(path, &[HOST]).await;
        assert!(
            answer.cache_status().ends_with("detail=shared"),
            "{path}: {}",
            answer.cache_status()
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}
