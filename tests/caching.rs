//! Storage and freshness through real sockets (RFC 9111): what is stored, for how long, how
//! hits look, and which responses are never stored. Each test owns its paths; time moves only
//! through the proxy's manual clock.

mod support;

use std::time::Duration;

use support::proxy::one_route;
use support::{Client, Origin, Proxy, Reply, ttl};

const MAX_AGE_60: &str = "max-age=60";

/// An origin answering `<path> #<n>` with `cache_control`, and Cachet in front of it with one
/// route carrying `route_extra`.
async fn setup(cache_control: &str, route_extra: &str) -> (Origin, Proxy, Client) {
    let origin = Origin::numbered(Reply::empty().cache_control(cache_control)).await;
    let proxy = Proxy::one_route(&origin.url(), route_extra).await;
    let client = Client::new(proxy.addr);
    (origin, proxy, client)
}

#[tokio::test]
async fn a_stored_miss_is_then_served_as_a_hit_without_the_origin() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "").await;

    let miss = client.get("/miss-then-hit", &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(miss.text(), "/miss-then-hit #1");

    let hit = client.get("/miss-then-hit", &[]).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.body, miss.body);
    assert_eq!(origin.hits_for("/miss-then-hit"), 1);
    proxy.shutdown().await;
}

/// RFC 9111 §5.1: `Age` on every response served from cache, growing while it is stored.
#[tokio::test]
async fn age_is_sent_on_hits_and_grows_with_time() {
    let (_origin, proxy, client) = setup(MAX_AGE_60, "").await;
    client.get("/age-grows", &[]).await;

    let hit = client.get("/age-grows", &[]).await;
    assert_eq!(hit.age(), Some(0), "{:?}", hit.headers);
    proxy.advance(Duration::from_secs(25));
    let later = client.get("/age-grows", &[]).await;
    assert_eq!(later.cache_status(), "cachet; hit; ttl=35");
    assert_eq!(later.age(), Some(25));
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_expired_entry_is_fetched_and_stored_again() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "").await;
    client.get("/expires", &[]).await;

    proxy.advance(Duration::from_secs(61));
    let refetched = client.get("/expires", &[]).await;
    assert_eq!(refetched.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(refetched.text(), "/expires #2");
    let hit = client.get("/expires", &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "/expires #2");
    assert_eq!(origin.hits_for("/expires"), 2);
    proxy.shutdown().await;
}

