//! HTTP caching semantics of responses through real sockets (RFC 9111, RFC 9213): revalidation
//! and 304 updates, the directives that forbid stale serving, heuristic freshness, `Expires`
//! and `Date`, CDN-Cache-Control, credentialed requests on a shared route, Vary, and
//! invalidation after unsafe methods. What a client's request asks of the cache (its cache
//! directives, HEAD, conditionals, ranges) is in `conditional.rs`. Each test owns its paths;
//! time moves only through the proxy's manual clock.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachet::clock::Clock;
use http::Method;
use support::origin::validating;
use support::{Client, Origin, Proxy, Reply, Resp, Seen, ttl};

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Far enough in the past for any test; a validator value, never a freshness input.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
/// What the revalidation tests' 304s carry: a changed header and a new lifetime.
const UPDATED: &[(&str, &str)] = &[("x-version", "2"), ("cache-control", "max-age=100")];

async fn start(origin: &Origin, route_extra: &str) -> (Proxy, Client) {
    let proxy = Proxy::one_route(&origin.url(), route_extra).await;
    let client = Client::new(proxy.addr);
    (proxy, client)
}

/// A value the origin's handler reads, set by the test once the proxy (and its clock) exist.
#[derive(Debug, Clone, Default)]
struct Slot(Arc<OnceLock<String>>);

impl Slot {
    fn set(&self, value: String) {
        self.0.set(value).expect("the slot is set once");
    }

    fn get(&self) -> String {
        self.0
            .get()
            .cloned()
            .expect("the slot is set before requests")
    }
}

