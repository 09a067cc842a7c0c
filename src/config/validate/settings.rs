//! Semantic checks of the single-table sections (`[server]`, `[admin]`, `[log]`, `[metrics]`,
//! `[cache]` with `[cache.redis]`) and of `[[warm]]` entries: schema values → their `Config`
//! types, every problem recorded with its field path.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use http::HeaderValue;
use http::uri::PathAndQuery;
use ipnet::IpNet;

use super::check::{Check, header_name, required};
use crate::config::schema::{
    AdminSection, CacheSection, DEFAULT_REDIS_URL, LogSection, MetricsSection, RedisSection,
    ServerSection, WarmEntry,
};
use crate::config::{
    AdminConfig, CacheConfig, LogConfig, LogFormat, MetricsConfig, RedisConfig, RedisTarget,
    ServerConfig, WarmTarget,
};

/// Stands in for an address that failed to parse; never returned (the error is).
const PLACEHOLDER_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Headers whose values are credentials: never a metric label.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// hyper sizes its header parse buffer by `max_headers` for every request head: a bound keeps
/// a typo from costing memory on each request.
const MAX_MAX_HEADERS: usize = 10_000;

/// Levels `log.level` may name without being a full `EnvFilter` directive.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

pub(super) fn server(s: ServerSection, check: &mut Check) -> ServerConfig {
    let trusted_proxies = s
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, text)| check.ok(&format!("server.trusted_proxies[{i}]"), cidr(text)))
        .collect();
    let max_header_bytes = check.size_usize("server.max_header_bytes", &s.max_header_bytes);
    if max_header_bytes == Some(0) {
        check.error("server.max_header_bytes", "must be greater than 0");
    }
    check.at_least_one("server.max_connections", s.max_connections);
    check.at_least_one("server.max_headers", s.max_headers);
    if s.max_headers > MAX_MAX_HEADERS {
        check.error(
            "server.max_headers",
            format!("must be at most {MAX_MAX_HEADERS}"),
        );
    }
    let max_uri_bytes = check.size_usize("server.max_uri_bytes", &s.max_uri_bytes);
    if max_uri_bytes == Some(0) {
        check.error("server.max_uri_bytes", "must be greater than 0");
    }
    ServerConfig {
        listen: check
            .socket_addr("server.listen", &s.listen)
            .unwrap_or(PLACEHOLDER_ADDR),
        worker_threads: s.worker_threads,
        drain_timeout: check.duration("server.drain_timeout", &s.drain_timeout),
        header_read_timeout: check
            .positive_duration("server.header_read_timeout", &s.header_read_timeout)
            .unwrap_or_default(),
        idle_timeout: check
            .positive_duration("server.idle_timeout", &s.idle_timeout)
            .unwrap_or_default(),
        max_connections: s.max_connections,
        max_header_bytes: max_header_bytes.unwrap_or_default(),
        max_body_bytes: check
            .size("server.max_body_bytes", &s.max_body_bytes)
            .unwrap_or_default(),
        max_headers: s.max_headers,
        max_uri_bytes: max_uri_bytes.unwrap_or_default(),
        trusted_proxies,
    }
}

/// A CIDR, or a bare IP meaning that one address (/32 or /128).
pub(super) fn cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid cidr {text:?}; expected e.g. \"10.0.0.0/8\" or an ip"))
}

pub(super) fn admin(a: AdminSection, check: &mut Check) -> AdminConfig {
    let listen = check.socket_addr("admin.listen", &a.listen);
    match &a.token {
        Some(token) if token.is_empty() => check.error("admin.token", "must not be empty"),
        None if listen.is_some_and(|addr| !addr.ip().is_loopback()) => check.error(
            "admin.token",
            "required when admin.listen is not a loopback address",
        ),
        _ => {}
    }
    AdminConfig {
        listen: listen.unwrap_or(PLACEHOLDER_ADDR),
        token: a.token,
    }
}

pub(super) fn log(l: LogSection, check: &mut Check) -> LogConfig {
    let format = match l.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            check.error(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            );
            LogFormat::Text
        }
    };
    check.ok("log.level", log_level(&l.level));
    LogConfig {
        level: l.level,
        format,
        access_log: l.access_log,
    }
}

/// A plain level, or a full `EnvFilter` string when it has directives (`=`, `,`, `[`).
pub(super) fn log_level(level: &str) -> Result<(), String> {
    let level = level.trim();
    if level.is_empty() {
        return Err("must not be empty".into());
    }
    if !level.contains(['=', ',', '[']) {
        return if LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            Ok(())
        } else {
            Err(format!(
                "unknown level {level:?}; expected one of {} or a filter like \"info,cachet=debug\"",
                LOG_LEVELS.join(", ")
            ))
        };
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|e| format!("invalid filter {level:?} ({e})"))
}

