//! [`Metrics`]: Cachet's Prometheus figures in a registry owned by one instance (no global
//! recorder), so several instances in one process each expose only their own.
//!
//! Names are the constants below; the ones DESIGN.md lists are a contract. Labels stay bounded:
//! route names from the config, cache-status and outcome words, origin status codes, purge
//! kinds, and tenant names from the `[metrics] tenant_labels` allow-list (every other tenant is
//! `other`). Never a path, a query, a key or a raw header value.
//!
//! Request figures are recorded as requests are answered; figures that already live elsewhere
//! as atomics (the tiers' counters, the memory tier's size, the watermark count) are copied in
//! at scrape time from a [`Scrape`] the caller assembles, then the registry is encoded.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;

/// Answered requests by route and cache label (`hit`, `stale`, `miss`, `pass`, `collapsed`).
pub const REQUESTS_TOTAL: &str = "cachet_requests_total";
/// [`REQUESTS_TOTAL`] by tenant too, when `[metrics] tenant_labels` is not empty.
pub const TENANT_REQUESTS_TOTAL: &str = "cachet_tenant_requests_total";
/// Requests answered before a route was chosen (bad target 400, no route 404).
pub const UNROUTED_REQUESTS_TOTAL: &str = "cachet_unrouted_requests_total";
/// Stale responses served, by route and reason (`stale-while-revalidate`, `stale-if-error`).
pub const STALE_SERVED_TOTAL: &str = "cachet_stale_served_total";
/// Requests answered from another request's fill of the same key, by route.
pub const COALESCED_WAITERS_TOTAL: &str = "cachet_coalesced_waiters_total";
/// Keys with a fill in flight on this instance.
pub const FILLS_IN_FLIGHT: &str = "cachet_fills_in_flight";
/// Origin exchanges by route and status (the code, or `timeout` / `error` when none came).
pub const ORIGIN_REQUESTS_TOTAL: &str = "cachet_origin_requests_total";
/// Time to the origin's response head, by route.
pub const ORIGIN_DURATION_SECONDS: &str = "cachet_origin_duration_seconds";
/// Tier operations by tier, op and outcome.
pub const TIER_OPS_TOTAL: &str = "cachet_tier_ops_total";
/// Bytes held by the memory tier (eventually consistent).
pub const MEMORY_BYTES: &str = "cachet_memory_bytes";
/// Entries held by the memory tier (eventually consistent).
pub const MEMORY_ENTRIES: &str = "cachet_memory_entries";
/// 1 while a configured shared tier is reachable and in sync; 0 otherwise (or none configured).
pub const SHARED_TIER_UP: &str = "cachet_shared_tier_up";
/// The shared tier's circuit breaker: [`BREAKER_CLOSED`], [`BREAKER_HALF_OPEN`] or
/// [`BREAKER_OPEN`].
pub const BREAKER_STATE: &str = "cachet_breaker_state";
/// Shared-tier writes dropped because `max_inflight_writes` were already running.
pub const L2_WRITES_DROPPED_TOTAL: &str = "cachet_l2_writes_dropped_total";
/// Shared-tier blobs that could not be decoded (answered as misses and deleted).
pub const CORRUPT_BLOBS_TOTAL: &str = "cachet_corrupt_blobs_total";
/// Times the memory tier was cleared because the shared tier lost its data.
pub const EPOCH_CLEARS_TOTAL: &str = "cachet_epoch_clears_total";
/// Time spent in shared-tier reads, in microseconds; with [`SHARED_GETS_TIMED_TOTAL`] it gives
/// the average L2 read latency (`rate(sum) / rate(count)`).
pub const SHARED_GET_MICROSECONDS_TOTAL: &str = "cachet_shared_tier_get_microseconds_total";
/// Shared-tier reads timed in [`SHARED_GET_MICROSECONDS_TOTAL`].
pub const SHARED_GETS_TIMED_TOTAL: &str = "cachet_shared_tier_gets_timed_total";
/// Admin purges applied (on this instance at least), by selector kind.
pub const PURGES_TOTAL: &str = "cachet_purges_total";
/// Purge watermarks held (selectors with a mark).
pub const WATERMARKS: &str = "cachet_watermarks";

/// [`BREAKER_STATE`] value: calls go through.
pub const BREAKER_CLOSED: i64 = 0;
/// [`BREAKER_STATE`] value: one probe in flight.
pub const BREAKER_HALF_OPEN: i64 = 1;
/// [`BREAKER_STATE`] value: calls skipped until the cool-down ends.
pub const BREAKER_OPEN: i64 = 2;

