//! Purges across instances sharing a real Redis (DESIGN.md "Purge without scanning: tag
//! watermarks", "Never backwards, never resurrected", "Failure behaviour"): a purge on one
//! instance reaches the others' memory tiers, survives a lost subscription and a Redis that
//! lost its data, and still holds locally when Redis is down.
//!
//! Propagation between instances has no event a test could await: it is observed with the
//! bounded [`eventually`] poll.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use redis::Commands;
use serde_json::Value;
use support::admin::{Admin, body_json};
use support::proxy::{one_route_shared, redis_url};
use support::redis::RedisServer;
use support::shared::{await_entry_keys, eventually};
use support::{Client, Origin, Proxy, Reply, Resp};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Instances behind one load balancer see one Host: their own ports must not split the key.
const HOST: &[(&str, &str)] = &[("host", "api.test")];
const STORED: &str = "cachet; fwd=miss; stored";
/// Bound of every cross-instance wait: pub/sub takes milliseconds, a resubscription up to the
/// 2s reconnect backoff, a lost data set about a second of polling.
const WITHIN: Duration = Duration::from_secs(10);
/// The purge counter, under the default `key_prefix`.
const COUNTER_KEY: &str = "{cachet:ctl}:purge-seq";
const ITEM_1: &str = r#"{"tags": ["item:1"]}"#;

/// An origin answering `<path> #<n>` (n counts its requests) with `max-age=60` and
/// `Surrogate-Key: item:<last path segment>`.
async fn origin() -> Origin {
    let count = AtomicUsize::new(0);
    Origin::start(move |seen| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let item = seen.path().rsplit('/').next().unwrap_or_default();
        Reply::ok(format!("{} #{n}", seen.path()))
            .cache_control("max-age=60")
            .header("surrogate-key", &format!("item:{item}"))
    })
    .await
}

