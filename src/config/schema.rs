//! The serde mirror of `cachet.toml`: one struct per section, field names as in the file,
//! contract defaults as named constants, and the table of keys environment overrides may set.
//!
//! Durations and sizes stay `String` here so that a bad value is reported by validation with
//! its field path. No struct uses `deny_unknown_fields`: serde stops at the first unknown field,
//! while `validate` reports every unknown key at once (through `serde_ignored`). For the same
//! reason every field has a default (required keys are `Option` and checked in validation), so
//! a single key can be deserialized on its own to find which one has the wrong type.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Loopback only: a proxy that is reachable before it is configured to be is a surprise.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// 0 lets tokio start one worker per core.
pub(crate) const DEFAULT_WORKER_THREADS: usize = 0;
/// Long enough for typical API calls to finish, short enough for a rolling deploy.
pub(crate) const DEFAULT_DRAIN_TIMEOUT: &str = "10s";
/// Slowloris guard: an honest client sends its headers in well under this.
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// The usual load-balancer idle timeout (AWS ALB's default), so both ends agree.
pub(crate) const DEFAULT_IDLE_TIMEOUT: &str = "60s";
/// Bounds memory per instance; far above what one instance serves in practice.
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Matches common server limits (nginx's large buffers); larger headers get 431.
pub(crate) const DEFAULT_MAX_HEADER_BYTES: &str = "64KiB";
/// API request bodies are small; larger ones get 413 instead of buffering without bound.
pub(crate) const DEFAULT_MAX_BODY_BYTES: &str = "16MiB";
/// hyper's own default and nginx's order of magnitude; more header lines get 431.
pub(crate) const DEFAULT_MAX_HEADERS: usize = 100;
/// Common server and CDN limits (nginx, Apache) are 8 KiB; longer targets get 414.
pub(crate) const DEFAULT_MAX_URI_BYTES: &str = "8KiB";

/// Loopback so health, metrics and purge are not exposed by default.
pub(crate) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";

/// Lifecycle events without per-request noise.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "info";
/// Readable in a terminal; production sets "json".
pub(crate) const DEFAULT_LOG_FORMAT: &str = "text";
/// One event per request is what operators expect from a proxy.
pub(crate) const DEFAULT_ACCESS_LOG: bool = true;

/// The conventional tenant header; never a credential header.
pub(crate) const DEFAULT_TENANT_LABEL_HEADER: &str = "x-tenant-id";

/// A modest L1 that fits next to other processes on a small host.
pub(crate) const DEFAULT_MEMORY_MAX_BYTES: &str = "256MiB";
/// Large enough for any JSON page; bigger responses stream through uncached.
pub(crate) const DEFAULT_MAX_OBJECT_BYTES: &str = "8MiB";
/// 1.0 = no per-partition limit until an operator opts in.
pub(crate) const DEFAULT_TENANT_MAX_SHARE: f64 = 1.0;
/// Short, so a key that becomes cacheable again is coalesced again soon.
pub(crate) const DEFAULT_HIT_FOR_MISS_TTL: &str = "10s";
/// Bounds the work of indexing one entry and the size of its tag header.
pub(crate) const DEFAULT_MAX_TAGS_PER_ENTRY: usize = 64;
/// Tags are identifiers, not payloads.
pub(crate) const DEFAULT_MAX_TAG_BYTES: usize = 256;

/// A local Redis, database 0: what `redis-server` with no arguments serves.
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
/// Namespaces Cachet's keys in a shared Redis.
pub(crate) const DEFAULT_REDIS_KEY_PREFIX: &str = "cachet:";
/// An L2 read slower than this is slower than most origins' cache misses are worth.
pub(crate) const DEFAULT_REDIS_OP_TIMEOUT: &str = "50ms";
/// Multiplexed connections: a few suffice for tens of thousands of operations per second.
pub(crate) const DEFAULT_REDIS_POOL_SIZE: usize = 4;
/// Below this, compression costs more CPU than it saves network.
pub(crate) const DEFAULT_REDIS_COMPRESS_MIN_BYTES: &str = "4KiB";
/// Bounds memory held by background L2 writes when Redis is slow.
pub(crate) const DEFAULT_REDIS_MAX_INFLIGHT_WRITES: usize = 1024;
/// 0 = the route's timeout + 1s, so a lease outlives the fetch it guards.
pub(crate) const DEFAULT_REDIS_LEASE_TTL: &str = "0s";

/// Generous for an API origin; connect failures are reported sooner.
pub(crate) const DEFAULT_ROUTE_TIMEOUT: &str = "30s";
/// 0 = cache only what the origin marks cacheable.
pub(crate) const DEFAULT_ROUTE_DEFAULT_TTL: &str = "0s";
/// Stale serving is opt-in per route.
pub(crate) const DEFAULT_ROUTE_STALE: &str = "0s";
/// XFetch's recommended beta.
pub(crate) const DEFAULT_EARLY_REFRESH_BETA: f64 = 1.0;
/// Spreads expiries of entries filled together by up to 10%.
pub(crate) const DEFAULT_TTL_JITTER: f64 = 0.1;

/// Warm-up must not look like a load test to the origin.
pub(crate) const DEFAULT_WARM_RATE: u32 = 20;

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct ServerSection {
    pub(crate) listen: String,
    pub(crate) worker_threads: usize,
    pub(crate) drain_timeout: String,
    pub(crate) header_read_timeout: String,
    pub(crate) idle_timeout: String,
    pub(crate) max_connections: usize,
    pub(crate) max_header_bytes: String,
    pub(crate) max_body_bytes: String,
    pub(crate) max_headers: usize,
    pub(crate) max_uri_bytes: String,
    pub(crate) trusted_proxies: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            worker_threads: DEFAULT_WORKER_THREADS,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT.into(),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT.into(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES.into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES.into(),
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES.into(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct AdminSection {
    pub(crate) listen: String,
    pub(crate) token: Option<String>,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
            token: None,
        }
    }
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct LogSection {
    pub(crate) level: String,
    pub(crate) format: String,
    pub(crate) access_log: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: DEFAULT_LOG_LEVEL.into(),
            format: DEFAULT_LOG_FORMAT.into(),
            access_log: DEFAULT_ACCESS_LOG,
        }
    }
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct MetricsSection {
    pub(crate) tenant_label_header: String,
    pub(crate) tenant_labels: Vec<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            tenant_label_header: DEFAULT_TENANT_LABEL_HEADER.into(),
            tenant_labels: Vec::new(),
        }
    }
}

