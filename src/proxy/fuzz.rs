//! Randomized tag headers (issue 10, "Hardening"): any number of `Surrogate-Key` (space
//! separated) and `Cache-Tag` (comma separated) field lines with any bytes a header value may
//! hold, beside other headers. [`clean_response`] never panics, returns exactly the non-empty
//! tags the two syntaxes name (a line that is not visible ASCII names none), and leaves none of
//! the consumed headers behind. The bounds on tags per entry and bytes per tag are applied
//! when an entry is built, and checked through the whole proxy in `tests/decoders.rs`. Also
//! runs the header values kept in `tests/corpus/tags/`.

use std::path::Path;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::headers::{CACHE_TAG, SURROGATE_KEY, clean_response};
use crate::cache::policy::CDN_CACHE_CONTROL;

/// The tags one field line names, as DESIGN.md "Tags" states the two syntaxes.
fn expected_tags(name: &HeaderName, value: &HeaderValue) -> Vec<String> {
    let Ok(text) = value.to_str() else {
        return Vec::new();
    };
    if name == SURROGATE_KEY {
        text.split_ascii_whitespace().map(str::to_owned).collect()
    } else {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `clean_response` on `lines` (tag headers and others, in order) and checks the tags
/// and what is left.
fn check(lines: &[(HeaderName, HeaderValue)]) -> Result<(), TestCaseError> {
    let mut headers = HeaderMap::new();
    for (name, value) in lines {
        headers.append(name.clone(), value.clone());
    }
    let tags = clean_response(&mut headers);
    // Surrogate-Key lines come first, then Cache-Tag lines, each in order.
    let mut expected = Vec::new();
    for tag_header in [&SURROGATE_KEY, &CACHE_TAG] {
        for (name, value) in lines.iter().filter(|(name, _)| name == tag_header) {
            expected.extend(expected_tags(name, value));
        }
    }
    prop_assert_eq!(&tags, &expected);
    for tag in &tags {
        prop_assert!(!tag.is_empty());
        prop_assert!(!tag.starts_with(char::is_whitespace) && !tag.ends_with(char::is_whitespace));
    }
    for gone in [&SURROGATE_KEY, &CACHE_TAG, &CDN_CACHE_CONTROL, &header::AGE] {
        prop_assert!(!headers.contains_key(gone), "{gone} left");
    }
    for (name, value) in lines {
        let consumed = [&SURROGATE_KEY, &CACHE_TAG, &CDN_CACHE_CONTROL, &header::AGE];
        if !consumed.contains(&name) {
            prop_assert!(
                headers.get_all(name).iter().any(|v| v == value),
                "{name} lost"
            );
        }
    }
    Ok(())
}

/// Bytes a header value may hold: visible ASCII, obs-text, space and tab, with the tag
/// separators and look-alikes (`;`, non-breaking space, full-width comma) often.
fn value() -> impl Strategy<Value = HeaderValue> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9:_./-]{1,8}".prop_map(String::into_bytes),
        3 => prop::sample::select(vec![
            " ", "  ", "\t", ",", ", ", " ,", ",,", ";", "\"", "=", "*", "%20", "%2C",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(vec!["\u{a0}", "\u{ff0c}", "\u{3000}", "é", "\u{200b}"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(0x80u8..=0xFF, 1..3),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|pieces| {
        HeaderValue::from_bytes(&pieces.concat()).expect("visible bytes, obs-text, SP and HTAB")
    })
}

fn line() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let name = prop_oneof![
        3 => Just(SURROGATE_KEY),
        3 => Just(CACHE_TAG),
        1 => Just(CDN_CACHE_CONTROL),
        1 => Just(header::AGE),
        1 => Just(header::CONTENT_TYPE),
        1 => Just(HeaderName::from_static("x-surrogate-key")),
        1 => Just(HeaderName::from_static("cache-tags")),
    ];
    (name, value())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    /// Any mix of tag headers and others: exactly the named tags, and the tag headers gone.
    #[test]
    fn tag_headers_give_exactly_their_tags(lines in prop::collection::vec(line(), 0..8)) {
        check(&lines)?;
    }
}

/// The header values kept in `tests/corpus/tags/`, each sent as a `Surrogate-Key` and a
/// `Cache-Tag` line; a value `http` refuses as a header value never reaches Cachet.
#[test]
fn corpus_tag_values_give_exactly_their_tags() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/tags");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("the tags corpus") {
        let path = entry.expect("a corpus entry").path();
        let bytes = std::fs::read(&path).expect("a readable corpus file");
        seen += 1;
        let Ok(value) = HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let lines = [
            (SURROGATE_KEY, value.clone()),
            (CACHE_TAG, value.clone()),
            (SURROGATE_KEY, value),
        ];
        if let Err(error) = check(&lines) {
            panic!("{}: {error}", path.display());
        }
    }
    assert!(seen >= 8, "only {seen} corpus files in {}", dir.display());
}
