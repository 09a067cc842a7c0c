//! Configuration: the validated, immutable [`Config`] and [`load`], which reads the
//! TOML file, applies `CACHET__` environment overrides and reports every problem at once.
//!
//! `schema` mirrors the file (durations and sizes stay strings there), `validate` turns the
//! schema into `Config` while collecting every problem with its field path, `units` parses
//! durations and byte sizes.

mod schema;
mod units;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;

pub use units::{parse_duration, parse_size};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub cache: CacheConfig,
    pub routes: Arc<[Route]>,
    pub warm: Vec<WarmTarget>,
    pub warm_settings: WarmSettings,
    /// Non-fatal remarks for `cachet check` and start-up logs (e.g. keys accepted but not
    /// active yet, `authorization` as a key header without a `partition_secret`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// 0 = one per core.
    pub worker_threads: usize,
    pub drain_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: u64,
    /// Most header field lines a request may carry (431 beyond).
    pub max_headers: usize,
    /// Longest request target, in bytes (414 beyond).
    pub max_uri_bytes: usize,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token; never logged. `Debug` of this struct prints it, so never log the struct.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// A level or an `EnvFilter` string.
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Lower-case header name.
    pub tenant_label_header: String,
    pub tenant_labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub memory_max_bytes: u64,
    pub max_object_bytes: u64,
    /// Key for the keyed hash of key-header values.
    pub partition_secret: Option<String>,
    pub tenant_max_share: f64,
    pub hit_for_miss_ttl: Duration,
    pub max_tags_per_entry: usize,
    pub max_tag_bytes: usize,
    pub redis: Option<RedisConfig>,
}

#[derive(Debug, Clone)]
pub enum RedisTarget {
    Node(String),
    Cluster(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub target: RedisTarget,
    pub key_prefix: String,
    pub op_timeout: Duration,
    pub pool_size: usize,
    pub compress_min_bytes: usize,
    pub max_inflight_writes: usize,
    /// Zero means "the route's timeout + 1s".
    pub lease_ttl: Duration,
}

/// One `[[routes]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: Arc<str>,
    pub path_prefix: String,
    /// Lower-case host without port, when the route matches one host only.
    pub host: Option<String>,
    /// `http` or `https` origin, authority and optional base path, no query.
    pub upstream: Uri,
    pub timeout: Duration,
    pub default_ttl: Duration,
    pub max_ttl: Option<Duration>,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub early_refresh_beta: f64,
    pub ttl_jitter: f64,
    /// Lower-case header names, in the order given.
    pub key_headers: Vec<http::HeaderName>,
    pub tags: Vec<String>,
    pub ignore_query_params: Vec<String>,
    pub ignore_client_cache_control: bool,
    pub cache_set_cookie: bool,
    pub cache_authenticated_stale: bool,
}

#[derive(Debug, Clone)]
pub struct WarmTarget {
    /// Origin-form target, e.g. `/api/products/top`.
    pub url: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct WarmSettings {
    /// Requests per second at most.
    pub rate: u32,
}

/// One problem found in the configuration, with the path of the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// e.g. `routes[1].upstream`, `server.listen`, or `CACHET__SERVER__LISTEN` for an env key.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in file order where possible.
    #[error("invalid configuration: {} problem(s)", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Reads `path`, applies environment overrides (`CACHET__SECTION__KEY=value` pairs; other
/// pairs are ignored) and validates.
///
/// # Errors
/// `ConfigError::Read` when the file cannot be read, `ConfigError::Invalid` with every problem.
pub fn load(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml_str(&text, env)
}

/// Same as [`load`] on text already read.
///
/// # Errors
/// `ConfigError::Invalid` with every problem found.
pub fn from_toml_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    validate::validate(text, env)
}

/// Added to the longest entry life before a purge watermark is forgotten: clock skew and
/// pub/sub lag between instances sharing a tier.
pub const WATERMARK_MARGIN: Duration = Duration::from_secs(300);

impl Config {
    /// How long a purge watermark must be kept: by then every entry filled before the purge
    /// has left every tier (the route's `timeout`, then at most `max_ttl` fresh and the larger
    /// of `max_ttl` and the route's stale windows kept), plus [`WATERMARK_MARGIN`]. `None`
    /// when a route has no `max_ttl`: its origin may ask for any lifetime, so marks are kept.
    pub fn watermark_retention(&self) -> Option<Duration> {
        let longest = self
            .routes
            .iter()
            .map(|route| {
                let max_ttl = route.max_ttl?;
                let windows = max_ttl
                    .max(route.stale_while_revalidate)
                    .max(route.stale_if_error);
                Some(route.timeout + max_ttl + windows)
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()?;
        Some(longest + WATERMARK_MARGIN)
    }

    /// One line for `cachet check` and the start-up log, e.g. `config ok: 2 routes (products,
    /// me), listen 127.0.0.1:8080, admin 127.0.0.1:9091, memory 256MiB, shared tier: none`.
    /// Never includes the token, the partition secret or Redis urls (which may hold passwords).
    pub fn summary(&self) -> String {
        let names: Vec<&str> = self.routes.iter().map(|r| &*r.name).collect();
        let plural = if names.len() == 1 { "" } else { "s" };
        let shared = match self.cache.redis.as_ref().map(|r| &r.target) {
            None => "none".to_owned(),
            Some(RedisTarget::Node(_)) => "redis".to_owned(),
            Some(RedisTarget::Cluster(nodes)) => format!("redis cluster ({} nodes)", nodes.len()),
        };
        format!(
            "config ok: {} route{plural} ({}), listen {}, admin {}, memory {}, shared tier: {shared}",
            names.len(),
            names.join(", "),
            self.server.listen,
            self.admin.listen,
            units::format_size(self.cache.memory_max_bytes),
        )
    }
}

#[cfg(test)]
impl Route {
    /// A route with the documented defaults, for unit tests elsewhere in the crate.
    pub(crate) fn for_tests(name: &str, path_prefix: &str) -> Self {
        let duration = |text| parse_duration(text).expect("schema defaults are valid durations");
        Self {
            name: name.into(),
            path_prefix: path_prefix.to_owned(),
            host: None,
            upstream: Uri::from_static("http://127.0.0.1:9"),
            timeout: duration(schema::DEFAULT_ROUTE_TIMEOUT),
            default_ttl: duration(schema::DEFAULT_ROUTE_DEFAULT_TTL),
            max_ttl: None,
            stale_while_revalidate: duration(schema::DEFAULT_ROUTE_STALE),
            stale_if_error: duration(schema::DEFAULT_ROUTE_STALE),
            early_refresh_beta: schema::DEFAULT_EARLY_REFRESH_BETA,
            ttl_jitter: schema::DEFAULT_TTL_JITTER,
            key_headers: Vec::new(),
            tags: Vec::new(),
            ignore_query_params: Vec::new(),
            ignore_client_cache_control: false,
            cache_set_cookie: false,
            cache_authenticated_stale: false,
        }
    }
}
