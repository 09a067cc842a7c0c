//! Serving stale and refreshing early (DESIGN.md request path step 7): stale-while-revalidate
//! and stale-if-error (RFC 5861), the directives that forbid serving stale (RFC 9111 §4.2.4),
//! credential partitions, early refresh (XFetch) and TTL jitter.
//!
//! Time moves only through the proxy's manual clock; the origin holds answers behind a
//! [`Gate`] so that "answered at once" means "answered while the origin has not answered".

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use cachet::clock::{Clock as _, ManualClock};
use support::origin::Gate;
use support::proxy::{Options, one_route};
use support::{Client, Origin, Proxy, Reply, Resp, Seen, burst, join_all, ttl};

const STORED: &str = "cachet; fwd=miss; stored";
const SWR_AT_15S: &str = "cachet; hit; ttl=-5; detail=stale-while-revalidate";

/// The `Cache-Status` of a GET of `path` with `headers`.
async fn status_of(client: &Client, path: &str, headers: &[(&str, &str)]) -> String {
    client.get(path, headers).await.cache_status().to_owned()
}

/// The `ttl` of a fresh hit; fails the test on any other answer.
fn fresh_hit_ttl(response: &Resp) -> i64 {
    ttl(response.cache_status())
        .filter(|ttl| *ttl >= 0 && response.cache_status().starts_with("cachet; hit; ttl="))
        .unwrap_or_else(|| panic!("not a fresh hit: {response:?}"))
}

/// Polls `path` until its body differs from `old`, at most a bounded number of times: the
/// refresh that replaces it is a background task with no event of its own to await.
async fn eventually_new_body(client: &Client, path: &str, old: &str) -> Resp {
    for _ in 0..200 {
        let response = client.get(path, &[]).await;
        if response.text() != old {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} still serves {old:?} after the refresh");
}

/// An origin answering `<path> #<n>` (n counts its requests) with `cache_control`; from the
/// second request on, the answer is held until `gate` opens.
async fn gated_after_first(cache_control: &'static str, gate: &Gate) -> Origin {
    let (gate, count) = (gate.clone(), AtomicUsize::new(0));
    Origin::start(move |seen| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let reply = Reply::ok(format!("{} #{n}", seen.path())).cache_control(cache_control);
        if n == 1 { reply } else { reply.gate(&gate) }
    })
    .await
}

/// RFC 5861 §3: within stale-while-revalidate the stale response is served at once while one
/// background revalidation runs; DESIGN.md step 7 makes it exactly one per key.
#[tokio::test]
async fn stale_entry_is_served_at_once_while_one_refresh_runs() {
    let gate = Gate::new();
    let origin = gated_after_first("max-age=10", &gate).await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"30s\"").await;
    let client = Client::new(proxy.addr);
    assert_eq!(status_of(&client, "/swr", &[]).await, STORED);

    proxy.advance(Duration::from_secs(15));
    // Answered while the origin holds every answer: nobody waited for the refresh.
    let stale = client.get("/swr", &[]).await;
    assert_eq!(stale.cache_status(), SWR_AT_15S);
    assert_eq!(stale.text(), "/swr #1");
    origin.next_request().await;
    origin.next_request().await;

    for response in join_all(burst(&client, "/swr", &[], 20)).await {
        assert_eq!(response.cache_status(), SWR_AT_15S);
        assert_eq!(response.text(), "/swr #1");
    }
    assert_eq!(origin.hits_for("/swr"), 2, "one fill and one refresh");

    gate.open();
    let refreshed = eventually_new_body(&client, "/swr", "/swr #1").await;
    assert_eq!(refreshed.cache_status(), "cachet; hit; ttl=10");
    assert_eq!(refreshed.text(), "/swr #2");
    assert_eq!(origin.hits_for("/swr"), 2);
    proxy.shutdown().await;
}

