//! Decoders fed what they should never see (issue 10, "Hardening"), through the public API:
//! the config loader on random TOML-ish text, mutated configs and random environment
//! overrides (a typed error listing problems, or a config; never a panic), tag bounds through
//! the whole proxy (an origin naming random tags: an entry never keeps more tags or longer
//! ones than configured), and the nasty inputs kept as files in `tests/corpus/`
//! (`config_toml`, `blobs`, `targets`; `purge_json` and `tags` are run inside the crate, where
//! their parsers live). Corpus files are named `ok-*` (must be accepted) or `err-*` (must be
//! refused with a typed error).

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use cachet::cache::codec::decode;
use cachet::cache::{CacheKey, CodecError, FORMAT_VERSION, PartitionHasher, Target};
use cachet::clock::ManualClock;
use cachet::config::{ConfigError, FieldError, from_toml_str, load};
use cachet::proxy::{OriginClient, ProxyService};
use cachet::purge::is_automatic_tag;
use cachet::telemetry::Metrics;
use cachet::tiers::{MemoryTier, Tier as _, TieredOptions, Tiers};
use http::{HeaderMap, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use tower::ServiceExt as _;

use support::{Origin, Reply, Seen};

fn corpus(dir: &str) -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 file name")
                .to_owned();
            (name, path)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "only {} files in {}",
        files.len(),
        dir.display()
    );
    files
}

/// Whether a corpus file must be accepted.
fn expects_ok(name: &str) -> bool {
    match name.split('-').next() {
        Some("ok") => true,
        Some("err") => false,
        _ => panic!("{name}: corpus files are named ok-* or err-*"),
    }
}

// ---------------------------------------------------------------------------------------------
// Config loader

/// A refused config lists at least one problem, each with a field path and a message, on one
/// line each (what `cachet check` prints).
fn assert_problems(problems: &[FieldError], what: &str) {
    assert!(!problems.is_empty(), "{what}: refused without a problem");
    for problem in problems {
        assert!(!problem.path.is_empty(), "{what}: a problem without a path");
        assert!(
            !problem.message.is_empty(),
            "{what}: {}: no message",
            problem.path
        );
        assert!(
            !problem.to_string().contains('\n'),
            "{what}: a problem on several lines: {problem}"
        );
    }
}

fn check_config_text(text: &str, env: Vec<(String, String)>) -> Result<(), TestCaseError> {
    match from_toml_str(text, env) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid(problems)) => {
            assert_problems(&problems, "random config");
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not a validation error: {other}"
        ))),
    }
}

/// Keys of every section, current and made up.
const KEYS: &[&str] = &[
    "listen",
    "worker_threads",
    "drain_timeout",
    "header_read_timeout",
    "idle_timeout",
    "max_connections",
    "max_header_bytes",
    "max_body_bytes",
    "trusted_proxies",
    "token",
    "level",
    "format",
    "access_log",
    "tenant_label_header",
    "tenant_labels",
    "memory_max_bytes",
    "max_object_bytes",
    "partition_secret",
    "tenant_max_share",
    "hit_for_miss_ttl",
    "max_tags_per_entry",
    "max_tag_bytes",
    "url",
    "cluster",
    "key_prefix",
    "op_timeout",
    "pool_size",
    "compress_min_bytes",
    "max_inflight_writes",
    "lease_ttl",
    "name",
    "path_prefix",
    "host",
    "upstream",
    "timeout",
    "default_ttl",
    "max_ttl",
    "stale_while_revalidate",
    "stale_if_error",
    "early_refresh_beta",
    "ttl_jitter",
    "key_headers",
    "tags",
    "ignore_query_params",
    "ignore_client_cache_control",
    "cache_set_cookie",
    "cache_authenticated_stale",
    "headers",
    "rate",
    "unknown_key",
    "\"quoted key\"",
    "a.b.c",
    "",
];

const SECTIONS: &[&str] = &[
    "[server]",
    "[admin]",
    "[log]",
    "[metrics]",
    "[cache]",
    "[cache.redis]",
    "[[routes]]",
    "[[warm]]",
    "[warm_settings]",
    "[routes]",
    "[[server]]",
    "[cache.redis.extra]",
    "[]",
    "[unknown]",
];