/// Stores `path` (max-age=10), lets it go stale, and checks that it is revalidated with
/// `conditional` and that the 304's headers and freshness are what the next hit shows.
async fn assert_revalidated(
    origin: &Origin,
    proxy: &Proxy,
    client: &Client,
    path: &str,
    conditional: (&str, &str),
) {
    let miss = client.get(path, &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(miss.header("x-version"), Some("1"));
    assert_eq!(origin.next_request().await.header(conditional.0), None);

    proxy.advance(Duration::from_secs(11));
    let revalidated = client.get(path, &[]).await;
    assert_eq!(revalidated.status, 200);
    assert_eq!(
        revalidated.cache_status(),
        "cachet; fwd=stale; fwd-status=304; stored"
    );
    assert_eq!(revalidated.text(), "stored body");
    assert_eq!(revalidated.header("x-version"), Some("2"));
    let seen = origin.next_request().await;
    assert_eq!(seen.header(conditional.0), Some(conditional.1));

    let hit = client.get(path, &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=100");
    assert_eq!(hit.age(), Some(0), "the age is the 304's");
    assert_eq!(hit.header("x-version"), Some("2"));
    assert_eq!(hit.text(), "stored body");
    assert_eq!(origin.hits_for(path), 2);
}

/// RFC 9111 §4.3.1, §4.3.4: a stale entry with an `ETag` is revalidated with
/// `If-None-Match`; the 304 updates the stored headers and freshness.
#[tokio::test]
async fn a_stale_entry_with_an_etag_is_revalidated_and_the_304_updates_it() {
    let etag = ("etag", "\"rev-1\"");
    let origin = Origin::start(validating(etag, "if-none-match", "max-age=10", UPDATED)).await;
    let (proxy, client) = start(&origin, "").await;
    let conditional = ("if-none-match", etag.1);
    assert_revalidated(&origin, &proxy, &client, "/revalidate/etag", conditional).await;
    proxy.shutdown().await;
}

/// RFC 9111 §4.3.1, §4.3.4: with only `Last-Modified`, the validator is `If-Modified-Since`.
#[tokio::test]
async fn a_stale_entry_with_only_last_modified_is_revalidated_with_if_modified_since() {
    let validator = ("last-modified", LAST_MODIFIED);
    let handler = validating(validator, "if-modified-since", "max-age=10", UPDATED);
    let origin = Origin::start(handler).await;
    let (proxy, client) = start(&origin, "").await;
    let conditional = ("if-modified-since", LAST_MODIFIED);
    assert_revalidated(&origin, &proxy, &client, "/revalidate/lm", conditional).await;
    proxy.shutdown().await;
}

/// RFC 9111 §5.2.2.4: a `no-cache` response is stored but never used without validation.
#[tokio::test]
async fn a_no_cache_response_is_stored_and_revalidated_on_every_use() {
    let etag = ("etag", "\"nc-1\"");
    let origin = Origin::start(validating(etag, "if-none-match", "no-cache", &[])).await;
    let (proxy, client) = start(&origin, "").await;

    let miss = client.get("/no-cache-response", &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.next_request().await.header("if-none-match"), None);
    for round in 2..=4 {
        let used = client.get("/no-cache-response", &[]).await;
        assert_eq!(used.status, 200, "round {round}");
        assert_eq!(
            used.cache_status(),
            "cachet; fwd=stale; fwd-status=304; stored",
            "round {round}"
        );
        assert_eq!(used.text(), "stored body");
        let seen = origin.next_request().await;
        assert_eq!(seen.header("if-none-match"), Some(etag.1), "round {round}");
        assert_eq!(origin.hits(), round);
    }
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.4, §5.2.2.2, §5.2.2.8, §5.2.2.10: `must-revalidate`, `proxy-revalidate` and
/// `s-maxage` forbid serving stale, whatever the route's stale windows say: once stale the
/// entry is revalidated, and when the origin then fails the client gets the failure.
#[tokio::test]
async fn directives_forbidding_stale_override_the_route_stale_windows() {
    let failing = Arc::new(AtomicBool::new(false));
    let fail = Arc::clone(&failing);
    let origin = Origin::start(move |seen| {
        if fail.load(Ordering::SeqCst) {
            return Reply::ok("origin down").status(503);
        }
        let cc = match seen.path() {
            "/forbid-stale/must-revalidate" => "max-age=10, must-revalidate",
            "/forbid-stale/proxy-revalidate" => "max-age=10, proxy-revalidate",
            _ => "s-maxage=10",
        };
        validating(("etag", "\"fs-1\""), "if-none-match", cc, &[])(seen)
    })
    .await;
    let windows = "stale_while_revalidate = \"60s\"\nstale_if_error = \"60s\"";
    let (proxy, client) = start(&origin, windows).await;
    let paths = [
        "/forbid-stale/must-revalidate",
        "/forbid-stale/proxy-revalidate",
        "/forbid-stale/s-maxage",
    ];

    for path in paths {
        let miss = client.get(path, &[]).await;
        assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored", "{path}");
    }
    origin.drain_requests().await;
    proxy.advance(Duration::from_secs(11));
    for path in paths {
        let revalidated = client.get(path, &[]).await;
        assert_eq!(
            revalidated.cache_status(),
            "cachet; fwd=stale; fwd-status=304; stored",
            "{path}: served stale within the route's stale-while-revalidate"
        );
        assert_eq!(revalidated.text(), "stored body");
        let seen = origin.next_request().await;
        assert!(seen.header("if-none-match").is_some(), "{path}");
    }
    failing.store(true, Ordering::SeqCst);
    proxy.advance(Duration::from_secs(11));
    for path in paths {
        let failed = client.get(path, &[]).await;
        assert_eq!(failed.status, 503, "{path}: served stale-if-error");
        assert_eq!(
            failed.cache_status(),
            "cachet; fwd=stale; fwd-status=503",
            "{path}"
        );
        assert_eq!(failed.text(), "origin down");
        assert_eq!(origin.hits_for(path), 3);
    }
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.2: without explicit freshness and with `default_ttl` 0, a status that is
/// heuristically cacheable gets a tenth of its `Last-Modified` age as freshness.
#[tokio::test]
async fn heuristic_freshness_is_a_tenth_of_the_last_modified_age() {
    let last_modified = Slot::default();
    let lm = last_modified.clone();
    let origin = Origin::start(move |seen| {
        let reply = Reply::ok(format!("{} body", seen.path())).header("last-modified", &lm.get());
        if seen.path().ends_with("/404") {
            reply.status(404)
        } else {
            reply
        }
    })
    .await;
    let (proxy, client) = start(&origin, "").await;
    last_modified.set(httpdate::fmt_http_date(proxy.clock.now() - 10 * DAY));
    let day = i64::try_from(DAY.as_secs()).expect("a day fits");

    for (path, status) in [("/heuristic/404", 404), ("/heuristic/200", 200)] {
        let miss = client.get(path, &[]).await;
        assert_eq!(miss.status, status, "{path}");
        assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored", "{path}");
        let hit = client.get(path, &[]).await;
        assert_eq!(hit.status, status, "{path}");
        assert!(hit.is_hit(), "{path}: {}", hit.cache_status());
        let left = ttl(hit.cache_status()).expect("a hit has a ttl");
        assert!((day - 1..=day + 1).contains(&left), "{path}: ttl={left}");
        assert_eq!(hit.text(), format!("{path} body"));
        assert_eq!(origin.hits_for(path), 1, "{path}");
    }
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.2: heuristic freshness only for statuses cacheable by default (RFC 9110
/// §15.1); a 302 or a 403 with an old `Last-Modified` is not stored.
#[tokio::test]
async fn heuristic_freshness_is_not_given_to_statuses_not_cacheable_by_default() {
    let origin = Origin::start(|seen| {
        let status = if seen.path().ends_with("/302") {
            302
        } else {
            403
        };
        Reply::ok("no heuristic")
            .status(status)
            .header("last-modified", LAST_MODIFIED)
    })
    .await;
    let (proxy, client) = start(&origin, "").await;

    for (path, status) in [("/no-heuristic/302", 302), ("/no-heuristic/403", 403)] {
        let first = client.get(path, &[]).await;
        assert_eq!(first.status, status, "{path}");
        assert_eq!(first.cache_status(), "cachet; fwd=miss", "{path}");
        let second = client.get(path, &[]).await;
        assert!(!second.is_hit(), "{path}: {}", second.cache_status());
        assert_eq!(origin.hits_for(path), 2, "{path}");
    }
    proxy.shutdown().await;
}

/// RFC 9111 §4.2.1, §5.3: an `Expires` before `Date` means already stale, and that is
/// explicit freshness information, so `default_ttl` does not apply either.
#[tokio::test]
async fn an_expires_in_the_past_is_not_fresh() {
    let date = Slot::default();
    let d = date.clone();
    let origin = Origin::start(move |_| {
        let now = httpdate::parse_http_date(&d.get()).expect("a valid date");
        Reply::ok("expired").header("date", &d.get()).header(
            "expires",
            &httpdate::fmt_http_date(now - Duration::from_secs(3600)),
        )
    })
    .await;
    let (proxy, client) = start(&origin, "default_ttl = \"60s\"").await;
    date.set(httpdate::fmt_http_date(proxy.clock.now()));

    let first = client.get("/expires-past", &[]).await;
    assert_eq!(first.cache_status(), "cachet; fwd=miss");
    let second = client.get("/expires-past", &[]).await;
    assert!(!second.is_hit(), "{}", second.cache_status());
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9110 §6.6.1, RFC 9111 §4: the origin's `Date` is part of the stored response and is
/// sent unchanged on hits (`Age` says how long it was stored).
#[tokio::test]
async fn the_origin_date_is_kept_on_hits() {
    let date = Slot::default();
    let d = date.clone();
    let origin = Origin::start(move |_| {
        Reply::ok("dated")
            .cache_control("max-age=60")
            .header("date", &d.get())
    })
    .await;
    let (proxy, client) = start(&origin, "").await;
    let sent = httpdate::fmt_http_date(proxy.clock.now());
    date.set(sent.clone());

    let miss = client.get("/date-kept", &[]).await;
    assert_eq!(miss.header("date"), Some(sent.as_str()));
    proxy.advance(Duration::from_secs(20));
    let hit = client.get("/date-kept", &[]).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!(hit.header("date"), Some(sent.as_str()));
    assert_eq!(hit.age(), Some(20));
    proxy.shutdown().await;
}

/// RFC 9213 §2.1: `CDN-Cache-Control` replaces `Cache-Control` for Cachet, so a response it
/// marks cacheable is stored despite `Cache-Control: no-store`, which still reaches the
/// client; `CDN-Cache-Control` itself never does.
#[tokio::test]
async fn cdn_cache_control_overrides_a_cache_control_no_store() {
    let origin = Origin::numbered(
        Reply::empty()
            .cache_control("no-store")
            .header("cdn-cache-control", "max-age=60"),
    )
    .await;
    let (proxy, client) = start(&origin, "").await;

    let miss = client.get("/cdn-over-no-store", &[]).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    let hit = client.get("/cdn-over-no-store", &[]).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "/cdn-over-no-store #1");
    for response in [&miss, &hit] {
        assert_eq!(response.header("cdn-cache-control"), None);
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9111 §3.5: on a route without `authorization` as a key header, a response to a
/// credentialed request marked `must-revalidate` may be stored (and stays with credentials).
#[tokio::test]
async fn a_must_revalidate_response_to_a_credentialed_request_is_stored() {
    let origin = Origin::start(|seen| {
        let who = if seen.header("authorization").is_some() {
            "credentialed"
        } else {
            "anonymous"
        };
        Reply::ok(who).cache_control("max-age=60, must-revalidate")
    })
    .await;
    let (proxy, client) = start(&origin, "").await;
    let auth = [("authorization", "Bearer must-revalidate-secret")];

    let miss = client.get("/auth-must-revalidate", &auth).await;
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    let hit = client.get("/auth-must-revalidate", &auth).await;
    assert_eq!(hit.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(hit.text(), "credentialed");
    let anonymous = client.get("/auth-must-revalidate", &[]).await;
    assert_eq!(anonymous.text(), "anonymous");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// An origin answering `<header value> #<n>` with `Vary: <vary>` and `max-age=60`.
async fn varying_origin(vary: &'static str, header: &'static str) -> Origin {
    let count = AtomicUsize::new(0);
    Origin::start(move |seen| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let value = seen.header(header).unwrap_or("-");
        Reply::ok(format!("{value} #{n}"))
            .cache_control("max-age=60")
            .header("vary", vary)
    })
    .await
}

/// RFC 9111 §4.1: each `Accept-Language` value is its own variant of the URL; values that
/// differ only in case and whitespace select the same one.
#[tokio::test]
async fn vary_keeps_one_variant_per_normalized_header_value() {
    let origin = varying_origin("Accept-Language", "accept-language").await;
    let (proxy, client) = start(&origin, "").await;
    let path = "/vary/language";

    let en = client
        .get(path, &[("accept-language", "en-US, fr;q=0.5")])
        .await;
    assert_eq!(en.cache_status(), "cachet; fwd=miss; stored");
    let fr = client.get(path, &[("accept-language", "fr")]).await;
    assert_eq!(fr.cache_status(), "cachet; fwd=vary-miss; stored");
    assert_ne!(fr.body, en.body);
    let en_again = client
        .get(path, &[("accept-language", "EN-us ,  fr;q=0.5")])
        .await;
    assert_eq!(en_again.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(en_again.body, en.body);
    let fr_again = client.get(path, &[("accept-language", "fr")]).await;
    assert_eq!(fr_again.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(fr_again.body, fr.body);
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §4.1: `Vary: *` always fails to match: every request reaches the origin.
#[tokio::test]
async fn vary_star_is_never_reused() {
    let origin = varying_origin("*", "accept-language").await;
    let (proxy, client) = start(&origin, "").await;

    for round in 1..=3 {
        let response = client.get("/vary/star", &[("accept-language", "en")]).await;
        assert!(
            !response.is_hit(),
            "round {round}: {}",
            response.cache_status()
        );
        assert_eq!(response.text(), format!("en #{round}"));
    }
    assert_eq!(origin.hits(), 3);
    proxy.shutdown().await;
}

/// RFC 9111 §4.1 (normalization is allowed): `Accept-Encoding` values are bucketed by the
/// coding an origin would pick, so `gzip, deflate, br` and `br, gzip` share one variant.
#[tokio::test]
async fn accept_encoding_values_preferring_the_same_coding_share_a_variant() {
    let origin = varying_origin("Accept-Encoding", "accept-encoding").await;
    let (proxy, client) = start(&origin, "").await;
    let path = "/vary/encoding";

    let first = client
        .get(path, &[("accept-encoding", "gzip, deflate, br")])
        .await;
    assert_eq!(first.cache_status(), "cachet; fwd=miss; stored");
    let same = client.get(path, &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(same.cache_status(), "cachet; hit; ttl=60");
    assert_eq!(same.body, first.body);
    let identity = client.get(path, &[("accept-encoding", "identity")]).await;
    assert_eq!(identity.cache_status(), "cachet; fwd=vary-miss; stored");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §4.4 with §4.1: a write invalidates every stored variant of its target.
#[tokio::test]
async fn a_write_invalidates_every_variant() {
    let origin = varying_origin("Accept-Language", "accept-language").await;
    let (proxy, client) = start(&origin, "").await;
    let path = "/vary/written";
    let mut before = Vec::new();
    for lang in ["en", "fr"] {
        client.get(path, &[("accept-language", lang)]).await;
        let hit = client.get(path, &[("accept-language", lang)]).await;
        assert!(hit.is_hit(), "{lang}: {}", hit.cache_status());
        before.push((lang, hit));
    }

    let put = client.send(Method::PUT, path, &[], "{}".into()).await;
    assert_eq!(put.status, 200);
    for (lang, hit) in before {
        let after = client.get(path, &[("accept-language", lang)]).await;
        assert!(!after.is_hit(), "{lang}: {}", after.cache_status());
        assert_ne!(after.body, hit.body, "{lang}");
    }
    proxy.shutdown().await;
}

/// An origin for writes: GETs get `<path> <tenant> #<n>` with `max-age=60`; other methods get
/// `write(request)`.
async fn writable_origin(write: fn(&Seen) -> Reply) -> Origin {
    let count = AtomicUsize::new(0);
    Origin::start(move |seen| {
        if seen.method != Method::GET {
            return write(seen);
        }
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        let tenant = seen.header("x-tenant-id").unwrap_or("-");
        Reply::ok(format!("{} {tenant} #{n}", seen.path())).cache_control("max-age=60")
    })
    .await
}

const TENANTS: [&str; 2] = ["acme", "globex"];

/// GETs `path` for `tenant` until it is a hit; returns the hit.
async fn cached(client: &Client, path: &str, tenant: &str) -> Resp {
    client.get(path, &[("x-tenant-id", tenant)]).await;
    let hit = client.get(path, &[("x-tenant-id", tenant)]).await;
    assert!(hit.is_hit(), "{path} {tenant}: {}", hit.cache_status());
    hit
}

/// Asserts that `path` for `tenant` reaches the origin and no longer gets `before`'s body, and
/// that the new response is then cached.
async fn assert_invalidated(client: &Client, path: &str, tenant: &str, before: &Resp) {
    let after = client.get(path, &[("x-tenant-id", tenant)]).await;
    assert!(!after.is_hit(), "{path} {tenant}: {}", after.cache_status());
    assert_ne!(after.body, before.body, "{path} {tenant}");
    // The refetched response is stored and served again: only older fetches were invalidated.
    let again = client.get(path, &[("x-tenant-id", tenant)]).await;
    assert!(again.is_hit(), "{path} {tenant}: {}", again.cache_status());
    assert_eq!(again.body, after.body, "{path} {tenant}");
}

/// RFC 9111 §4.4: a successful POST invalidates its target URI and the `Location` and
/// `Content-Location` it names, in every partition.
#[tokio::test]
async fn a_successful_post_invalidates_its_target_and_location_in_every_partition() {
    let origin = writable_origin(|_| {
        Reply::ok("created")
            .status(201)
            .header("location", "/unsafe-post/items/2")
            .header("content-location", "/unsafe-post/items/1")
    })
    .await;
    let (proxy, client) = start(&origin, "key_headers = [\"x-tenant-id\"]").await;
    let (item, created) = ("/unsafe-post/items/1", "/unsafe-post/items/2");

    let mut before = Vec::new();
    for tenant in TENANTS {
        before.push((item, tenant, cached(&client, item, tenant).await));
    }
    before.push((created, "acme", cached(&client, created, "acme").await));
    let post = client
        .post(item, &[("x-tenant-id", "acme")], "{\"name\":\"two\"}")
        .await;
    assert_eq!(post.status, 201);
    assert_eq!(post.cache_status(), "cachet; fwd=method");
    for (path, tenant, hit) in &before {
        assert_invalidated(&client, path, tenant, hit).await;
    }
    assert_eq!(origin.hits_for(item), 2 + 1 + 2);
    assert_eq!(origin.hits_for(created), 2);
    proxy.shutdown().await;
}

/// RFC 9111 §4.4: a `Location` or `Content-Location` naming another host is not invalidated
/// (that would let one origin purge another's entries); an absolute URI on the request's own
/// host is.
#[tokio::test]
async fn only_same_origin_locations_are_invalidated() {
    let origin = writable_origin(|seen| {
        // Origins build absolute URIs from the host they were asked for.
        let host = seen.header("x-forwarded-host").unwrap_or("-");
        Reply::ok("created")
            .status(201)
            .header("location", &format!("http://{host}/unsafe-origin/items/2"))
            .header(
                "content-location",
                "http://other.example/unsafe-origin/items/3",
            )
    })
    .await;
    let (proxy, client) = start(&origin, "").await;
    let (item, same, other) = (
        "/unsafe-origin/items/1",
        "/unsafe-origin/items/2",
        "/unsafe-origin/items/3",
    );
    let other_host = [("host", "other.example")];
    client.get(same, &[]).await;
    let cached_same = client.get(same, &[]).await;
    assert!(cached_same.is_hit(), "{}", cached_same.cache_status());
    client.get(other, &other_host).await;
    let cached_other = client.get(other, &other_host).await;
    assert!(cached_other.is_hit(), "{}", cached_other.cache_status());

    let post = client.post(item, &[], "{}").await;
    assert_eq!(post.status, 201);
    let after_same = client.get(same, &[]).await;
    assert!(!after_same.is_hit(), "{}", after_same.cache_status());
    let after_other = client.get(other, &other_host).await;
    assert!(after_other.is_hit(), "{}", after_other.cache_status());
    assert_eq!(after_other.body, cached_other.body);
    proxy.shutdown().await;
}

/// RFC 9111 §4.4: only a 2xx or 3xx answer invalidates; a failed POST changes nothing.
#[tokio::test]
async fn a_failed_post_invalidates_nothing() {
    let origin = writable_origin(|_| Reply::ok("failed").status(500)).await;
    let (proxy, client) = start(&origin, "key_headers = [\"x-tenant-id\"]").await;
    let item = "/unsafe-failed/items/1";

    let before = cached(&client, item, "acme").await;
    let post = client.post(item, &[("x-tenant-id", "acme")], "{}").await;
    assert_eq!(post.status, 500);
    let after = client.get(item, &[("x-tenant-id", "acme")]).await;
    assert!(after.is_hit(), "{}", after.cache_status());
    assert_eq!(after.body, before.body);
    proxy.shutdown().await;
}

/// RFC 9111 §4.4: PUT, PATCH and DELETE invalidate their target too, and nothing else.
#[tokio::test]
async fn put_patch_and_delete_invalidate_their_target() {
    let origin = writable_origin(|seen| {
        if seen.method == Method::DELETE {
            Reply::ok("").status(204)
        } else {
            Reply::ok("updated")
        }
    })
    .await;
    let (proxy, client) = start(&origin, "key_headers = [\"x-tenant-id\"]").await;
    let untouched = "/unsafe-methods/untouched";
    let kept = cached(&client, untouched, "acme").await;

    for method in [Method::PUT, Method::PATCH, Method::DELETE] {
        let path = format!("/unsafe-methods/{}", method.as_str().to_ascii_lowercase());
        let before = cached(&client, &path, "acme").await;
        let headers = [("x-tenant-id", "globex")];
        let write = client
            .send(method.clone(), &path, &headers, "{}".into())
            .await;
        assert!(write.status.is_success(), "{method}: {}", write.status);
        assert_invalidated(&client, &path, "acme", &before).await;
    }
    let still = client.get(untouched, &[("x-tenant-id", "acme")]).await;
    assert!(still.is_hit(), "{}", still.cache_status());
    assert_eq!(still.body, kept.body);
    proxy.shutdown().await;
}
