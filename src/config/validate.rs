//! Text and environment → [`Config`], collecting every problem with its field path.
//!
//! Steps: parse the TOML into a `toml::Table` (a syntax error is the only early exit), apply
//! `CACHET__` environment overrides onto it, deserialize each section on its own (unknown keys
//! through `serde_ignored`, wrongly typed keys found one by one), then run every semantic check.
//! Nothing stops at the first problem; a value that failed is replaced by a placeholder so the
//! remaining checks still run, and `Config` is returned only when no problem was found.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery};
use http::{HeaderName, HeaderValue, Uri};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::schema::{
    AdminSection, CacheSection, DEFAULT_REDIS_URL, ENV_KEYS, EnvKind, FileSchema, LogSection,
    MetricsSection, RedisSection, RouteSection, SECTIONS, ServerSection, WarmEntry,
};
use super::units::{parse_duration, parse_size};
use super::{
    AdminConfig, CacheConfig, Config, ConfigError, FieldError, LogConfig, LogFormat, MetricsConfig,
    RedisConfig, RedisTarget, Route, ServerConfig, WarmSettings, WarmTarget,
};

/// Environment variables with this prefix (any case) are overrides; all others are ignored.
const ENV_PREFIX: &str = "cachet__";

/// Stands in for an address that failed to parse; never returned (the error is).
const PLACEHOLDER_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0));

/// Headers whose values are credentials: never a metric label.
const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Hop-by-hop headers (RFC 9110 §7.6.1 and their legacy companions): they do not describe the
/// resource, so they cannot partition the cache.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Levels `log.level` may name without being a full `EnvFilter` directive.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Parses, overrides and validates; see the module docs.
///
/// # Errors
/// `ConfigError::Invalid` with every problem found.
pub(crate) fn validate(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut root = toml::from_str::<Table>(text).map_err(|e| {
        ConfigError::Invalid(vec![FieldError {
            path: "file".into(),
            message: syntax_message(text, &e),
        }])
    })?;
    let mut check = Check::default();
    let overridden = apply_env(&mut root, env, &mut check);
    let file = read_sections(root, &mut check);
    let config = build(file, &mut check);
    if check.errors.is_empty() {
        return Ok(config);
    }
    for error in &mut check.errors {
        let from_env = overridden
            .iter()
            .find(|(path, _)| error.path == **path || error.path.starts_with(&format!("{path}[")));
        if let Some((_, var)) = from_env {
            error.message.push_str(&format!(" (set by {var})"));
        }
    }
    Err(ConfigError::Invalid(check.errors))
}

/// `line L, column C: what` from a TOML parse error, on one line.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let what = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let Some(start) = error.span().map(|s| s.start.min(text.len())) else {
        return format!("invalid toml: {what}");
    };
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("invalid toml at line {line}, column {column}: {what}")
}

/// Problems found so far, and helpers that record one and return a usable value.
#[derive(Debug, Default)]
struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn ok<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.error(path, message)).ok()
    }

    fn duration(&mut self, path: &str, text: &str) -> Duration {
        self.ok(path, parse_duration(text)).unwrap_or_default()
    }

    /// `None` (reported) when it does not parse; zero is reported but returned.
    fn positive_duration(&mut self, path: &str, text: &str) -> Option<Duration> {
        let duration = self.ok(path, parse_duration(text));
        if duration.is_some_and(|d| d.is_zero()) {
            self.error(path, "must be greater than 0s");
        }
        duration
    }

    fn size(&mut self, path: &str, text: &str) -> Option<u64> {
        self.ok(path, parse_size(text))
    }

    fn size_usize(&mut self, path: &str, text: &str) -> Option<usize> {
        let bytes = parse_size(text).and_then(|b| {
            usize::try_from(b).map_err(|_| format!("size {text:?} is too large for this platform"))
        });
        self.ok(path, bytes)
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text.trim().parse::<SocketAddr>().map_err(|_| {
            format!("invalid socket address {text:?}; expected ip:port, e.g. \"127.0.0.1:8080\"")
        });
        self.ok(path, parsed)
    }

    fn at_least_one(&mut self, path: &str, value: usize) {
        if value == 0 {
            self.error(path, "must be at least 1");
        }
    }
}