/// `[cache]`, with the optional `[cache.redis]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct CacheSection {
    pub(crate) memory_max_bytes: String,
    pub(crate) max_object_bytes: String,
    pub(crate) partition_secret: Option<String>,
    pub(crate) tenant_max_share: f64,
    pub(crate) hit_for_miss_ttl: String,
    pub(crate) max_tags_per_entry: usize,
    pub(crate) max_tag_bytes: usize,
    pub(crate) redis: Option<RedisSection>,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            memory_max_bytes: DEFAULT_MEMORY_MAX_BYTES.into(),
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES.into(),
            partition_secret: None,
            tenant_max_share: DEFAULT_TENANT_MAX_SHARE,
            hit_for_miss_ttl: DEFAULT_HIT_FOR_MISS_TTL.into(),
            max_tags_per_entry: DEFAULT_MAX_TAGS_PER_ENTRY,
            max_tag_bytes: DEFAULT_MAX_TAG_BYTES,
            redis: None,
        }
    }
}

/// `[cache.redis]`. `url` and `cluster` are both optional here; validation picks the target.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RedisSection {
    pub(crate) url: Option<String>,
    pub(crate) cluster: Option<Vec<String>>,
    pub(crate) key_prefix: String,
    pub(crate) op_timeout: String,
    pub(crate) pool_size: usize,
    pub(crate) compress_min_bytes: String,
    pub(crate) max_inflight_writes: usize,
    pub(crate) lease_ttl: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: None,
            cluster: None,
            key_prefix: DEFAULT_REDIS_KEY_PREFIX.into(),
            op_timeout: DEFAULT_REDIS_OP_TIMEOUT.into(),
            pool_size: DEFAULT_REDIS_POOL_SIZE,
            compress_min_bytes: DEFAULT_REDIS_COMPRESS_MIN_BYTES.into(),
            max_inflight_writes: DEFAULT_REDIS_MAX_INFLIGHT_WRITES,
            lease_ttl: DEFAULT_REDIS_LEASE_TTL.into(),
        }
    }
}

/// One `[[routes]]` entry. `name`, `path_prefix` and `upstream` are required (checked in
/// validation, so a missing one is reported with the others).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RouteSection {
    pub(crate) name: Option<String>,
    pub(crate) path_prefix: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) timeout: String,
    pub(crate) default_ttl: String,
    pub(crate) max_ttl: Option<String>,
    pub(crate) stale_while_revalidate: String,
    pub(crate) stale_if_error: String,
    pub(crate) early_refresh_beta: f64,
    pub(crate) ttl_jitter: f64,
    pub(crate) key_headers: Vec<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) ignore_query_params: Vec<String>,
    pub(crate) ignore_client_cache_control: bool,
    pub(crate) cache_set_cookie: bool,
    pub(crate) cache_authenticated_stale: bool,
}

