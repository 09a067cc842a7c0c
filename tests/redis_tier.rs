//! The shared tier against real `redis-server` processes: the Redis tier, the tiered cache on
//! top of it, the codec's blobs as Redis holds them, and the faults of DESIGN.md "Failure
//! behaviour" (down at start, killed, paused, restarted empty, a Cluster master lost).

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use cachet::cache::codec::{self, Epoch, FORMAT_VERSION};
use cachet::cache::{CacheKey, Entry, EntryTimes, PartitionHasher, Target};
use cachet::config::{RedisConfig, RedisTarget};
use cachet::tiers::{
    BreakerConfig, BreakerState, MemoryTier, RedisTier, Source, Tier, Tiered, TieredOptions,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use redis::Commands;
use support::redis::{RedisCluster, RedisServer, free_port};

/// Generous: tests run in parallel on two cores.
const OP_TIMEOUT: Duration = Duration::from_millis(200);
/// What a call may take beyond `OP_TIMEOUT` (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(300);
/// How long cross-process effects (reconnects, epoch polls, failover) may take.
const EVENTUALLY: Duration = Duration::from_secs(20);
const MINUTE: Duration = Duration::from_secs(60);

fn config(target: RedisTarget) -> RedisConfig {
    RedisConfig {
        target,
        key_prefix: "cachet:".to_owned(),
        op_timeout: OP_TIMEOUT,
        pool_size: 2,
        compress_min_bytes: 4096,
        max_inflight_writes: 64,
        lease_ttl: Duration::ZERO,
    }
}

async fn node_tier(url: String) -> RedisTier {
    RedisTier::connect(&config(RedisTarget::Node(url)), 8 << 20)
        .await
        .expect("valid config")
}

fn tiered(redis: RedisTier) -> Tiered<MemoryTier, RedisTier> {
    let options = TieredOptions {
        max_inflight_writes: 64,
        breaker: BreakerConfig::default(),
    };
    Tiered::new(MemoryTier::new(64 << 20), Some(redis), options)
}

/// The key of `path` for a tenant, built as the proxy builds it.
fn key(path: &str) -> CacheKey {
    let target = Target {
        authority: "api.example.com".to_owned(),
        host: "api.example.com".to_owned(),
        path: path.to_owned(),
        query: None,
    };
    let partition = PartitionHasher::new(Some("test secret")).partition(&[], &HeaderMap::new());
    CacheKey::build("products", &target, &[], &partition)
}

fn entry(now: SystemTime, body: &str) -> Arc<Entry> {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    Arc::new(Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body.to_owned()),
        partition: PartitionHasher::new(Some("test secret"))
            .partition(&[], &HeaderMap::new())
            .id,
        tags: vec!["products".to_owned()],
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + MINUTE,
            stale_while_revalidate_until: now + MINUTE,
            stale_if_error_until: now + MINUTE,
            keep_until: now + MINUTE,
            fetch_duration: Duration::from_millis(5),
            stale_forbidden: false,
        },
    })
}