/// A refresh answered with a response that may not be stored (here `no-store`) supersedes the
/// stale entry (RFC 9111 §4.3.3: the full response is used), so stale serving ends there
/// instead of every later request sending yet another refresh.
#[tokio::test]
async fn a_refresh_answered_with_no_store_ends_stale_serving() {
    let count = AtomicUsize::new(0);
    let origin = Origin::start(move |seen| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let cache_control = if n == 1 { "max-age=10" } else { "no-store" };
        Reply::ok(format!("{} #{n}", seen.path())).cache_control(cache_control)
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"30s\"").await;
    let client = Client::new(proxy.addr);
    client.get("/swr-no-store", &[]).await;
    proxy.advance(Duration::from_secs(15));
    assert_eq!(status_of(&client, "/swr-no-store", &[]).await, SWR_AT_15S);
    origin.next_request().await;
    origin.next_request().await;

    let next = eventually_new_body(&client, "/swr-no-store", "/swr-no-store #1").await;
    let bypass = "cachet; fwd=bypass; detail=hit-for-miss";
    assert_eq!(next.cache_status(), bypass);
    assert_eq!(origin.hits_for("/swr-no-store"), 3);
    proxy.shutdown().await;
}

/// DESIGN.md configuration: "the origin's own directive wins when larger" (RFC 5861 §3).
#[tokio::test]
async fn the_origins_longer_stale_while_revalidate_wins_over_the_routes() {
    let origin =
        Origin::numbered(Reply::empty().cache_control("max-age=10, stale-while-revalidate=60"))
            .await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"30s\"").await;
    let client = Client::new(proxy.addr);
    client.get("/origin-swr", &[]).await;

    // Past the route's 30s window, inside the origin's 60s one.
    proxy.advance(Duration::from_secs(50));
    let stale = client.get("/origin-swr", &[]).await;
    assert_eq!(
        stale.cache_status(),
        "cachet; hit; ttl=-40; detail=stale-while-revalidate"
    );
    assert_eq!(stale.text(), "/origin-swr #1");
    // The background refresh reaches the origin.
    origin.next_request().await;
    assert_eq!(origin.next_request().await.path(), "/origin-swr");
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.4 (and §5.2.2.2, §5.2.2.4, §5.2.2.8, §5.2.2.10): `must-revalidate`,
/// `proxy-revalidate`, `no-cache` and `s-maxage` forbid serving stale, whatever the route's
/// windows say; the entry (kept for its validator) is forwarded, and an origin error is passed
/// on instead of standing in a stale copy (RFC 5861 §4 yields to them).
#[tokio::test]
async fn entries_the_origin_forbids_serving_stale_are_never_served_stale() {
    let failing = Arc::new(AtomicBool::new(false));
    let origin = Origin::start({
        let (failing, count) = (Arc::clone(&failing), AtomicUsize::new(0));
        move |seen: &Seen| {
            if failing.load(Ordering::SeqCst) {
                return Reply::ok("origin error").status(500);
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let cache_control = match seen.path() {
                "/forbid/must-revalidate" => "max-age=10, must-revalidate",
                "/forbid/proxy-revalidate" => "max-age=10, proxy-revalidate",
                "/forbid/no-cache" => "max-age=10, no-cache",
                _ => "s-maxage=10",
            };
            Reply::ok(format!("{} #{n}", seen.path()))
                .cache_control(cache_control)
                .header("etag", "\"v1\"")
        }
    })
    .await;
    let windows = "stale_while_revalidate = \"30s\"\nstale_if_error = \"60s\"";
    let proxy = Proxy::one_route(&origin.url(), windows).await;
    let client = Client::new(proxy.addr);
    let paths = [
        "/forbid/must-revalidate",
        "/forbid/proxy-revalidate",
        "/forbid/no-cache",
        "/forbid/s-maxage",
    ];
    for path in paths {
        assert_eq!(status_of(&client, path, &[]).await, STORED, "{path}");
    }
    proxy.advance(Duration::from_secs(15));

    // Within the route's stale-if-error window: the origin's error is passed on.
    failing.store(true, Ordering::SeqCst);
    for path in paths {
        let response = client.get(path, &[]).await;
        assert_eq!(response.status, 500, "{path}");
        let forwarded = "cachet; fwd=stale; fwd-status=500";
        assert_eq!(response.cache_status(), forwarded, "{path}");
        assert_eq!(response.text(), "origin error", "{path}");
    }
    // Within the route's stale-while-revalidate window: the client waits for the origin.
    failing.store(false, Ordering::SeqCst);
    for path in paths {
        let response = client.get(path, &[]).await;
        let forwarded = "cachet; fwd=stale; fwd-status=200; stored";
        assert_eq!(response.cache_status(), forwarded, "{path}");
        assert_ne!(response.text(), format!("{path} #1"), "{path}");
        assert_eq!(origin.hits_for(path), 3, "{path}");
    }
    proxy.shutdown().await;
}

/// How the origin fails in a stale-if-error case.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Status(u16),
    /// Slower than the route's 300ms timeout.
    Timeout,
    /// The origin is gone: connections are refused.
    Down,
}