/// The tenant label of every tenant not in the allow-list (and of requests without one).
pub const OTHER_TENANT: &str = "other";

/// Headers whose values must never become labels, whatever the config says (validation refuses
/// them too; this is the second lock).
const CREDENTIAL_HEADERS: [HeaderName; 3] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::header::COOKIE,
];

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    cache: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    route: String,
    tenant: Arc<str>,
    cache: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StaleLabels {
    route: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierOpLabels {
    tier: &'static str,
    op: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PurgeLabels {
    kind: &'static str,
}

/// How an origin exchange ended, for [`ORIGIN_REQUESTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginOutcome {
    /// The origin answered with this status.
    Status(u16),
    /// The route's deadline passed first.
    Timeout,
    /// No answer: connect or exchange failure.
    Error,
}

impl OriginOutcome {
    fn label(self) -> String {
        match self {
            Self::Status(code) => code.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Error => "error".into(),
        }
    }
}

/// Figures read at scrape time from where they already live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrape {
    pub memory_bytes: u64,
    pub memory_entries: u64,
    pub watermarks: u64,
    pub fills_in_flight: u64,
    /// `None` when no shared tier is configured.
    pub shared: Option<SharedScrape>,
}

/// The shared tier's figures: running totals and current state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedScrape {
    pub up: bool,
    /// [`BREAKER_CLOSED`], [`BREAKER_HALF_OPEN`] or [`BREAKER_OPEN`].
    pub breaker: i64,
    pub get_hits: u64,
    pub get_misses: u64,
    /// Errors of every op (get, put, remove).
    pub errors: u64,
    /// Calls of every op skipped while the breaker was open.
    pub skipped: u64,
    pub writes_dropped: u64,
    pub corrupt_blobs: u64,
    pub epoch_clears: u64,
    pub get_micros: u64,
    pub gets_timed: u64,
}

/// One instance's metrics. Cloning is cheap and shares the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    tenants: Option<TenantRule>,
    requests: Family<RequestLabels, Counter>,
    tenant_requests: Family<TenantLabels, Counter>,
    unrouted: Counter,
    stale: Family<StaleLabels, Counter>,
    coalesced: Family<RouteLabels, Counter>,
    fills_in_flight: Gauge,
    origin_requests: Family<OriginLabels, Counter>,
    origin_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    tier_ops: Family<TierOpLabels, Counter>,
    memory_bytes: Gauge<i64, AtomicI64>,
    memory_entries: Gauge<i64, AtomicI64>,
    shared_tier_up: Gauge,
    breaker_state: Gauge,
    writes_dropped: Counter,
    corrupt_blobs: Counter,
    epoch_clears: Counter,
    get_micros: Counter,
    gets_timed: Counter,
    purges: Family<PurgeLabels, Counter>,
    watermarks: Gauge<i64, AtomicI64>,
}

/// Which header names the tenant, and the tenants that get their own label value.
#[derive(Debug)]
struct TenantRule {
    header: HeaderName,
    allowed: Vec<Arc<str>>,
    other: Arc<str>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field(
                "tenant_header",
                &self.inner.tenants.as_ref().map(|t| t.header.as_str()),
            )
            .finish_non_exhaustive()
    }
}

