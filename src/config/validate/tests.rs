//! Unit tests of validation through [`validate`]: one table case per bad value, the shape and
//! type errors of sections, checks across routes, warnings and the pure field parsers.
//! Environment overrides are tested in `overrides`.

use super::routes::route_host;
use super::settings::{cidr, log_level};
use super::validate;
use crate::config::{ConfigError, FieldError, Route};

mod overrides;

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
#> server.max_headers | at least 1
[server]
max_headers = 0
#> server.max_headers | at most 10000
[server]
max_headers = 1000000
#> server.max_uri_bytes | invalid size
[server]
max_uri_bytes = "long"
#> server.max_uri_bytes | greater than 0
[server]
max_uri_bytes = "0B"
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
#> routes[0].tags[1] | Cachet's automatic tags
tags = ["ok", "route:other"]
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
#> routes[1].path_prefix | contains a "." or ".." segment
[[routes]]
name = "a"
path_prefix = "/a/../b"
upstream = "http://o"
#> routes[1].path_prefix | which no request path carries
[[routes]]
name = "a"
path_prefix = "/a b"
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
fn path_prefixes_are_kept_in_the_normal_form_of_request_paths() {
    let spelled = MINIMAL.replace("/api/products", "/caf%c3%a9/%7euser");
    let config = validate(&spelled, Vec::new()).expect("a valid prefix");
    assert_eq!(config.routes[0].path_prefix, "/caf%C3%A9/~user");
    // Two spellings of one prefix are one prefix.
    let other = MINIMAL
        .replace("name = \"products\"", "name = \"other\"")
        .replace("/api/products", "/caf%C3%A9/~user");
    assert_eq!(
        paths(&errors(&format!("{spelled}{other}"), &[])),
        ["routes[1].path_prefix"]
    );
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
    assert_eq!(
        route_host("api.example.com.").as_deref(),
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
fn warnings_name_unkeyed_authorization() {
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
        ]
    );
    assert!(validate(MINIMAL, Vec::new()).unwrap().warnings.is_empty());
}

#[test]
fn route_for_tests_has_the_defaults_validation_gives() {
    let text = MINIMAL.replace("127.0.0.1:9000", "127.0.0.1:9");
    let config = validate(&text, Vec::new()).unwrap();
    assert_eq!(
        format!("{:?}", Route::for_tests("products", "/api/products")),
        format!("{:?}", config.routes[0])
    );
}

#[test]
fn request_head_limits_default_to_100_headers_and_8_kib_targets() {
    let config = validate(MINIMAL, Vec::new()).unwrap();
    assert_eq!(config.server.max_headers, 100);
    assert_eq!(config.server.max_uri_bytes, 8 * 1024);
    let text = format!("[server]\nmax_headers = 20\nmax_uri_bytes = \"2KiB\"\n{MINIMAL}");
    let config = validate(&text, env(&[("CACHET__SERVER__MAX_HEADERS", "30")])).unwrap();
    assert_eq!(
        config.server.max_headers, 30,
        "the environment overrides the file"
    );
    assert_eq!(config.server.max_uri_bytes, 2 * 1024);
}

/// A purge watermark outlives every entry it may cover: the longest route's timeout, `max_ttl`
/// and the larger of `max_ttl` and its stale windows, plus the margin; kept forever when a
/// route has no `max_ttl`.
#[test]
fn watermark_retention_covers_the_longest_entry_life() {
    use std::time::Duration;

    let bounded = format!(
        "{MINIMAL}timeout = \"5s\"\nmax_ttl = \"60s\"\nstale_if_error = \"10m\"\n\
         [[routes]]\nname = \"b\"\npath_prefix = \"/b\"\nupstream = \"http://127.0.0.1:9000\"\n\
         max_ttl = \"1h\"\n"
    );
    let config = validate(&bounded, Vec::new()).unwrap();
    let route_b = Duration::from_secs(30 + 3600 + 3600);
    assert_eq!(
        config.watermark_retention(),
        Some(route_b + crate::config::WATERMARK_MARGIN)
    );

    let unbounded = format!(
        "{MINIMAL}max_ttl = \"60s\"\n[[routes]]\nname = \"b\"\npath_prefix = \"/b\"\nupstream = \"http://127.0.0.1:9000\"\n"
    );
    assert_eq!(
        validate(&unbounded, Vec::new())
            .unwrap()
            .watermark_retention(),
        None
    );
}
