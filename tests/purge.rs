//! Purging on one instance without Redis (DESIGN.md "Admin API", "Tags", "Purge without
//! scanning"): each selector covers exactly what it names, soft purges serve stale while one
//! refresh runs, hard beats soft, and a fetch in flight during a purge is not served afterwards.
//!
//! Every check goes through `POST /purge` on the admin listener and reads `Cache-Status` and
//! the origin's counters; the proxy's clock never moves unless a test says so.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::admin::{Admin, body_json};
use support::origin::Gate;
use support::proxy::{DETERMINISTIC, SERVER};
use support::{Client, Origin, Proxy, Reply, Resp};

const STORED: &str = "cachet; fwd=miss; stored";
const VARY_STORED: &str = "cachet; fwd=vary-miss; stored";
/// A fresh memory hit of a `max-age=60` entry on the unmoved clock.
const HIT: &str = "cachet; hit; ttl=60";
/// Route lines keying the cache on the tenant.
const KEYED: &str = "key_headers = [\"x-tenant-id\"]";
const ACME: &[(&str, &str)] = &[("x-tenant-id", "acme")];
const GLOBEX: &[(&str, &str)] = &[("x-tenant-id", "globex")];

/// A request of a test: path and query, and headers.
type Req = (&'static str, &'static [(&'static str, &'static str)]);

/// The tag headers the origin sends for `path`.
fn tags_for(path: &str) -> &'static [(&'static str, &'static str)] {
    match path {
        "/sk/shoe" => &[("surrogate-key", "product:42 category:shoes")],
        "/sk/boot" => &[("surrogate-key", "product:43  category:boots")],
        "/ct/shoe" => &[("cache-tag", "product:42,category:shoes")],
        "/ct/boot" => &[("cache-tag", "product:43, category:boots")],
        "/items/1" | "/items/2" => &[("vary", "accept-language")],
        "/race" => &[("surrogate-key", "race")],
        "/doc" => &[("surrogate-key", "doc")],
        "/one" => &[("surrogate-key", "one")],
        "/two" => &[("surrogate-key", "two")],
        "/left/mimic" => &[("surrogate-key", "route:right mimic")],
        _ => &[],
    }
}

/// An origin answering `<uri> <tenant> #<n>` (n counts its requests) with `max-age=60` and
/// the tag headers of [`tags_for`]; request number `n` is held until `gate` opens when
/// `held(n)`.
async fn origin_held(gate: &Gate, held: fn(usize) -> bool) -> Origin {
    let (gate, count) = (gate.clone(), AtomicUsize::new(0));
    Origin::start(move |seen| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let tenant = seen.header("x-tenant-id").unwrap_or("-");
        let mut reply =
            Reply::ok(format!("{} {tenant} #{n}", seen.uri)).cache_control("max-age=60");
        for (name, value) in tags_for(seen.path()) {
            reply = reply.header(name, value);
        }
        if held(n) { reply.gate(&gate) } else { reply }
    })
    .await
}

async fn origin() -> Origin {
    origin_held(&Gate::new(), |_| false).await
}

/// One `[[routes]]` table with deterministic freshness.
fn route(name: &str, prefix: &str, origin: &Origin, extra: &str) -> String {
    let upstream = origin.url();
    format!(
        "\n[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{DETERMINISTIC}{extra}\n"
    )
}

/// Routes `left` on `/left` and `right` on `/right`, both to `origin`.
fn left_and_right(origin: &Origin) -> [String; 2] {
    [
        route("left", "/left", origin, ""),
        route("right", "/right", origin, ""),
    ]
}

async fn proxy(routes: &[String]) -> Proxy {
    Proxy::start(&format!("{SERVER}{}", routes.concat())).await
}

/// Fills every request of `covered` and `neighbours`, purges with `body`, then checks that
/// exactly the covered ones go back to the origin (and are cached again after), while the
/// neighbours stay memory hits with their first body.
async fn assert_purge_covers(
    proxy: &Proxy,
    origin: &Origin,
    body: &str,
    covered: &[Req],
    neighbours: &[Req],
) {
    let client = Client::new(proxy.addr);
    let mut first = Vec::new();
    for (path, headers) in covered.iter().chain(neighbours) {
        let filled = client.get(path, headers).await;
        assert!(stored(&filled), "fill {path} {headers:?}: {filled:?}");
        let hit = client.get(path, headers).await;
        assert_eq!(hit.cache_status(), HIT, "{path} {headers:?}");
        assert_eq!(hit.text(), filled.text());
        first.push(filled.text());
    }
    let before = origin.hits();
    Admin::new(proxy.admin).purge_ok(body).await;
    for ((path, headers), old) in covered.iter().zip(&first) {
        let refetched = client.get(path, headers).await;
        assert!(stored(&refetched), "{body} must cover {path} {headers:?}");
        assert_ne!(refetched.text(), *old, "{path} {headers:?}");
        let again = client.get(path, headers).await;
        assert_eq!(again.cache_status(), HIT, "{path} {headers:?} cached again");
        assert_eq!(again.text(), refetched.text());
    }
    for ((path, headers), old) in neighbours.iter().zip(&first[covered.len()..]) {
        let kept = client.get(path, headers).await;
        let what = format!("{body} must not cover {path} {headers:?}");
        assert_eq!(kept.cache_status(), HIT, "{what}");
        assert_eq!(kept.text(), *old, "{path} {headers:?}");
    }
    assert_eq!(origin.hits(), before + covered.len(), "one refetch each");
}

