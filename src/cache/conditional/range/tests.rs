use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::cache::entry::EntryTimes;
use crate::cache::key::Fingerprint;

fn entry(body: &'static [u8], content_type: Option<&'static str>) -> Entry {
    let mut headers = HeaderMap::new();
    headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let stored_at = SystemTime::UNIX_EPOCH;
    Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers,
        body: Bytes::from_static(body),
        partition: Fingerprint([0; 32]),
        tags: Vec::new(),
        times: EntryTimes {
            stored_at,
            initial_age: Duration::ZERO,
            fresh_until: stored_at,
            stale_while_revalidate_until: stored_at,
            stale_if_error_until: stored_at,
            keep_until: stored_at,
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        },
    }
}

fn range(first: u64, last: u64) -> ByteRange {
    ByteRange { first, last }
}

#[test]
fn resolve_examples_rfc_9110_14_1_2() {
    use Resolution::{Ignore, Satisfiable, Unsatisfiable};
    let cases: Vec<(&str, u64, Resolution)> = vec![
        ("bytes=0-499", 10_000, Satisfiable(vec![range(0, 499)])),
        ("bytes=-500", 10_000, Satisfiable(vec![range(9500, 9999)])),
        ("bytes=9500-", 10_000, Satisfiable(vec![range(9500, 9999)])),
        (
            "bytes=0-0,-1",
            10_000,
            Satisfiable(vec![range(0, 0), range(9999, 9999)]),
        ),
        (
            "bytes=500-600,601-999",
            10_000,
            Satisfiable(vec![range(500, 999)]),
        ),
        (
            "bytes=500-700,601-999",
            10_000,
            Satisfiable(vec![range(500, 999)]),
        ),
        ("bytes=0-", 1, Satisfiable(vec![range(0, 0)])),
        ("bytes=0-", 0, Unsatisfiable),
        ("bytes=5-", 5, Unsatisfiable),
        ("bytes=-0", 5, Unsatisfiable),
        ("bytes=5-4", 10, Ignore),
        ("bytes=0--1", 10, Ignore),
        ("bytes=1-2-3", 10, Ignore),
        ("bytes=", 10, Ignore),
        ("none", 10, Ignore),
        ("bytes", 10, Ignore),
    ];
    for (value, length, expected) in cases {
        assert_eq!(resolve(value, length), expected, "{value} of {length}");
    }
}

#[test]
fn one_range_is_a_zero_copy_slice_with_content_range_rfc_9110_15_3_7_1() {
    let entry = entry(b"0123456789", Some("text/plain"));
    let boundary = Boundary::from_u128(7);
    let partial = partial_content(&entry, &[range(2, 5)], &boundary).unwrap();
    assert_eq!(partial.headers[CONTENT_RANGE], "bytes 2-5/10");
    assert_eq!(partial.headers[CONTENT_LENGTH], "4");
    assert_eq!(partial.headers[CONTENT_TYPE], "text/plain");
    assert_eq!(partial.headers[ETAG], "\"v1\"");
    assert_eq!(partial.content_length, 4);
    assert_eq!(partial.body.len(), 1);
    // The slice points into the stored body: no bytes were copied.
    assert_eq!(partial.body[0].as_ptr(), entry.body[2..].as_ptr());
    assert_eq!(partial.into_bytes(), Bytes::from_static(b"2345"));
}

#[test]
fn several_ranges_are_multipart_byteranges_rfc_9110_14_6() {
    let entry = entry(b"0123456789", Some("text/plain"));
    let boundary = Boundary::from_u128(1);
    let partial = partial_content(&entry, &[range(0, 1), range(8, 9)], &boundary).unwrap();
    let b = "cachet-00000000000000000000000000000001";
    assert_eq!(
        partial.headers[CONTENT_TYPE],
        format!("multipart/byteranges; boundary={b}").as_str()
    );
    assert!(!partial.headers.contains_key(CONTENT_RANGE));
    let expected = format!(
        "--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\
         \r\n--{b}\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\
         \r\n--{b}--\r\n"
    );
    assert_eq!(
        partial.headers[CONTENT_LENGTH],
        expected.len().to_string().as_str()
    );
    assert_eq!(partial.content_length, expected.len() as u64);
    assert_eq!(partial.body[1].as_ptr(), entry.body.as_ptr());
    assert_eq!(partial.into_bytes(), Bytes::from(expected));
}

#[test]
fn multipart_parts_omit_content_type_when_the_entry_has_none() {
    let entry = entry(b"0123456789", None);
    let partial =
        partial_content(&entry, &[range(0, 0), range(9, 9)], &Boundary::from_u128(2)).unwrap();
    let text = String::from_utf8(partial.into_bytes().to_vec()).unwrap();
    assert!(!text.contains("Content-Type"));
    assert_eq!(text.matches("Content-Range: ").count(), 2);
}

