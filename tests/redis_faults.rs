//! Redis failing under the whole proxy (DESIGN.md "Failure behaviour"): down at start, killed
//! mid-traffic, paused, restarted empty, holding a corrupt blob. Cachet keeps serving from
//! memory and the origin, never answers 5xx because of Redis, keeps each request's wait on
//! Redis bounded by `op_timeout`, and uses Redis again by itself once it is back.
//!
//! Cross-instance effects (background L2 writes, epoch polls, reconnects) are awaited with a
//! bounded `eventually`; everything else is synchronous.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cachet::clock::ManualClock;
use support::proxy::{Options, REDIS_OP_TIMEOUT, one_route_shared, redis_url};
use support::redis::{RedisServer, free_port};
use support::shared::{
    HOST, await_entry_keys, await_shared_tier_up, entry_keys, eventually, readiness,
    shared_tier_state,
};
use support::{Client, Origin, Proxy, Reply, Resp};
use tokio::sync::watch;

const MAX_AGE_60: &str = "max-age=60";
const MEMORY_HIT: &str = "cachet; hit; ttl=60";
const SHARED_HIT: &str = "cachet; hit; ttl=60; detail=shared";
/// How long a background L2 write may take to land (parallel tests on two cores).
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// How long an instance may take to connect and load the purge state.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// How long reconnecting, a breaker probe or an epoch poll may take.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);
/// A request while Redis fails: at most a few Redis calls (lease, read, write-through), each
/// cut at `op_timeout`, plus the origin and scheduling on a busy two-core machine.
const LATENCY_BOUND: Duration = REDIS_OP_TIMEOUT
    .saturating_mul(3)
    .saturating_add(Duration::from_millis(900));

/// Two instances on one manual clock, so both compute the same `ttl`.
async fn two_instances(config: &str) -> (Proxy, Proxy, Client, Client) {
    let options = Options {
        clock: Some(Arc::new(ManualClock::new(SystemTime::now()))),
        ..Options::default()
    };
    let a = Proxy::start_with(config, options.clone()).await;
    let b = Proxy::start_with(config, options).await;
    let (to_a, to_b) = (Client::new(a.addr), Client::new(b.addr));
    (a, b, to_a, to_b)
}

/// Two instances of one route to `origin` on `redis`, both reading the shared tier.
async fn synced_pair(redis: &RedisServer, origin: &Origin) -> (Proxy, Proxy, Client, Client) {
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "");
    let (a, b, to_a, to_b) = two_instances(&config).await;
    await_both_up(&a, &b).await;
    (a, b, to_a, to_b)
}

/// Waits until both instances read the shared tier (reachable, purges in sync).
async fn await_both_up(a: &Proxy, b: &Proxy) {
    await_shared_tier_up(a, SYNC_WAIT).await;
    await_shared_tier_up(b, SYNC_WAIT).await;
}

/// GET `path` and how long the answer took.
async fn timed(client: &Client, path: &str) -> (Resp, Duration) {
    let started = Instant::now();
    let resp = client.get(path, &[HOST]).await;
    (resp, started.elapsed())
}

