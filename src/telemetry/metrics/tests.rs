use super::*;
use http::HeaderValue;

fn config(header: &str, labels: &[&str]) -> MetricsConfig {
    MetricsConfig {
        tenant_label_header: header.into(),
        tenant_labels: labels.iter().map(|l| (*l).to_owned()).collect(),
    }
}

fn headers(name: &'static str, value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_static(value));
    headers
}

/// The value of the sample line `name{labels} value`, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn tenants_outside_the_allow_list_are_other() {
    let metrics = Metrics::new(&config("x-tenant-id", &["acme", "globex"]));
    let label = |h: &HeaderMap| metrics.tenant_label(h).map(|t| t.to_string());
    assert_eq!(
        label(&headers("x-tenant-id", "acme")).as_deref(),
        Some("acme")
    );
    assert_eq!(
        label(&headers("x-tenant-id", "initech")).as_deref(),
        Some("other")
    );
    assert_eq!(
        label(&headers("x-tenant-id", "ACME")).as_deref(),
        Some("other")
    );
    assert_eq!(label(&HeaderMap::new()).as_deref(), Some("other"));
}

#[test]
fn no_allow_list_means_no_tenant_figures() {
    let metrics = Metrics::new(&config("x-tenant-id", &[]));
    assert_eq!(metrics.tenant_label(&headers("x-tenant-id", "acme")), None);
}

#[test]
fn credential_headers_never_name_tenants() {
    for header in [
        "authorization",
        "Authorization",
        "proxy-authorization",
        "cookie",
    ] {
        let metrics = Metrics::new(&config(header, &["Bearer s3cret"]));
        assert_eq!(
            metrics.tenant_label(&headers("authorization", "Bearer s3cret")),
            None,
            "{header}"
        );
    }
}

#[test]
fn requests_are_counted_by_route_cache_and_bounded_tenant() {
    let metrics = Metrics::new(&config("x-tenant-id", &["acme"]));
    let acme = metrics.tenant_label(&headers("x-tenant-id", "acme"));
    let other = metrics.tenant_label(&headers("x-tenant-id", "secret-tenant"));
    metrics.request(&"api".into(), "hit", acme.as_ref());
    metrics.request(&"api".into(), "hit", other.as_ref());
    metrics.request(&"api".into(), "miss", other.as_ref());
    let text = metrics.render(&Scrape::default());
    assert_eq!(
        sample(&text, r#"cachet_requests_total{route="api",cache="hit"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"cachet_tenant_requests_total{route="api",tenant="other",cache="miss"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"cachet_tenant_requests_total{route="api",tenant="acme",cache="hit"}"#
        ),
        Some(1.0)
    );
    assert!(!text.contains("secret-tenant"), "{text}");
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn scraped_totals_never_go_backwards_and_gauges_follow() {
    let metrics = Metrics::new(&config("x-tenant-id", &[]));
    let mut scrape = Scrape {
        memory_bytes: 2048,
        memory_entries: 3,
        watermarks: 1,
        fills_in_flight: 0,
        shared: Some(SharedScrape {
            up: true,
            breaker: BREAKER_OPEN,
            get_hits: 5,
            ..SharedScrape::default()
        }),
    };
    let first = metrics.render(&scrape);
    assert_eq!(sample(&first, "cachet_memory_bytes"), Some(2048.0));
    assert_eq!(sample(&first, "cachet_breaker_state"), Some(2.0));
    assert_eq!(sample(&first, "cachet_shared_tier_up"), Some(1.0));
    let hits = r#"cachet_tier_ops_total{tier="shared",op="get",outcome="hit"}"#;
    assert_eq!(sample(&first, hits), Some(5.0));

    scrape.memory_bytes = 10;
    if let Some(shared) = &mut scrape.shared {
        shared.get_hits = 4;
    }
    let second = metrics.render(&scrape);
    assert_eq!(sample(&second, "cachet_memory_bytes"), Some(10.0));
    assert_eq!(sample(&second, hits), Some(5.0));
}

#[test]
fn instances_do_not_share_figures() {
    let a = Metrics::new(&config("x-tenant-id", &[]));
    let b = Metrics::new(&config("x-tenant-id", &[]));
    a.request(&"api".into(), "hit", None);
    a.origin(
        &"api".into(),
        OriginOutcome::Timeout,
        Duration::from_millis(3),
    );
    let text = b.render(&Scrape::default());
    assert_eq!(
        sample(&text, r#"cachet_requests_total{route="api",cache="hit"}"#),
        None
    );
    let text = a.render(&Scrape::default());
    assert_eq!(
        sample(
            &text,
            r#"cachet_origin_requests_total{route="api",status="timeout"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"cachet_origin_duration_seconds_count{route="api"}"#
        ),
        Some(1.0)
    );
}
