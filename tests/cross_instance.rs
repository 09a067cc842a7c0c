//! One fill per key across instances sharing a real Redis: the lease, the completion message
//! and the shared-tier read that follow it (DESIGN.md request path, step 6).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachet::coalesce::lease::LeaseHook;
use support::origin::Gate;
use support::proxy::{Options, one_route_shared, redis_url};
use support::redis::RedisServer;
use support::{Client, Origin, Proxy, Reply};
use tokio::sync::Barrier;

/// Instances behind one load balancer see one Host; their own ports must not split the key.
const HOST: &[(&str, &str)] = &[("host", "api.test")];

/// N instances on one Redis in front of `origin`.
async fn instances(n: usize, redis: &RedisServer, origin: &Origin, extra: &str) -> Vec<Proxy> {
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), extra);
    let mut proxies = Vec::with_capacity(n);
    for _ in 0..n {
        proxies.push(Proxy::start(&config).await);
    }
    proxies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_three_instances_reach_the_origin_once() {
    let redis = RedisServer::start();
    // Slow enough that every instance asks while the first fill is still running.
    let origin = Origin::numbered(
        Reply::empty()
            .cache_control("max-age=60")
            .delay(Duration::from_millis(600)),
    )
    .await;
    let proxies = instances(3, &redis, &origin, "").await;
    let per_instance = 8;
    let barrier = Arc::new(Barrier::new(proxies.len() * per_instance));
    let mut tasks = Vec::new();
    for proxy in &proxies {
        for _ in 0..per_instance {
            let client = Client::new(proxy.addr);
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                client.get("/cold", HOST).await
            }));
        }
    }
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        assert_eq!(response.status, 200);
        statuses.push(response.cache_status().to_owned());
        bodies.push(response.text());
    }
    assert_eq!(origin.hits_for("/cold"), 1, "{statuses:#?}");
    assert!(bodies.iter().all(|b| b == "/cold #1"), "{bodies:?}");
    let stored = statuses
        .iter()
        .filter(|s| s.ends_with("fwd=miss; stored"))
        .count();
    assert_eq!(stored, 1, "{statuses:#?}");
    assert!(
        statuses
            .iter()
            .all(|s| s.ends_with("stored") || s.ends_with("collapsed") || s.contains("hit")),
        "{statuses:#?}"
    );
    for proxy in proxies {
        proxy.shutdown().await;
    }
}

/// A holder that never finishes (its origin request hangs) only delays the others until its
/// lease expires; then another instance fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_lease_holder_delays_others_only_until_its_lease_expires() {
    let redis = RedisServer::start();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let origin = Origin::start(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let reply = Reply::ok(format!("fill #{n}")).cache_control("max-age=60");
        // The first fill hangs far past every deadline of the test.
        if n == 1 {
            reply.delay(Duration::from_secs(60))
        } else {
            reply
        }
    })
    .await;
    // A short explicit lease: the holder's lease expires long before its fill would.
    let lease_config = one_route_shared(
        &origin.url(),
        &format!("{}\nlease_ttl = \"700ms\"", redis_url(&redis.url())),
        "timeout = \"30s\"",
    );
    let holder = Proxy::start(&lease_config).await;
    let waiter = Proxy::start(&lease_config).await;

    let hanging = {
        let client = Client::new(holder.addr);
        tokio::spawn(async move { client.get("/held", HOST).await })
    };
    // The holder's fill is at the origin: its lease is taken.
    origin.next_request().await;
    let started = Instant::now();
    let response = Client::new(waiter.addr).get("/held", HOST).await;
    let waited = started.elapsed();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "fill #2");
    assert!(
        waited >= Duration::from_millis(500),
        "waited only {waited:?}: the lease was ignored"
    );
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    hanging.abort();
    waiter.shutdown().await;
    holder.shutdown().await;
}

/// The outcome is published after the entry is in Redis, so the waiting instance serves it
/// from the shared tier at once instead of sitting out its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_instance_is_woken_by_the_holders_outcome() {
    let redis = RedisServer::start();
    let origin = Origin::numbered(
        Reply::empty()
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300)),
    )
    .await;
    // Long leases and timeouts: only the completion message can end the wait quickly.
    let config = one_route_shared(
        &origin.url(),
        &format!("{}\nlease_ttl = \"20s\"", redis_url(&redis.url())),
        "timeout = \"20s\"",
    );
    let a = Proxy::start(&config).await;
    let b = Proxy::start(&config).await;
    let first = {
        let client = Client::new(a.addr);
        tokio::spawn(async move { client.get("/woken", HOST).await })
    };
    origin.next_request().await;
    let started = Instant::now();
    let second = Client::new(b.addr).get("/woken", HOST).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(second.text(), "/woken #1");
    assert_eq!(second.cache_status(), "cachet; fwd=miss; collapsed");
    assert_eq!(
        first.await.unwrap().cache_status(),
        "cachet; fwd=miss; stored"
    );
    assert_eq!(origin.hits_for("/woken"), 1);
    a.shutdown().await;
    b.shutdown().await;
}

/// The holder publishes its outcome in the window between the waiter losing the lease race and
/// registering for the outcome: the message is missed, and the waiter's re-read of the shared
/// tier after registering must find the entry (else it would sit out the 20 s lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_published_before_the_waiter_registers_is_not_missed() {
    let redis = RedisServer::start();
    let gate = Gate::new();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60").gate(&gate)).await;
    let config = one_route_shared(
        &origin.url(),
        &format!("{}\nlease_ttl = \"20s\"", redis_url(&redis.url())),
        "timeout = \"20s\"",
    );
    let holder = Proxy::start(&config).await;
    let holder_done = Arc::new(std::sync::Mutex::new(None::<std::sync::mpsc::Receiver<()>>));
    let hook = {
        let gate = gate.clone();
        let holder_done = Arc::clone(&holder_done);
        LeaseHook(Arc::new(move || {
            // Finish the holder's fill (store, publish, release) before this instance registers.
            gate.open();
            let done = holder_done.lock().unwrap().take();
            if let Some(done) = done {
                // Hands this worker's queued tasks to another thread while it blocks.
                tokio::task::block_in_place(|| {
                    done.recv_timeout(Duration::from_secs(10))
                        .expect("the holder finished");
                });
            }
        }))
    };
    let waiter = Proxy::start_with(
        &config,
        Options {
            lease_hook: Some(hook),
            ..Options::default()
        },
    )
    .await;

    let (finished, done) = std::sync::mpsc::channel();
    *holder_done.lock().unwrap() = Some(done);
    let first = {
        let client = Client::new(holder.addr);
        tokio::spawn(async move {
            let response = client.get("/window", HOST).await;
            finished.send(()).unwrap();
            response
        })
    };
    origin.next_request().await;
    let started = Instant::now();
    let second = Client::new(waiter.addr).get("/window", HOST).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}: the outcome was missed",
        started.elapsed()
    );
    assert_eq!(second.text(), "/window #1");
    assert_eq!(second.cache_status(), "cachet; fwd=miss; collapsed");
    assert_eq!(
        first.await.unwrap().cache_status(),
        "cachet; fwd=miss; stored"
    );
    assert_eq!(origin.hits_for("/window"), 1);
    holder.shutdown().await;
    waiter.shutdown().await;
}
