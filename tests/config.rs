//! The configuration contract through the public API: the shipped example loads, defaults
//! apply, every problem is reported at once with its field path, and `CACHET__` environment
//! overrides work (passed as literal pairs; no test touches the process environment).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use cachet::config::{self, Config, ConfigError, FieldError, RedisTarget, from_toml_str, load};

const ROUTE: &str = r#"
[[routes]]
name = "products"
path_prefix = "/api/products"
upstream = "http://127.0.0.1:9000"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ok(text: &str, pairs: &[(&str, &str)]) -> Config {
    match from_toml_str(text, env(pairs)) {
        Ok(config) => config,
        Err(ConfigError::Invalid(errors)) => panic!("expected a valid config, got {errors:#?}"),
        Err(other) => panic!("expected a valid config, got {other}"),
    }
}

fn problems(text: &str, pairs: &[(&str, &str)]) -> Vec<FieldError> {
    match from_toml_str(text, env(pairs)) {
        Ok(_) => panic!("expected problems, the config was accepted"),
        Err(ConfigError::Invalid(errors)) => errors,
        Err(other) => panic!("expected ConfigError::Invalid, got {other}"),
    }
}

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test addresses are valid")
}

#[test]
fn example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cachet.toml");
    let config = load(&path, Vec::new()).unwrap();

    let names: Vec<_> = config.routes.iter().map(|r| &*r.name).collect();
    assert_eq!(names, ["products", "me"]);
    let products = &config.routes[0];
    assert_eq!(products.path_prefix, "/api/products");
    assert_eq!(products.upstream.to_string(), "http://127.0.0.1:9000/");
    assert_eq!(products.default_ttl, Duration::from_secs(60));
    assert_eq!(products.stale_while_revalidate, Duration::from_secs(30));
    assert_eq!(products.stale_if_error, Duration::from_secs(600));
    assert_eq!(products.key_headers, ["x-tenant-id"]);
    assert_eq!(products.tags, ["products"]);
    assert_eq!(config.routes[1].key_headers, ["authorization"]);
    assert!(config.cache.partition_secret.is_none());
    assert_eq!(
        config.summary(),
        "config ok: 2 routes (products, me), listen 127.0.0.1:8080, admin 127.0.0.1:9091, \
         memory 256MiB, shared tier: none"
    );
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].starts_with("routes[1].key_headers: authorization"));
}

#[test]
fn missing_file_is_a_read_error() {
    let err = load(Path::new("/nonexistent/cachet.toml"), Vec::new()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn defaults_are_applied() {
    let config = ok(ROUTE, &[]);

    let server = &config.server;
    assert_eq!(server.listen, addr("127.0.0.1:8080"));
    assert_eq!(server.worker_threads, 0);
    assert_eq!(server.drain_timeout, Duration::from_secs(10));
    assert_eq!(server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(server.idle_timeout, Duration::from_secs(60));
    assert_eq!(server.max_connections, 10_000);
    assert_eq!(server.max_header_bytes, 64 * 1024);
    assert_eq!(server.max_body_bytes, 16 * 1024 * 1024);
    assert!(server.trusted_proxies.is_empty());

    assert_eq!(config.admin.listen, addr("127.0.0.1:9091"));
    assert!(config.admin.token.is_none());
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, config::LogFormat::Text);
    assert!(config.log.access_log);
    assert_eq!(config.metrics.tenant_label_header, "x-tenant-id");
    assert!(config.metrics.tenant_labels.is_empty());

    let cache = &config.cache;
    assert_eq!(cache.memory_max_bytes, 256 * 1024 * 1024);
    assert_eq!(cache.max_object_bytes, 8 * 1024 * 1024);
    assert!(cache.partition_secret.is_none());
    assert_eq!(cache.tenant_max_share, 1.0);
    assert_eq!(cache.hit_for_miss_ttl, Duration::from_secs(10));
    assert_eq!(cache.max_tags_per_entry, 64);
    assert_eq!(cache.max_tag_bytes, 256);
    assert!(cache.redis.is_none());

    let route = &config.routes[0];
    assert_eq!(route.host, None);
    assert_eq!(route.timeout, Duration::from_secs(30));
    assert_eq!(route.default_ttl, Duration::ZERO);
    assert_eq!(route.max_ttl, None);
    assert_eq!(route.stale_while_revalidate, Duration::ZERO);
    assert_eq!(route.stale_if_error, Duration::ZERO);
    assert_eq!(route.early_refresh_beta, 1.0);
    assert_eq!(route.ttl_jitter, 0.1);
    assert!(route.key_headers.is_empty() && route.tags.is_empty());
    assert!(route.ignore_query_params.is_empty());
    assert!(!route.ignore_client_cache_control);
    assert!(!route.cache_set_cookie);
    assert!(!route.cache_authenticated_stale);

    assert!(config.warm.is_empty());
    assert_eq!(config.warm_settings.rate, 20);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.summary().ends_with("shared tier: none"));
}

#[test]
fn empty_redis_table_gets_its_defaults() {
    let config = ok(&format!("[cache.redis]\n{ROUTE}"), &[]);
    let redis = config.cache.redis.as_ref().unwrap();
    assert!(matches!(&redis.target, RedisTarget::Node(url) if url == "redis://127.0.0.1:6379/0"));
    assert_eq!(redis.key_prefix, "cachet:");
    assert_eq!(redis.op_timeout, Duration::from_millis(50));
    assert_eq!(redis.pool_size, 4);
    assert_eq!(redis.compress_min_bytes, 4 * 1024);
    assert_eq!(redis.max_inflight_writes, 1024);
    assert_eq!(redis.lease_ttl, Duration::ZERO);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn three_typos_give_three_errors() {
    let text = format!(
        "[server]\nlisten_addr = \"127.0.0.1:8080\"\n[cache]\nmemory_max_byte = \"1MiB\"\n\
         {ROUTE}upstreem = \"http://127.0.0.1:9001\"\n"
    );
    let found = problems(&text, &[]);
    let mut found = paths(&found);
    found.sort_unstable();
    assert_eq!(
        found,
        [
            "cache.memory_max_byte",
            "routes[0].upstreem",
            "server.listen_addr"
        ]
    );
}

#[test]
fn independent_problems_are_reported_together() {
    let text = r#"
[server]
drain_timeout = "ten seconds"

[cache]
max_object_bytes = "8 megs"

[[routes]]
name = "products"
path_prefix = "/api/products"
upstream = "ftp://127.0.0.1:9000"

[[routes]]
name = "products"
path_prefix = "/api/other"
upstream = "http://127.0.0.1:9000"
"#;
    let found = problems(text, &[]);
    let mut sorted = paths(&found);
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "cache.max_object_bytes",
            "routes[0].upstream",
            "routes[1].name",
            "server.drain_timeout"
        ]
    );
    let message = |path: &str| &found.iter().find(|e| e.path == path).unwrap().message;
    assert!(message("server.drain_timeout").contains("invalid duration"));
    assert!(message("cache.max_object_bytes").contains("invalid size"));
    assert!(message("routes[0].upstream").contains("http or https"));
    assert!(message("routes[1].name").contains("duplicate"));
    for error in &found {
        let text = error.to_string();
        assert!(text.starts_with(&format!("{}: ", error.path)));
        assert!(!text.ends_with('.'), "{text}");
    }
}