/// Runs `f` until it returns true or `within` passes.
async fn eventually(within: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Awaits `fut` and asserts it took no longer than a Redis call may.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    let took = started.elapsed();
    assert!(took <= OP_TIMEOUT + SLACK, "{what} took {took:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_written_by_one_instance_is_read_by_another() {
    let server = RedisServer::start();
    let a = node_tier(server.url()).await;
    let b = node_tier(server.url()).await;
    assert!(a.is_up() && b.is_up());
    assert_eq!(a.epoch(), b.epoch(), "both adopt the one epoch in Redis");
    let now = SystemTime::now();
    let big = "x".repeat(10_000); // compressed on the way
    for (path, body) in [("/small", "hello"), ("/big", big.as_str())] {
        a.put(&key(path), entry(now, body), MINUTE)
            .await
            .expect("put");
        let got = b
            .get(&key(path))
            .await
            .expect("get")
            .expect("B sees A's entry");
        assert_eq!(got.body, body.as_bytes());
        assert_eq!(got.times, entry(now, body).times);
    }
    let ttl: i64 = redis::cmd("PTTL")
        .arg(a.entry_key(&key("/small")))
        .query(&mut server.client())
        .unwrap();
    assert!(
        ttl > 50_000 && ttl <= 60_000,
        "Redis expiry is the keep time: {ttl}ms"
    );
    a.remove(&key("/small")).await.expect("remove");
    assert!(b.get(&key("/small")).await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_hit_is_promoted_into_memory() {
    let server = RedisServer::start();
    let a = tiered(node_tier(server.url()).await);
    let b = tiered(node_tier(server.url()).await);
    let now = SystemTime::now();
    a.put(&key("/p"), entry(now, "p"), now).await;
    a.flush().await;
    let (_, source) = b.get(&key("/p"), now).await.expect("from Redis");
    assert_eq!(source, Source::Shared);
    let (_, source) = b.get(&key("/p"), now).await.expect("from memory");
    assert_eq!(source, Source::Memory);
    assert_eq!(b.stats().l2_hits.load(Ordering::Relaxed), 1);
    assert!(b.get(&key("/absent"), now).await.is_none());
    assert_eq!(b.stats().l2_misses.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_a_miss_deleted_and_counted() {
    let server = RedisServer::start();
    let cache = tiered(node_tier(server.url()).await);
    let redis_key = cache.shared().unwrap().entry_key(&key("/corrupt"));
    let now = SystemTime::now();
    for garbage in [&b"\x01not a blob at all"[..], b"\x00older", b"\x01\xff"] {
        server.cli(&["-x", "SET", &redis_key], Some(garbage));
        assert!(cache.get(&key("/corrupt"), now).await.is_none());
        let gone = eventually(EVENTUALLY, async || {
            server.cli(&["EXISTS", &redis_key], None) == "0"
        })
        .await;
        assert!(gone, "the corrupt blob is deleted");
    }
    assert_eq!(cache.stats().corrupt_blobs.load(Ordering::Relaxed), 3);
    assert_eq!(cache.stats().breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_of_a_newer_version_or_another_epoch_are_misses_left_in_place() {
    let server = RedisServer::start();
    let cache = tiered(node_tier(server.url()).await);
    let redis = cache.shared().unwrap().clone();
    let epoch = redis.epoch().expect("reached at connect");
    let now = SystemTime::now();
    let mut newer = codec::encode(&entry(now, "newer"), epoch, 4096);
    newer[0] = FORMAT_VERSION + 1;
    let other_epoch = codec::encode(&entry(now, "old"), Epoch([0x5a; 16]), 4096);
    for (path, blob) in [("/newer", newer), ("/other-epoch", other_epoch)] {
        let redis_key = redis.entry_key(&key(path));
        server.cli(&["-x", "SET", &redis_key], Some(&blob));
        assert!(cache.get(&key(path), now).await.is_none(), "{path}");
        // One more round trip, so a (wrongly) spawned delete would have run by now.
        assert!(redis.get(&key("/unrelated")).await.unwrap().is_none());
        assert_eq!(
            server.cli(&["EXISTS", &redis_key], None),
            "1",
            "{path} left alone"
        );
    }
    assert_eq!(cache.stats().corrupt_blobs.load(Ordering::Relaxed), 0);
    assert_eq!(cache.stats().l2_misses.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_survived_and_connected_later() {
    let port = free_port(false);
    let redis = node_tier(format!("redis://127.0.0.1:{port}/0")).await;
    assert!(!redis.is_up());
    let cache = tiered(redis.clone());
    let now = SystemTime::now();
    for n in 0..3 {
        let path = format!("/down/{n}");
        assert!(bounded("get", cache.get(&key(&path), now)).await.is_none());
        assert!(
            !bounded(
                "put_through",
                cache.put_through(&key(&path), entry(now, "d"), now)
            )
            .await
        );
        assert!(bounded("direct get", redis.get(&key(&path))).await.is_err());
    }
    assert!(
        cache.get(&key("/down/0"), now).await.is_some(),
        "memory still serves"
    );

    let _server = RedisServer::start_on(port);
    let reconnected = eventually(EVENTUALLY, async || {
        redis
            .put(&key("/later"), entry(now, "later"), MINUTE)
            .await
            .is_ok()
    })
    .await;
    assert!(reconnected, "the tier connects by itself");
    assert!(redis.get(&key("/later")).await.unwrap().is_some());
    assert!(eventually(EVENTUALLY, async || { redis.is_up() }).await);
    let resumed = eventually(EVENTUALLY, async || {
        cache
            .put_through(&key("/down/9"), entry(now, "d"), now)
            .await
    })
    .await;
    assert!(resumed, "the breaker closes again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_opens_the_breaker_and_calls_stay_bounded() {
    let mut server = RedisServer::start();
    let cache = tiered(node_tier(server.url()).await);
    let now = SystemTime::now();
    assert!(cache.put_through(&key("/k"), entry(now, "k"), now).await);
    server.kill();
    for n in 0..10 {
        let path = format!("/killed/{n}");
        assert!(bounded("get", cache.get(&key(&path), now)).await.is_none());
        bounded("put", cache.put(&key(&path), entry(now, "k"), now)).await;
    }
    let stats = cache.stats();
    assert_eq!(stats.breaker_state(), BreakerState::Open);
    assert!(
        stats.l2_skipped.load(Ordering::Relaxed) > 0,
        "calls skip Redis while open"
    );
    assert!(
        cache.get(&key("/k"), now).await.is_some(),
        "memory still serves"
    );
    assert!(!cache.shared().unwrap().is_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_redis_times_out_opens_the_breaker_and_no_call_waits_longer() {
    let server = RedisServer::start();
    let cache = tiered(node_tier(server.url()).await);
    let now = SystemTime::now();
    assert!(cache.put_through(&key("/p"), entry(now, "p"), now).await);
    server.pause();
    for n in 0..8 {
        let path = format!("/paused/{n}");
        assert!(bounded("get", cache.get(&key(&path), now)).await.is_none());
    }
    assert!(
        !bounded(
            "put_through",
            cache.put_through(&key("/p2"), entry(now, "p"), now)
        )
        .await
    );
    assert_eq!(cache.stats().breaker_state(), BreakerState::Open);
    assert!(cache.stats().l2_errors.load(Ordering::Relaxed) >= 5);
    server.resume();
    let resumed = eventually(EVENTUALLY, async || {
        cache.put_through(&key("/p3"), entry(now, "p"), now).await
    })
    .await;
    assert!(resumed, "after a resume the probe closes the breaker");
    assert_eq!(cache.stats().breaker_state(), BreakerState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_empty_redis_changes_the_epoch_and_clears_memory() {
    let mut server = RedisServer::start();
    let redis = node_tier(server.url()).await;
    let cache = tiered(redis.clone());
    let watcher = cache.clear_on_epoch_change(redis.epoch_changes());
    let old = redis.epoch().expect("reached");
    let now = SystemTime::now();
    assert!(cache.put_through(&key("/e"), entry(now, "e"), now).await);
    assert_eq!(
        cache.get(&key("/e"), now).await.map(|(_, s)| s),
        Some(Source::Memory)
    );

    server.restart();
    let cleared = eventually(EVENTUALLY, async || {
        cache.stats().epoch_clears.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(cleared, "the new epoch is noticed");
    assert_ne!(redis.epoch(), Some(old));
    assert!(
        cache.get(&key("/e"), now).await.is_none(),
        "memory was cleared, Redis is empty"
    );

    let other = tiered(node_tier(server.url()).await);
    assert_eq!(other.shared().unwrap().epoch(), redis.epoch());
    let stored = eventually(EVENTUALLY, async || {
        cache.put_through(&key("/e2"), entry(now, "e2"), now).await
    })
    .await;
    assert!(stored, "writes resume");
    assert_eq!(
        other.get(&key("/e2"), now).await.map(|(_, s)| s),
        Some(Source::Shared)
    );
    drop((cache, redis, other));
    tokio::time::timeout(Duration::from_secs(5), watcher)
        .await
        .expect("the watcher ends with the tier")
        .expect("the watcher did not panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_blobs_hold_no_raw_credentials_or_key_header_values() {
    const TOKEN: &str = "Bearer s3cr3t-t0ken-value";
    const TENANT: &str = "acme-tenant-7";
    let server = RedisServer::start();
    let redis = node_tier(server.url()).await;
    let hasher = PartitionHasher::new(Some("partition secret"));
    let key_headers = [
        HeaderName::from_static("authorization"),
        HeaderName::from_static("x-tenant-id"),
    ];
    let mut request = HeaderMap::new();
    request.insert("authorization", HeaderValue::from_static(TOKEN));
    request.insert("x-tenant-id", HeaderValue::from_static(TENANT));
    let partition = hasher.partition(&key_headers, &request);
    let target = Target {
        authority: "api.example.com".to_owned(),
        host: "api.example.com".to_owned(),
        path: "/api/me".to_owned(),
        query: Some("lang=en".to_owned()),
    };
    let cache_key = CacheKey::build("me", &target, &[], &partition);
    let now = SystemTime::now();
    let mut entry = (*entry(now, "{\"me\":true}")).clone();
    entry.partition = partition.id;
    entry.tags = partition
        .parts
        .iter()
        .map(|(h, fp)| format!("part:{h}:{fp}"))
        .collect();
    entry.tags.push("route:me".to_owned());
    redis
        .put(&cache_key, Arc::new(entry), MINUTE)
        .await
        .unwrap();

    let mut conn = server.client();
    let keys: Vec<Vec<u8>> = conn.scan().unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(keys.len(), 2, "the entry and the epoch key");
    for redis_key in keys {
        let blob: Vec<u8> = redis::cmd("GET").arg(&redis_key).query(&mut conn).unwrap();
        for haystack in [&redis_key, &blob] {
            for needle in [TOKEN, "s3cr3t", TENANT] {
                assert!(
                    !haystack
                        .windows(needle.len())
                        .any(|w| w == needle.as_bytes()),
                    "{needle:?} found in Redis"
                );
            }
        }
        if let Ok((_, stored)) = codec::decode(&blob, 1 << 20) {
            let text = format!("{:?} {:?}", stored.tags, stored.headers);
            assert!(!text.contains(TENANT) && !text.contains("s3cr3t"), "{text}");
            assert!(
                stored
                    .tags
                    .iter()
                    .any(|t| t.starts_with("part:x-tenant-id:"))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_spreads_entries_over_all_masters_and_survives_losing_one() {
    let mut cluster = RedisCluster::start();
    let redis = RedisTier::connect(&config(RedisTarget::Cluster(cluster.urls())), 8 << 20)
        .await
        .expect("valid config");
    assert!(
        eventually(EVENTUALLY, async || { redis.is_up() }).await,
        "cluster reached"
    );
    let epoch = redis.epoch();
    let now = SystemTime::now();
    let paths: Vec<String> = (0..60).map(|n| format!("/cluster/{n}")).collect();
    for path in &paths {
        redis
            .put(&key(path), entry(now, path), MINUTE)
            .await
            .expect("put");
    }
    let mut masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for master in &masters {
        let size = master.info(&["DBSIZE"]).unwrap_or_default();
        let size: i64 = size.trim().trim_start_matches(':').parse().unwrap_or(0);
        assert!(size > 0, "master {} holds entries", master.port());
        // Make sure its replica has everything before the master dies.
        master.info(&["WAIT", "1", "2000"]);
    }
    masters[0].kill();
    drop(masters);

    // Errors during the failover are misses, never panics; afterwards every entry is back.
    let all_back = eventually(Duration::from_secs(30), async || {
        let mut hits = 0;
        for path in &paths {
            if let Ok(Some(found)) = redis.get(&key(path)).await {
                assert_eq!(found.body, path.as_bytes());
                hits += 1;
            }
        }
        hits == paths.len()
    })
    .await;
    assert!(all_back, "the replica took over");
    assert!(cluster.wait_healthy(Duration::from_secs(30)));
    assert_eq!(cluster.masters().len(), 3, "a replica was promoted");
    assert_eq!(
        redis.epoch(),
        epoch,
        "the promoted replica kept the data and the epoch"
    );
    redis
        .put(&key("/cluster/after"), entry(now, "after"), MINUTE)
        .await
        .expect("writes work");
}