/// Origin latency buckets: 5 ms to about 10 s, doubling.
fn origin_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The name a counter is registered under: the encoder appends `_total` itself.
fn counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl Metrics {
    /// A fresh registry with every family registered, tenants labelled per `config`.
    pub fn new(config: &MetricsConfig) -> Self {
        let inner = Inner {
            registry: Registry::default(),
            tenants: TenantRule::new(config),
            requests: Family::default(),
            tenant_requests: Family::default(),
            unrouted: Counter::default(),
            stale: Family::default(),
            coalesced: Family::default(),
            fills_in_flight: Gauge::default(),
            origin_requests: Family::default(),
            origin_duration: Family::new_with_constructor(origin_histogram),
            tier_ops: Family::default(),
            memory_bytes: Gauge::default(),
            memory_entries: Gauge::default(),
            shared_tier_up: Gauge::default(),
            breaker_state: Gauge::default(),
            writes_dropped: Counter::default(),
            corrupt_blobs: Counter::default(),
            epoch_clears: Counter::default(),
            get_micros: Counter::default(),
            gets_timed: Counter::default(),
            purges: Family::default(),
            watermarks: Gauge::default(),
        };
        Self {
            inner: Arc::new(inner.registered()),
        }
    }

    /// The bounded tenant label of a request: the tenant header's value when it is in the
    /// allow-list, else [`OTHER_TENANT`]. `None` when per-tenant figures are off (no allow-list,
    /// or a header that may never be a label).
    pub fn tenant_label(&self, headers: &HeaderMap) -> Option<Arc<str>> {
        let rule = self.inner.tenants.as_ref()?;
        let value = headers.get(&rule.header).and_then(|v| v.to_str().ok());
        let allowed = value.and_then(|value| rule.allowed.iter().find(|t| ***t == *value));
        Some(Arc::clone(allowed.unwrap_or(&rule.other)))
    }

    /// One answered request on `route` with cache label `cache` (`CacheStatus::label`).
    pub fn request(&self, route: &str, cache: &'static str, tenant: Option<&Arc<str>>) {
        let inner = &self.inner;
        inner
            .requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                cache,
            })
            .inc();
        if let Some(tenant) = tenant {
            inner
                .tenant_requests
                .get_or_create(&TenantLabels {
                    route: route.to_owned(),
                    tenant: Arc::clone(tenant),
                    cache,
                })
                .inc();
        }
    }

    /// One request answered before a route was chosen.
    pub fn unrouted(&self) {
        self.inner.unrouted.inc();
    }

    /// One stale response served on `route` for `reason`.
    pub fn stale_served(&self, route: &str, reason: &'static str) {
        self.inner
            .stale
            .get_or_create(&StaleLabels {
                route: route.to_owned(),
                reason,
            })
            .inc();
    }

    /// One request answered from another request's fill on `route`.
    pub fn coalesced(&self, route: &str) {
        self.inner
            .coalesced
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .inc();
    }

    /// One origin exchange on `route`: how it ended and how long the response head took.
    pub fn origin(&self, route: &str, outcome: OriginOutcome, elapsed: Duration) {
        let inner = &self.inner;
        inner
            .origin_requests
            .get_or_create(&OriginLabels {
                route: route.to_owned(),
                status: outcome.label(),
            })
            .inc();
        inner
            .origin_duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One admin purge of selector `kind` applied.
    pub fn purge(&self, kind: &'static str) {
        self.inner.purges.get_or_create(&PurgeLabels { kind }).inc();
    }

    /// Copies `scrape` into the registry and encodes it (OpenMetrics text, [`CONTENT_TYPE`]).
    pub fn render(&self, scrape: &Scrape) -> String {
        let inner = &self.inner;
        inner.memory_bytes.set(saturating_i64(scrape.memory_bytes));
        inner
            .memory_entries
            .set(saturating_i64(scrape.memory_entries));
        inner.watermarks.set(saturating_i64(scrape.watermarks));
        inner
            .fills_in_flight
            .set(saturating_i64(scrape.fills_in_flight));
        let shared = scrape.shared.unwrap_or_default();
        inner.shared_tier_up.set(i64::from(shared.up));
        inner.breaker_state.set(shared.breaker);
        if scrape.shared.is_some() {
            let ops = [
                ("get", "hit", shared.get_hits),
                ("get", "miss", shared.get_misses),
                ("any", "error", shared.errors),
                ("any", "skipped", shared.skipped),
                ("put", "dropped", shared.writes_dropped),
            ];
            for (op, outcome, total) in ops {
                let labels = TierOpLabels {
                    tier: "shared",
                    op,
                    outcome,
                };
                raise_to(&inner.tier_ops.get_or_create(&labels), total);
            }
        }
        raise_to(&inner.writes_dropped, shared.writes_dropped);
        raise_to(&inner.corrupt_blobs, shared.corrupt_blobs);
        raise_to(&inner.epoch_clears, shared.epoch_clears);
        raise_to(&inner.get_micros, shared.get_micros);
        raise_to(&inner.gets_timed, shared.gets_timed);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &inner.registry);
        out
    }
}