impl Default for RouteSection {
    fn default() -> Self {
        Self {
            name: None,
            path_prefix: None,
            host: None,
            upstream: None,
            timeout: DEFAULT_ROUTE_TIMEOUT.into(),
            default_ttl: DEFAULT_ROUTE_DEFAULT_TTL.into(),
            max_ttl: None,
            stale_while_revalidate: DEFAULT_ROUTE_STALE.into(),
            stale_if_error: DEFAULT_ROUTE_STALE.into(),
            early_refresh_beta: DEFAULT_EARLY_REFRESH_BETA,
            ttl_jitter: DEFAULT_TTL_JITTER,
            key_headers: Vec::new(),
            tags: Vec::new(),
            ignore_query_params: Vec::new(),
            ignore_client_cache_control: false,
            cache_set_cookie: false,
            cache_authenticated_stale: false,
        }
    }
}

/// One `[[warm]]` entry; `url` is required (checked in validation).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WarmEntry {
    pub(crate) url: Option<String>,
    pub(crate) headers: BTreeMap<String, String>,
}

/// `[warm_settings]`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct WarmSettingsSection {
    pub(crate) rate: u32,
}

impl Default for WarmSettingsSection {
    fn default() -> Self {
        Self {
            rate: DEFAULT_WARM_RATE,
        }
    }
}

/// The whole file, assembled section by section by `validate` (never deserialized in one go,
/// so that one bad section does not hide problems in the others). An array entry that is not
/// a table is `None` (already reported), so indexes still match the file.
#[derive(Debug)]
pub(crate) struct FileSchema {
    pub(crate) server: ServerSection,
    pub(crate) admin: AdminSection,
    pub(crate) log: LogSection,
    pub(crate) metrics: MetricsSection,
    pub(crate) cache: CacheSection,
    pub(crate) routes: Vec<Option<RouteSection>>,
    pub(crate) warm: Vec<Option<WarmEntry>>,
    pub(crate) warm_settings: WarmSettingsSection,
}

/// Top-level tables of the file. `routes` and `warm` are arrays of tables.
pub(crate) const SECTIONS: &[&str] = &[
    "server",
    "admin",
    "log",
    "metrics",
    "cache",
    "routes",
    "warm",
    "warm_settings",
];

/// How an environment override's string value becomes a TOML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvKind {
    /// Kept as a string (durations, sizes, addresses, names).
    Str,
    Integer,
    Float,
    Bool,
    /// Comma-separated list of strings.
    List,
}

/// Every key an environment variable may set, as its dotted path, with the conversion of its
/// value. Routes and warm entries are absent: they come from the file only.
pub(crate) const ENV_KEYS: &[(&str, EnvKind)] = &[
    ("server.listen", EnvKind::Str),
    ("server.worker_threads", EnvKind::Integer),
    ("server.drain_timeout", EnvKind::Str),
    ("server.header_read_timeout", EnvKind::Str),
    ("server.idle_timeout", EnvKind::Str),
    ("server.max_connections", EnvKind::Integer),
    ("server.max_header_bytes", EnvKind::Str),
    ("server.max_body_bytes", EnvKind::Str),
    ("server.max_headers", EnvKind::Integer),
    ("server.max_uri_bytes", EnvKind::Str),
    ("server.trusted_proxies", EnvKind::List),
    ("admin.listen", EnvKind::Str),
    ("admin.token", EnvKind::Str),
    ("log.level", EnvKind::Str),
    ("log.format", EnvKind::Str),
    ("log.access_log", EnvKind::Bool),
    ("metrics.tenant_label_header", EnvKind::Str),
    ("metrics.tenant_labels", EnvKind::List),
    ("cache.memory_max_bytes", EnvKind::Str),
    ("cache.max_object_bytes", EnvKind::Str),
    ("cache.partition_secret", EnvKind::Str),
    ("cache.tenant_max_share", EnvKind::Float),
    ("cache.hit_for_miss_ttl", EnvKind::Str),
    ("cache.max_tags_per_entry", EnvKind::Integer),
    ("cache.max_tag_bytes", EnvKind::Integer),
    ("cache.redis.url", EnvKind::Str),
    ("cache.redis.cluster", EnvKind::List),
    ("cache.redis.key_prefix", EnvKind::Str),
    ("cache.redis.op_timeout", EnvKind::Str),
    ("cache.redis.pool_size", EnvKind::Integer),
    ("cache.redis.compress_min_bytes", EnvKind::Str),
    ("cache.redis.max_inflight_writes", EnvKind::Integer),
    ("cache.redis.lease_ttl", EnvKind::Str),
    ("warm_settings.rate", EnvKind::Integer),
];