/// Applies `CACHET__SECTION__KEY=value` overrides onto the file's table. Returns the dotted
/// path of each applied override with the variable that set it, to name it in errors.
fn apply_env(
    root: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    check: &mut Check,
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String, String)> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let lower = name.to_ascii_lowercase();
            let dotted = lower.strip_prefix(ENV_PREFIX)?.replace("__", ".");
            Some((dotted, name, value))
        })
        .collect();
    // Deterministic whatever order the environment comes in.
    vars.sort();
    let mut applied = Vec::new();
    for (dotted, name, raw) in vars {
        let section = dotted.split('.').next().unwrap_or_default();
        if section == "routes" || section == "warm" {
            check.error(name, format!("{section} come from the file only"));
            continue;
        }
        let Some(&(_, kind)) = ENV_KEYS.iter().find(|(key, _)| *key == dotted) else {
            check.error(name, "unknown key");
            continue;
        };
        match env_value(kind, &raw).and_then(|value| set_dotted(root, &dotted, value)) {
            Ok(()) => applied.push((dotted, name)),
            Err(message) => check.error(name, message),
        }
    }
    // `url` and `cluster` name the same thing, so overriding one replaces the other.
    let set = |key: &str| applied.iter().any(|(path, _)| path == key);
    let replaced = match (set("cache.redis.url"), set("cache.redis.cluster")) {
        (true, false) => Some("cluster"),
        (false, true) => Some("url"),
        _ => None,
    };
    if let Some(key) = replaced {
        let redis = root
            .get_mut("cache")
            .and_then(Value::as_table_mut)
            .and_then(|cache| cache.get_mut("redis"))
            .and_then(Value::as_table_mut);
        if let Some(redis) = redis {
            redis.remove(key);
        }
    }
    applied
}

/// Converts an override's string to the TOML type its key expects.
fn env_value(kind: EnvKind, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    Ok(match kind {
        EnvKind::Str => Value::String(raw.to_owned()),
        EnvKind::Integer => Value::Integer(
            raw.parse()
                .map_err(|_| format!("expected an integer, got {raw:?}"))?,
        ),
        EnvKind::Float => Value::Float(
            raw.parse()
                .map_err(|_| format!("expected a number, got {raw:?}"))?,
        ),
        EnvKind::Bool => Value::Boolean(
            raw.parse()
                .map_err(|_| format!("expected true or false, got {raw:?}"))?,
        ),
        EnvKind::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
    })
}

/// Sets `a.b.c` in `root`, creating missing tables.
fn set_dotted(root: &mut Table, dotted: &str, value: Value) -> Result<(), String> {
    let mut table = root;
    let mut parts = dotted.split('.').peekable();
    let mut walked = String::new();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            table.insert(part.to_owned(), value);
            return Ok(());
        }
        walked.push_str(part);
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("cannot override: {walked} in the file is not a table"))?;
        walked.push('.');
    }
    Ok(())
}

/// Splits the file into sections, reporting unknown top-level keys.
fn read_sections(mut root: Table, check: &mut Check) -> FileSchema {
    for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        check.error(key.as_str(), "unknown top-level key");
    }
    let mut take = |name: &str| root.remove(name);
    FileSchema {
        server: section(take("server"), "server", check).unwrap_or_default(),
        admin: section(take("admin"), "admin", check).unwrap_or_default(),
        log: section(take("log"), "log", check).unwrap_or_default(),
        metrics: section(take("metrics"), "metrics", check).unwrap_or_default(),
        cache: section(take("cache"), "cache", check).unwrap_or_default(),
        routes: array_of(take("routes"), "routes", check),
        warm: array_of(take("warm"), "warm", check),
        warm_settings: section(take("warm_settings"), "warm_settings", check).unwrap_or_default(),
    }
}

/// An array of tables (`[[routes]]`); entries that are not tables are reported and kept as
/// `None` so that indexes still match the file.
fn array_of<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    check: &mut Check,
) -> Vec<Option<T>> {
    match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| section(Some(item), &format!("{path}[{i}]"), check))
            .collect(),
        Some(other) => {
            check.error(
                path,
                format!(
                    "expected an array of tables ([[{path}]]), found {}",
                    other.type_str()
                ),
            );
            // One entry, already reported: "at least one route" would only repeat the problem.
            vec![None]
        }
    }
}

