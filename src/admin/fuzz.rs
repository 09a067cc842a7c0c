//! Randomized purge bodies (issue 10, "Hardening"): arbitrary bytes, JSON-looking token soup,
//! arbitrary JSON values and objects made of the real selectors with values of every type,
//! duplicated and reordered. [`purge::parse`](super::purge::parse) answers a purge request or
//! a 400 naming a field, never panics, never echoes a value (partition values are credentials),
//! and whatever it accepts respects the documented bounds. Also runs the nasty bodies kept in
//! `tests/corpus/purge_json/`: `ok-*` must parse, `err-*` must be a 400.

use std::path::Path;

use http::{HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::purge::{AdminError, MAX_ITEMS, parse};
use crate::purge::{PurgeRequest, PurgeTarget};

/// `[cache] max_tag_bytes` of these tests.
const MAX_TAG_BYTES: usize = 64;
/// Planted in values: no error message may show it.
const SECRET: &str = "s3cr3t-Bearer-xyz";

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// The answer is a purge that respects every documented bound, or a 400 that shows no value.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    match parse(body, MAX_TAG_BYTES) {
        Ok(purge) => check_accepted(&purge),
        Err(error) => {
            let message = error.to_string();
            prop_assert!(
                matches!(error, AdminError::Invalid { .. }),
                "not a field error: {error:?}"
            );
            prop_assert!(
                !message.contains(SECRET),
                "the message shows a value: {message}"
            );
            prop_assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
            Ok(())
        }
    }
}

fn check_accepted(purge: &PurgeRequest) -> Result<(), TestCaseError> {
    let non_empty_list = |items: &[String]| !items.is_empty() && items.len() <= MAX_ITEMS;
    match &purge.target {
        PurgeTarget::Tags(tags) => {
            prop_assert!(non_empty_list(tags));
            for tag in tags {
                prop_assert!(!tag.is_empty() && tag.len() <= MAX_TAG_BYTES, "{tag:?}");
                prop_assert!(
                    !tag.chars().any(|c| c.is_whitespace() || c.is_control()),
                    "{tag:?}"
                );
            }
        }
        PurgeTarget::Urls(urls) => {
            prop_assert!(non_empty_list(urls));
            for url in urls {
                let lower = url.to_ascii_lowercase();
                prop_assert!(
                    url.starts_with('/')
                        || lower.starts_with("http://")
                        || lower.starts_with("https://"),
                    "{url:?}"
                );
                prop_assert!(url.parse::<http::Uri>().is_ok(), "{url:?}");
            }
        }
        PurgeTarget::Prefix(prefix) => {
            prop_assert!(prefix.starts_with('/'));
            prop_assert!(!prefix.chars().any(char::is_control), "{prefix:?}");
            // Already in the normal form of the request paths it is compared with.
            let normal = crate::cache::normalize_path_prefix(prefix);
            prop_assert_eq!(normal.as_ref(), Ok(prefix));
        }
        PurgeTarget::Route(route) => {
            prop_assert!(!route.is_empty() && !route.chars().any(char::is_control));
        }
        PurgeTarget::Partition(pairs) => {
            prop_assert!(!pairs.is_empty() && pairs.len() <= MAX_ITEMS);
            prop_assert!(
                pairs.windows(2).all(|w| w[0].0 < w[1].0),
                "sorted, no duplicates"
            );
            for (name, value) in pairs {
                let header = HeaderName::from_bytes(name.as_bytes());
                prop_assert!(header.is_ok_and(|h| h.as_str() == name), "{name:?}");
                prop_assert!(HeaderValue::from_str(value).is_ok(), "a header value");
            }
        }
        PurgeTarget::All => {}
    }
    Ok(())
}

/// Pieces of JSON-looking text: structure, literals, numbers of every size, escapes (valid,
/// invalid, lone surrogates), selectors as keys, invalid UTF-8, NUL.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => prop::sample::select(vec![
            "{", "}", "[", "]", ":", ",", "\"", " ", "\n", "true", "false", "null",
            "\"tags\"", "\"urls\"", "\"prefix\"", "\"route\"", "\"partition\"", "\"all\"",
            "\"soft\"", "\"x-tenant-id\"", "\"/api/\"", "0", "-0", "1e309", "-1e400",
            "123456789012345678901234567890", "1.5e-400", "0x10", "NaN", "Infinity",
            "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\uZZZZ\"", "\"\\x41\"",
            "\"\\/\"", "\"\t\"", "\u{feff}", "\0", "//", "/*", "'",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        2 => "\"[ -~]{0,12}\"".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..6),
        1 => Just(vec![0xC0, 0xAF]),
        1 => Just(vec![0xFF, 0xFE]),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Any JSON value: strings sometimes carrying [`SECRET`], numbers of every kind, nesting.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[ -~]{0,10}".prop_map(Value::from),
        ".{0,6}".prop_map(Value::from),
        Just(Value::from(SECRET)),
        Just(Value::from(format!("/{SECRET}"))),
        Just(Value::from("x-tenant-id")),
        Just(Value::from("/api/products/42?lang=en")),
        Just(Value::from("http://api.example.com/p")),
        Just(Value::from("a".repeat(MAX_TAG_BYTES + 1))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Object keys: the selectors, `soft`, header names and junk; never [`SECRET`] (keys may be
/// echoed, cut short, as the offending field).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "tags", "urls", "prefix", "route", "partition", "all", "soft", "x-tenant-id",
            "Authorization", "X-Tenant-Id", "bad header", "", "tags ", "TAGS",
        ])
        .prop_map(str::to_owned),
        1 => "[ -~]{0,80}".prop_filter("no secret", |k| !k.contains(SECRET)),
    ]
}

