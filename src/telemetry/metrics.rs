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

use http::HeaderMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::config::MetricsConfig;

mod names;
mod tenant;

pub use names::*;
use tenant::TenantRule;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    cache: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    route: Arc<str>,
    tenant: Arc<str>,
    cache: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StaleLabels {
    route: Arc<str>,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    route: Arc<str>,
    status: OriginOutcome,
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
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum OriginOutcome {
    /// The origin answered with this status.
    Status(u16),
    /// The route's deadline passed first.
    Timeout,
    /// No answer: connect or exchange failure.
    Error,
}

/// The `status` label: the code, `timeout` or `error`, written at scrape time rather than
/// formatted on every exchange.
impl prometheus_client::encoding::EncodeLabelValue for OriginOutcome {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        use std::fmt::Write as _;
        match self {
            Self::Status(code) => write!(encoder, "{code}"),
            Self::Timeout => encoder.write_str("timeout"),
            Self::Error => encoder.write_str("error"),
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
    pub fn request(&self, route: &Arc<str>, cache: &'static str, tenant: Option<&Arc<str>>) {
        let inner = &self.inner;
        inner
            .requests
            .get_or_create(&RequestLabels {
                route: Arc::clone(route),
                cache,
            })
            .inc();
        if let Some(tenant) = tenant {
            inner
                .tenant_requests
                .get_or_create(&TenantLabels {
                    route: Arc::clone(route),
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
    pub fn stale_served(&self, route: &Arc<str>, reason: &'static str) {
        self.inner
            .stale
            .get_or_create(&StaleLabels {
                route: Arc::clone(route),
                reason,
            })
            .inc();
    }

    /// One request answered from another request's fill on `route`.
    pub fn coalesced(&self, route: &Arc<str>) {
        self.inner
            .coalesced
            .get_or_create(&RouteLabels {
                route: Arc::clone(route),
            })
            .inc();
    }

    /// One origin exchange on `route`: how it ended and how long the response head took.
    pub fn origin(&self, route: &Arc<str>, outcome: OriginOutcome, elapsed: Duration) {
        let inner = &self.inner;
        inner
            .origin_requests
            .get_or_create(&OriginLabels {
                route: Arc::clone(route),
                status: outcome,
            })
            .inc();
        inner
            .origin_duration
            .get_or_create(&RouteLabels {
                route: Arc::clone(route),
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
mod tests;