/// Until an entry A stores for a new path lands in Redis and B serves it as a shared hit:
/// whether that happened within [`RECOVERY_WAIT`]. Every answer on the way must be a 200.
async fn shared_hits_resume(redis: &RedisServer, to_a: &Client, to_b: &Client, tag: &str) -> bool {
    let mut n = 0;
    eventually(RECOVERY_WAIT, async || {
        n += 1;
        let path = format!("/{tag}/resumed/{n}");
        let before = entry_keys(redis).len();
        let stored = to_a.get(&path, &[HOST]).await;
        assert_eq!(stored.status, 200, "{path}: {stored:?}");
        let landed = eventually(Duration::from_secs(1), async || {
            entry_keys(redis).len() > before
        })
        .await;
        let answer = to_b.get(&path, &[HOST]).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        landed && answer.cache_status() == SHARED_HIT
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_served_around_and_used_once_it_comes_up() {
    let port = free_port(false);
    let url = format!("redis://127.0.0.1:{port}/0");
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let (a, b, to_a, to_b) =
        two_instances(&one_route_shared(&origin.url(), &redis_url(&url), "")).await;

    for (client, path) in [(&to_a, "/down-at-start/a"), (&to_b, "/down-at-start/b")] {
        let (miss, took) = timed(client, path).await;
        assert_eq!(miss.status, 200, "{path}: {miss:?}");
        assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored", "{path}");
        assert!(took < LATENCY_BOUND, "{path} took {took:?}");
        let (hit, took) = timed(client, path).await;
        assert_eq!(hit.cache_status(), MEMORY_HIT, "{path}");
        assert!(took < LATENCY_BOUND, "{path} took {took:?}");
    }

    let redis = RedisServer::start_on(port);
    assert!(
        shared_hits_resume(&redis, &to_a, &to_b, "down-at-start").await,
        "the shared tier never connected by itself"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_costs_no_errors_and_bounded_latency() {
    let mut redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let (a, b, to_a, to_b) = synced_pair(&redis, &origin).await;
    let paths: Arc<Vec<String>> = Arc::new((0..20).map(|n| format!("/killed/{n}")).collect());
    for path in paths.iter() {
        assert_eq!(
            to_a.get(path, &[HOST]).await.cache_status(),
            "cachet; fwd=miss; stored"
        );
    }
    await_entry_keys(&redis, paths.len(), WRITE_WAIT).await;

    // 200 requests from 4 workers: request k asks for path k/10 mod 20, through A (memory
    // hits) when k is even, through B (a Redis read the first time) when odd. Redis dies once
    // 40 have been answered, so B reads most paths from a dead Redis.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (answered, mut progress) = watch::channel(0usize);
    let answered = Arc::new(answered);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (next, answered, paths) =
            (Arc::clone(&next), Arc::clone(&answered), Arc::clone(&paths));
        let (to_a, to_b) = (to_a.clone(), to_b.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if k >= 200 {
                    return seen;
                }
                let client = if k % 2 == 0 { &to_a } else { &to_b };
                let (resp, took) = timed(client, &paths[(k / 10) % 20]).await;
                seen.push((k, resp, took));
                answered.send_modify(|n| *n += 1);
            }
        }));
    }
    progress.wait_for(|n| *n >= 40).await.expect("workers run");
    redis.kill();
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.expect("worker panicked"));
    }
    assert_eq!(answers.len(), 200);
    for (k, resp, took) in &answers {
        assert_eq!(resp.status, 200, "request {k}: {resp:?}");
        assert!(*took < LATENCY_BOUND, "request {k} took {took:?}");
        if k % 2 == 0 {
            assert_eq!(resp.cache_status(), MEMORY_HIT, "request {k} through A");
        }
    }
    let late_memory_hits_on_b = answers
        .iter()
        .filter(|(k, resp, _)| k % 2 == 1 && *k >= 100 && resp.cache_status() == MEMORY_HIT)
        .count();
    assert!(late_memory_hits_on_b > 0, "B kept serving from memory");
    let misses_on_b_after_the_kill = answers
        .iter()
        .filter(|(k, resp, _)| k % 2 == 1 && *k >= 60 && resp.cache_status().contains("fwd=miss"))
        .count();
    assert!(
        misses_on_b_after_the_kill > 0,
        "B's reads of a dead Redis were misses"
    );
    let ready = readiness(&b).await;
    assert_eq!(ready["shared_tier"], "down", "{ready}");
    assert_ne!(ready["breaker"], "closed", "B's breaker opened: {ready}");
    let (fresh, took) = timed(&to_b, "/killed/fresh").await;
    assert_eq!(fresh.cache_status(), "cachet; fwd=miss; stored");
    assert!(took < LATENCY_BOUND, "a miss after the kill took {took:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_holds_no_request_much_longer_than_op_timeout_and_recovers() {
    let redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let (a, b, to_a, to_b) = synced_pair(&redis, &origin).await;
    for n in 0..10 {
        to_a.get(&format!("/paused/{n}"), &[HOST]).await;
    }
    await_entry_keys(&redis, 10, WRITE_WAIT).await;

    redis.pause();
    let mut took_all = Vec::new();
    for n in 0..10 {
        // B reads a paused Redis; A misses, reads and writes it.
        for (client, path) in [
            (&to_b, format!("/paused/{n}")),
            (&to_a, format!("/paused/new/{n}")),
        ] {
            let (resp, took) = timed(client, &path).await;
            assert_eq!(resp.status, 200, "{path}: {resp:?}");
            assert!(
                took < LATENCY_BOUND,
                "{path} took {took:?} on a paused Redis"
            );
            took_all.push((path, took));
        }
    }
    let waited_on_redis = took_all
        .iter()
        .filter(|(_, took)| *took >= REDIS_OP_TIMEOUT)
        .count();
    assert!(
        waited_on_redis <= took_all.len() / 2,
        "the breaker should take a stalled Redis off the path: {took_all:?}"
    );
    for instance in [&a, &b] {
        let ready = readiness(instance).await;
        assert_ne!(ready["breaker"], "closed", "the breaker opened: {ready}");
    }
    let (hit, took) = timed(&to_a, "/paused/0").await;
    assert_eq!(hit.cache_status(), MEMORY_HIT);
    assert!(took < REDIS_OP_TIMEOUT, "a memory hit waited {took:?}");

    redis.resume();
    assert!(
        shared_hits_resume(&redis, &to_a, &to_b, "paused").await,
        "shared hits did not resume after SIGCONT"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Asks for `path` until the answer is not a memory hit (bounded); that answer.
async fn first_answer_not_from_memory(client: &Client, path: &str) -> Resp {
    let mut last = None;
    let left_memory = eventually(RECOVERY_WAIT, async || {
        let answer = client.get(path, &[HOST]).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        let done = answer.cache_status() != MEMORY_HIT;
        last = Some(answer);
        done
    })
    .await;
    assert!(
        left_memory,
        "{path} stayed a memory hit across the epoch change"
    );
    last.expect("asked at least once")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_a_new_epoch_that_clears_memory() {
    let mut redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let (a, b, to_a, to_b) = synced_pair(&redis, &origin).await;
    assert_eq!(to_a.get("/epoch", &[HOST]).await.text(), "/epoch #1");
    await_entry_keys(&redis, 1, WRITE_WAIT).await;
    assert_eq!(to_b.get("/epoch", &[HOST]).await.cache_status(), SHARED_HIT);
    assert_eq!(to_a.get("/epoch", &[HOST]).await.cache_status(), MEMORY_HIT);
    assert_eq!(to_b.get("/epoch", &[HOST]).await.cache_status(), MEMORY_HIT);

    redis.restart();
    // A memory hit until A's epoch poll sees the new epoch and clears its memory tier.
    let last = first_answer_not_from_memory(&to_a, "/epoch").await;
    assert_eq!(last.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(last.text(), "/epoch #2");
    await_entry_keys(&redis, 1, WRITE_WAIT).await;

    // B clears too: its first answer from outside memory is A's new entry from Redis, or a
    // fill of its own while it reloads the purge state of the new epoch; never the old entry.
    let last = first_answer_not_from_memory(&to_b, "/epoch").await;
    assert_ne!(last.text(), "/epoch #1", "{:?}", last.cache_status());
    assert!(
        [SHARED_HIT, "cachet; fwd=miss; stored"].contains(&last.cache_status()),
        "{:?}",
        last.cache_status()
    );
    assert!(shared_hits_resume(&redis, &to_a, &to_b, "epoch").await);
    a.shutdown().await;
    b.shutdown().await;
}

/// The bytes Redis holds at `key`.
fn blob(server: &RedisServer, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.client())
        .expect("GET")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_in_redis_is_a_miss_and_is_replaced() {
    let redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let (a, b, to_a, to_b) = synced_pair(&redis, &origin).await;
    let mut known = Vec::new();
    for (n, path) in ["/corrupt/garbage", "/corrupt/truncated"]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            to_a.get(path, &[HOST]).await.cache_status(),
            "cachet; fwd=miss; stored"
        );
        // This path's key is the one not seen before (the previous path's key may be gone:
        // deleting a corrupt blob may race with writing its replacement).
        let mut new_key = None;
        let written = eventually(WRITE_WAIT, async || {
            new_key = entry_keys(&redis).into_iter().find(|k| !known.contains(k));
            new_key.is_some()
        })
        .await;
        assert!(written, "{path} was not written to Redis");
        let key = new_key.expect("found");
        known.push(key.clone());
        let corrupt: Vec<u8> = if n == 0 {
            b"\x01this is not a blob".to_vec()
        } else {
            let whole = blob(&redis, &key).expect("the entry's blob");
            whole[..whole.len() / 2].to_vec()
        };
        redis.cli(&["-x", "SET", &key], Some(&corrupt));

        let answer = to_b.get(path, &[HOST]).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(answer.cache_status(), "cachet; fwd=miss; stored", "{path}");
        // The origin numbers its answers: A's fill of each path, then B's.
        assert_eq!(
            answer.text(),
            format!("{path} #{}", 2 * n + 2),
            "{path} from the origin"
        );
        assert_eq!(origin.hits_for(path), 2, "{path}");
        let replaced = eventually(WRITE_WAIT, async || {
            blob(&redis, &key).as_deref() != Some(&corrupt[..])
        })
        .await;
        assert!(replaced, "{path}: the corrupt blob stayed in Redis");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_200_and_names_the_shared_tier_down_while_redis_is_down() {
    let port = free_port(false);
    let url = format!("redis://127.0.0.1:{port}/0");
    let origin = Origin::numbered(Reply::empty().cache_control(MAX_AGE_60)).await;
    let proxy = Proxy::start(&one_route_shared(&origin.url(), &redis_url(&url), "")).await;
    let client = Client::new(proxy.addr);
    assert_eq!(shared_tier_state(&proxy).await, "down");
    assert_eq!(
        client.get("/readyz-down", &[HOST]).await.cache_status(),
        "cachet; fwd=miss; stored"
    );
    assert_eq!(
        client.get("/readyz-down", &[HOST]).await.cache_status(),
        MEMORY_HIT
    );

    let mut redis = RedisServer::start_on(port);
    await_shared_tier_up(&proxy, RECOVERY_WAIT).await;
    redis.kill();
    let down = eventually(RECOVERY_WAIT, async || {
        assert_eq!(client.get("/readyz-killed", &[HOST]).await.status, 200);
        shared_tier_state(&proxy).await == "down"
    })
    .await;
    assert!(down, "/readyz never saw the shared tier down again");

    // Traffic opens the breaker; Redis comes back. "up" means requests use Redis again: never
    // while the breaker is still open or probing.
    let mut n = 0;
    let opened = eventually(RECOVERY_WAIT, async || {
        n += 1;
        client.get(&format!("/readyz-open/{n}"), &[HOST]).await;
        readiness(&proxy).await["breaker"] == "open"
    })
    .await;
    assert!(opened, "the breaker never opened");
    redis.restart();
    let closed = eventually(RECOVERY_WAIT, async || {
        n += 1;
        client.get(&format!("/readyz-back/{n}"), &[HOST]).await;
        let ready = readiness(&proxy).await;
        if ready["shared_tier"] == "up" {
            assert_eq!(ready["breaker"], "closed", "{ready}");
        }
        ready["breaker"] == "closed"
    })
    .await;
    assert!(closed, "the breaker never closed");
    await_shared_tier_up(&proxy, RECOVERY_WAIT).await;
    proxy.shutdown().await;
}