#[test]
fn partial_content_refuses_ranges_outside_the_body() {
    let entry = entry(b"0123456789", None);
    let boundary = Boundary::from_u128(0);
    assert_eq!(
        partial_content(&entry, &[], &boundary).unwrap_err(),
        RangeError::NoRanges
    );
    for bad in [range(5, 10), range(3, 2), range(u64::MAX, u64::MAX)] {
        let error = partial_content(&entry, &[range(0, 1), bad], &boundary).unwrap_err();
        assert!(matches!(error, RangeError::OutOfBounds { .. }), "{bad:?}");
    }
}

#[test]
fn unsatisfiable_content_range_names_the_length_rfc_9110_15_5_17() {
    assert_eq!(unsatisfiable_content_range(10_000), "bytes */10000");
}

#[test]
fn random_boundaries_differ_and_fit_rfc_2046() {
    let (a, b) = (Boundary::random(), Boundary::random());
    assert_ne!(a, b);
    assert!(a.as_str().len() <= 70);
    assert!(
        a.as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
    );
}

#[test]
fn byte_range_length() {
    assert_eq!(range(0, 0).len(), 1);
    assert_eq!(range(5, 9).len(), 5);
    assert!(!range(5, 9).is_empty());
    assert!(range(9, 5).is_empty());
    assert_eq!(range(9, 5).len(), 0);
}

/// A valid range-spec as `(first-pos, last-pos)`: `a-b` with `a <= b`, `a-`, or `-n`.
fn spec() -> impl Strategy<Value = (Option<u64>, Option<u64>)> {
    prop_oneof![
        (0u64..80, 0u64..80).prop_map(|(a, b)| (Some(a.min(b)), Some(a.max(b)))),
        (0u64..80).prop_map(|first| (Some(first), None)),
        (0u64..80).prop_map(|suffix| (None, Some(suffix))),
    ]
}

/// The bytes a spec asks for in a body of `length`, straight from RFC 9110 §14.1.1.
fn wanted(spec: (Option<u64>, Option<u64>), length: u64) -> Vec<u64> {
    match spec {
        (Some(first), last) => (first..=last.unwrap_or(u64::MAX).min(length.saturating_sub(1)))
            .filter(|&i| i < length)
            .collect(),
        (None, Some(suffix)) => (length.saturating_sub(suffix)..length).collect(),
        (None, None) => Vec::new(),
    }
}

proptest! {
    /// Resolution covers exactly the bytes the specs ask for, in sorted, disjoint ranges.
    #[test]
    fn resolved_ranges_cover_exactly_the_requested_bytes(
        specs in proptest::collection::vec(spec(), 1..=MAX_RANGES),
        length in 0u64..64,
    ) {
        let text = specs
            .iter()
            .map(|(first, last)| {
                format!("{}-{}", first.map(|f| f.to_string()).unwrap_or_default(),
                        last.map(|l| l.to_string()).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut expected: Vec<u64> = specs.iter().flat_map(|s| wanted(*s, length)).collect();
        expected.sort_unstable();
        expected.dedup();
        match resolve(&format!("bytes={text}"), length) {
            Resolution::Satisfiable(ranges) => {
                let covered: Vec<u64> = ranges.iter().flat_map(|r| r.first..=r.last).collect();
                prop_assert_eq!(covered, expected);
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].last + 1 < pair[1].first);
                }
            }
            Resolution::Unsatisfiable => prop_assert!(expected.is_empty()),
            Resolution::Ignore => prop_assert!(false, "valid specs ignored: {}", text),
        }
    }

    /// Multipart bodies carry each range's bytes after its part header, in order.
    #[test]
    fn partial_content_bodies_hold_the_range_bytes(
        cuts in proptest::collection::btree_set(0u64..10, 1..6),
    ) {
        let entry = entry(b"0123456789", Some("text/plain"));
        let cuts: Vec<u64> = cuts.into_iter().collect();
        let ranges: Vec<ByteRange> = cuts.iter().map(|&c| range(c, c)).collect();
        let partial = partial_content(&entry, &ranges, &Boundary::from_u128(3)).unwrap();
        let total: u64 = partial.body.iter().map(|c| c.len() as u64).sum();
        prop_assert_eq!(total, partial.content_length);
        let slices: Vec<&Bytes> = if ranges.len() == 1 {
            partial.body.iter().collect()
        } else {
            partial.body.iter().skip(1).step_by(2).take(ranges.len()).collect()
        };
        for (slice, cut) in slices.iter().zip(&cuts) {
            prop_assert_eq!(slice.as_ref(), &entry.body[*cut as usize..=*cut as usize]);
        }
    }
}