/// `/readyz`'s `shared_tier`: "up" once the instance reaches Redis and is synced.
async fn shared_tier(proxy: &Proxy) -> String {
    let ready = Admin::new(proxy.admin).get("/readyz").await;
    body_json(&ready)["shared_tier"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn await_shared_tier(proxy: &Proxy, state: &str) {
    let reached = eventually(WITHIN, async || shared_tier(proxy).await == state).await;
    assert!(reached, "shared tier not {state:?} within {WITHIN:?}");
}

/// A synced instance of one route (with a static tag) on the Redis at `url`, in front of
/// `origin`.
async fn instance(url: &str, origin: &Origin) -> Proxy {
    let config = one_route_shared(&origin.url(), &redis_url(url), "tags = [\"catalog\"]");
    let proxy = Proxy::start(&config).await;
    await_shared_tier(&proxy, "up").await;
    proxy
}

/// `n` synced instances on `redis` in front of `origin`.
async fn instances(n: usize, redis: &RedisServer, origin: &Origin) -> Vec<Proxy> {
    let mut proxies = Vec::new();
    for _ in 0..n {
        proxies.push(instance(&redis.url(), origin).await);
    }
    proxies
}

/// A TCP forwarder to Redis that can refuse new connections while those it carries keep
/// working: an instance behind it loses only the connections a test kills, and cannot
/// replace them until the door opens again.
struct Door {
    url: String,
    open: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Door {
    async fn start(redis: &RedisServer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind door");
        let url = format!("redis://{}/0", listener.local_addr().expect("door address"));
        let open = Arc::new(AtomicBool::new(true));
        let (target, is_open) = (redis.port(), Arc::clone(&open));
        let task = tokio::spawn(async move {
            // Dropped with the task: aborts every forwarded connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !is_open.load(Ordering::SeqCst) {
                    continue; // Closed at once: the client's connection attempt fails.
                }
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { url, open, task }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn from_memory(response: &Resp) -> bool {
    response.is_hit() && !response.cache_status().contains("detail=")
}

/// Fills `path` through `a` (the `entries`-th entry in Redis), then makes `b` read it from the
/// shared tier into its memory tier; the body both serve.
async fn fill_both(
    redis: &RedisServer,
    entries: usize,
    a: &Client,
    b: &Client,
    path: &str,
) -> String {
    let filled = a.get(path, HOST).await;
    assert_eq!(filled.cache_status(), STORED, "{path}");
    await_entry_keys(redis, entries, WITHIN).await;
    let shared = b.get(path, HOST).await;
    assert!(
        shared.cache_status().ends_with("detail=shared"),
        "{path}: {}",
        shared.cache_status()
    );
    let memory = b.get(path, HOST).await;
    assert!(from_memory(&memory), "{path}: {}", memory.cache_status());
    assert_eq!(memory.text(), filled.text());
    filled.text()
}

/// Polls `client` on `path` until it serves something other than `old`; that response.
async fn await_not_serving(client: &Client, path: &str, old: &str) -> Resp {
    let mut last = None;
    let changed = eventually(WITHIN, async || {
        let response = client.get(path, HOST).await;
        let changed = response.text() != old;
        last = Some(response);
        changed
    })
    .await;
    let last = last.expect("polled at least once");
    assert!(
        changed,
        "{path} still serves {old:?}: {}",
        last.cache_status()
    );
    last
}

async fn shutdown(proxies: Vec<Proxy>) {
    for proxy in proxies {
        proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_instance_stops_another_serving_it_from_memory() {
    let redis = RedisServer::start();
    let origin = origin().await;
    let proxies = instances(2, &redis, &origin).await;
    let (a, b) = (Client::new(proxies[0].addr), Client::new(proxies[1].addr));
    let old = fill_both(&redis, 1, &a, &b, "/items/1").await;
    let neighbour = fill_both(&redis, 2, &a, &b, "/items/2").await;

    Admin::new(proxies[0].admin).purge_ok(ITEM_1).await;
    let refetched = await_not_serving(&b, "/items/1", &old).await;
    assert_eq!(
        refetched.cache_status(),
        STORED,
        "B went to the origin, not to Redis"
    );
    let kept = b.get("/items/2", HOST).await;
    assert!(from_memory(&kept), "{}", kept.cache_status());
    assert_eq!(kept.text(), neighbour);
    assert_ne!(a.get("/items/1", HOST).await.text(), old);

    // The route's static tag, purged through B this time, reaches A's memory tier as well.
    Admin::new(proxies[1].admin)
        .purge_ok(r#"{"tags": ["catalog"]}"#)
        .await;
    await_not_serving(&a, "/items/2", &neighbour).await;
    shutdown(proxies).await;
}

/// A purge published while an instance had no subscription is missed on the channel; the
/// instance loads every watermark when it subscribes again. B reaches Redis through a [`Door`]
/// that is closed before its subscription is killed, so B cannot resubscribe before the purge
/// is recorded. (Redis' ACL cannot do this: the client library takes a refused `SUBSCRIBE` for
/// a success.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reloads_purges_it_missed_while_its_subscription_was_down() {
    let redis = RedisServer::start();
    let door = Door::start(&redis).await;
    let origin = origin().await;
    let proxies = vec![
        instance(&redis.url(), &origin).await,
        instance(&door.url, &origin).await,
    ];
    let (a, b) = (Client::new(proxies[0].addr), Client::new(proxies[1].addr));
    let old = fill_both(&redis, 1, &a, &b, "/items/1").await;

    door.set_open(false);
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"], None);
    await_shared_tier(&proxies[1], "down").await;
    Admin::new(proxies[0].admin).purge_ok(ITEM_1).await;

    door.set_open(true);
    // Synced again: subscribed, then every watermark loaded.
    await_shared_tier(&proxies[1], "up").await;
    let after = b.get("/items/1", HOST).await;
    assert_eq!(after.cache_status(), STORED, "B served the purged entry");
    assert_ne!(after.text(), old);
    shutdown(proxies).await;
}

/// Fills `/items/1` and `/probe/1` (both tagged `item:1`) on two instances, purges the tag
/// through A, waits until B applied it (seen on the probe, so `/items/1` stays untouched in
/// B's memory tier), makes Redis lose everything with `lose`, and checks that neither instance
/// serves the purged entry and that purge sequences keep growing.
async fn assert_lost_data_brings_nothing_back(lose: impl FnOnce(&mut RedisServer)) {
    let mut redis = RedisServer::start();
    let origin = origin().await;
    let proxies = instances(2, &redis, &origin).await;
    let (a, b) = (Client::new(proxies[0].addr), Client::new(proxies[1].addr));
    let old = fill_both(&redis, 1, &a, &b, "/items/1").await;
    let probe = fill_both(&redis, 2, &a, &b, "/probe/1").await;
    let purged = Admin::new(proxies[0].admin).purge_ok(ITEM_1).await;
    await_not_serving(&b, "/probe/1", &probe).await;

    lose(&mut redis);
    // Both instances noticed: the counter was raised back above what they know, and they
    // are synced with the new data set.
    let resynced = eventually(WITHIN, async || {
        let counter: u64 = redis.cli(&["GET", COUNTER_KEY], None).parse().unwrap_or(0);
        counter >= purged
            && shared_tier(&proxies[0]).await == "up"
            && shared_tier(&proxies[1]).await == "up"
    })
    .await;
    assert!(
        resynced,
        "the instances did not resync with the new data set"
    );
    for (name, client) in [("A", &a), ("B", &b)] {
        let response = client.get("/items/1", HOST).await;
        assert_ne!(response.text(), old, "{name} serves the purged entry again");
    }

    // Never backwards: the next purge, through the other instance, covers what was filled
    // since, on both.
    let later = Admin::new(proxies[1].admin).purge_ok(ITEM_1).await;
    assert!(later > purged, "sequence {later} after {purged}");
    let current = b.get("/items/1", HOST).await;
    assert_eq!(current.cache_status(), STORED, "B: {}", current.text());
    await_not_serving(&a, "/items/1", &current.text()).await;
    shutdown(proxies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_brings_no_purged_entry_back() {
    assert_lost_data_brings_nothing_back(RedisServer::restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_redis_brings_no_purged_entry_back() {
    assert_lost_data_brings_nothing_back(|redis| {
        assert_eq!(redis.cli(&["FLUSHALL"], None), "OK");
    })
    .await;
}

/// Redis down: the purge is answered 503 `applied_locally` (the caller retries) and holds on
/// this instance meanwhile. `advance` stands for the time between the fill and the purge.
async fn assert_purge_with_redis_down_applies_locally(advance: Duration) {
    let mut redis = RedisServer::start();
    let origin = origin().await;
    let proxies = instances(1, &redis, &origin).await;
    let proxy = &proxies[0];
    let client = Client::new(proxy.addr);
    let old = client.get("/items/1", HOST).await.text();
    let neighbour = client.get("/items/2", HOST).await.text();
    assert!(from_memory(&client.get("/items/1", HOST).await));

    redis.kill();
    proxy.advance(advance);
    let answer = Admin::new(proxy.admin).purge(ITEM_1, None).await;
    assert_eq!(answer.status, 503, "{}", answer.text());
    let json = body_json(&answer);
    assert_eq!(json["applied_locally"], Value::Bool(true), "{json}");
    assert_eq!(json["ok"], Value::Bool(false), "{json}");
    // A local-only purge covers fills started up to its millisecond (over-invalidating is
    // allowed, under- never); time moves on, as it would.
    proxy.advance(Duration::from_millis(1));

    let after = client.get("/items/1", HOST).await;
    assert_eq!(after.cache_status(), STORED, "the purged entry was served");
    assert_ne!(after.text(), old);
    let kept = client.get("/items/2", HOST).await;
    assert!(from_memory(&kept), "{}", kept.cache_status());
    assert_eq!(kept.text(), neighbour);
    assert!(
        from_memory(&client.get("/items/1", HOST).await),
        "cached again"
    );
    shutdown(proxies).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_purge_answers_503_and_holds_on_this_instance() {
    assert_purge_with_redis_down_applies_locally(Duration::from_secs(1)).await;
}

/// A local-only purge is recorded by local time in milliseconds: it must still cover a fill
/// that started in the same millisecond (DESIGN.md: a fetch that started before a purge is
/// never served as fresh after it; an instance may invalidate too much, never too little).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_purge_covers_a_fill_started_in_the_same_millisecond() {
    assert_purge_with_redis_down_applies_locally(Duration::ZERO).await;
}

/// `cachet_watermarks` from the instance's `/metrics`.
async fn watermarks_held(proxy: &Proxy) -> u64 {
    let scrape = Admin::new(proxy.admin).get("/metrics").await.text();
    scrape
        .lines()
        .find_map(|line| line.strip_prefix("cachet_watermarks "))
        .expect("the watermark gauge")
        .trim()
        .parse()
        .expect("a count")
}

/// Watermarks are kept as long as an entry they cover may live (the route's `timeout`,
/// `max_ttl` and the larger of `max_ttl` and its stale windows, plus a 5-minute margin for
/// skew), then forgotten on this instance and in Redis, so neither grows without bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_past_their_retention_are_forgotten_here_and_in_redis() {
    let redis = RedisServer::start();
    let origin = origin().await;
    // timeout 10s + max_ttl 20s + max(20s, windows 0s) + margin 300s.
    let retention = Duration::from_secs(10 + 20 + 20 + 300);
    let config = one_route_shared(
        &origin.url(),
        &redis_url(&redis.url()),
        "timeout = \"10s\"\nmax_ttl = \"20s\"\n",
    );
    let proxy = Proxy::start(&config).await;
    await_shared_tier(&proxy, "up").await;
    let admin = Admin::new(proxy.admin);
    let mut conn = redis.client();
    let fields = |conn: &mut redis::Connection| -> Vec<String> {
        let mut fields: Vec<String> = conn.hkeys("{cachet:ctl}:marks").expect("HKEYS");
        fields.sort();
        fields
    };

    admin.purge_ok(ITEM_1).await;
    proxy.advance(retention - Duration::from_secs(1));
    admin.purge_ok(r#"{"tags": ["item:2"]}"#).await;
    assert_eq!(
        watermarks_held(&proxy).await,
        2,
        "both still within retention"
    );
    assert_eq!(fields(&mut conn), ["h|t:item:1", "h|t:item:2"]);

    // item:1's mark is now older than the retention; item:2's is not.
    proxy.advance(Duration::from_secs(2));
    admin.purge_ok(r#"{"tags": ["item:3"]}"#).await;
    assert_eq!(watermarks_held(&proxy).await, 2);
    assert_eq!(fields(&mut conn), ["h|t:item:2", "h|t:item:3"]);
    let indexed: usize = conn.zcard("{cachet:ctl}:marks-by-time").expect("ZCARD");
    assert_eq!(indexed, 2, "the time index shrinks with the marks");
    proxy.shutdown().await;
}
