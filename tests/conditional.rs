//! What a client's request asks of the cache, through real sockets: its own cache directives
//! (RFC 9111 §5.2.1: `no-cache`, `max-age`, `min-fresh`, `max-stale`, `only-if-cached`,
//! `no-store`), and answers built from a stored full response (RFC 9110 §9.3.2, §13, §14):
//! HEAD, conditional requests (304) and range requests (206, 416), with the origin not
//! contacted once the entry is stored, and fills that never carry the client's `Range`,
//! conditionals or cache directives (DESIGN.md request path, step 5). Each test owns its paths;
//! time moves only through the proxy's manual clock.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use support::origin::validating;
use support::{Client, Origin, Proxy, Reply, Resp};

async fn start(origin: &Origin, route_extra: &str) -> (Proxy, Client) {
    let proxy = Proxy::one_route(&origin.url(), route_extra).await;
    let client = Client::new(proxy.addr);
    (proxy, client)
}

/// The three request forms that force validation (RFC 9111 §5.2.1.1, §5.2.1.4, §5.4).
const FORCING: [(&str, &str); 3] = [
    ("cache-control", "no-cache"),
    ("cache-control", "max-age=0"),
    ("pragma", "no-cache"),
];

/// RFC 9111 §5.2.1.1, §5.2.1.4, §5.4: client `no-cache`, `max-age=0` and `Pragma: no-cache`
/// send a request for a fresh entry to the origin; the fill does not carry them, and its
/// response replaces the entry.
#[tokio::test]
async fn client_no_cache_max_age_0_and_pragma_force_a_trip_to_the_origin() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "").await;

    for (i, header) in FORCING.into_iter().enumerate() {
        let path = format!("/client-forces/{i}");
        let stored = client.get(&path, &[]).await;
        origin.next_request().await;
        let forced = client.get(&path, &[header]).await;
        assert_eq!(
            forced.cache_status(),
            "cachet; fwd=request; fwd-status=200; stored",
            "{header:?}"
        );
        assert_ne!(forced.body, stored.body, "{header:?}");
        let fill = origin.next_request().await;
        assert_eq!(fill.header("cache-control"), None, "{header:?}");
        assert_eq!(fill.header("pragma"), None, "{header:?}");
        let hit = client.get(&path, &[]).await;
        assert!(hit.is_hit(), "{header:?}: {}", hit.cache_status());
        assert_eq!(hit.body, forced.body, "{header:?}");
        assert_eq!(origin.hits_for(&path), 2, "{header:?}");
    }
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.4, §4.3.1: with a validator, the forced trip is a conditional request and
/// a 304 answers with the stored body.
#[tokio::test]
async fn client_forced_validation_of_an_entry_with_a_validator_is_conditional() {
    let etag = ("etag", "\"forced-1\"");
    let origin = Origin::start(validating(etag, "if-none-match", "max-age=60", &[])).await;
    let (proxy, client) = start(&origin, "").await;

    for (i, header) in FORCING.into_iter().enumerate() {
        let path = format!("/client-forces-conditional/{i}");
        client.get(&path, &[]).await;
        origin.next_request().await;
        let forced = client.get(&path, &[header]).await;
        assert_eq!(forced.status, 200, "{header:?}");
        assert_eq!(
            forced.cache_status(),
            "cachet; fwd=request; fwd-status=304; stored",
            "{header:?}"
        );
        assert_eq!(forced.text(), "stored body");
        let fill = origin.next_request().await;
        assert_eq!(fill.header("if-none-match"), Some(etag.1), "{header:?}");
    }
    proxy.shutdown().await;
}

/// `ignore_client_cache_control = true`: the forcing directives get a hit.
#[tokio::test]
async fn ignore_client_cache_control_answers_forcing_requests_from_the_cache() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "ignore_client_cache_control = true").await;

    client.get("/ignore-client-cc", &[]).await;
    for header in FORCING {
        let hit = client.get("/ignore-client-cc", &[header]).await;
        assert_eq!(hit.cache_status(), "cachet; hit; ttl=60", "{header:?}");
        assert_eq!(hit.text(), "/ignore-client-cc #1");
    }
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.7: `only-if-cached` is answered from the cache or with 504.
#[tokio::test]
async fn only_if_cached_is_answered_from_the_cache_or_with_504() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "").await;
    let only = [("cache-control", "only-if-cached")];

    let missing = client.get("/only-if-cached", &only).await;
    assert_eq!(missing.status, 504);
    assert_eq!(origin.hits(), 0);
    client.get("/only-if-cached", &[]).await;
    let hit = client.get("/only-if-cached", &only).await;
    assert_eq!(hit.status, 200);
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "/only-if-cached #1");
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.1: a client `max-age` refuses an entry older than it.
#[tokio::test]
async fn client_max_age_refuses_an_older_entry() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "").await;
    client.get("/client-max-age", &[]).await;
    proxy.advance(Duration::from_secs(10));

    let young_enough = client
        .get("/client-max-age", &[("cache-control", "max-age=30")])
        .await;
    assert_eq!(young_enough.cache_status(), "cachet; hit; ttl=50");
    let too_old = client
        .get("/client-max-age", &[("cache-control", "max-age=5")])
        .await;
    assert_eq!(
        too_old.cache_status(),
        "cachet; fwd=request; fwd-status=200; stored"
    );
    assert_eq!(too_old.text(), "/client-max-age #2");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.3: a client `min-fresh` refuses an entry that expires sooner.