/// An entry past freshness but kept (here for stale-if-error) is refetched: `fwd=stale`.
#[tokio::test]
async fn an_expired_but_kept_entry_is_refetched_as_stale() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "stale_if_error = \"60s\"").await;
    client.get("/kept", &[]).await;

    proxy.advance(Duration::from_secs(61));
    let refetched = client.get("/kept", &[]).await;
    assert_eq!(
        refetched.cache_status(),
        "cachet; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(refetched.text(), "/kept #2");
    assert_eq!(origin.hits_for("/kept"), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §3 and §5.2.2: `no-store`, `private` (in a shared cache), `Set-Cookie` (unless the
/// route opts in) and errors without explicit freshness are never stored.
#[tokio::test]
async fn responses_a_shared_cache_must_not_store_reach_the_origin_every_time() {
    let origin = Origin::start(|seen| match seen.path() {
        "/not-stored/no-store" => Reply::ok("a").cache_control("no-store, max-age=60"),
        "/not-stored/private" => Reply::ok("b").cache_control("private, max-age=60"),
        "/not-stored/set-cookie" => Reply::ok("c")
            .cache_control("public, max-age=60")
            .header("set-cookie", "session=s3cr3t"),
        "/not-stored/500" => Reply::ok("d").status(500),
        _ => Reply::ok("e").status(503),
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "default_ttl = \"60s\"").await;
    let client = Client::new(proxy.addr);

    for path in [
        "/not-stored/no-store",
        "/not-stored/private",
        "/not-stored/set-cookie",
    ] {
        let first = client.get(path, &[]).await;
        assert_eq!(first.status, 200, "{path}");
        assert_eq!(first.cache_status(), "cachet; fwd=miss", "{path}");
        let second = client.get(path, &[]).await;
        assert_eq!(
            second.cache_status(),
            "cachet; fwd=bypass; detail=hit-for-miss",
            "{path}"
        );
        assert_eq!(origin.hits_for(path), 2, "{path}");
    }
    for (path, status) in [("/not-stored/500", 500), ("/not-stored/503", 503)] {
        for round in 1..=2 {
            let response = client.get(path, &[]).await;
            assert_eq!(response.status, status, "{path}");
            assert_eq!(response.cache_status(), "cachet; fwd=miss", "{path}");
            assert_eq!(origin.hits_for(path), round, "{path}");
        }
    }
    proxy.shutdown().await;
}

/// RFC 9111 §4 leaves a cache free to send requests for a not-storable URL straight on; the
/// record that lets it skip coalescing lasts `hit_for_miss_ttl` by the proxy's clock.
#[tokio::test]
async fn hit_for_miss_lasts_its_ttl_then_the_url_is_a_plain_miss_again() {
    let origin = Origin::fixed(Reply::ok("never stored").cache_control("no-store")).await;
    let config = one_route(&origin.url(), "").replacen(
        "[cache]\n",
        "[cache]\nhit_for_miss_ttl = \"10s\"\n",
        1,
    );
    let proxy = Proxy::start(&config).await;
    let client = Client::new(proxy.addr);
    let bypass = "cachet; fwd=bypass; detail=hit-for-miss";

    assert_eq!(
        client.get("/h4m", &[]).await.cache_status(),
        "cachet; fwd=miss"
    );
    proxy.advance(Duration::from_secs(9));
    assert_eq!(client.get("/h4m", &[]).await.cache_status(), bypass);
    // The bypassed answer was not storable either: the record starts again from it.
    proxy.advance(Duration::from_secs(9));
    assert_eq!(client.get("/h4m", &[]).await.cache_status(), bypass);
    proxy.advance(Duration::from_secs(11));
    assert_eq!(
        client.get("/h4m", &[]).await.cache_status(),
        "cachet; fwd=miss"
    );
    assert_eq!(origin.hits(), 4);
    proxy.shutdown().await;
}

#[tokio::test]
async fn set_cookie_responses_are_stored_when_the_route_opts_in() {
    let origin = Origin::fixed(
        Reply::ok("with cookie")
            .cache_control("public, max-age=60")
            .header("set-cookie", "theme=dark"),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "cache_set_cookie = true").await;
    let client = Client::new(proxy.addr);

    let miss = client.get("/cookie-opt-in", &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    let hit = client.get("/cookie-opt-in", &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.header("set-cookie"), Some("theme=dark"));
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn default_ttl_applies_only_when_the_origin_states_no_freshness() {
    let origin = Origin::start(|seen| match seen.path() {
        "/default-ttl/silent" => Reply::ok("silent"),
        "/default-ttl/max-age" => Reply::ok("explicit").cache_control("max-age=5"),
        _ => Reply::ok("forbidden").cache_control("no-store"),
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "default_ttl = \"30s\"").await;
    let client = Client::new(proxy.addr);

    let cases = [
        ("/default-ttl/silent", "cachet; hit; ttl=30"),
        ("/default-ttl/max-age", "cachet; hit; ttl=5"),
        (
            "/default-ttl/no-store",
            "cachet; fwd=bypass; detail=hit-for-miss",
        ),
    ];
    for (path, second) in cases {
        client.get(path, &[]).await;
        assert_eq!(client.get(path, &[]).await.cache_status(), second, "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn max_ttl_caps_a_long_max_age() {
    let (origin, proxy, client) = setup("max-age=3600", "max_ttl = \"10s\"").await;
    client.get("/capped", &[]).await;
    assert_eq!(
        client.get("/capped", &[]).await.cache_status(),
        "cachet; hit; ttl=10"
    );
    proxy.advance(Duration::from_secs(11));
    assert_eq!(
        client.get("/capped", &[]).await.cache_status(),
        "cachet; fwd=miss; stored"
    );
    assert_eq!(origin.hits_for("/capped"), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.2.10: a shared cache uses `s-maxage` over `max-age`.
#[tokio::test]
async fn s_maxage_beats_max_age_in_a_shared_cache() {
    let (_origin, proxy, client) = setup("max-age=10, s-maxage=120", "").await;
    client.get("/s-maxage", &[]).await;
    assert_eq!(
        client.get("/s-maxage", &[]).await.cache_status(),
        "cachet; hit; ttl=120"
    );
    proxy.shutdown().await;
}

/// RFC 9111 §5.3: an invalid `Expires` means already expired, so `default_ttl` does not apply.
#[tokio::test]
async fn an_invalid_expires_means_already_expired() {
    let origin = Origin::fixed(Reply::ok("x").header("expires", "not a date")).await;
    let proxy = Proxy::one_route(&origin.url(), "default_ttl = \"60s\"").await;
    let client = Client::new(proxy.addr);

    assert_eq!(
        client.get("/bad-expires", &[]).await.cache_status(),
        "cachet; fwd=miss"
    );
    let second = client.get("/bad-expires", &[]).await;
    assert!(!second.cache_status().contains("hit;"), "{second:?}");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.3: the origin's `Age` is part of the response's age.
#[tokio::test]
async fn upstream_age_counts_against_freshness() {
    let origin = Origin::fixed(
        Reply::ok("aged")
            .cache_control("max-age=100")
            .header("age", "90"),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);

    client.get("/upstream-age", &[]).await;
    let hit = client.get("/upstream-age", &[]).await;
    let left = ttl(hit.cache_status()).expect("a hit has a ttl");
    assert!((9..=10).contains(&left), "{}", hit.cache_status());
    assert_eq!(hit.age(), Some(90));
    proxy.advance(Duration::from_secs(11));
    assert!(
        !client
            .get("/upstream-age", &[])
            .await
            .cache_status()
            .contains("hit;")
    );
    proxy.shutdown().await;
}

/// RFC 9110 §9.3.2: HEAD shares GET's entry; the answer has GET's length and no body.
#[tokio::test]
async fn head_after_get_is_a_hit_with_the_stored_length_and_no_body() {
    let (_origin, proxy, client) = setup(MAX_AGE_60, "").await;
    let get = client.get("/head-after-get", &[]).await;

    let head = client.head("/head-after-get", &[]).await;
    assert_eq!(head.cache_status(), "cachet; hit; ttl=60");
    assert!(head.body.is_empty());
    let length = get.body.len().to_string();
    assert_eq!(head.header("content-length"), Some(length.as_str()));
    proxy.shutdown().await;
}

#[tokio::test]
async fn head_on_a_miss_fills_with_a_get() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "").await;

    let head = client.head("/head-miss", &[]).await;
    assert_eq!(head.cache_status(), "cachet; fwd=miss; stored");
    assert!(head.body.is_empty());
    assert_eq!(origin.next_request().await.method, "GET");
    let get = client.get("/head-miss", &[]).await;
    assert_eq!(get.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(get.text(), "/head-miss #1");
    let length = get.body.len().to_string();
    assert_eq!(head.header("content-length"), Some(length.as_str()));
    proxy.shutdown().await;
}

/// Tag headers are read and removed; `CDN-Cache-Control` (RFC 9213) is consumed.
#[tokio::test]
async fn tag_and_cdn_headers_never_reach_the_client() {
    let origin = Origin::fixed(
        Reply::ok("tagged")
            .cache_control(MAX_AGE_60)
            .header("surrogate-key", "product:1 shoes")
            .header("cache-tag", "product:1,shoes")
            .header("cdn-cache-control", "max-age=60"),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);

    let miss = client.get("/tagged", &[]).await;
    let hit = client.get("/tagged", &[]).await;
    let post = client.post("/tagged", &[], "x").await;
    for (what, response) in [("miss", &miss), ("hit", &hit), ("pass", &post)] {
        for name in ["surrogate-key", "cache-tag", "cdn-cache-control"] {
            assert!(response.header(name).is_none(), "{name} on the {what}");
        }
    }
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    proxy.shutdown().await;
}

/// RFC 9213 §2.1: a CDN cache obeys `CDN-Cache-Control` over `Cache-Control`.
#[tokio::test]
async fn cdn_cache_control_governs_freshness_over_cache_control() {
    let origin = Origin::fixed(
        Reply::ok("cdn")
            .cache_control("max-age=5")
            .header("cdn-cache-control", "max-age=30"),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    client.get("/cdn-cc", &[]).await;
    assert_eq!(
        client.get("/cdn-cc", &[]).await.cache_status(),
        "cachet; hit; ttl=30"
    );
    proxy.shutdown().await;
}

/// The key includes the normalized authority: one path on two hosts is two entries.
#[tokio::test]
async fn the_same_path_on_two_hosts_is_cached_separately() {
    let origin = Origin::start(|seen| {
        let host = seen.header("x-forwarded-host").unwrap_or("none");
        Reply::ok(format!("{host} {}", seen.path())).cache_control(MAX_AGE_60)
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);

    for round in ["fwd=miss; stored", "hit; ttl=60"] {
        for host in ["one.example", "two.example"] {
            let response = client.get("/two-hosts", &[("host", host)]).await;
            assert_eq!(
                response.cache_status(),
                format!("cachet; {round}"),
                "{host}"
            );
            assert_eq!(response.text(), format!("{host} /two-hosts"));
        }
    }
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn query_parameter_order_does_not_split_the_cache() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "").await;
    client.get("/query-order?a=1&b=2", &[]).await;
    assert_eq!(origin.next_request().await.uri.query(), Some("a=1&b=2"));

    let reordered = client.get("/query-order?b=2&a=1", &[]).await;
    assert_eq!(reordered.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(reordered.text(), "/query-order #1");
    let other = client.get("/query-order?a=1&b=3", &[]).await;
    assert_eq!(other.cache_status(), "cachet; fwd=miss; stored");
    proxy.shutdown().await;
}

#[tokio::test]
async fn ignored_query_parameters_do_not_split_the_cache() {
    let (origin, proxy, client) = setup(MAX_AGE_60, "ignore_query_params = [\"utm_source\"]").await;
    client.get("/ignored?id=7&utm_source=mail", &[]).await;

    let hit = client.get("/ignored?utm_source=ads&id=7", &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "/ignored #1");
    let other = client.get("/ignored?id=8&utm_source=mail", &[]).await;
    assert_eq!(other.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.hits_for("/ignored"), 2);
    proxy.shutdown().await;
}

/// A usable entry in memory is answered within the service's `call` itself: the future it
/// returns is already complete, so the hit path builds no request future (`proxy::flow::begin`).
/// That holds for a fresh hit, a HEAD, and a stale entry served within stale-while-revalidate
/// (RFC 5861 §3), whose refresh still reaches the origin; a miss waits for the origin.
#[tokio::test]
async fn a_usable_entry_in_memory_is_answered_within_call() {
    use cachet::clock::ManualClock;
    use futures_util::future::Either;
    use std::sync::Arc;
    use std::time::SystemTime;
    use tower::Service as _;

    let origin =
        Origin::numbered(Reply::ok("").cache_control("max-age=60, stale-while-revalidate=60"))
            .await;
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let config = support::proxy::parse(&one_route(&origin.url(), ""));
    let mut service = cachet::app::memory_only_service(&config, clock.clone(), 1);
    let request = |method: http::Method| {
        http::Request::builder()
            .method(method)
            .uri("/answered")
            .header("host", "test.local")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let mut answer = async |method: http::Method, ready: bool, status: &str, body: &str| {
        let future = service.call(request(method.clone()));
        assert_eq!(
            matches!(future, Either::Left(_)),
            ready,
            "{method} expected as {status}: answered within call: {ready}"
        );
        let Ok(response) = future.await;
        let cache_status = response.headers()["cache-status"].to_str().expect("text");
        assert!(cache_status.starts_with(status), "{cache_status}");
        let got = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(got, body, "{method} {status}");
    };

    answer(http::Method::GET, false, "cachet; fwd=miss", "/answered #1").await;
    answer(
        http::Method::GET,
        true,
        "cachet; hit; ttl=60",
        "/answered #1",
    )
    .await;
    answer(http::Method::HEAD, true, "cachet; hit; ttl=60", "").await;
    clock.advance(Duration::from_secs(90));
    answer(
        http::Method::GET,
        true,
        "cachet; hit; ttl=-30; detail=stale-while-revalidate",
        "/answered #1",
    )
    .await;
    // The fill of the miss, then the refresh the stale hit started.
    assert_eq!(origin.next_request().await.path(), "/answered");
    assert_eq!(origin.next_request().await.path(), "/answered");
    assert_eq!(origin.hits(), 2);
}