/// A hit served stale while one refresh runs.
fn served_stale(response: &Resp) -> bool {
    let status = response.cache_status();
    status.starts_with("cachet; hit; ") && status.ends_with("; detail=stale-while-revalidate")
}

/// A miss or a variant miss, stored.
fn stored(response: &Resp) -> bool {
    [STORED, VARY_STORED].contains(&response.cache_status())
}

/// Two purges, each on a fresh proxy: the first tag of a header, and a later one after extra
/// separators (two spaces in `Surrogate-Key`, a space after the comma in `Cache-Tag`).
async fn assert_tag_header_purges(shoe: &'static str, boot: &'static str) {
    let origin = origin().await;
    for (tag, covered, neighbour) in [
        ("category:shoes", shoe, boot),
        ("category:boots", boot, shoe),
    ] {
        let proxy = Proxy::one_route(&origin.url(), "").await;
        let body = json!({ "tags": [tag] }).to_string();
        assert_purge_covers(
            &proxy,
            &origin,
            &body,
            &[(covered, &[])],
            &[(neighbour, &[])],
        )
        .await;
        proxy.shutdown().await;
    }
}

#[tokio::test]
async fn a_surrogate_key_tag_purges_only_the_entries_carrying_it() {
    assert_tag_header_purges("/sk/shoe", "/sk/boot").await;
}

#[tokio::test]
async fn a_cache_tag_purges_only_the_entries_carrying_it() {
    assert_tag_header_purges("/ct/shoe", "/ct/boot").await;
}

#[tokio::test]
async fn a_routes_static_tag_purges_every_entry_of_that_route_only() {
    let origin = origin().await;
    let routes = [
        route(
            "catalog",
            "/catalog",
            &origin,
            "tags = [\"catalog\", \"shop\"]",
        ),
        route("misc", "/misc", &origin, "tags = [\"misc\"]"),
    ];
    let proxy = proxy(&routes).await;
    let covered: &[Req] = &[("/catalog/1", &[]), ("/catalog/2?page=3", &[])];
    let body = r#"{"tags": ["catalog"]}"#;
    assert_purge_covers(&proxy, &origin, body, covered, &[("/misc/1", &[])]).await;
    proxy.shutdown().await;
}