/// RFC 5861 §4: within stale-if-error a stale entry stands in for an origin that answers 5xx,
/// refuses connections or times out; past the window the failure itself is the answer.
async fn stale_if_error_case(path: &str, failure: Failure) {
    let failing = Arc::new(AtomicBool::new(false));
    let never = Gate::new();
    let origin = Origin::start({
        let (failing, never) = (Arc::clone(&failing), never.clone());
        move |seen: &Seen| {
            let ok = Reply::ok(format!("{} fresh", seen.path())).cache_control("max-age=10");
            match failure {
                _ if !failing.load(Ordering::SeqCst) => ok,
                Failure::Status(status) => Reply::ok("origin error").status(status),
                Failure::Timeout | Failure::Down => ok.gate(&never),
            }
        }
    })
    .await;
    let route = "stale_if_error = \"60s\"\ntimeout = \"300ms\"";
    let proxy = Proxy::one_route(&origin.url(), route).await;
    let client = Client::new(proxy.addr);
    assert_eq!(status_of(&client, path, &[]).await, STORED);

    failing.store(true, Ordering::SeqCst);
    let origin = match failure {
        Failure::Down => {
            drop(origin);
            None
        }
        Failure::Status(_) | Failure::Timeout => Some(origin),
    };
    proxy.advance(Duration::from_secs(15));
    let stale = client.get(path, &[]).await;
    let (fwd_status, past_window) = match failure {
        Failure::Status(status) => (format!("fwd-status={status}; "), status),
        Failure::Timeout => (String::new(), 504),
        Failure::Down => (String::new(), 502),
    };
    let expected = format!("cachet; fwd=stale; {fwd_status}ttl=-5; detail=stale-if-error");
    assert_eq!(stale.cache_status(), expected, "{failure:?}");
    assert_eq!(stale.status, 200, "{failure:?}");
    assert_eq!(stale.text(), format!("{path} fresh"), "{failure:?}");

    // Past the window (fresh until 10s, stale-if-error until 70s).
    proxy.advance(Duration::from_secs(60));
    let failed = client.get(path, &[]).await;
    assert_eq!(failed.status, past_window, "{failure:?}");
    assert_eq!(failed.cache_status(), "cachet; fwd=miss", "{failure:?}");
    if let Failure::Status(_) = failure {
        assert_eq!(failed.text(), "origin error");
    }
    if let Some(origin) = origin {
        assert_eq!(origin.hits_for(path), 3, "{failure:?}");
    }
    never.open();
    proxy.shutdown().await;
}

#[tokio::test]
async fn stale_entry_stands_in_for_an_origin_500_within_stale_if_error() {
    stale_if_error_case("/sie/500", Failure::Status(500)).await;
}

#[tokio::test]
async fn stale_entry_stands_in_for_an_origin_503_within_stale_if_error() {
    stale_if_error_case("/sie/503", Failure::Status(503)).await;
}

#[tokio::test]
async fn stale_entry_stands_in_for_an_origin_that_times_out_within_stale_if_error() {
    stale_if_error_case("/sie/timeout", Failure::Timeout).await;
}

