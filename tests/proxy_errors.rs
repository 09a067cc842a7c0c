//! The edges of the request path: routing and target normalization (RFC 3986 §5.2.4, §6.2.2),
//! malformed and oversized requests, origin failures (502/504), responses too large to store,
//! an origin that breaks off mid-body, and HTTP/2 with prior knowledge.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::client::RawConn;
use support::origin::{Fail, pattern, split};
use support::{Client, Origin, Proxy, Reply, Seen, raw, raw_get};
use tokio::sync::Notify;

const TEMPLATE: &str = r#"
[server]
listen = "127.0.0.1:0"
drain_timeout = "2s"
max_header_bytes = "16KiB"
max_body_bytes = "1KiB"

[admin]
listen = "127.0.0.1:0"

[cache]
memory_max_bytes = "64MiB"
max_object_bytes = "64KiB"

[[routes]]
name = "a"
path_prefix = "/a"
upstream = "{origin}/via-a"

[[routes]]
name = "b"
path_prefix = "/b"
upstream = "{origin}/via-b"

[[routes]]
name = "data"
path_prefix = "/data"
upstream = "{origin}"
ttl_jitter = 0.0
early_refresh_beta = 0.0

[[routes]]
name = "slow"
path_prefix = "/slow"
upstream = "{origin}"
timeout = "300ms"

[[routes]]
name = "dead"
path_prefix = "/dead"
upstream = "http://{dead}"
"#;