#[test]
fn env_overrides_scalars_and_the_redis_target() {
    let config = ok(
        ROUTE,
        &[
            ("CACHET__SERVER__LISTEN", "0.0.0.0:8081"),
            ("CACHET__ADMIN__TOKEN", "s3cret"),
            ("cachet__cache__partition_secret", "k3y"),
            ("CACHET__CACHE__REDIS__URL", "redis://10.0.0.5:6379/1"),
            ("HOME", "/root"),
        ],
    );
    assert_eq!(config.server.listen, addr("0.0.0.0:8081"));
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    assert_eq!(config.cache.partition_secret.as_deref(), Some("k3y"));
    let redis = config.cache.redis.as_ref().unwrap();
    assert!(matches!(&redis.target, RedisTarget::Node(url) if url == "redis://10.0.0.5:6379/1"));
    let summary = config.summary();
    assert!(
        !summary.contains("s3cret") && !summary.contains("k3y") && !summary.contains("10.0.0.5")
    );

    let config = ok(
        &format!("[cache.redis]\nkey_prefix = \"a:\"\n{ROUTE}"),
        &[(
            "CACHET__CACHE__REDIS__CLUSTER",
            "redis://10.0.0.1:7000, redis://10.0.0.2:7000",
        )],
    );
    let redis = config.cache.redis.as_ref().unwrap();
    assert_eq!(redis.key_prefix, "a:");
    match &redis.target {
        RedisTarget::Cluster(nodes) => {
            assert_eq!(nodes, &["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
        }
        other => panic!("expected a cluster, got {other:?}"),
    }
    assert!(
        config
            .summary()
            .ends_with("shared tier: redis cluster (2 nodes)")
    );
}

#[test]
fn env_cannot_set_routes_or_unknown_keys() {
    let found = problems(
        ROUTE,
        &[
            ("CACHET__ROUTES__0__UPSTREAM", "http://evil"),
            ("CACHET__SERVER__LISTEN_ADDR", "0.0.0.0:1"),
        ],
    );
    assert_eq!(
        found,
        [
            FieldError {
                path: "CACHET__ROUTES__0__UPSTREAM".into(),
                message: "routes come from the file only".into(),
            },
            FieldError {
                path: "CACHET__SERVER__LISTEN_ADDR".into(),
                message: "unknown key".into(),
            },
        ]
    );
}

#[test]
fn non_loopback_admin_needs_a_token() {
    let text = format!("[admin]\nlisten = \"0.0.0.0:9091\"\n{ROUTE}");
    let found = problems(&text, &[]);
    assert_eq!(paths(&found), ["admin.token"]);

    let config = ok(&text, &[("CACHET__ADMIN__TOKEN", "s3cret")]);
    assert_eq!(config.admin.listen, addr("0.0.0.0:9091"));
}

#[test]
fn toml_syntax_error_is_one_error() {
    let found = problems("[server\nlisten = \"127.0.0.1:8080\"\n", &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "file");
    assert!(found[0].message.contains("line 1"), "{}", found[0].message);
}