#[tokio::test]
async fn stale_entry_stands_in_for_an_origin_that_is_down_within_stale_if_error() {
    stale_if_error_case("/sie/down", Failure::Down).await;
}

/// DESIGN.md "Authenticated responses": credential partitions get no stale serving unless the
/// route sets `cache_authenticated_stale`, so a revoked token is never answered from a stale
/// entry. Returns the answers at +15s (stale-while-revalidate) and +40s (stale-if-error, the
/// origin failing).
async fn credential_stale(route_extra: &str) -> (Resp, Resp) {
    let failing = Arc::new(AtomicBool::new(false));
    let origin = Origin::start({
        let (failing, count) = (Arc::clone(&failing), AtomicUsize::new(0));
        move |seen: &Seen| {
            if failing.load(Ordering::SeqCst) {
                return Reply::ok("origin error").status(500);
            }
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::ok(format!("{} #{n}", seen.path())).cache_control("private, max-age=10")
        }
    })
    .await;
    let route = format!(
        "key_headers = [\"authorization\"]\nstale_while_revalidate = \"30s\"\nstale_if_error = \"60s\"\n{route_extra}"
    );
    let proxy = Proxy::one_route(&origin.url(), &route).await;
    let client = Client::new(proxy.addr);
    let alice = [("authorization", "Bearer alice")];
    for path in ["/cred/swr", "/cred/sie"] {
        assert_eq!(status_of(&client, path, &alice).await, STORED);
        assert_eq!(
            status_of(&client, path, &alice).await,
            "cachet; hit; ttl=10"
        );
    }

    proxy.advance(Duration::from_secs(15));
    let swr = client.get("/cred/swr", &alice).await;
    // Whatever the answer, the origin has seen its third request (a fill or a refresh) before
    // it starts failing.
    for _ in 0..3 {
        origin.next_request().await;
    }
    failing.store(true, Ordering::SeqCst);
    proxy.advance(Duration::from_secs(25));
    let sie = client.get("/cred/sie", &alice).await;
    proxy.shutdown().await;
    (swr, sie)
}

#[tokio::test]
async fn credential_partitions_are_never_served_stale_by_default() {
    let (swr, sie) = credential_stale("").await;
    assert_eq!(swr.cache_status(), STORED);
    assert_eq!(swr.text(), "/cred/swr #3");
    assert_eq!(sie.status, 500);
    assert_eq!(sie.cache_status(), "cachet; fwd=miss");
}

#[tokio::test]
async fn credential_partitions_are_served_stale_when_the_route_allows_it() {
    let (swr, sie) = credential_stale("cache_authenticated_stale = true").await;
    assert_eq!(swr.cache_status(), SWR_AT_15S);
    assert_eq!(swr.text(), "/cred/swr #1");
    assert_eq!(sie.status, 200);
    assert_eq!(
        sie.cache_status(),
        "cachet; fwd=stale; fwd-status=500; ttl=-30; detail=stale-if-error"
    );
    assert_eq!(sie.text(), "/cred/sie #2");
}

