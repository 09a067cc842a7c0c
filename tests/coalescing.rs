//! Stampede protection in one process (DESIGN.md request path steps 5 and 6): concurrent
//! requests for one key share one origin fetch, and every outcome of that fetch (stored, not
//! storable, failed) is shared with the requests that waited for it.
//!
//! Requests are released together by a `Barrier`; the origin holds its answers behind a
//! [`Gate`] until every request is inside Cachet, which the test knows from the proxy's clock
//! (each request reads it before it joins its key's fill), never from a sleep.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::origin::Gate;
use support::{Client, Origin, Proxy, Reply, Resp, burst, join_all};

/// How many responses carry each `Cache-Status` value.
fn tally(responses: &[Resp]) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    for response in responses {
        *tally.entry(response.cache_status().to_owned()).or_default() += 1;
    }
    tally
}

/// RFC 9111 §4 lets a cache answer many requests from one response; DESIGN.md step 6 makes it
/// one fill per key, with the waiters served the stored result (`collapsed`).
#[tokio::test]
async fn two_hundred_concurrent_misses_for_one_key_make_one_origin_request() {
    const N: usize = 200;
    let gate = Gate::new();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60").gate(&gate)).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let readers = proxy.clock_readers();

    let tasks = burst(&client, "/stampede", &[], N);
    assert_eq!(origin.next_request().await.path(), "/stampede");
    // Every request's connection task and the one fill task have read the clock: all N are
    // inside Cachet, N - 1 of them waiting on the fill.
    proxy.await_clock_readers(readers + N + 1).await;
    gate.open();
    let all = join_all(tasks).await;

    assert_eq!(origin.hits_for("/stampede"), 1);
    let expected = BTreeMap::from([
        ("cachet; fwd=miss; collapsed".to_owned(), N - 1),
        ("cachet; fwd=miss; stored".to_owned(), 1),
    ]);
    assert_eq!(tally(&all), expected);
    for response in &all {
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "/stampede #1");
    }
    proxy.shutdown().await;
}