/// Values of every TOML type, with the classics: huge and negative numbers, NaN, infinities,
/// durations and sizes out of range, NUL and control escapes, unterminated strings.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "\"10s\"", "\"0s\"", "\"-1s\"", "\"1.5s\"", "\"99999999999999999999d\"", "\"1y\"",
            "\"64KiB\"", "\"0B\"", "\"-1KiB\"", "\"18446744073709551616B\"", "\"1EiB\"", "\"1.5MiB\"",
            "\"127.0.0.1:0\"", "\"127.0.0.1:99999\"", "\"[::1]:0\"", "\"http://127.0.0.1:1\"",
            "\"ftp://x\"", "\"http://user:pw@h/p?q\"", "\"redis://127.0.0.1:1/0\"", "\"/\"", "\"\"",
            "\"x-tenant-id\"", "\"authorization\"", "\"bad header\"", "\"\\u0000\"", "\"\\u0007\"",
            "\"a\\nb\"", "'literal'", "\"\"\"multi\nline\"\"\"", "\"unterminated", "\"\\x41\"",
            "0", "-1", "1", "65535", "9223372036854775807", "9223372036854775808",
            "-9223372036854775809", "1e400", "-1e400", "nan", "inf", "-inf", "0.5", "1.0", "2.0",
            "1_000", "0x10", "0o7", "0b1", "true", "false", "[]", "[1, \"a\"]",
            "[\"x-tenant-id\", \"x-tenant-id\"]", "[[]]", "{}", "{ a = 1 }",
            "{ \"x-tenant-id\" = \"acme\" }", "1979-05-27T07:32:00Z", "",
        ])
        .prop_map(str::to_owned),
        1 => "\"[ -~]{0,16}\"".prop_map(|s| s.replace('\\', "/")),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| format!("{n:?}")),
    ]
}