/// XFetch (Vattani et al. 2015; DESIGN.md step 7): under steady requests a hot entry is
/// refreshed in the background before it expires. The first fill "takes" 2s on the proxy's
/// clock (the origin moves it), which is the fetch time the early-refresh odds weigh.
#[tokio::test]
async fn a_hot_entry_is_refreshed_early_before_it_expires() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let gate = Gate::new();
    let origin = Origin::start({
        let (clock, gate, count) = (Arc::clone(&clock), gate.clone(), AtomicUsize::new(0));
        move |_: &Seen| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let reply = Reply::ok(format!("#{n}")).cache_control("max-age=60");
            if n == 1 {
                clock.advance(Duration::from_secs(2));
                reply
            } else {
                reply.gate(&gate)
            }
        }
    })
    .await;
    let config = one_route(&origin.url(), "early_refresh_beta = 1.0\nttl_jitter = 0.0");
    let shared_clock = Some(Arc::clone(&clock));
    let options = Options {
        clock: shared_clock,
        ..Options::seeded(7)
    };
    let proxy = Proxy::start_with(&config, options).await;
    let client = Client::new(proxy.addr);
    assert_eq!(status_of(&client, "/xfetch", &[]).await, STORED);
    // max-age counts from the request: 2s of it went to the fetch.
    let expires = clock.now() + Duration::from_secs(58);

    let step = Duration::from_millis(250);
    let mut served = 0;
    while origin.hits() < 2 && clock.now() + step < expires {
        proxy.advance(step);
        let response = client.get("/xfetch", &[]).await;
        fresh_hit_ttl(&response);
        assert_eq!(response.text(), "#1");
        served += 1;
    }
    // The refresh reached the origin, and the clock has not reached the expiry.
    origin.next_request().await;
    origin.next_request().await;
    assert!(
        clock.now() < expires,
        "no early refresh in {served} hits before expiry"
    );
    // The odds grow as expiry nears: not in the first two thirds of the entry's life.
    let left = expires.duration_since(clock.now()).expect("before expiry");
    assert!(
        left < Duration::from_secs(20),
        "refreshed {left:?} before expiry"
    );

    gate.open();
    let refreshed = eventually_new_body(&client, "/xfetch", "#1").await;
    fresh_hit_ttl(&refreshed);
    assert_eq!(refreshed.text(), "#2");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// DESIGN.md step 7: "Jitter only ever shortens freshness", by up to `ttl_jitter` of it, so
/// entries filled together do not expire together.
#[tokio::test]
async fn jitter_spreads_freshness_within_the_configured_fraction_and_never_lengthens_it() {
    let origin = Origin::fixed(Reply::ok("jittered").cache_control("max-age=100")).await;
    let config = one_route(&origin.url(), "ttl_jitter = 0.5\nearly_refresh_beta = 0.0");
    let proxy = Proxy::start_with(&config, Options::seeded(11)).await;
    let client = Client::new(proxy.addr);

    let mut ttls = Vec::new();
    for i in 0..30 {
        let path = format!("/jitter/{i}");
        assert_eq!(status_of(&client, &path, &[]).await, STORED);
        ttls.push(fresh_hit_ttl(&client.get(&path, &[]).await));
    }
    assert!(ttls.iter().all(|ttl| (50..=100).contains(ttl)), "{ttls:?}");
    assert!(ttls.iter().collect::<BTreeSet<_>>().len() > 1, "{ttls:?}");
    proxy.shutdown().await;
}

/// A refresh that fails (origin 5xx or down) is not retried on every stale hit: the key backs
/// off for a second by Cachet's clock while the stale entry is served (RFC 5861 leaves the
/// retry policy to the cache; without a backoff an origin that is down gets one refresh per
/// request).
#[tokio::test]
async fn a_failed_refresh_backs_off_instead_of_retrying_on_every_stale_hit() {
    let count = Arc::new(AtomicUsize::new(0));
    let origin = Origin::start({
        let count = Arc::clone(&count);
        move |_: &Seen| {
            if count.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::ok("v1").cache_control("max-age=10")
            } else {
                Reply::ok("origin error").status(500)
            }
        }
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"60s\"").await;
    let client = Client::new(proxy.addr);
    assert_eq!(status_of(&client, "/b", &[]).await, STORED);

    proxy.advance(Duration::from_secs(15));
    assert_eq!(client.get("/b", &[]).await.text(), "v1");
    origin.next_request().await; // the fill
    origin.next_request().await; // the failing refresh
    for _ in 0..20 {
        let stale = client.get("/b", &[]).await;
        assert_eq!(stale.text(), "v1");
        assert!(stale.cache_status().contains("stale-while-revalidate"));
    }
    assert_eq!(origin.hits(), 2, "one refresh, then the backoff");

    // A second later by Cachet's clock, the next stale hit tries again.
    proxy.advance(Duration::from_secs(1));
    assert_eq!(client.get("/b", &[]).await.text(), "v1");
    origin.next_request().await;
    assert_eq!(origin.hits(), 3);
    proxy.shutdown().await;
}