/// Deserializes one table, reporting unknown keys and each wrongly typed key with its path.
/// Keys that are fine are kept, so the checks of the rest of the section still run. `None`
/// when the value is not a table at all (reported).
fn section<T: DeserializeOwned + Default>(
    value: Option<Value>,
    path: &str,
    check: &mut Check,
) -> Option<T> {
    let table = match value {
        None => return Some(T::default()),
        Some(Value::Table(table)) => table,
        Some(other) => {
            check.error(
                path,
                format!("expected a table, found {}", other.type_str()),
            );
            return None;
        }
    };
    let table = if T::deserialize(Value::Table(table.clone())).is_ok() {
        table
    } else {
        well_typed::<T>(table, path, &|t| t, check)
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(Value::Table(table), |p| {
        unknown.push(ignored_path(path, &p));
    });
    for key in unknown {
        check.error(key, "unknown key");
    }
    match parsed {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            // Not expected after `well_typed`; reported rather than hidden if it happens.
            check.error(path, e.message());
            Some(T::default())
        }
    }
}

/// Keeps the keys of `table` that deserialize as part of `T` on their own, reporting the others
/// with their path. `wrap` places a one-key table where `table` sits inside the section, so
/// nested tables (`cache.redis`, `warm[0].headers`) are searched key by key too.
fn well_typed<T: DeserializeOwned>(
    table: Table,
    path: &str,
    wrap: &dyn Fn(Table) -> Table,
    check: &mut Check,
) -> Table {
    let mut kept = Table::new();
    for (key, value) in table {
        let key_path = format!("{path}.{key}");
        let alone = |v: Value| wrap(Table::from_iter([(key.clone(), v)]));
        let Err(error) = T::deserialize(Value::Table(alone(value.clone()))) else {
            kept.insert(key, value);
            continue;
        };
        let holds_table = T::deserialize(Value::Table(alone(Value::Table(Table::new())))).is_ok();
        match value {
            Value::Table(inner) if holds_table => {
                let inner_wrap = |t: Table| alone(Value::Table(t));
                let inner = well_typed::<T>(inner, &key_path, &inner_wrap, check);
                kept.insert(key, Value::Table(inner));
            }
            _ => check.error(key_path, error.message()),
        }
    }
    kept
}

/// `section.key.sub` (or `section.list[2]`) for a key `serde_ignored` skipped.
fn ignored_path(section: &str, path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => section.to_owned(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_path(section, parent)),
        Path::Map { parent, key } => format!("{}.{key}", ignored_path(section, parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(section, parent),
    }
}

/// Every semantic check, section by section, then the cross-field ones.
fn build(file: FileSchema, check: &mut Check) -> Config {
    let server = server(file.server, check);
    let admin = admin(file.admin, check);
    let log = log(file.log, check);
    let metrics = metrics(file.metrics, check);
    let cache = cache(file.cache, check);
    let routes = routes(file.routes, &cache, check);
    let warm: Vec<WarmTarget> = file
        .warm
        .into_iter()
        .enumerate()
        .filter_map(|(i, entry)| Some(warm_target(&format!("warm[{i}]"), entry?, check)))
        .collect();
    check.at_least_one("warm_settings.rate", file.warm_settings.rate as usize);
    let mut config = Config {
        server,
        admin,
        log,
        metrics,
        cache,
        routes: routes.into(),
        warm,
        warm_settings: WarmSettings {
            rate: file.warm_settings.rate,
        },
        warnings: Vec::new(),
    };
    config.warnings = warnings(&config);
    config
}

fn server(s: ServerSection, check: &mut Check) -> ServerConfig {
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
        trusted_proxies,
    }
}

/// A CIDR, or a bare IP meaning that one address (/32 or /128).
fn cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .map(|net| net.trunc())
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("invalid cidr {text:?}; expected e.g. \"10.0.0.0/8\" or an ip"))
}

