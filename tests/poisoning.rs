//! Cache poisoning: nothing a client sends outside the cache key may change what is stored for
//! everyone else. Each test sends the attacker's request first and a clean victim request for
//! the same URL second, against an origin that echoes what it saw (target, method, the
//! headers frameworks are known to honour, body size) into a cacheable body. Per vector, Cachet
//! normalizes it (the victim gets a hit that shows the normalized form), keys on it (the
//! victim misses and gets its own answer), strips it (the origin never sees it) or refuses it.
//! The README's "Security model" section has the table.

mod support;

use std::collections::BTreeSet;

use support::origin::Gate;
use support::proxy::one_route;
use support::{Client, Origin, Proxy, Reply, Resp, Seen, burst, join_all, raw};

/// Headers the echo origin reports when it receives them.
const ECHOED: [&str; 10] = [
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-forwarded-scheme",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "forwarded",
    "x-forwarded-port",
    "x-host",
];

/// `<METHOD> <target>`, then one line per echoed header received, then the body size.
fn echo(seen: &Seen) -> String {
    let target = seen
        .uri
        .path_and_query()
        .map_or_else(|| seen.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut body = format!("{} {target}\n", seen.method);
    for name in ECHOED {
        if let Some(value) = seen.header(name) {
            body.push_str(&format!("{name}: {value}\n"));
        }
    }
    body.push_str(&format!("body: {} bytes\n", seen.body.len()));
    body
}

/// The echo origin, cacheable for a minute, and Cachet in front with `route_extra`.
async fn start(route_extra: &str) -> (Origin, Proxy, Client) {
    let origin = Origin::start(|seen| Reply::ok(echo(seen)).cache_control("max-age=60")).await;
    let proxy = Proxy::start(&one_route(&origin.url(), route_extra)).await;
    let client = Client::new(proxy.addr);
    (origin, proxy, client)
}

/// Asserts that the victim's answer is a hit on what the attacker's request stored (the
/// vector was normalized or stripped, so both share one key) and carries no trace of `marker`.
fn assert_shared_and_clean(attacker: &Resp, victim: &Resp, marker: &str, what: &str) {
    assert!(victim.is_hit(), "{what}: {}", victim.cache_status());
    assert_eq!(victim.body, attacker.body, "{what}");
    assert!(!victim.text().contains(marker), "{what}: {}", victim.text());
}

/// Asserts that the victim's answer came from the origin for its own request (the vector is
/// part of the key), carrying no trace of `marker`.
fn assert_apart_and_clean(victim: &Resp, own_target: &str, marker: &str, what: &str) {
    assert_eq!(
        victim.cache_status(),
        "cachet; fwd=miss; stored",
        "{what}: {}",
        victim.text()
    );
    assert!(
        victim.text().starts_with(&format!("GET {own_target}\n")),
        "{what}: {}",
        victim.text()
    );
    assert!(!victim.text().contains(marker), "{what}: {}", victim.text());
}

/// Headers that frameworks read as another target, method, scheme or host are stripped before
/// any request leaves Cachet (X-Forwarded-Host and -Proto are replaced by Cachet's own view),
/// so the stored answer is the one every client would get.
#[tokio::test]
async fn unkeyed_override_and_forwarding_headers_never_shape_a_stored_answer() {
    let (origin, proxy, client) = start("").await;
    let vectors = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "evil-scheme"),
        ("x-forwarded-scheme", "evil-scheme"),
        ("x-forwarded-port", "6666"),
        ("x-original-url", "/evil/admin"),
        ("x-rewrite-url", "/evil/admin"),
        ("x-http-method-override", "EVIL-DELETE"),
        ("forwarded", "host=evil.example;proto=https"),
        ("x-host", "evil.example"),
    ];
    for (name, value) in vectors {
        let path = format!("/headers/{name}");
        let attacker = client.get(&path, &[(name, value)]).await;
        assert!(
            !attacker.text().contains(value),
            "{name} reached the origin"
        );
        let victim = client.get(&path, &[]).await;
        assert_shared_and_clean(&attacker, &victim, value, name);
    }
    assert_eq!(origin.hits(), vectors.len());
    proxy.shutdown().await;
}

/// `Host` is lower-cased, its default port and the DNS root's trailing dot dropped (one
/// resource, one key, and the origin sees the normalized host in X-Forwarded-Host); another
/// port is another authority and keyed apart.
#[tokio::test]
async fn host_variations_are_normalized_or_keyed_apart() {
    let (origin, proxy, client) = start("").await;
    let clean = [("host", "test.local")];
    for (path, variant) in [
        ("/host/case", "TEST.Local"),
        ("/host/port", "test.local:80"),
        ("/host/both", "Test.Local:80"),
        ("/host/dot", "test.local."),
    ] {
        let attacker = client.get(path, &[("host", variant)]).await;
        assert!(
            attacker.text().contains("x-forwarded-host: test.local\n"),
            "{variant}: {}",
            attacker.text()
        );
        let victim = client.get(path, &clean).await;
        let marker = format!("x-forwarded-host: {variant}\n");
        assert_shared_and_clean(&attacker, &victim, &marker, variant);
    }
    for (path, variant) in [("/host/other-port", "test.local:8080")] {
        let attacker = client.get(path, &[("host", variant)]).await;
        let marker = format!("x-forwarded-host: {variant}\n");
        assert!(
            attacker.text().contains(&marker),
            "{variant}: {}",
            attacker.text()
        );
        let victim = client.get(path, &clean).await;
        assert_apart_and_clean(&victim, path, &marker, variant);
    }
    // Four attackers filled the shared keys; one attacker and one victim went apart.
    assert_eq!(origin.hits(), 6);
    proxy.shutdown().await;
}