#[tokio::test]
async fn client_min_fresh_refuses_an_entry_expiring_sooner() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "").await;
    client.get("/client-min-fresh", &[]).await;
    proxy.advance(Duration::from_secs(50));

    let fresh_enough = client
        .get("/client-min-fresh", &[("cache-control", "min-fresh=5")])
        .await;
    assert_eq!(fresh_enough.cache_status(), "cachet; hit; ttl=10");
    let too_short = client
        .get("/client-min-fresh", &[("cache-control", "min-fresh=20")])
        .await;
    assert_eq!(
        too_short.cache_status(),
        "cachet; fwd=request; fwd-status=200; stored"
    );
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.2: a client `max-stale` accepts a stale entry (here kept for
/// stale-if-error) without a trip to the origin.
#[tokio::test]
async fn client_max_stale_accepts_a_stale_entry() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=10")).await;
    let (proxy, client) = start(&origin, "stale_if_error = \"60s\"").await;
    client.get("/client-max-stale", &[]).await;
    proxy.advance(Duration::from_secs(15));

    let stale = client
        .get("/client-max-stale", &[("cache-control", "max-stale=30")])
        .await;
    assert_eq!(stale.status, 200);
    assert!(
        stale.cache_status().starts_with("cachet; hit; ttl=-"),
        "{}",
        stale.cache_status()
    );
    assert_eq!(stale.text(), "/client-max-stale #1");
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.5: nothing of a request with `no-store`, nor of its response, is stored.
#[tokio::test]
async fn client_no_store_keeps_the_response_out_of_the_cache() {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let (proxy, client) = start(&origin, "").await;

    let not_stored = client
        .get("/client-no-store", &[("cache-control", "no-store")])
        .await;
    assert_eq!(not_stored.status, 200);
    assert!(
        !not_stored.cache_status().contains("stored"),
        "{}",
        not_stored.cache_status()
    );
    let next = client.get("/client-no-store", &[]).await;
    assert_eq!(next.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(next.text(), "/client-no-store #2");
    assert!(client.get("/client-no-store", &[]).await.is_hit());
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.1.5 concerns one exchange: a client's `no-store` says nothing about the
/// response's storability, so it must not make the URL hit-for-miss, which would stop
/// coalescing for everyone (DESIGN.md step 6): after it, concurrent misses still share a fill.
#[tokio::test]
async fn a_client_no_store_does_not_stop_coalescing_for_others() {
    let origin = Origin::numbered(
        Reply::empty()
            .cache_control("max-age=60")
            .delay(Duration::from_millis(300)),
    )
    .await;
    let (proxy, client) = start(&origin, "").await;
    let path = "/client-no-store-coalescing";
    client.get(path, &[("cache-control", "no-store")]).await;

    let barrier = Arc::new(tokio::sync::Barrier::new(5));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let (client, barrier) = (client.clone(), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            client.get(path, &[]).await
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        statuses.push(joined.expect("request task").cache_status().to_owned());
    }
    statuses.sort();
    assert_eq!(origin.hits_for(path), 2, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| s.ends_with("collapsed")).count(),
        4,
        "{statuses:?}"
    );
    proxy.shutdown().await;
}

/// 62 bytes whose slices are easy to read.
const BODY: &str = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ETAG: &str = "\"repr-1\"";
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// An origin serving [`BODY`] with validators, a content type and `max-age=60`, and Cachet in
/// front of it.
async fn setup() -> (Origin, Proxy, Client) {
    let origin = Origin::fixed(
        Reply::ok(BODY)
            .cache_control("max-age=60")
            .header("etag", ETAG)
            .header("last-modified", LAST_MODIFIED)
            .header("content-type", "text/plain")
            .header("x-custom", "kept"),
    )
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    (origin, proxy, client)
}

/// Stores `path` with a plain GET.
async fn store(client: &Client, path: &str) {
    let miss = client.get(path, &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
}

fn assert_hit(resp: &Resp) {
    assert_eq!(resp.cache_status(), "cachet; hit; ttl=60");
}

/// RFC 9110 §9.3.2: HEAD gets the header fields GET would, and no body.
#[tokio::test]
async fn head_after_get_has_the_same_headers_and_no_body() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/head-same-headers").await;

    let get = client.get("/head-same-headers", &[]).await;
    let head = client.head("/head-same-headers", &[]).await;
    assert_hit(&get);
    assert_hit(&head);
    assert_eq!(get.text(), BODY);
    assert!(head.body.is_empty());
    let without_time = |headers: &HeaderMap| {
        let mut headers = headers.clone();
        headers.remove("age");
        headers.remove("date");
        headers
    };
    assert_eq!(without_time(&head.headers), without_time(&get.headers));
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §13.1.2, §15.4.5: an `If-None-Match` matching the fresh entry's `ETag` (weak
/// comparison) gets a 304 from the cache, with the `ETag` and no body.
#[tokio::test]
async fn if_none_match_matching_a_fresh_entry_gets_304_from_the_cache() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/if-none-match").await;

    let weak = format!("W/{ETAG}");
    let list = format!("\"other\", {ETAG}");
    for tag in [ETAG, weak.as_str(), list.as_str(), "*"] {
        let not_modified = client
            .get("/if-none-match", &[("if-none-match", tag)])
            .await;
        assert_eq!(not_modified.status, 304, "{tag}");
        assert_hit(&not_modified);
        assert_eq!(not_modified.header("etag"), Some(ETAG), "{tag}");
        assert!(not_modified.body.is_empty(), "{tag}");
    }
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §13.1.3: an `If-Modified-Since` not before `Last-Modified` gets a 304.
#[tokio::test]
async fn if_modified_since_not_before_last_modified_gets_304_from_the_cache() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/if-modified-since").await;

    for since in [LAST_MODIFIED, "Thu, 22 Oct 2015 07:28:00 GMT"] {
        let not_modified = client
            .get("/if-modified-since", &[("if-modified-since", since)])
            .await;
        assert_eq!(not_modified.status, 304, "{since}");
        assert_hit(&not_modified);
        assert_eq!(not_modified.header("last-modified"), Some(LAST_MODIFIED));
        assert!(not_modified.body.is_empty());
    }
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §13.1.2, §13.1.3: a validator that does not match gets the full response.
#[tokio::test]
async fn a_validator_that_does_not_match_gets_the_full_response() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/validator-mismatch").await;

    for condition in [
        ("if-none-match", "\"repr-0\""),
        ("if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT"),
    ] {
        let full = client.get("/validator-mismatch", &[condition]).await;
        assert_eq!(full.status, 200, "{condition:?}");
        assert_hit(&full);
        assert_eq!(full.text(), BODY);
    }
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §14.2, §15.3.7: a satisfiable single range of a stored entry gets a 206 with
/// `Content-Range` and that slice.
#[tokio::test]
async fn a_range_of_a_stored_entry_gets_206_with_the_slice() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/range-single").await;

    let partial = client.get("/range-single", &[("range", "bytes=0-9")]).await;
    assert_eq!(partial.status, 206);
    assert_hit(&partial);
    let content_range = format!("bytes 0-9/{}", BODY.len());
    assert_eq!(
        partial.header("content-range"),
        Some(content_range.as_str())
    );
    assert_eq!(partial.text(), &BODY[0..10]);
    assert_eq!(partial.header("etag"), Some(ETAG));
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §14.6, §15.3.7.2: several ranges get a `multipart/byteranges` 206 with one part
/// per range.
#[tokio::test]
async fn several_ranges_get_a_multipart_byteranges_206() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/range-multi").await;

    let partial = client
        .get("/range-multi", &[("range", "bytes=0-4, 20-24")])
        .await;
    assert_eq!(partial.status, 206);
    assert_hit(&partial);
    let content_type = partial.header("content-type").unwrap_or_default();
    let boundary = content_type
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("not multipart: {content_type}"));
    let text = partial.text();
    let len = BODY.len();
    for (range, slice) in [("0-4", &BODY[0..5]), ("20-24", &BODY[20..25])] {
        let part = format!("Content-Range: bytes {range}/{len}\r\n\r\n{slice}\r\n--{boundary}");
        assert!(text.contains(&part), "{range} missing from:\n{text}");
    }
    assert!(text.ends_with(&format!("--{boundary}--\r\n")), "{text}");
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9110 §14.1.2, §15.5.17: a range past the end gets 416 with the complete length.
#[tokio::test]
async fn an_unsatisfiable_range_gets_416_with_the_complete_length() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/range-416").await;

    let refused = client
        .get("/range-416", &[("range", "bytes=999999-")])
        .await;
    assert_eq!(refused.status, 416);
    let content_range = format!("bytes */{}", BODY.len());
    assert_eq!(
        refused.header("content-range"),
        Some(content_range.as_str())
    );
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// DESIGN.md step 5, RFC 9111 §3.3: a range request on a miss fills the full object (the
/// origin sees no `Range`), stores it, and is answered 206 from it.
#[tokio::test]
async fn a_range_request_on_a_miss_fills_the_full_object_and_gets_206() {
    let (origin, proxy, client) = setup().await;

    let partial = client.get("/range-miss", &[("range", "bytes=10-19")]).await;
    assert_eq!(partial.status, 206);
    assert_eq!(partial.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(partial.text(), &BODY[10..20]);
    let fill = origin.next_request().await;
    assert_eq!(fill.header("range"), None);
    let full = client.get("/range-miss", &[]).await;
    assert_hit(&full);
    assert_eq!(full.text(), BODY);
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// DESIGN.md step 5: a conditional request on a miss fills without the client's conditionals
/// and is answered from the stored entry.
#[tokio::test]
async fn a_conditional_request_on_a_miss_fills_without_the_conditionals() {
    let (origin, proxy, client) = setup().await;

    let headers = [
        ("if-none-match", ETAG),
        ("if-modified-since", LAST_MODIFIED),
    ];
    let not_modified = client.get("/conditional-miss", &headers).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.cache_status(), "cachet; fwd=miss; stored");
    let fill = origin.next_request().await;
    assert_eq!(fill.header("if-none-match"), None);
    assert_eq!(fill.header("if-modified-since"), None);
    let full = client.get("/conditional-miss", &[]).await;
    assert_hit(&full);
    assert_eq!(full.text(), BODY);
    proxy.shutdown().await;
}

/// RFC 9110 §13.1.5: `If-Range` with an outdated entity-tag gets the full response; with the
/// current one, the range.
#[tokio::test]
async fn if_range_with_an_outdated_etag_gets_the_full_response() {
    let (origin, proxy, client) = setup().await;
    store(&client, "/if-range").await;

    let outdated = [("range", "bytes=0-9"), ("if-range", "\"repr-0\"")];
    let full = client.get("/if-range", &outdated).await;
    assert_eq!(full.status, 200);
    assert_hit(&full);
    assert_eq!(full.text(), BODY);
    let current = [("range", "bytes=0-9"), ("if-range", ETAG)];
    let partial = client.get("/if-range", &current).await;
    assert_eq!(partial.status, 206);
    assert_eq!(partial.text(), &BODY[0..10]);
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// Issue 4 ("From the stored entry"): a range request for an object over `max_object_bytes`
/// passes through, so the origin answers the range itself. The first request may still get the
/// full object (its size is unknown until the origin answers); once the URL is known as not
/// storable, the origin sees the client's `Range`.
#[tokio::test]
async fn a_range_of_an_object_over_max_object_bytes_passes_through() {
    let big = support::origin::pattern(4096);
    let body = big.clone();
    let origin = Origin::start(move |seen| match seen.header("range") {
        Some("bytes=0-9") => Reply::ok(body.slice(0..10))
            .status(206)
            .header("content-range", "bytes 0-9/4096"),
        _ => Reply::ok(body.clone()).cache_control("max-age=60"),
    })
    .await;
    let config = support::proxy::one_route(&origin.url(), "").replace(
        "memory_max_bytes = \"64MiB\"",
        "memory_max_bytes = \"64MiB\"\nmax_object_bytes = \"1KiB\"",
    );
    let proxy = Proxy::start(&config).await;
    let client = Client::new(proxy.addr);
    let range = [("range", "bytes=0-9")];

    let first = client.get("/range-too-large", &range).await;
    match first.status.as_u16() {
        200 => assert_eq!(first.body, big),
        206 => assert_eq!(first.body, big.slice(0..10)),
        other => panic!("unexpected status {other}"),
    }
    origin.next_request().await;
    let second = client.get("/range-too-large", &range).await;
    assert_eq!(
        origin.next_request().await.header("range"),
        Some("bytes=0-9")
    );
    assert_eq!(second.status, 206);
    assert_eq!(second.header("content-range"), Some("bytes 0-9/4096"));
    assert_eq!(second.body, big.slice(0..10));
    proxy.shutdown().await;
}