/// DESIGN.md step 6: a failed fill is shared ("waiters get the same ... 502/504; they do not
/// each retry a failing origin"). A 5xx without explicit freshness is not stored (RFC 9111 §3),
/// so every waiter gets the origin's own answer.
#[tokio::test]
async fn an_origin_5xx_is_shared_by_every_waiter_with_one_request_per_key() {
    const N: usize = 10;
    let gate = Gate::new();
    let origin = Origin::start({
        let gate = gate.clone();
        move |seen| {
            Reply::ok(format!("{} is down", seen.path()))
                .status(503)
                .gate(&gate)
        }
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let readers = proxy.clock_readers();

    let mut tasks = burst(&client, "/failing/a", &[], N);
    tasks.extend(burst(&client, "/failing/b", &[], N));
    let first = origin.next_request().await.path().to_owned();
    let second = origin.next_request().await.path().to_owned();
    assert_eq!(
        BTreeSet::from([first, second]),
        BTreeSet::from(["/failing/a".to_owned(), "/failing/b".to_owned()])
    );
    proxy.await_clock_readers(readers + 2 * N + 2).await;
    gate.open();
    let all = join_all(tasks).await;

    assert_eq!(origin.hits_for("/failing/a"), 1);
    assert_eq!(origin.hits_for("/failing/b"), 1);
    for (i, response) in all.iter().enumerate() {
        let path = if i < N { "/failing/a" } else { "/failing/b" };
        assert_eq!(response.status, 503, "{path}");
        assert_eq!(response.text(), format!("{path} is down"));
        assert_eq!(response.cache_status(), "cachet; fwd=miss", "{path}");
    }
    proxy.shutdown().await;
}

/// RFC 5861 §4 with DESIGN.md step 6: when the shared fill of an expired entry fails, every
/// waiter gets the same stale-if-error answer, and the failing origin sees one request.
#[tokio::test]
async fn waiters_on_a_failing_refill_share_the_stale_if_error_answer() {
    const N: usize = 10;
    let gate = Gate::new();
    let origin = Origin::start({
        let (gate, count) = (gate.clone(), AtomicUsize::new(0));
        move |_| match count.fetch_add(1, Ordering::SeqCst) {
            0 => Reply::ok("first").cache_control("max-age=10"),
            _ => Reply::ok("down").status(503).gate(&gate),
        }
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "stale_if_error = \"60s\"").await;
    Client::new(proxy.addr).get("/refill-fails", &[]).await;
    proxy.advance(Duration::from_secs(15));
    // A new client: every request of the burst opens (and is served by) a new connection.
    let client = Client::new(proxy.addr);
    let readers = proxy.clock_readers();

    let tasks = burst(&client, "/refill-fails", &[], N);
    origin.next_request().await;
    origin.next_request().await;
    proxy.await_clock_readers(readers + N + 1).await;
    gate.open();
    let all = join_all(tasks).await;

    assert_eq!(origin.hits_for("/refill-fails"), 2);
    let stale = "cachet; fwd=stale; fwd-status=503; ttl=-5; detail=stale-if-error";
    assert_eq!(tally(&all), BTreeMap::from([(stale.to_owned(), N)]));
    for response in &all {
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "first");
    }
    proxy.shutdown().await;
}

/// A leader whose origin misses the route's deadline fails with 504, and its waiters share
/// that failure instead of each waiting out the deadline against the origin again.
///
/// The deadline is real time, so the followers must join within it: a burst of N requests
/// reaches Cachet in a few milliseconds, far inside 300 ms.
#[tokio::test]
async fn an_origin_timeout_is_shared_by_every_waiter_as_one_504() {
    const N: usize = 20;
    // Never opened while the test runs: the origin is slower than any deadline.
    let gate = Gate::new();
    let origin = Origin::fixed(
        Reply::ok("too late")
            .cache_control("max-age=60")
            .gate(&gate),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "timeout = \"300ms\"").await;
    let client = Client::new(proxy.addr);

    let all = join_all(burst(&client, "/timeout", &[], N)).await;

    assert_eq!(origin.hits_for("/timeout"), 1);
    for response in &all {
        assert_eq!(response.status, 504);
        assert_eq!(response.cache_status(), "cachet; fwd=miss");
        assert_eq!(response.body, all[0].body);
    }
    gate.open();
    proxy.shutdown().await;
}

/// DESIGN.md step 6: "not storable (waiters go to the origin themselves, and the key is
/// remembered as hit-for-miss)". The waiters are released as soon as the leader's response head
/// shows it cannot be stored, not when its body ends; later requests bypass coalescing and run
/// side by side.
#[tokio::test]
async fn not_storable_responses_release_waiters_at_once_and_later_requests_run_in_parallel() {
    const N: usize = 10;
    let (head, end, later) = (Gate::new(), Gate::new(), Gate::new());
    let origin = Origin::start({
        let (head, end, later) = (head.clone(), end.clone(), later.clone());
        let count = AtomicUsize::new(0);
        move |seen| {
            let reply = |body: &str| Reply::ok(body.to_owned()).cache_control("no-store");
            if seen.header("x-phase") == Some("later") {
                return reply("later").gate(&later);
            }
            match count.fetch_add(1, Ordering::SeqCst) {
                0 => reply("leader").gate(&head).hold_end(&end),
                _ => reply("follower"),
            }
        }
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let readers = proxy.clock_readers();

    let tasks = burst(&client, "/no-store", &[], N);
    origin.next_request().await;
    proxy.await_clock_readers(readers + N + 1).await;
    head.open();
    // The leader's body is still held open: the waiters went on the head alone.
    for _ in 1..N {
        assert_eq!(origin.next_request().await.path(), "/no-store");
    }
    end.open();
    let all = join_all(tasks).await;
    assert_eq!(
        tally(&all),
        BTreeMap::from([("cachet; fwd=miss".to_owned(), N)])
    );
    assert_eq!(all.iter().filter(|r| r.text() == "leader").count(), 1);
    assert_eq!(origin.hits_for("/no-store"), N);

    // Hit-for-miss: two later requests both reach the origin while it holds its answers.
    let tasks = burst(&client, "/no-store", &[("x-phase", "later")], 2);
    origin.next_request().await;
    origin.next_request().await;
    later.open();
    for response in join_all(tasks).await {
        assert_eq!(
            response.cache_status(),
            "cachet; fwd=bypass; detail=hit-for-miss"
        );
        assert_eq!(response.text(), "later");
    }
    assert_eq!(origin.hits_for("/no-store"), N + 2);
    proxy.shutdown().await;
}

/// DESIGN.md step 5: "The fill runs in its own task, so a client that disconnects does not
/// abandon it." The leader's connection closes while the origin holds its answer; a request
/// that joined the fill meanwhile is served its result, and a later one is a hit.
#[tokio::test]
async fn a_fill_survives_its_leaders_client_disconnecting_and_is_stored() {
    let gate = Gate::new();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60").gate(&gate)).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let host = [("host", "test.local")];
    let readers = proxy.clock_readers();

    let mut leader = support::client::RawConn::open(proxy.addr).await;
    leader.write(&support::raw_get("/leader-gone", "")).await;
    assert_eq!(origin.next_request().await.path(), "/leader-gone");
    drop(leader);

    let follower = burst(&client, "/leader-gone", &host, 1);
    // The leader's connection, its fill and the follower's connection.
    proxy.await_clock_readers(readers + 3).await;
    gate.open();
    let follower = join_all(follower).await.remove(0);
    assert_eq!(follower.cache_status(), "cachet; fwd=miss; collapsed");
    assert_eq!(follower.text(), "/leader-gone #1");

    let later = client.get("/leader-gone", &host).await;
    assert_eq!(later.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(later.text(), "/leader-gone #1");
    assert_eq!(origin.hits_for("/leader-gone"), 1);
    proxy.shutdown().await;
}

/// Coalescing is per key: a slow fill of one URL never holds up another.
#[tokio::test]
async fn requests_for_different_keys_are_not_coalesced() {
    let gate = Gate::new();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60").gate(&gate)).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);

    let mut tasks = burst(&client, "/separate/one", &[], 1);
    tasks.extend(burst(&client, "/separate/two", &[], 1));
    // Both fills reach the origin while it answers neither.
    let seen = BTreeSet::from([
        origin.next_request().await.path().to_owned(),
        origin.next_request().await.path().to_owned(),
    ]);
    assert_eq!(
        seen,
        BTreeSet::from(["/separate/one".to_owned(), "/separate/two".to_owned()])
    );
    gate.open();
    for response in join_all(tasks).await {
        assert_eq!(response.cache_status(), "cachet; fwd=miss; stored");
    }
    proxy.shutdown().await;
}