/// A trailing dot names the same host (the DNS root's empty label), so it selects the same
/// host-bound route: it can never move a request to a catch-all route with other rules and
/// another origin.
#[tokio::test]
async fn a_trailing_dot_on_the_host_keeps_the_host_bound_route() {
    let open = Origin::start(|_| Reply::ok("open").cache_control("max-age=60")).await;
    let private = Origin::start(|_| Reply::ok("private").cache_control("max-age=60")).await;
    let private_route = format!(
        "\n[[routes]]\nname = \"private\"\nhost = \"private.example\"\npath_prefix = \"/\"\n\
         upstream = \"{}\"\n",
        private.url()
    );
    let proxy = Proxy::start(&one_route(&open.url(), &private_route)).await;
    let client = Client::new(proxy.addr);
    for host in ["private.example", "private.example.", "PRIVATE.example.:80"] {
        let response = client.get("/doc", &[("host", host)]).await;
        assert_eq!(response.text(), "private", "{host}");
    }
    assert_eq!(
        client
            .get("/doc", &[("host", "other.example")])
            .await
            .text(),
        "open"
    );
    // One entry for the three spellings.
    assert_eq!((private.hits(), open.hits()), (1, 1));
    proxy.shutdown().await;
}

/// Dot-segments and percent-encoding are normalized before the key is built and before the
/// target is forwarded (RFC 3986 §6.2.2), so the origin answers exactly what is keyed; an empty
/// segment (`//`) is a different path to many origins and is keyed apart.
#[tokio::test]
async fn path_variants_are_normalized_or_keyed_apart() {
    let (origin, proxy, client) = start("").await;
    for (attack, clean) in [
        ("/path/./dot", "/path/dot"),
        ("/path/x/%2e%2e/dotdot", "/path/dotdot"),
        ("/path/x/%2E%2e/mixed", "/path/mixed"),
        ("/path/%7etilde", "/path/~tilde"),
        ("/path/caf%c3%a9", "/path/caf%C3%A9"),
    ] {
        let attacker = client.get(attack, &[]).await;
        assert!(
            attacker.text().starts_with(&format!("GET {clean}\n")),
            "{attack}: {}",
            attacker.text()
        );
        let victim = client.get(clean, &[]).await;
        assert_shared_and_clean(&attacker, &victim, attack, attack);
    }
    for (attack, clean) in [("//path/a", "/path/a"), ("/path//b", "/path/b")] {
        let attacker = client.get(attack, &[]).await;
        assert!(
            attacker.text().starts_with(&format!("GET {attack}\n")),
            "{attack}"
        );
        let victim = client.get(clean, &[]).await;
        assert_apart_and_clean(&victim, clean, attack, attack);
    }
    assert_eq!(origin.hits(), 9);
    proxy.shutdown().await;
}

/// Query parameters are sorted by name for the key, but anything an origin may read as a
/// different request stays apart: repeated names keep their order, a `;` inside an ignored
/// parameter keeps it in the key (parameter cloaking), and an encoded `&` is data.
#[tokio::test]
async fn query_tricks_never_share_an_entry_with_a_different_meaning() {
    let (origin, proxy, client) = start("ignore_query_params = [\"utm_source\"]").await;
    for (attack, clean, marker) in [
        // An origin that also splits on `;` reads id=evil; the key dropped the whole piece.
        (
            "/q/cloak?id=1&utm_source=x;id=evil",
            "/q/cloak?id=1",
            "evil",
        ),
        // First-value-wins and last-value-wins origins answer these differently.
        (
            "/q/repeat?id=evil&id=1",
            "/q/repeat?id=1&id=evil",
            "id=evil&id=1",
        ),
        ("/q/amp?id=1%26role=evil", "/q/amp?id=1&role=evil", "%26"),
        ("/q/semi?a=1;b=evil", "/q/semi?b=evil;a=1", "a=1;b"),
    ] {
        let attacker = client.get(attack, &[]).await;
        assert_eq!(
            attacker.cache_status(),
            "cachet; fwd=miss; stored",
            "{attack}"
        );
        let victim = client.get(clean, &[]).await;
        assert_apart_and_clean(&victim, clean, marker, attack);
    }
    // What the operator declared meaningless, and order across names, do share an entry.
    let first = client.get("/q/shared?b=2&a=1&utm_source=mail", &[]).await;
    let second = client.get("/q/shared?a=1&b=2", &[]).await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert_eq!(second.body, first.body);
    assert_eq!(origin.hits(), 9);
    proxy.shutdown().await;
}