/// A top-level object as JSON text, members in order, duplicates kept (a `Map` would merge
/// them).
fn purge_object() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((key(), json_value()), 0..4).prop_map(|members| {
        let members: Vec<String> = members
            .iter()
            .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
            .collect();
        format!("{{{}}}", members.join(",")).into_bytes()
    })
}

proptest! {
    #![proptest_config(config(5_000))]

    /// Arbitrary bytes: a 400, never a panic.
    #[test]
    fn arbitrary_bytes_are_a_typed_answer(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&body)?;
    }

    /// JSON-looking soup (broken escapes, huge numbers, BOMs, NULs, invalid UTF-8): a typed
    /// answer.
    #[test]
    fn json_soup_is_a_typed_answer(body in json_soup()) {
        check(&body)?;
    }

    /// Any JSON value as the whole body.
    #[test]
    fn arbitrary_json_values_are_a_typed_answer(value in json_value()) {
        check(value.to_string().as_bytes())?;
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Objects made of the real selectors (and junk), with values of every type, in any
    /// order and repeated: a purge within the bounds or a 400 that shows no value.
    #[test]
    fn objects_of_selectors_are_a_typed_answer(body in purge_object()) {
        check(&body)?;
    }


    /// Well-formed selectors with planted secrets and values at the bounds: accepted exactly
    /// when every item is valid, and a rejection never shows the secret.
    #[test]
    fn selector_values_at_the_bounds(
        selector in prop::sample::select(vec!["tags", "urls", "prefix", "route", "partition"]),
        items in prop::collection::vec(prop_oneof![
            "[a-z0-9:_-]{1,8}",
            Just(SECRET.to_owned()),
            Just(format!("/{SECRET}")),
            Just(format!("{SECRET} with space")),
            Just(format!("{SECRET}\u{7}")),
            Just("a".repeat(MAX_TAG_BYTES)),
            Just("a".repeat(MAX_TAG_BYTES + 1)),
            Just(String::new()),
        ], 0..4),
        soft in proptest::option::of(any::<bool>()),
    ) {
        let list = Value::from(items.clone());
        let value = match selector {
            "tags" | "urls" => list,
            "partition" => Value::Object(
                items.iter().enumerate().map(|(i, item)| (format!("x-h{i}"), Value::from(item.as_str()))).collect(),
            ),
            _ => Value::from(items.first().cloned().unwrap_or_default()),
        };
        let mut body = Map::new();
        body.insert(selector.to_owned(), value);
        if let Some(soft) = soft {
            body.insert("soft".to_owned(), Value::Bool(soft));
        }
        check(Value::Object(body).to_string().as_bytes())?;
    }
}

/// Nesting far past serde_json's recursion limit is a 400, not a stack overflow.
#[test]
fn deeply_nested_bodies_are_refused_without_overflowing_the_stack() {
    for (open, close) in [("[", "]"), ("{\"tags\":", "}"), ("{\"a\":[", "]}")] {
        let depth = 50_000;
        let body = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        assert!(
            matches!(
                parse(body.as_bytes(), MAX_TAG_BYTES),
                Err(AdminError::Invalid { .. })
            ),
            "{open}"
        );
    }
}

/// The bodies kept in `tests/corpus/purge_json/`: `ok-*` parse, `err-*` are a 400 that shows
/// no value.
#[test]
fn corpus_bodies_get_their_documented_answer() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/purge_json");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the purge_json corpus") {
        let path = entry.expect("a corpus entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 file name")
            .to_owned();
        let body = std::fs::read(&path).expect("a readable corpus file");
        let answer = parse(&body, MAX_TAG_BYTES);
        if name.starts_with("ok-") {
            let purge = answer.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(check_accepted(&purge).is_ok(), "{name}: {purge:?}");
        } else if name.starts_with("err-") {
            match answer {
                Err(error @ AdminError::Invalid { .. }) => {
                    let message = error.to_string();
                    assert!(!message.contains(SECRET), "{name}: {message}");
                    assert!(message.len() < 512, "{name}: a long message: {message}");
                }
                other => panic!("{name}: expected a 400, got {other:?}"),
            }
        } else {
            panic!("{name}: corpus files are named ok-* or err-*");
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} corpus files in {}", dir.display());
}