/// An origin answering with `handler`, Cachet in front of it with [`TEMPLATE`], and a client.
async fn start(
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (Origin, Proxy, Client) {
    let origin = Origin::start(handler).await;
    let dead = support::proxy::dead_address().await;
    let config = TEMPLATE.replace("{dead}", &dead.to_string());
    let proxy = Proxy::from_template(&config, &origin.url()).await;
    let client = Client::new(proxy.addr);
    (origin, proxy, client)
}

fn ok(_: &Seen) -> Reply {
    Reply::ok("ok").cache_control("max-age=60")
}

#[tokio::test]
async fn a_request_matching_no_route_gets_a_404_with_a_json_body() {
    let (origin, proxy, client) = start(ok).await;
    let resp = client.get("/nowhere/at-all", &[]).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&resp.body).expect("a JSON body");
    assert!(
        body.get("error").is_some_and(serde_json::Value::is_string),
        "{body}"
    );
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// The target is normalized once, before routing: what is routed is what is forwarded.
#[tokio::test]
async fn targets_are_normalized_before_routing_and_forwarding() {
    let (origin, proxy, _client) = start(ok).await;
    let cases = [
        ("/a/../b/dots", "/via-b/b/dots"),
        ("/a/%2e%2e/b/encoded-dots", "/via-b/b/encoded-dots"),
        ("/a/%2E%2E/b/upper", "/via-b/b/upper"),
        ("/a/./x/../normalized", "/via-a/a/normalized"),
        ("/b/%41bc", "/via-b/b/Abc"),
    ];
    for (target, forwarded) in cases {
        let resp = raw(proxy.addr, &raw_get(target, "")).await;
        assert_eq!(resp.status(), Some(200), "{target}: {}", resp.head());
        assert_eq!(origin.next_request().await.path(), forwarded, "{target}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn encoded_slash_backslash_and_nul_in_the_path_are_refused() {
    let (origin, proxy, _client) = start(ok).await;
    for target in [
        "/a/x%2Fy",
        "/a/x%2fy",
        "/a/%2e%2e%2Fb",
        "/a/x%5Cy",
        "/a/x%00",
    ] {
        let resp = raw(proxy.addr, &raw_get(target, "")).await;
        assert_eq!(resp.status(), Some(400), "{target}: {}", resp.head());
    }
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_malformed_request_line_gets_a_400() {
    let (origin, proxy, _client) = start(ok).await;
    for request in [
        &b"HELLO\r\n\r\n"[..],
        b"GET /a/x HTTP/1.1 junk\r\nHost: x\r\n\r\n",
    ] {
        let resp = raw(proxy.addr, request).await;
        assert_eq!(resp.status(), Some(400), "{}", resp.head());
    }
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_header_over_max_header_bytes_gets_a_431() {
    let (origin, proxy, _client) = start(ok).await;
    let fits = format!("X-Big: {}\r\n", "a".repeat(8 * 1024));
    let resp = raw(proxy.addr, &raw_get("/data/header-fits", &fits)).await;
    assert_eq!(resp.status(), Some(200), "{}", resp.head());

    let too_big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let resp = raw(proxy.addr, &raw_get("/data/header-too-big", &too_big)).await;
    assert_eq!(resp.status(), Some(431), "{}", resp.head());
    assert_eq!(origin.hits_for("/data/header-too-big"), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_gets_a_413_and_never_reaches_the_origin() {
    let (origin, proxy, client) = start(ok).await;
    let resp = client.post("/data/big-body", &[], pattern(2048)).await;
    assert_eq!(resp.status, 413);
    let small = client.post("/data/small-body", &[], pattern(512)).await;
    assert_eq!(small.status, 200);
    assert_eq!(origin.hits_for("/data/big-body"), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_origin_gets_a_502_with_a_short_body() {
    let (_origin, proxy, client) = start(ok).await;
    let resp = client.get("/dead/thing", &[]).await;
    assert_eq!(resp.status, 502);
    assert!(
        !resp.body.is_empty() && resp.body.len() < 200,
        "{}",
        resp.text()
    );
    assert_eq!(resp.cache_status(), "cachet; fwd=miss");
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_origin_slower_than_the_route_timeout_gets_a_504() {
    let (origin, proxy, client) = start(|_| Reply::ok("late").delay(Duration::from_secs(3))).await;
    let started = Instant::now();
    // The timeout itself is the behaviour under test: this waits for a real 300ms deadline.
    let resp = client.get("/slow/origin", &[]).await;
    assert_eq!(resp.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(origin.next_request().await.path(), "/slow/origin");
    proxy.shutdown().await;
}

/// DESIGN.md failure table: an oversized body is streamed through, not stored, whether its
/// length is declared up front or only discovered while reading.
#[tokio::test]
async fn an_oversize_response_streams_through_intact_and_is_not_stored() {
    let body = pattern(1024 * 1024);
    let chunks = split(&body, 16 * 1024);
    let (origin, proxy, client) = start(move |seen| match seen.path() {
        "/data/oversize-declared" => Reply::ok(body.clone()).cache_control("max-age=60"),
        _ => Reply::ok("")
            .cache_control("max-age=60")
            .chunks(chunks.clone()),
    })
    .await;
    let expected = pattern(1024 * 1024);

    for path in ["/data/oversize-declared", "/data/oversize-chunked"] {
        let first = client.get(path, &[]).await;
        assert_eq!(first.status, 200, "{path}");
        assert_eq!(first.cache_status(), "cachet; fwd=miss", "{path}");
        assert!(
            first.body == expected,
            "{path}: body differs ({} bytes)",
            first.body.len()
        );
        let second = client.get(path, &[]).await;
        assert!(second.body == expected, "{path}: second body differs");
        assert!(
            !second.cache_status().contains("hit;"),
            "{path}: {}",
            second.cache_status()
        );
        assert_eq!(origin.hits_for(path), 2, "{path}");
    }
    proxy.shutdown().await;
}

/// An origin that breaks off a streamed (oversize) body: the client's connection is aborted,
/// since the head is already sent; nothing is stored; the key is not left locked.
#[tokio::test]
async fn an_origin_failing_mid_body_aborts_the_client_and_leaves_the_key_usable() {
    let chunks = split(&pattern(256 * 1024), 16 * 1024);
    let triggers = [Arc::new(Notify::new()), Arc::new(Notify::new())];
    let fail = triggers.clone().map(Fail::When);
    let (origin, proxy, client) = start(move |seen| {
        let again = seen.headers.contains_key("x-again");
        match (seen.path(), again) {
            ("/data/break-chunked", false) => {
                Reply::ok("").chunks_then_fail(chunks.clone(), fail[0].clone())
            }
            // Declares more than it sends: the framing cannot look complete.
            ("/data/break-declared", false) => Reply::ok("")
                .header("content-length", &(512 * 1024).to_string())
                .chunks_then_fail(chunks.clone(), fail[1].clone()),
            _ => Reply::ok("recovered").cache_control("max-age=60"),
        }
    })
    .await;

    for (path, trigger) in ["/data/break-chunked", "/data/break-declared"]
        .iter()
        .zip(&triggers)
    {
        let mut conn = RawConn::open(proxy.addr).await;
        conn.write(&raw_get(path, "")).await;
        // Past max_object_bytes: Cachet is streaming, the head is sent. Now the origin fails.
        conn.read_body_bytes(64 * 1024).await;
        trigger.notify_one();
        let broken = conn.finish().await;
        assert_eq!(broken.status(), Some(200), "{path}: {}", broken.head());
        let complete = match broken.header("content-length") {
            Some(len) => broken.body().len() == len.parse::<usize>().unwrap(),
            None => broken.body().ends_with(b"0\r\n\r\n"),
        };
        assert!(!complete, "{path}: a truncated body looked complete");

        // The same key (headers are not part of it; `x-again` picks the origin's answer).
        let next = client.get(path, &[("x-again", "1")]).await;
        assert_eq!(next.status, 200, "{path}");
        assert_eq!(next.text(), "recovered", "{path}");
        let hit = client.get(path, &[]).await;
        assert_eq!(hit.text(), "recovered", "{path}: {}", hit.cache_status());
        assert!(
            hit.cache_status().starts_with("cachet; hit;"),
            "{path}: {}",
            hit.cache_status()
        );
        assert_eq!(origin.hits_for(path), 2, "{path}");
    }
    proxy.shutdown().await;
}

/// A storable (small) body that breaks off is never stored: the client gets a 502.
#[tokio::test]
async fn an_origin_failing_mid_body_of_a_storable_response_gets_a_502_and_nothing_is_stored() {
    let (origin, proxy, client) = start(|seen| match seen.headers.contains_key("x-again") {
        false => Reply::ok("")
            .cache_control("max-age=60")
            .chunks_then_fail(vec![Bytes::from_static(b"partial")], Fail::Now),
        true => Reply::ok("whole").cache_control("max-age=60"),
    })
    .await;

    let broken = client.get("/data/break-small", &[]).await;
    assert_eq!(broken.status, 502);
    assert_eq!(broken.cache_status(), "cachet; fwd=miss");
    let next = client.get("/data/break-small", &[("x-again", "1")]).await;
    assert_eq!(next.text(), "whole");
    assert_eq!(next.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// HTTP/2 with prior knowledge (h2c) is served and cached like HTTP/1.1.
#[tokio::test]
async fn h2c_prior_knowledge_requests_are_served_and_cached() {
    let (origin, proxy, _client) = start(ok).await;
    let h2 = Client::h2c(proxy.addr);
    let miss = h2.get("/data/h2c", &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.next_request().await.header("via"), Some("2 cachet"));
    let hit = h2.get("/data/h2c", &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "ok");
    proxy.shutdown().await;
}