pub(super) fn metrics(m: MetricsSection, check: &mut Check) -> MetricsConfig {
    let header = check.ok(
        "metrics.tenant_label_header",
        header_name(&m.tenant_label_header),
    );
    if let Some(name) = &header
        && CREDENTIAL_HEADERS.contains(&name.as_str())
    {
        check.error(
            "metrics.tenant_label_header",
            format!("must not be {name}: credential values would become metric labels"),
        );
    }
    for (i, label) in m.tenant_labels.iter().enumerate() {
        if label.is_empty() {
            check.error(format!("metrics.tenant_labels[{i}]"), "must not be empty");
        }
    }
    MetricsConfig {
        tenant_label_header: header.map(|h| h.as_str().to_owned()).unwrap_or_default(),
        tenant_labels: m.tenant_labels,
    }
}

pub(super) fn cache(c: CacheSection, check: &mut Check) -> CacheConfig {
    let memory_max_bytes = check.size("cache.memory_max_bytes", &c.memory_max_bytes);
    let max_object_bytes = check.size("cache.max_object_bytes", &c.max_object_bytes);
    match (memory_max_bytes, max_object_bytes) {
        (_, Some(0)) => check.error("cache.max_object_bytes", "must be greater than 0"),
        (Some(memory), Some(object)) if object > memory => check.error(
            "cache.max_object_bytes",
            "must not be larger than cache.memory_max_bytes",
        ),
        _ => {}
    }
    if c.partition_secret.as_deref() == Some("") {
        check.error("cache.partition_secret", "must not be empty when given");
    }
    if !(c.tenant_max_share > 0.0 && c.tenant_max_share <= 1.0) {
        check.error(
            "cache.tenant_max_share",
            format!(
                "must be greater than 0 and at most 1, got {}",
                c.tenant_max_share
            ),
        );
    }
    CacheConfig {
        memory_max_bytes: memory_max_bytes.unwrap_or_default(),
        max_object_bytes: max_object_bytes.unwrap_or_default(),
        partition_secret: c.partition_secret,
        tenant_max_share: c.tenant_max_share,
        hit_for_miss_ttl: check.duration("cache.hit_for_miss_ttl", &c.hit_for_miss_ttl),
        max_tags_per_entry: c.max_tags_per_entry,
        max_tag_bytes: c.max_tag_bytes,
        redis: c.redis.map(|r| redis(r, check)),
    }
}

fn redis(r: RedisSection, check: &mut Check) -> RedisConfig {
    let target = match (r.url, r.cluster) {
        (Some(_), Some(_)) => {
            check.error("cache.redis", "set either url or cluster, not both");
            RedisTarget::Node(String::new())
        }
        (None, Some(nodes)) => {
            if nodes.is_empty() {
                check.error("cache.redis.cluster", "must list at least one url");
            }
            for (i, url) in nodes.iter().enumerate() {
                check.ok(&format!("cache.redis.cluster[{i}]"), redis_url(url));
            }
            RedisTarget::Cluster(nodes)
        }
        (url, None) => {
            let url = url.unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned());
            check.ok("cache.redis.url", redis_url(&url));
            RedisTarget::Node(url)
        }
    };
    check.at_least_one("cache.redis.pool_size", r.pool_size);
    check.at_least_one("cache.redis.max_inflight_writes", r.max_inflight_writes);
    RedisConfig {
        target,
        key_prefix: r.key_prefix,
        op_timeout: check
            .positive_duration("cache.redis.op_timeout", &r.op_timeout)
            .unwrap_or_default(),
        pool_size: r.pool_size,
        compress_min_bytes: check
            .size_usize("cache.redis.compress_min_bytes", &r.compress_min_bytes)
            .unwrap_or_default(),
        max_inflight_writes: r.max_inflight_writes,
        lease_ttl: check.duration("cache.redis.lease_ttl", &r.lease_ttl),
    }
}

/// Only the scheme and a non-empty rest are checked; the url (which may hold a password) is
/// never echoed.
fn redis_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or("must start with redis:// or rediss://")?;
    if rest.is_empty() {
        return Err("missing host after redis://".into());
    }
    Ok(())
}

pub(super) fn warm_target(path: &str, w: WarmEntry, check: &mut Check) -> WarmTarget {
    let url = required(&format!("{path}.url"), w.url, check);
    let origin_form = url.starts_with('/') && url.parse::<PathAndQuery>().is_ok();
    if !url.is_empty() && !origin_form {
        check.error(
            format!("{path}.url"),
            "must be a path starting with \"/\", e.g. \"/api/products/top\"",
        );
    }
    // Values are not echoed: a warm-up request may carry a credential.
    let headers = w
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let at = format!("{path}.headers.{name}");
            let name = check.ok(&at, header_name(name))?;
            let value = check.ok(
                &at,
                HeaderValue::from_str(value).map_err(|_| "invalid header value".to_owned()),
            )?;
            Some((name, value))
        })
        .collect();
    WarmTarget { url, headers }
}
