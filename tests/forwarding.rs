//! What travels between client, Cachet and origin (RFC 9110 §7.6, RFC 9111 §4.4): methods
//! other than GET/HEAD pass through with their body, hop-by-hop headers stop at Cachet,
//! forwarding headers are added, and fills are plain GETs of the full representation.

mod support;

use std::time::Duration;

use support::origin::pattern;
use support::{Client, Origin, Proxy, Reply};

async fn setup() -> (Origin, Proxy, Client) {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    (origin, proxy, client)
}

#[tokio::test]
async fn post_passes_through_with_its_body_intact_and_is_not_stored() {
    let (origin, proxy, client) = setup().await;
    let body = pattern(100 * 1024);

    let posted = client
        .post(
            "/post",
            &[("content-type", "application/octet-stream")],
            body.clone(),
        )
        .await;
    assert_eq!(posted.status, 200);
    assert_eq!(posted.cache_status(), "cachet; fwd=method");
    let seen = origin.next_request().await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, body, "the origin got the body byte for byte");

    let get = client.get("/post", &[]).await;
    assert_eq!(get.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.hits_for("/post"), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §4.4: a successful unsafe method invalidates the URL it targeted.
#[tokio::test]

async fn a_successful_post_invalidates_the_stored_url() {
    let (origin, proxy, client) = setup().await;
    client.get("/post-invalidates", &[]).await;
    assert_eq!(
        client.get("/post-invalidates", &[]).await.cache_status(),
        "cachet; hit; ttl=60"
    );

    client.post("/post-invalidates", &[], "change").await;
    let after = client.get("/post-invalidates", &[]).await;
    assert!(
        !after.cache_status().contains("hit;"),
        "served from cache after a POST: {}",
        after.cache_status()
    );
    assert_eq!(origin.hits_for("/post-invalidates"), 3);
    proxy.shutdown().await;
}

/// RFC 9110 §7.6.1: `Connection` and the headers it names, and the standard hop-by-hop
/// headers, are not forwarded.
#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let (origin, proxy, client) = setup().await;
    let headers = [
        ("connection", "x-foo"),
        ("x-foo", "connection-scoped"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
        ("x-end-to-end", "kept"),
    ];
    client.get("/hop-by-hop", &headers).await;
    client.post("/hop-by-hop", &headers, "x").await;

    for seen in [origin.next_request().await, origin.next_request().await] {
        for name in ["connection", "x-foo", "keep-alive", "proxy-authorization"] {
            assert!(
                seen.header(name).is_none(),
                "{} forwarded {name}",
                seen.method
            );
        }
        assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    }
    proxy.shutdown().await;
}

/// Cachet states where the request came from; an untrusted client's claims are replaced.
#[tokio::test]
async fn forwarding_headers_are_added_and_untrusted_ones_replaced() {
    let (origin, proxy, client) = setup().await;
    let spoofed = [
        ("host", "shop.example"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    client.get("/forwarded", &spoofed).await;
    client.post("/forwarded", &spoofed, "x").await;

    for seen in [origin.next_request().await, origin.next_request().await] {
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-host"), Some("shop.example"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        assert_eq!(seen.header("via"), Some("1.1 cachet"));
    }
    proxy.shutdown().await;
}

/// DESIGN.md request path, step 5: a fill is a plain GET, without the client's `Range`,
/// conditionals or `Cache-Control`, so what is stored is the full representation.
#[tokio::test]
async fn fills_carry_no_range_conditionals_or_client_cache_control() {
    let (origin, proxy, client) = setup().await;
    let headers = [
        ("range", "bytes=0-3"),
        ("if-none-match", "\"v1\""),
        ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
        ("accept", "application/json"),
    ];
    client.head("/fill-headers", &headers).await;

    let seen = origin.next_request().await;
    assert_eq!(seen.method, "GET");
    for (name, _) in &headers[..5] {
        assert!(seen.header(name).is_none(), "fill carried {name}");
    }
    assert_eq!(seen.header("accept"), Some("application/json"));
    proxy.shutdown().await;
}

/// The origin sees the normalized target appended to the upstream's base path.
#[tokio::test]
async fn the_upstream_base_path_prefixes_the_forwarded_target() {
    let origin = Origin::fixed(Reply::ok("based")).await;
    let proxy = Proxy::one_route(&format!("{}/base", origin.url()), "").await;
    let client = Client::new(proxy.addr);

    client.get("/based/item?q=1", &[]).await;
    let seen = origin.next_request().await;
    assert_eq!(seen.uri.path(), "/base/based/item");
    assert_eq!(seen.uri.query(), Some("q=1"));
    proxy.shutdown().await;
}

/// The fill runs in its own task: a client that hangs up does not abandon it.
#[tokio::test]
async fn a_fill_completes_and_is_stored_after_its_client_hangs_up() {
    let origin = Origin::fixed(
        Reply::ok("worth keeping")
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300)),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;

    let impatient = tokio::spawn(support::raw(
        proxy.addr,
        b"GET /hang-up HTTP/1.1\r\nHost: test.local\r\n\r\n",
    ));
    origin.next_request().await;
    impatient.abort();
    let _ = impatient.await;

    let later = Client::new(proxy.addr)
        .get("/hang-up", &[("host", "test.local")])
        .await;
    assert!(
        later.cache_status() == "cachet; hit; ttl=60"
            || later.cache_status() == "cachet; fwd=miss; collapsed",
        "{}",
        later.cache_status()
    );
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}