/// RFC 9110 §9.3.1: content in a GET has no meaning; Cachet refuses it rather than key, forward
/// or silently drop it, so it can shape nothing.
#[tokio::test]
async fn a_get_with_a_body_is_refused_and_stores_nothing() {
    let (origin, proxy, client) = start("").await;
    let attack = b"GET /get-body HTTP/1.1\r\nHost: test.local\r\nContent-Length: 4\r\n\r\nevil";
    let refused = raw(proxy.addr, attack).await;
    assert_eq!(refused.status(), Some(400), "{}", refused.head());
    assert_eq!(origin.hits(), 0);
    let victim = client.get("/get-body", &[]).await;
    assert_apart_and_clean(&victim, "/get-body", "evil", "GET with a body");
    assert!(victim.text().ends_with("body: 0 bytes\n"));
    proxy.shutdown().await;
}

/// Requests waiting on a fill whose answer carries `Set-Cookie`.
const WAITERS: usize = 5;

/// [`WAITERS`] concurrent requests for `path` while the origin holds its first answer; the
/// origin's `n`-th answer is `reply(n)` with `Set-Cookie: session=s<n>`. Asserts that every
/// client got a cookie of its own; returns the answers and the origin's request count.
async fn cookie_burst(path: &str, reply: fn(usize) -> Reply) -> (Vec<Resp>, usize) {
    let gate = Gate::new();
    let origin = Origin::start({
        let gate = gate.clone();
        let count = std::sync::atomic::AtomicUsize::new(0);
        move |_| {
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            reply(n)
                .header("set-cookie", &format!("session=s{n}"))
                .gate(&gate)
        }
    })
    .await;
    let proxy = Proxy::one_route(&origin.url(), "").await;
    let client = Client::new(proxy.addr);
    let readers = proxy.clock_readers();

    let tasks = burst(&client, path, &[], WAITERS);
    origin.next_request().await;
    proxy.await_clock_readers(readers + WAITERS + 1).await;
    gate.open();
    let all = join_all(tasks).await;

    let cookies: BTreeSet<&str> = all.iter().filter_map(|r| r.header("set-cookie")).collect();
    assert_eq!(
        cookies.len(),
        WAITERS,
        "a cookie was handed to another client: {cookies:?}"
    );
    proxy.shutdown().await;
    (all, origin.hits())
}

/// RFC 9111 §3 with DESIGN.md step 6: a response with `Set-Cookie` is not storable, so it is
/// never handed to requests that waited on its fill: each waiter asks the origin itself and
/// gets its own cookie.
#[tokio::test]
async fn a_set_cookie_response_is_never_shared_with_waiting_requests() {
    let (all, origin_hits) = cookie_burst("/cookie", |n| {
        Reply::ok(format!("session {n}")).cache_control("public, max-age=60")
    })
    .await;
    for response in &all {
        assert!(!response.is_hit(), "{}", response.cache_status());
    }
    assert_eq!(origin_hits, WAITERS);
}

/// A failed fill is shared with its waiters as the origin sent it (DESIGN.md step 6), except
/// one carrying `Set-Cookie`: a cookie is one client's, so every waiter asks the origin itself
/// and gets its own.
#[tokio::test]
async fn a_5xx_with_set_cookie_is_never_shared_with_waiting_requests() {
    cookie_burst("/cookie-5xx", |n| {
        Reply::ok(format!("down {n}")).status(503)
    })
    .await;
}

/// Forwarding trust: a peer in `trusted_proxies` has its `X-Forwarded-For` appended to and its
/// `X-Forwarded-Proto` kept, but `X-Forwarded-Host` is always Cachet's own view of the host
/// (tests/forwarding.rs covers an untrusted peer, whose claims are replaced).
#[tokio::test]
async fn a_trusted_proxy_extends_x_forwarded_for_but_never_sets_the_host() {
    let origin = Origin::start(|seen| Reply::ok(echo(seen))).await;
    let config = one_route(&origin.url(), "").replace(
        "drain_timeout = \"2s\"\n",
        "drain_timeout = \"2s\"\ntrusted_proxies = [\"127.0.0.1\"]\n",
    );
    assert!(
        config.contains("trusted_proxies"),
        "the [server] section changed shape"
    );
    let proxy = Proxy::start(&config).await;
    let answer = Client::new(proxy.addr)
        .get(
            "/trusted",
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    let text = answer.text();
    assert!(
        text.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1\n"),
        "{text}"
    );
    assert!(text.contains("x-forwarded-proto: https\n"), "{text}");
    assert!(!text.contains("evil.example"), "{text}");
    proxy.shutdown().await;
}