impl Inner {
    fn registered(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            counter_name(REQUESTS_TOTAL),
            "Answered requests by route and cache outcome",
            self.requests.clone(),
        );
        r.register(
            counter_name(TENANT_REQUESTS_TOTAL),
            "Answered requests by route, allow-listed tenant (others: other) and cache outcome",
            self.tenant_requests.clone(),
        );
        r.register(
            counter_name(UNROUTED_REQUESTS_TOTAL),
            "Requests answered before a route was chosen",
            self.unrouted.clone(),
        );
        r.register(
            counter_name(STALE_SERVED_TOTAL),
            "Stale responses served, by route and reason",
            self.stale.clone(),
        );
        r.register(
            counter_name(COALESCED_WAITERS_TOTAL),
            "Requests answered from another request's fill, by route",
            self.coalesced.clone(),
        );
        r.register(
            FILLS_IN_FLIGHT,
            "Keys with an origin fill in flight",
            self.fills_in_flight.clone(),
        );
        r.register(
            counter_name(ORIGIN_REQUESTS_TOTAL),
            "Origin exchanges by route and status (timeout or error when none came)",
            self.origin_requests.clone(),
        );
        r.register(
            ORIGIN_DURATION_SECONDS,
            "Seconds to the origin's response head, by route",
            self.origin_duration.clone(),
        );
        r.register(
            counter_name(TIER_OPS_TOTAL),
            "Tier operations by tier, op and outcome",
            self.tier_ops.clone(),
        );
        r.register(
            MEMORY_BYTES,
            "Bytes held by the memory tier",
            self.memory_bytes.clone(),
        );
        r.register(
            MEMORY_ENTRIES,
            "Entries held by the memory tier",
            self.memory_entries.clone(),
        );
        r.register(
            SHARED_TIER_UP,
            "1 while the shared tier is reachable and in sync",
            self.shared_tier_up.clone(),
        );
        r.register(
            BREAKER_STATE,
            "Shared tier circuit breaker: 0 closed, 1 half-open, 2 open",
            self.breaker_state.clone(),
        );
        r.register(
            counter_name(L2_WRITES_DROPPED_TOTAL),
            "Shared tier writes dropped at max_inflight_writes",
            self.writes_dropped.clone(),
        );
        r.register(
            counter_name(CORRUPT_BLOBS_TOTAL),
            "Shared tier blobs that could not be decoded",
            self.corrupt_blobs.clone(),
        );
        r.register(
            counter_name(EPOCH_CLEARS_TOTAL),
            "Memory tier clears after the shared tier lost its data",
            self.epoch_clears.clone(),
        );
        r.register(
            counter_name(SHARED_GET_MICROSECONDS_TOTAL),
            "Time spent in shared tier reads, microseconds",
            self.get_micros.clone(),
        );
        r.register(
            counter_name(SHARED_GETS_TIMED_TOTAL),
            "Shared tier reads timed",
            self.gets_timed.clone(),
        );
        r.register(
            counter_name(PURGES_TOTAL),
            "Admin purges applied, by selector kind",
            self.purges.clone(),
        );
        r.register(WATERMARKS, "Purge watermarks held", self.watermarks.clone());
        self
    }
}

impl TenantRule {
    /// `None` (per-tenant figures off) without an allow-list, or when the header is not a
    /// valid name or is a credential header.
    fn new(config: &MetricsConfig) -> Option<Self> {
        if config.tenant_labels.is_empty() {
            return None;
        }
        let header = match HeaderName::from_bytes(config.tenant_label_header.as_bytes()) {
            Ok(header) if !CREDENTIAL_HEADERS.contains(&header) => header,
            _ => {
                tracing::warn!(
                    header = %config.tenant_label_header,
                    "tenant label header refused; per-tenant metrics off"
                );
                return None;
            }
        };
        Some(Self {
            header,
            allowed: config
                .tenant_labels
                .iter()
                .map(|t| Arc::from(t.as_str()))
                .collect(),
            other: Arc::from(OTHER_TENANT),
        })
    }
}

/// Raises a counter that mirrors a running total to `total` (never lowers it, so two
/// concurrent scrapes cannot make it go backwards).
fn raise_to(counter: &Counter, total: u64) {
    let atomic: &AtomicU64 = counter.inner();
    atomic.fetch_max(total, Ordering::Relaxed);
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
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
        metrics.request("api", "hit", acme.as_ref());
        metrics.request("api", "hit", other.as_ref());
        metrics.request("api", "miss", other.as_ref());
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
        a.request("api", "hit", None);
        a.origin("api", OriginOutcome::Timeout, Duration::from_millis(3));
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
}
