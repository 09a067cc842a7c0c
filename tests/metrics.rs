//! `GET /metrics` on the admin listener after known traffic: the contract names with bounded
//! labels (route names and allow-listed tenants only, never paths, other tenants or header
//! values), and figures owned by each instance.

mod support;

use std::collections::HashMap;

use support::proxy::{dead_address, one_route};
use support::{Client, Origin, Proxy, Reply};

/// A tenant outside the allow-list: its name must never become a label.
const UNLISTED_TENANT: &str = "unlisted-tenant-7f3a";
/// A credential sent with requests: it must never appear in the output.
const SECRET: &str = "Bearer metrics-s3cret-token";

/// `/broken/...` answers 503 (not stored); everything else 200 with `max-age=60`.
async fn origin() -> Origin {
    Origin::start(|seen| {
        if seen.path().starts_with("/broken") {
            Reply::ok("down").status(503)
        } else {
            Reply::ok(format!("{} {}", seen.method, seen.path())).cache_control("max-age=60")
        }
    })
    .await
}

/// Route `test` on `/` plus route `dead` on `/dead` to an address nothing listens on, with
/// tenant `acme` allow-listed.
async fn config(origin: &Origin) -> String {
    let dead = dead_address().await;
    format!(
        "{}\n[[routes]]\nname = \"dead\"\npath_prefix = \"/dead\"\nupstream = \"http://{dead}\"\n\n[metrics]\ntenant_label_header = \"x-tenant-id\"\ntenant_labels = [\"acme\"]\n",
        one_route(&origin.url(), "")
    )
}

/// The exposition text and its samples by series (`name{labels}`).
async fn scrape(proxy: &Proxy) -> (String, HashMap<String, f64>) {
    let response = Client::new(proxy.admin).get("/metrics", &[]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = response.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            (series.to_owned(), value)
        })
        .collect();
    (text, samples)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    match samples.get(series) {
        Some(value) => *value,
        None => {
            let mut known: Vec<&String> = samples.keys().collect();
            known.sort();
            panic!("no sample {series}; have {known:#?}")
        }
    }
}