/// TOML-ish text: section headers, `key = value` lines of the real keys (repeated, misplaced,
/// of the wrong type), comments, stray brackets and quotes, and any characters.
fn toml_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        2 => prop::sample::select(SECTIONS.to_vec()).prop_map(str::to_owned),
        6 => (prop::sample::select(KEYS.to_vec()), toml_value())
            .prop_map(|(key, value)| format!("{key} = {value}")),
        1 => prop::sample::select(vec![
            "# comment", "", "=", "[", "]]", "\"", "key", "key =", "= value", "\u{feff}",
            "\0", "\r", "a = 1 = 2", "[server] x = 1",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,20}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// A valid config, as lines, that mutations start from.
const VALID: &[&str] = &[
    "[server]",
    "listen = \"127.0.0.1:0\"",
    "drain_timeout = \"2s\"",
    "max_body_bytes = \"1MiB\"",
    "trusted_proxies = [\"10.0.0.0/8\"]",
    "[admin]",
    "listen = \"127.0.0.1:0\"",
    "[log]",
    "level = \"info\"",
    "[metrics]",
    "tenant_labels = [\"acme\"]",
    "[cache]",
    "memory_max_bytes = \"64MiB\"",
    "max_object_bytes = \"1MiB\"",
    "partition_secret = \"s\"",
    "tenant_max_share = 0.5",
    "[cache.redis]",
    "url = \"redis://127.0.0.1:6379/0\"",
    "op_timeout = \"50ms\"",
    "[[routes]]",
    "name = \"products\"",
    "path_prefix = \"/api/products\"",
    "upstream = \"http://127.0.0.1:9000\"",
    "default_ttl = \"60s\"",
    "key_headers = [\"x-tenant-id\"]",
    "tags = [\"products\"]",
    "[[routes]]",
    "name = \"me\"",
    "path_prefix = \"/api/me\"",
    "upstream = \"http://127.0.0.1:9000\"",
    "key_headers = [\"authorization\"]",
    "[[warm]]",
    "url = \"/api/products/top\"",
    "headers = { \"x-tenant-id\" = \"acme\" }",
];

#[derive(Debug, Clone)]
enum Mutation {
    Keep,
    Drop,
    Duplicate,
    Value(String),
    Key(String),
    Insert(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        12 => Just(Mutation::Keep),
        1 => Just(Mutation::Drop),
        1 => Just(Mutation::Duplicate),
        2 => toml_value().prop_map(Mutation::Value),
        1 => prop::sample::select(KEYS.to_vec()).prop_map(|k| Mutation::Key(k.to_owned())),
        1 => toml_text().prop_map(Mutation::Insert),
    ]
}

fn mutate(mutations: &[Mutation]) -> String {
    let mut out = Vec::new();
    for (line, mutation) in VALID.iter().zip(mutations.iter().cycle()) {
        let (key, value) = line.split_once(" = ").unwrap_or((line, ""));
        match mutation {
            Mutation::Keep => out.push((*line).to_owned()),
            Mutation::Drop => {}
            Mutation::Duplicate => {
                out.push((*line).to_owned());
                out.push((*line).to_owned());
            }
            Mutation::Value(new) if !value.is_empty() => out.push(format!("{key} = {new}")),
            Mutation::Key(new) if !value.is_empty() => out.push(format!("{new} = {value}")),
            Mutation::Insert(text) => {
                out.push((*line).to_owned());
                out.push(text.clone());
            }
            Mutation::Value(_) | Mutation::Key(_) => out.push((*line).to_owned()),
        }
    }
    out.join("\n")
}

/// Environment overrides: real and made-up paths, values of any shape.
fn env_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            "CACHET__SERVER__LISTEN", "CACHET__SERVER__MAX_CONNECTIONS",
            "CACHET__SERVER__TRUSTED_PROXIES", "CACHET__ADMIN__TOKEN", "CACHET__ADMIN__LISTEN",
            "CACHET__CACHE__MEMORY_MAX_BYTES", "CACHET__CACHE__PARTITION_SECRET",
            "CACHET__CACHE__TENANT_MAX_SHARE", "CACHET__CACHE__REDIS__URL",
            "CACHET__CACHE__REDIS__CLUSTER", "CACHET__CACHE__REDIS__POOL_SIZE",
            "CACHET__LOG__ACCESS_LOG", "CACHET__ROUTES__0__NAME", "CACHET__ROUTES", "CACHET__",
            "CACHET____", "CACHET__SERVER", "CACHET__SERVER__LISTEN__X", "CACHET__UNKNOWN__KEY",
            "cachet__server__listen", "PATH", "HOME",
        ])
        .prop_map(str::to_owned),
        1 => "CACHET__[A-Z_]{0,20}",
    ];
    let value = prop_oneof![
        3 => prop::sample::select(vec![
            "127.0.0.1:0", "", " ", "0", "-1", "1e400", "nan", "true", "yes", "10s", "64KiB",
            "redis://a:1,redis://b:2", ",", ",,", "10.0.0.0/8,::1/128", "[1,2]", "{a=1}",
            "\u{0}", "é", "a\nb",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,16}",
    ];
    prop::collection::vec((name, value), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    /// Random TOML-ish text: a config or every problem, never a panic.
    #[test]
    fn random_toml_text_is_a_typed_answer(text in toml_text()) {
        check_config_text(&text, Vec::new())?;
    }

    /// A valid config with random mutations (values of the wrong type or out of range, keys
    /// renamed, lines dropped, duplicated or interleaved with junk) and random environment
    /// overrides: a config or every problem, never a panic.
    #[test]
    fn mutated_configs_and_overrides_are_a_typed_answer(
        mutations in prop::collection::vec(mutation(), 1..40),
        env in env_pairs(),
    ) {
        check_config_text(&mutate(&mutations), env)?;
    }
}

/// The unmutated base config is valid: the mutations above start from something accepted.
#[test]
fn the_base_config_of_the_mutations_is_valid() {
    if let Err(error) = from_toml_str(&VALID.join("\n"), Vec::new()) {
        match error {
            ConfigError::Invalid(problems) => panic!("{problems:#?}"),
            other => panic!("{other}"),
        }
    }
}

/// `tests/corpus/config_toml/`: duplicate keys and tables, wrong types, huge numbers,
/// BOMs, NUL bytes, invalid UTF-8, deep nesting, extremely long lines; loaded from the file as
/// `cachet check` does.
#[test]
fn corpus_configs_get_their_documented_answer() {
    let mut wrong = Vec::new();
    for (name, path) in corpus("config_toml") {
        let answer = load(&path, Vec::new());
        match (expects_ok(&name), answer) {
            (true, Ok(_)) => {}
            (true, Err(ConfigError::Invalid(problems))) => {
                wrong.push(format!("{name}: refused: {problems:?}"));
            }
            (true, Err(other)) => wrong.push(format!("{name}: refused: {other}")),
            (false, Ok(_)) => wrong.push(format!("{name}: accepted")),
            (false, Err(ConfigError::Invalid(problems))) => assert_problems(&problems, &name),
            // Not UTF-8: the file cannot be read as text.
            (false, Err(ConfigError::Read { source, .. })) => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{name}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Shared-tier blobs

/// `tests/corpus/blobs/`: `ok-v1-*` are blobs of format version 1 (decoded by a binary of that
/// version, refused as older by a later one); `err-*` are refused with the error their name
/// gives after `err-`: `newer`, `older` or `corrupt`.
#[test]
fn corpus_blobs_get_their_documented_answer() {
    const LIMIT: usize = 1 << 20;
    for (name, path) in corpus("blobs") {
        let blob = std::fs::read(&path).expect("a readable corpus file");
        let answer = decode(&blob, LIMIT);
        if let Some(rest) = name.strip_prefix("ok-v1-") {
            if FORMAT_VERSION == 1 {
                let (_, entry) = answer.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    entry.body.starts_with(b"corpus "),
                    "{name} ({rest}): {:?}",
                    entry.body
                );
            } else {
                assert_eq!(answer.err(), Some(CodecError::Older(1)), "{name}");
            }
            continue;
        }
        assert!(!expects_ok(&name), "{name}: only ok-v1-* blobs decode");
        let error = match answer {
            Ok(_) => panic!("{name}: decoded"),
            Err(error) => error,
        };
        let kind = name.split('-').nth(1).expect("err-<kind>-...");
        match (kind, &error) {
            ("newer", CodecError::Newer(_))
            | ("older", CodecError::Older(_))
            | ("corrupt", CodecError::Corrupt(_)) => {}
            _ => panic!("{name}: got {error:?}"),
        }
        assert_eq!(error.should_delete(), kind != "newer", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Request targets

/// `tests/corpus/targets/`: one request target per file (the bytes after `GET `), sent with
/// `Host: corpus.test`. `ok-*` normalize to a target that is itself a valid URI and
/// normalizes to itself; `err-*` are refused by `http` or by normalization. A file named
/// `*-as-<n>` (and `.txt`) has a twin: every `ok-<same>-as-<n>` file normalizes to one key.
#[test]
fn corpus_targets_get_their_documented_answer() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("corpus.test"));
    let partition = PartitionHasher::new(None).partition(&[], &HeaderMap::new());
    let mut groups: std::collections::BTreeMap<String, Vec<(String, CacheKey)>> =
        std::collections::BTreeMap::new();
    for (name, path) in corpus("targets") {
        let raw = std::fs::read(&path).expect("a readable corpus file");
        let target = Uri::from_maybe_shared(Bytes::from(raw.clone()))
            .ok()
            .and_then(|uri| Target::from_request(&uri, &headers).ok());
        let Some(target) = target else {
            assert!(!expects_ok(&name), "{name}: refused");
            continue;
        };
        assert!(
            expects_ok(&name),
            "{name}: accepted as {}",
            target.path_and_query()
        );
        let forwarded: Uri = target
            .path_and_query()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: normalized to a non-URI: {e}"));
        let again = Target::from_request(&forwarded, &headers)
            .unwrap_or_else(|e| panic!("{name}: the normalized target is refused: {e}"));
        assert_eq!(again, target, "{name}: normalization is not idempotent");
        let key = CacheKey::build("corpus", &target, &[], &partition);
        if let Some((group, _)) = name.trim_end_matches(".txt").rsplit_once("-as-") {
            groups
                .entry(group.to_owned())
                .or_default()
                .push((name.clone(), key));
        }
    }
    for (group, members) in groups {
        assert!(members.len() >= 2, "{group}: a group of one");
        for (name, key) in &members {
            assert_eq!(*key, members[0].1, "{name} and {} differ", members[0].0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tag bounds through the whole proxy

const MAX_TAGS: usize = 6;
const MAX_TAG_BYTES: usize = 12;
const ROUTE_TAGS: [&str; 2] = ["static", "static-2"];

/// Tags an origin names: short and long, repeated, look-alikes of automatic tags.
fn origin_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9:_-]{1,14}",
        1 => prop::sample::select(vec!["static", "route:test", "url:0", "dup", "dup"]).prop_map(str::to_owned),
        1 => "[a-z]{30,300}",
    ]
}

/// What an origin names in one response: `Surrogate-Key` lines and `Cache-Tag` lines.
fn tag_lines() -> impl Strategy<Value = (Vec<Vec<String>>, Vec<Vec<String>>)> {
    let lines = || prop::collection::vec(prop::collection::vec(origin_tag(), 0..10), 0..3);
    (lines(), lines())
}

/// The origin answers with the tag lines the request carried in `x-sk` / `x-ct` (one request
/// header line per response header line).
async fn tag_echo_origin() -> Origin {
    Origin::start(|seen: &Seen| {
        let mut reply = Reply::ok("tagged").cache_control("max-age=60");
        for (from, to) in [("x-sk", "surrogate-key"), ("x-ct", "cache-tag")] {
            for value in seen.headers.get_all(from) {
                reply = reply.header(to, value.to_str().expect("tags are ASCII"));
            }
        }
        reply
    })
    .await
}

/// An origin naming random tags in random header lines: every stored entry keeps at most
/// `max_tags_per_entry` of the origin's and route's tags, none longer than `max_tag_bytes`,
/// no duplicates, then its automatic tags; nothing that fits is lost while there is room; the
/// client sees no tag header.
#[test]
fn stored_entries_respect_the_tag_bounds() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (origin, service, memory) = runtime.block_on(async {
        let origin = tag_echo_origin().await;
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [cache]\nmemory_max_bytes = \"64MiB\"\nmax_tags_per_entry = {MAX_TAGS}\n\
             max_tag_bytes = {MAX_TAG_BYTES}\n\
             [[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\n\
             tags = [\"{}\", \"{}\"]\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n",
            origin.url(),
            ROUTE_TAGS[0],
            ROUTE_TAGS[1],
        );
        let config = support::proxy::parse(&text);
        let memory = MemoryTier::new(config.cache.memory_max_bytes);
        let service = ProxyService::new(
            &config,
            Tiers::new(memory.clone(), None, TieredOptions::default()),
            OriginClient::new(),
            Arc::new(ManualClock::new(SystemTime::now())),
            1,
            None,
            Metrics::new(&config.metrics),
        );
        (origin, service, memory)
    });
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 1_000,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&tag_lines(), |(sk_lines, ct_lines)| {
        let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(check_tag_bounds(&service, &memory, n, &sk_lines, &ct_lines))
    });
    drop(origin);
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

async fn check_tag_bounds(
    service: &ProxyService,
    memory: &MemoryTier,
    n: usize,
    sk_lines: &[Vec<String>],
    ct_lines: &[Vec<String>],
) -> Result<(), TestCaseError> {
    let path = format!("/tags/{n}");
    let mut request = Request::get(path.as_str()).header("host", "tags.test");
    for line in sk_lines {
        request = request.header("x-sk", line.join(" "));
    }
    for line in ct_lines {
        request = request.header("x-ct", line.join(", "));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    let headers = request.headers().clone();
    let uri = request.uri().clone();
    let response = match service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    prop_assert!(!response.headers().contains_key("surrogate-key"));
    prop_assert!(!response.headers().contains_key("cache-tag"));
    let status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    prop_assert_eq!(status.as_str(), "cachet; fwd=miss; stored");
    let _ = response.into_body().collect().await;

    let target = Target::from_request(&uri, &headers).expect("a valid target");
    let partition = PartitionHasher::new(None).partition(&[], &headers);
    let key = CacheKey::build("test", &target, &[], &partition);
    let entry = memory
        .get(&key)
        .await
        .expect("the memory tier answers")
        .expect("the entry is stored");
    let tags = &entry.tags;
    prop_assert!(tags.len() >= 2, "{tags:?}");
    let (named, automatic) = tags.split_at(tags.len() - 2);
    prop_assert_eq!(automatic[0].as_str(), "route:test");
    prop_assert!(automatic[1].starts_with("url:"), "{tags:?}");
    prop_assert!(
        named.len() <= MAX_TAGS,
        "{} tags kept: {named:?}",
        named.len()
    );
    let offered: Vec<&str> = sk_lines
        .iter()
        .chain(ct_lines)
        .flatten()
        .map(String::as_str)
        .chain(ROUTE_TAGS)
        .collect();
    for (i, tag) in named.iter().enumerate() {
        prop_assert!(tag.len() <= MAX_TAG_BYTES, "{tag:?} kept");
        prop_assert!(offered.contains(&tag.as_str()), "{tag:?} was never named");
        prop_assert!(!named[..i].contains(tag), "{tag:?} kept twice");
        prop_assert!(!is_automatic_tag(tag), "{tag:?} mimics an automatic tag");
    }
    // While there is room, nothing that fits is dropped (but the automatic tags' spellings).
    let mut fitting: Vec<&str> = Vec::new();
    for tag in offered {
        if tag.len() <= MAX_TAG_BYTES && !is_automatic_tag(tag) && !fitting.contains(&tag) {
            fitting.push(tag);
        }
    }
    if fitting.len() <= MAX_TAGS {
        let mut kept: Vec<&str> = named.iter().map(String::as_str).collect();
        kept.sort_unstable();
        fitting.sort_unstable();
        prop_assert_eq!(kept, fitting);
    }
    Ok(())
}