fn admin(a: AdminSection, check: &mut Check) -> AdminConfig {
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

fn log(l: LogSection, check: &mut Check) -> LogConfig {
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
fn log_level(level: &str) -> Result<(), String> {
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

fn metrics(m: MetricsSection, check: &mut Check) -> MetricsConfig {
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

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name {text:?}"))
}

fn cache(c: CacheSection, check: &mut Check) -> CacheConfig {
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

/// Every route, then the checks across routes (names, (host, prefix) pairs, at least one).
fn routes(
    sections: Vec<Option<RouteSection>>,
    cache: &CacheConfig,
    check: &mut Check,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut matches: HashMap<(Option<String>, String), usize> = HashMap::new();
    let count = sections.len();
    for (i, section) in sections.into_iter().enumerate() {
        let Some(section) = section else { continue };
        let path = format!("routes[{i}]");
        let route = route(&path, section, cache, check);
        if !route.name.is_empty()
            && let Some(&first) = names.get(&route.name)
        {
            check.error(
                format!("{path}.name"),
                format!(
                    "duplicate route name {:?} (first at routes[{first}])",
                    route.name
                ),
            );
        } else {
            names.insert(route.name.clone(), i);
        }
        let key = (route.host.clone(), route.path_prefix.clone());
        if !route.path_prefix.is_empty()
            && let Some(&first) = matches.get(&key)
        {
            check.error(
                format!("{path}.path_prefix"),
                format!("same host and path_prefix as routes[{first}]"),
            );
        } else {
            matches.insert(key, i);
        }
        routes.push(route);
    }
    if count == 0 {
        check.error("routes", "at least one [[routes]] entry is required");
    }
    routes
}

fn route(path: &str, r: RouteSection, cache: &CacheConfig, check: &mut Check) -> Route {
    let at = |field: &str| format!("{path}.{field}");
    let name = required(&at("name"), r.name, check);
    if !name.is_empty()
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        check.error(at("name"), "must contain only letters, digits, '_' and '-'");
    }
    let path_prefix = required(&at("path_prefix"), r.path_prefix, check);
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        check.error(at("path_prefix"), "must start with \"/\"");
    }
    let host = r.host.and_then(|h| check.ok(&at("host"), route_host(&h)));
    let upstream = required(&at("upstream"), r.upstream, check);
    let upstream = if upstream.is_empty() {
        Uri::default()
    } else {
        check
            .ok(&at("upstream"), upstream_uri(&upstream))
            .unwrap_or_default()
    };
    let default_ttl = check.duration(&at("default_ttl"), &r.default_ttl);
    let max_ttl = r.max_ttl.map(|text| {
        let max = check.positive_duration(&at("max_ttl"), &text);
        if max.is_some_and(|max| !max.is_zero() && max < default_ttl) {
            check.error(at("max_ttl"), "must not be shorter than default_ttl");
        }
        max.unwrap_or_default()
    });
    if !(r.early_refresh_beta >= 0.0 && r.early_refresh_beta.is_finite()) {
        check.error(at("early_refresh_beta"), "must be 0 or greater");
    }
    if !(r.ttl_jitter >= 0.0 && r.ttl_jitter < 1.0) {
        check.error(at("ttl_jitter"), "must be at least 0 and less than 1");
    }
    let key_headers = key_headers(&at("key_headers"), &r.key_headers, check);
    tags(&at("tags"), &r.tags, cache, check);
    for (j, param) in r.ignore_query_params.iter().enumerate() {
        if param.is_empty() {
            check.error(
                format!("{path}.ignore_query_params[{j}]"),
                "must not be empty",
            );
        }
    }
    Route {
        name,
        path_prefix,
        host,
        upstream,
        timeout: check
            .positive_duration(&at("timeout"), &r.timeout)
            .unwrap_or_default(),
        default_ttl,
        max_ttl,
        stale_while_revalidate: check
            .duration(&at("stale_while_revalidate"), &r.stale_while_revalidate),
        stale_if_error: check.duration(&at("stale_if_error"), &r.stale_if_error),
        early_refresh_beta: r.early_refresh_beta,
        ttl_jitter: r.ttl_jitter,
        key_headers,
        tags: r.tags,
        ignore_query_params: r.ignore_query_params,
        ignore_client_cache_control: r.ignore_client_cache_control,
        cache_set_cookie: r.cache_set_cookie,
        cache_authenticated_stale: r.cache_authenticated_stale,
    }
}

/// A required non-empty string; `""` after an error so later checks skip it.
fn required(path: &str, value: Option<String>, check: &mut Check) -> String {
    match value {
        None => check.error(path, "is required"),
        Some(v) if v.is_empty() => check.error(path, "must not be empty"),
        Some(v) => return v,
    }
    String::new()
}

/// Lower-cased host without port; matching ignores the request's port.
fn route_host(text: &str) -> Result<String, String> {
    let no_port = "must be a host name without a port, e.g. \"api.example.com\"";
    if text.contains(':') && !text.starts_with('[') {
        return Err(no_port.into());
    }
    let authority = text
        .parse::<Authority>()
        .ok()
        .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
        .ok_or_else(|| format!("invalid host {text:?}"))?;
    if authority.port().is_some() {
        return Err(no_port.into());
    }
    Ok(authority.host().to_ascii_lowercase())
}

/// An absolute `http`/`https` URI with a host and no query. The text is not echoed: it may
/// carry credentials, which are rejected.
fn upstream_uri(text: &str) -> Result<Uri, String> {
    let uri = text
        .parse::<Uri>()
        .map_err(|e| format!("not a valid uri ({e})"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(s) => return Err(format!("scheme must be http or https, not {s:?}")),
        None => return Err("must start with http:// or https://".into()),
    }
    let authority = uri.authority().ok_or("missing host")?;
    if authority.host().is_empty() {
        return Err("missing host".into());
    }
    if authority.as_str().contains('@') {
        return Err("must not contain user info".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(uri)
}

fn key_headers(path: &str, names: &[String], check: &mut Check) -> Vec<HeaderName> {
    let mut seen = HashSet::new();
    names
        .iter()
        .enumerate()
        .filter_map(|(j, text)| {
            let at = format!("{path}[{j}]");
            let name = check.ok(&at, header_name(text))?;
            let problem = if name == http::header::COOKIE {
                Some(
                    "cookie cannot be a key header; name the header that identifies the partition"
                        .into(),
                )
            } else if HOP_BY_HOP.contains(&name.as_str()) {
                Some(format!(
                    "{name} is a hop-by-hop header and cannot be a key header"
                ))
            } else if !seen.insert(name.clone()) {
                Some(format!("{name} is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => {
                    check.error(at, message);
                    None
                }
                None => Some(name),
            }
        })
        .collect()
}

fn tags(path: &str, tags: &[String], cache: &CacheConfig, check: &mut Check) {
    if tags.len() > cache.max_tags_per_entry {
        check.error(
            path,
            format!(
                "{} tags, more than cache.max_tags_per_entry ({})",
                tags.len(),
                cache.max_tags_per_entry
            ),
        );
    }
    for (j, tag) in tags.iter().enumerate() {
        let at = format!("{path}[{j}]");
        if tag.is_empty() {
            check.error(at, "must not be empty");
        } else if tag.contains(char::is_whitespace) {
            check.error(at, "must not contain whitespace");
        } else if tag.len() > cache.max_tag_bytes {
            check.error(
                at,
                format!(
                    "{} bytes, more than cache.max_tag_bytes ({})",
                    tag.len(),
                    cache.max_tag_bytes
                ),
            );
        }
    }
}

fn warm_target(path: &str, w: WarmEntry, check: &mut Check) -> WarmTarget {
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

/// Remarks that do not stop start-up.
fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.cache.partition_secret.is_none() {
        for (i, route) in config.routes.iter().enumerate() {
            if route.key_headers.contains(&http::header::AUTHORIZATION) {
                warnings.push(format!(
                    "routes[{i}].key_headers: authorization is a key header but cache.partition_secret is not set; a built-in constant keys the hash"
                ));
            }
        }
    }
    let mut inactive = Vec::new();
    if config.cache.redis.is_some() {
        inactive.push("cache.redis");
    }
    if config.cache.tenant_max_share != 1.0 {
        inactive.push("cache.tenant_max_share");
    }
    if !config.warm.is_empty() {
        inactive.push("warm");
    }
    if !inactive.is_empty() {
        warnings.push(format!(
            "not active yet (accepted and validated): {}",
            inactive.join(", ")
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[routes]]
name = "products"
path_prefix = "/api/products"
upstream = "http://127.0.0.1:9000"
"#;

    /// Cases separated by `#> path | message fragment` lines. Each snippet is appended to
    /// MINIMAL (so bare keys extend `routes[0]`) and must give exactly that one error.
    const ONE_ERROR_CASES: &str = r#"
#> server.listen | invalid socket address
[server]
listen = "nowhere"
#> server.listen | invalid type
[server]
listen = { port = 1 }
#> server.worker_threads | invalid type
[server]
worker_threads = "4"
#> server.drain_timeout | invalid duration
[server]
drain_timeout = "10"
#> server.header_read_timeout | greater than 0s
[server]
header_read_timeout = "0s"
#> server.max_body_bytes | invalid size
[server]
max_body_bytes = "lots"
#> server.max_connections | at least 1
[server]
max_connections = 0
#> server.trusted_proxies[1] | invalid cidr
[server]
trusted_proxies = ["10.0.0.0/8", "ten"]
#> admin.token | must not be empty
[admin]
token = ""
#> admin.token | required when admin.listen is not a loopback address
[admin]
listen = "0.0.0.0:9091"
#> log.format | "text" or "json"
[log]
format = "xml"
#> log.level | unknown level
[log]
level = "verbose"
#> metrics.tenant_label_header | credential
[metrics]
tenant_label_header = "Authorization"
#> metrics.tenant_label_header | credential
[metrics]
tenant_label_header = "cookie"
#> cache.max_object_bytes | must not be larger than cache.memory_max_bytes
[cache]
max_object_bytes = "512MiB"
#> cache.max_object_bytes | greater than 0
[cache]
max_object_bytes = "0"
#> cache.partition_secret | must not be empty
[cache]
partition_secret = ""
#> cache.tenant_max_share | greater than 0
[cache]
tenant_max_share = 0.0
#> cache.tenant_max_share | at most 1
[cache]
tenant_max_share = 1.5
#> routes[0].tags[0] | max_tag_bytes
tags = ["four"]
[cache]
max_tag_bytes = 3
#> routes[0].tags | max_tags_per_entry
tags = ["a", "b"]
[cache]
max_tags_per_entry = 1
#> cache.redis.url | redis://
[cache.redis]
url = "http://x"
#> cache.redis | not both
[cache.redis]
url = "redis://a"
cluster = ["redis://b"]
#> cache.redis.cluster | at least one
[cache.redis]
cluster = []
#> cache.redis.cluster[1] | redis://
[cache.redis]
cluster = ["redis://a", "b"]
#> cache.redis.op_timeout | greater than 0s
[cache.redis]
op_timeout = "0s"
#> cache.redis.pool_size | at least 1
[cache.redis]
pool_size = 0
#> cache.redis.pool_size | invalid type
[cache.redis]
pool_size = "four"
#> cache.redis.max_inflight_writes | at least 1
[cache.redis]
max_inflight_writes = 0
#> warm_settings.rate | at least 1
[warm_settings]
rate = 0
#> file | duplicate key
name = "again"
#> routes[0].timeout | greater than 0s
timeout = "0s"
#> routes[0].max_ttl | greater than 0s
max_ttl = "0s"
#> routes[0].max_ttl | shorter than default_ttl
default_ttl = "1h"
max_ttl = "1m"
#> routes[0].early_refresh_beta | 0 or greater
early_refresh_beta = -1.0
#> routes[0].ttl_jitter | less than 1
ttl_jitter = 1.0
#> routes[0].key_headers[0] | cookie cannot be a key header
key_headers = ["Cookie"]
#> routes[0].key_headers[1] | hop-by-hop
key_headers = ["x-a", "Connection"]
#> routes[0].key_headers[1] | listed twice
key_headers = ["x-a", "X-A"]
#> routes[0].key_headers[0] | invalid header name
key_headers = ["bad header"]
#> routes[0].tags[0] | whitespace
tags = ["a b"]
#> routes[0].tags[0] | must not be empty
tags = [""]
#> routes[0].host | without a port
host = "api.example.com:443"
#> routes[0].ignore_query_params[0] | must not be empty
ignore_query_params = [""]
#> routes[1].name | is required
[[routes]]
path_prefix = "/a"
upstream = "http://o"
#> routes[1].name | letters, digits
[[routes]]
name = "a b"
path_prefix = "/a"
upstream = "http://o"
#> routes[1].path_prefix | must start with "/"
[[routes]]
name = "a"
path_prefix = "a"
upstream = "http://o"
#> routes[1].upstream | is required
[[routes]]
name = "a"
path_prefix = "/a"
#> routes[1].upstream | scheme must be http or https
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "ftp://o"
#> routes[1].upstream | must start with http:// or https://
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "127.0.0.1:9000"
#> routes[1].upstream | must start with http:// or https://
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "/just/a/path"
#> routes[1].upstream | must not have a query
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "http://o/?q=1"
#> routes[1].upstream | must not contain user info
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "http://u:secret@o"
#> routes[1].upstream | not a valid uri
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "http://o o"
#> warm[0].url | starting with "/"
[[warm]]
url = "api/x"
#> warm[0].url | is required
[[warm]]
headers = { a = "b" }
#> warm[0].headers.bad name | invalid header name
[[warm]]
url = "/x"
headers = { "bad name" = "b" }
#> warm[0].headers.a | invalid type
[[warm]]
url = "/x"
headers = { a = 1 }
#> listen | unknown top-level key
[listen]
"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn errors(text: &str, pairs: &[(&str, &str)]) -> Vec<FieldError> {
        match validate(text, env(pairs)) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(errors)) => errors,
            Err(other) => panic!("unexpected {other}"),
        }
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn each_bad_value_is_reported_once_at_its_path() {
        for case in ONE_ERROR_CASES.split("\n#> ").skip(1) {
            let (head, snippet) = case.split_once('\n').unwrap_or((case, ""));
            let (path, fragment) = head.split_once(" | ").unwrap();
            let found = errors(&format!("{MINIMAL}{snippet}\n"), &[]);
            assert_eq!(paths(&found), [path], "{head}: {found:?}");
            assert!(found[0].message.contains(fragment), "{head}: {found:?}");
            assert!(
                !found[0].message.contains("secret"),
                "{head}: echoes a secret"
            );
        }
    }

    #[test]
    fn sections_of_the_wrong_shape_are_reported_once() {
        assert_eq!(
            paths(&errors(&format!("server = 1\n{MINIMAL}"), &[])),
            ["server"]
        );
        let found = errors("[routes]\nname = \"a\"\n", &[]);
        assert_eq!(paths(&found), ["routes"]);
        assert!(found[0].message.contains("[[routes]]"), "{found:?}");
        assert_eq!(paths(&errors("routes = [1]\n", &[])), ["routes[0]"]);
    }

    #[test]
    fn routes_are_unique_and_at_least_one_is_required() {
        assert_eq!(paths(&errors("", &[])), ["routes"]);
        let twice = format!("{MINIMAL}{MINIMAL}");
        assert_eq!(
            paths(&errors(&twice, &[])),
            ["routes[1].name", "routes[1].path_prefix"]
        );
        let other = MINIMAL.replace("name = \"products\"", "name = \"other\"");
        let same_host = format!("{MINIMAL}host = \"A.example\"\n{other}host = \"a.example\"\n");
        assert_eq!(paths(&errors(&same_host, &[])), ["routes[1].path_prefix"]);
        let other_host = format!("{MINIMAL}host = \"a.example\"\n{other}");
        assert_eq!(errors(&other_host, &[]), []);
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_all_reported() {
        let text = format!(
            "[server]\nlisten = 1\nworker_threads = \"x\"\nlisen = \"a\"\n\
             [cache.redis]\npool_size = \"x\"\nurll = \"y\"\n{MINIMAL}"
        );
        let found = errors(&text, &[]);
        let mut found = paths(&found);
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "cache.redis.pool_size",
                "cache.redis.urll",
                "server.lisen",
                "server.listen",
                "server.worker_threads"
            ]
        );
    }

    #[test]
    fn env_values_take_the_type_of_their_key() {
        let config = validate(
            MINIMAL,
            env(&[
                ("CACHET__SERVER__WORKER_THREADS", "3"),
                ("cachet__log__access_log", "false"),
                ("CACHET__CACHE__TENANT_MAX_SHARE", "0.5"),
                ("CACHET__SERVER__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1"),
                ("CACHET__WARM_SETTINGS__RATE", "5"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server.worker_threads, 3);
        assert!(!config.log.access_log);
        assert_eq!(config.cache.tenant_max_share, 0.5);
        let proxies: Vec<_> = config
            .server
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.1/32"]);
        assert_eq!(config.warm_settings.rate, 5);
    }

    #[test]
    fn bad_env_values_are_reported_by_variable() {
        let found = errors(
            MINIMAL,
            &[
                ("CACHET__SERVER__WORKER_THREADS", "many"),
                ("CACHET__LOG__ACCESS_LOG", "yes"),
                ("CACHET__WARM__URL", "/x"),
                ("CACHET__SERVER__LISTEN", "nowhere"),
            ],
        );
        let pairs: Vec<_> = found
            .iter()
            .map(|e| (e.path.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(pairs.len(), 4, "{pairs:?}");
        assert!(pairs.contains(&(
            "CACHET__SERVER__WORKER_THREADS",
            "expected an integer, got \"many\""
        )));
        assert!(pairs.contains(&(
            "CACHET__LOG__ACCESS_LOG",
            "expected true or false, got \"yes\""
        )));
        assert!(pairs.contains(&("CACHET__WARM__URL", "warm come from the file only")));
        let listen = found.iter().find(|e| e.path == "server.listen").unwrap();
        assert!(
            listen.message.ends_with("(set by CACHET__SERVER__LISTEN)"),
            "{listen:?}"
        );
    }

    #[test]
    fn every_env_key_names_a_schema_field() {
        for (key, kind) in ENV_KEYS {
            let var = format!("CACHET__{}", key.replace('.', "__").to_uppercase());
            let value = match kind {
                EnvKind::Integer => "1",
                EnvKind::Float => "0.5",
                EnvKind::Bool => "true",
                EnvKind::List | EnvKind::Str => "redis://x",
            };
            let found = errors(MINIMAL, &[(&var, value)]);
            assert!(
                found.iter().all(|e| e.message != "unknown key"),
                "{var}: {found:?}"
            );
        }
    }

    #[test]
    fn env_url_and_cluster_replace_each_other() {
        let file = format!("[cache.redis]\ncluster = [\"redis://a:7000\"]\n{MINIMAL}");
        let url = env(&[("CACHET__CACHE__REDIS__URL", "redis://b:6379")]);
        let redis = validate(&file, url).unwrap().cache.redis.unwrap();
        assert!(matches!(redis.target, RedisTarget::Node(url) if url == "redis://b:6379"));

        let file = format!("[cache.redis]\nurl = \"redis://a:6379\"\n{MINIMAL}");
        let cluster = env(&[("CACHET__CACHE__REDIS__CLUSTER", "redis://c:1,redis://d:2")]);
        let redis = validate(&file, cluster).unwrap().cache.redis.unwrap();
        assert!(matches!(redis.target, RedisTarget::Cluster(nodes) if nodes.len() == 2));
    }

    #[test]
    fn syntax_errors_name_the_line_on_one_line() {
        let found = errors("[server]\nlisten = \n", &[]);
        assert_eq!(paths(&found), ["file"]);
        assert!(
            found[0].message.starts_with("invalid toml at line 2"),
            "{found:?}"
        );
        assert!(!found[0].message.contains('\n'));
    }

    #[test]
    fn log_levels_and_filters() {
        for ok in ["info", "DEBUG", "off", "info,cachet=debug", "cachet=trace"] {
            assert_eq!(log_level(ok), Ok(()), "{ok}");
        }
        for bad in ["", "verbose", "info,cachet=loud"] {
            assert!(log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_and_cidrs_are_normalized() {
        assert_eq!(
            route_host("API.Example.com").as_deref(),
            Ok("api.example.com")
        );
        assert_eq!(route_host("[::1]").as_deref(), Ok("[::1]"));
        assert!(route_host("[::1]:80").is_err());
        assert!(route_host("a/b").is_err());
        assert_eq!(
            cidr("10.1.2.3/8").map(|n| n.to_string()).as_deref(),
            Ok("10.0.0.0/8")
        );
        assert_eq!(cidr("::1").map(|n| n.to_string()).as_deref(), Ok("::1/128"));
    }

    #[test]
    fn warnings_name_inactive_keys_and_unkeyed_authorization() {
        let text = format!(
            "[cache]\ntenant_max_share = 0.5\n[cache.redis]\n{MINIMAL}\
             key_headers = [\"Authorization\"]\n[[warm]]\nurl = \"/api/products/top\"\n"
        );
        let config = validate(&text, Vec::new()).unwrap();
        assert_eq!(
            config.warnings,
            [
                "routes[0].key_headers: authorization is a key header but cache.partition_secret \
                 is not set; a built-in constant keys the hash",
                "not active yet (accepted and validated): cache.redis, cache.tenant_max_share, warm",
            ]
        );
        assert!(validate(MINIMAL, Vec::new()).unwrap().warnings.is_empty());
    }
}