/// `urls` covers every partition and every variant of the URL, whatever the order of its query
/// parameters; another URL, or the same path with another query, stays cached.
#[tokio::test]
async fn a_url_purge_covers_every_partition_and_variant_of_that_url() {
    let origin = origin().await;
    let routes = [route("items", "/items", &origin, KEYED)];
    let proxy = proxy(&routes).await;
    const ACME_DE: &[(&str, &str)] = &[("x-tenant-id", "acme"), ("accept-language", "de")];
    const GLOBEX_DE: &[(&str, &str)] = &[("x-tenant-id", "globex"), ("accept-language", "de")];
    let covered: &[Req] = &[
        ("/items/1?a=1&b=2", ACME),
        ("/items/1?a=1&b=2", ACME_DE),
        ("/items/1?a=1&b=2", GLOBEX),
        ("/items/1?a=1&b=2", GLOBEX_DE),
    ];
    let neighbours: &[Req] = &[("/items/2?a=1&b=2", ACME), ("/items/1?a=1&b=3", ACME)];
    let body = r#"{"urls": ["/items/1?b=2&a=1"]}"#;
    assert_purge_covers(&proxy, &origin, body, covered, neighbours).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_prefix_purge_covers_the_paths_under_it_only() {
    let origin = origin().await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let covered: &[Req] = &[("/pre/a/1", &[]), ("/pre/a/2?x=1", &[])];
    let neighbours: &[Req] = &[("/pre/b/1", &[]), ("/pre/ab", &[])];
    let body = r#"{"prefix": "/pre/a/"}"#;
    assert_purge_covers(&proxy, &origin, body, covered, neighbours).await;
    proxy.shutdown().await;
}

/// Entries are stored under their normalized paths (RFC 3986 §6.2.2); a prefix spelled any
/// other way (lower-case hex, an encoded unreserved character) covers the same entries
/// instead of purging nothing.
#[tokio::test]
async fn a_prefix_purge_in_another_spelling_covers_the_same_paths() {
    let origin = origin().await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let covered: &[Req] = &[("/caf%C3%A9/~u/1", &[]), ("/caf%c3%a9/%7Eu/2", &[])];
    let neighbours: &[Req] = &[("/caf%C3%A9/v/1", &[])];
    let body = r#"{"prefix": "/caf%c3%a9/%7eu/"}"#;
    assert_purge_covers(&proxy, &origin, body, covered, neighbours).await;
    proxy.shutdown().await;
}

/// A route's `path_prefix` is compared with normalized request paths, so it is normalized
/// too: spelled with an encoded unreserved character it still routes its requests.
#[tokio::test]
async fn a_route_prefix_in_another_spelling_routes_its_requests() {
    let origin = origin().await;
    let proxy = proxy(&[route("tilde", "/%7euser/", &origin, "")]).await;
    let client = Client::new(proxy.addr);
    for path in ["/~user/a", "/%7Euser/a"] {
        let response = client.get(path, &[]).await;
        assert_eq!(response.status, 200, "{path}: {response:?}");
    }
    assert_eq!(client.get("/other", &[]).await.status, 404);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_route_purge_leaves_other_routes_cached() {
    let origin = origin().await;
    let proxy = proxy(&left_and_right(&origin)).await;
    let covered: &[Req] = &[("/left/1", &[]), ("/left/2", &[])];
    let body = r#"{"route": "left"}"#;
    assert_purge_covers(&proxy, &origin, body, covered, &[("/right/1", &[])]).await;
    proxy.shutdown().await;
}

/// `route:`, `url:` and `part:` tags are Cachet's own: an origin sending `route:right` on
/// another route's entry does not put it under right's purge.
#[tokio::test]
async fn an_origin_tag_spelled_like_an_automatic_one_is_dropped() {
    let origin = origin().await;
    let proxy = proxy(&left_and_right(&origin)).await;
    let body = r#"{"route": "right"}"#;
    let mimic: &[Req] = &[("/left/mimic", &[])];
    assert_purge_covers(&proxy, &origin, body, &[("/right/1", &[])], mimic).await;
    // Its other tag is kept.
    let body = r#"{"tags": ["mimic"]}"#;
    let client = Client::new(proxy.addr);
    Admin::new(proxy.admin).purge_ok(body).await;
    assert!(stored(&client.get("/left/mimic", &[]).await));
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_partition_purge_covers_one_tenant_only() {
    let origin = origin().await;
    let routes = [route("tenants", "/", &origin, KEYED)];
    let proxy = proxy(&routes).await;
    let covered: &[Req] = &[("/p/1", ACME), ("/p/2", ACME)];
    let neighbours: &[Req] = &[("/p/1", GLOBEX), ("/p/1", &[])];
    // Header names are matched case-insensitively; the value is fingerprinted like a key's.
    let body = r#"{"partition": {"X-Tenant-Id": "acme"}}"#;
    assert_purge_covers(&proxy, &origin, body, covered, neighbours).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn purge_all_covers_every_route_and_partition() {
    let origin = origin().await;
    let routes = [
        route("keyed", "/keyed", &origin, KEYED),
        route("plain", "/plain", &origin, "tags = [\"plain\"]"),
    ];
    let proxy = proxy(&routes).await;
    let covered: &[Req] = &[("/keyed/1", ACME), ("/keyed/1", GLOBEX), ("/plain/1", &[])];
    assert_purge_covers(&proxy, &origin, r#"{"all": true}"#, covered, &[]).await;
    proxy.shutdown().await;
}

/// Polls `path` until its body differs from `old`, a bounded number of times: the background
/// refresh that replaces it has no event of its own to await.
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

#[tokio::test]
async fn a_soft_purge_serves_stale_while_exactly_one_refresh_runs() {
    let gate = Gate::new();
    // Every answer after the first fill is held until the gate opens.
    let origin = origin_held(&gate, |n| n > 1).await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"30s\"").await;
    let client = Client::new(proxy.addr);
    assert_eq!(client.get("/doc", &[]).await.cache_status(), STORED);
    assert_eq!(origin.next_request().await.path(), "/doc");

    let purge = r#"{"tags": ["doc"], "soft": true}"#;
    Admin::new(proxy.admin).purge_ok(purge).await;
    // Answered while the origin holds every answer: nobody waits for the refresh.
    for _ in 0..5 {
        let stale = client.get("/doc", &[]).await;
        assert!(served_stale(&stale), "{stale:?}");
        assert_eq!(stale.text(), "/doc - #1");
    }
    assert_eq!(origin.next_request().await.path(), "/doc", "the refresh");
    assert!(!gate.is_open());
    assert_eq!(origin.hits(), 2, "one fill and one refresh");

    gate.open();
    let fresh = eventually_new_body(&client, "/doc", "/doc - #1").await;
    assert_eq!(fresh.text(), "/doc - #2");
    assert_eq!(fresh.cache_status(), HIT);
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// Without a stale-while-revalidate window a soft-purged entry is revalidated before it is
/// served: the client waits for the origin's 304, then the entry is fresh again.
#[tokio::test]
async fn a_soft_purge_without_a_stale_window_revalidates_before_serving() {
    let origin = Origin::start(support::origin::validating(
        ("etag", "\"v1\""),
        "if-none-match",
        "max-age=60",
        &[],
    ))
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    assert_eq!(client.get("/v", &[]).await.cache_status(), STORED);
    assert_eq!(client.get("/v", &[]).await.cache_status(), HIT);
    origin.next_request().await;

    Admin::new(proxy.admin)
        .purge_ok(r#"{"route": "test", "soft": true}"#)
        .await;
    let revalidated = client.get("/v", &[]).await;
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.text(), "stored body");
    let seen = origin.next_request().await;
    assert_eq!(seen.header("if-none-match"), Some("\"v1\""));
    assert_eq!(client.get("/v", &[]).await.cache_status(), HIT);
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// Each selector keeps a hard and a soft sequence: a soft purge after a hard one, of the same
/// tag or of everything, leaves the entry invalid rather than merely stale.
#[tokio::test]
async fn a_later_soft_purge_does_not_weaken_an_earlier_hard_one() {
    let origin = origin().await;
    let proxy = Proxy::one_route(&origin.url(), "stale_while_revalidate = \"30s\"").await;
    let client = Client::new(proxy.addr);
    let admin = Admin::new(proxy.admin);
    assert_eq!(client.get("/one", &[]).await.cache_status(), STORED);
    assert_eq!(client.get("/two", &[]).await.cache_status(), STORED);

    admin.purge_ok(r#"{"tags": ["one"]}"#).await;
    admin.purge_ok(r#"{"tags": ["one"], "soft": true}"#).await;
    admin.purge_ok(r#"{"all": true, "soft": true}"#).await;
    let one = client.get("/one", &[]).await;
    assert_eq!(one.cache_status(), STORED, "hard-purged, not stale");
    assert_eq!(one.text(), "/one - #3");
    // The soft purges did apply: the entry only they cover is served stale.
    let two = client.get("/two", &[]).await;
    assert!(served_stale(&two), "{two:?}");
    assert_eq!(two.text(), "/two - #2");
    proxy.shutdown().await;
}

/// DESIGN.md: "no response whose origin fetch *started* before the purge is ever served as
/// fresh again". The client that asked still gets its answer; nobody after it does.
#[tokio::test]
async fn a_fetch_in_flight_when_its_tag_is_purged_is_not_served_afterwards() {
    let gate = Gate::new();
    let origin = origin_held(&gate, |n| n == 1).await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("/race", &[]).await }
    });
    // The fetch has started: the origin holds its answer.
    assert_eq!(origin.next_request().await.path(), "/race");
    let purge = r#"{"tags": ["race"]}"#;
    Admin::new(proxy.admin).purge_ok(purge).await;
    gate.open();
    let first = in_flight.await.expect("request task");
    assert_eq!(first.text(), "/race - #1");

    let after = client.get("/race", &[]).await;
    assert_eq!(after.cache_status(), STORED, "served the purged fetch");
    assert_eq!(after.text(), "/race - #2");
    assert_eq!(client.get("/race", &[]).await.cache_status(), HIT);
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_purge_answers_ok_with_an_increasing_sequence() {
    let origin = origin().await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let admin = Admin::new(proxy.admin);
    let bodies = [
        r#"{"tags": ["a", "b"]}"#,
        r#"{"prefix": "/x/", "soft": true}"#,
        r#"{"all": true}"#,
    ];
    let mut last = 0;
    for body in bodies {
        let answer = admin.purge(body, None).await;
        assert_eq!(answer.status, 200, "{body}: {}", answer.text());
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let json = body_json(&answer);
        let seq = json["seq"].as_u64().expect("seq is a number");
        assert_eq!(json, json!({ "ok": true, "seq": seq }), "{body}");
        assert!(seq > last, "{body}: seq {seq} after {last}");
        last = seq;
    }
    proxy.shutdown().await;
}