#[tokio::test]
async fn known_traffic_appears_with_bounded_labels() {
    let origin = origin().await;
    let proxy = Proxy::start(&config(&origin).await).await;
    let client = Client::new(proxy.addr);
    let acme = [("x-tenant-id", "acme")];
    let unlisted = [("x-tenant-id", UNLISTED_TENANT)];
    // Authenticated requests are not stored: the credential goes on uncached requests only.
    let secret = [("x-tenant-id", "acme"), ("authorization", SECRET)];

    // 2 misses, then 3 hits.
    assert_eq!(client.get("/m/one?token=q-secret", &acme).await.status, 200);
    assert_eq!(client.get("/m/two", &unlisted).await.status, 200);
    for tenant in [&acme, &acme, &unlisted] {
        let hit = client.get("/m/one?token=q-secret", tenant).await;
        assert!(hit.is_hit(), "{}", hit.cache_status());
    }
    // One pass-through, one origin 5xx, one origin that cannot be reached.
    assert_eq!(client.post("/m/form", &secret, "x=1").await.status, 200);
    let broken = [("x-tenant-id", UNLISTED_TENANT), ("authorization", SECRET)];
    assert_eq!(client.get("/broken/x", &broken).await.status, 503);
    assert_eq!(client.get("/dead/x", &[]).await.status, 502);
    // A bad target is answered before any route is chosen.
    assert_eq!(
        support::raw(
            proxy.addr,
            b"GET /%2e%2fx HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        .await
        .status(),
        Some(400)
    );

    let (text, samples) = scrape(&proxy).await;
    let v = |series: &str| value(&samples, series);
    assert_eq!(v(r#"cachet_requests_total{route="test",cache="hit"}"#), 3.0);
    // The two misses and the 503 (a cacheable request that found no entry).
    assert_eq!(
        v(r#"cachet_requests_total{route="test",cache="miss"}"#),
        3.0
    );
    assert_eq!(
        v(r#"cachet_requests_total{route="test",cache="pass"}"#),
        1.0
    );
    assert_eq!(
        v(r#"cachet_requests_total{route="dead",cache="miss"}"#),
        1.0
    );
    assert_eq!(v("cachet_unrouted_requests_total"), 1.0);

    assert_eq!(
        v(r#"cachet_tenant_requests_total{route="test",tenant="acme",cache="hit"}"#),
        2.0
    );
    assert_eq!(
        v(r#"cachet_tenant_requests_total{route="test",tenant="other",cache="hit"}"#),
        1.0
    );
    assert_eq!(
        v(r#"cachet_tenant_requests_total{route="test",tenant="other",cache="miss"}"#),
        2.0,
        "the unlisted tenant's miss and its 503"
    );
    assert_eq!(
        v(r#"cachet_tenant_requests_total{route="test",tenant="acme",cache="pass"}"#),
        1.0
    );
    assert_eq!(
        v(r#"cachet_tenant_requests_total{route="dead",tenant="other",cache="miss"}"#),
        1.0,
        "no tenant header is other"
    );

    // Origin exchanges: two fills and the POST answered 200, one 503, one unreachable.
    assert_eq!(
        v(r#"cachet_origin_requests_total{route="test",status="200"}"#),
        3.0
    );
    assert_eq!(
        v(r#"cachet_origin_requests_total{route="test",status="503"}"#),
        1.0
    );
    assert_eq!(
        v(r#"cachet_origin_requests_total{route="dead",status="error"}"#),
        1.0
    );
    assert_eq!(
        v(r#"cachet_origin_duration_seconds_count{route="test"}"#),
        4.0
    );
    assert_eq!(
        v(r#"cachet_origin_duration_seconds_count{route="dead"}"#),
        1.0
    );
    assert_eq!(origin.hits(), 4);

    // Scrape-time figures.
    assert!(v("cachet_memory_bytes") > 0.0);
    assert!(v("cachet_memory_entries") >= 0.0);
    assert_eq!(v("cachet_shared_tier_up"), 0.0, "no shared tier configured");
    assert_eq!(v("cachet_breaker_state"), 0.0);
    assert_eq!(v("cachet_watermarks"), 1.0, "the POST invalidated its URL");
    assert_eq!(v("cachet_fills_in_flight"), 0.0);

    // Bounded labels: no path, query, unlisted tenant or header value.
    for secret in [
        "/m/one",
        "/m/two",
        "/broken",
        "q-secret",
        UNLISTED_TENANT,
        SECRET,
        "metrics-s3cret",
    ] {
        assert!(!text.contains(secret), "{secret:?} leaked into:\n{text}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn admin_purges_are_counted_by_kind() {
    let origin = origin().await;
    let proxy = Proxy::start(&config(&origin).await).await;
    let admin = Client::new(proxy.admin);
    for body in [
        r#"{"tags": ["product:1"]}"#,
        r#"{"tags": ["a", "b"]}"#,
        r#"{"all": true}"#,
    ] {
        let response = admin.post("/purge", &[], body).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let rejected = admin.post("/purge", &[], r#"{"route": "nope"}"#).await;
    assert_eq!(rejected.status, 400);

    let (_, samples) = scrape(&proxy).await;
    assert_eq!(value(&samples, r#"cachet_purges_total{kind="tags"}"#), 2.0);
    assert_eq!(value(&samples, r#"cachet_purges_total{kind="all"}"#), 1.0);
    assert!(!samples.contains_key(r#"cachet_purges_total{kind="route"}"#));
    proxy.shutdown().await;
}

/// Two instances in one process: each reports only its own traffic.
#[tokio::test]
async fn each_instance_reports_its_own_figures() {
    let origin = origin().await;
    let first = Proxy::one_route(&origin.url(), "").await;
    let second = Proxy::one_route(&origin.url(), "").await;
    let to_first = Client::new(first.addr);
    for _ in 0..3 {
        to_first.get("/own/a", &[]).await;
    }
    Client::new(second.addr).get("/own/b", &[]).await;

    let (_, one) = scrape(&first).await;
    let (_, two) = scrape(&second).await;
    let hits = r#"cachet_requests_total{route="test",cache="hit"}"#;
    let misses = r#"cachet_requests_total{route="test",cache="miss"}"#;
    assert_eq!(value(&one, hits), 2.0);
    assert_eq!(value(&one, misses), 1.0);
    assert!(!two.contains_key(hits), "{two:#?}");
    assert_eq!(value(&two, misses), 1.0);
    let origin_ok = r#"cachet_origin_requests_total{route="test",status="200"}"#;
    assert_eq!(value(&one, origin_ok), 1.0);
    assert_eq!(value(&two, origin_ok), 1.0);
    first.shutdown().await;
    second.shutdown().await;
}

/// The shared tier's figures, copied from its counters at scrape time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tier_figures_are_scraped() {
    use std::time::Duration;

    use support::proxy::{one_route_shared, redis_url};
    use support::redis::RedisServer;
    use support::shared::{HOST, await_entry_keys, await_shared_tier_up};

    const WAIT: Duration = Duration::from_secs(10);
    let redis = RedisServer::start();
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "");
    let a = Proxy::start(&config).await;
    let b = Proxy::start(&config).await;
    await_shared_tier_up(&a, WAIT).await;
    await_shared_tier_up(&b, WAIT).await;

    Client::new(a.addr).get("/shared/x", &[HOST]).await;
    await_entry_keys(&redis, 1, WAIT).await;
    let shared = Client::new(b.addr).get("/shared/x", &[HOST]).await;
    assert!(
        shared.cache_status().ends_with("detail=shared"),
        "{}",
        shared.cache_status()
    );

    let ops = |outcome: &str| {
        format!(r#"cachet_tier_ops_total{{tier="shared",op="get",outcome="{outcome}"}}"#)
    };
    let (_, on_a) = scrape(&a).await;
    let (_, on_b) = scrape(&b).await;
    assert!(value(&on_a, &ops("miss")) >= 1.0);
    assert_eq!(value(&on_a, &ops("hit")), 0.0);
    assert_eq!(value(&on_b, &ops("hit")), 1.0);
    // Every shared-tier read is timed: the L2 latency is sum / count.
    let timed = value(&on_b, "cachet_shared_tier_gets_timed_total");
    assert!(timed >= 1.0, "{timed}");
    assert!(value(&on_b, "cachet_shared_tier_get_microseconds_total") > 0.0);
    for samples in [&on_a, &on_b] {
        assert_eq!(value(samples, "cachet_shared_tier_up"), 1.0);
        assert_eq!(value(samples, "cachet_breaker_state"), 0.0);
        assert_eq!(value(samples, "cachet_corrupt_blobs_total"), 0.0);
        assert_eq!(value(samples, "cachet_l2_writes_dropped_total"), 0.0);
    }
    a.shutdown().await;
    b.shutdown().await;
}
