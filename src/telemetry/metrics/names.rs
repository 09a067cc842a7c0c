//! The metric names (those DESIGN.md lists are a contract) and the fixed label values.

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

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
