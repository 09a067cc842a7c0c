use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_LOCATION, CONTENT_TYPE, DATE, ETAG,
    EXPIRES, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED, RANGE, SET_COOKIE, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::cache::entry::EntryTimes;
use crate::cache::key::Fingerprint;

/// Last-Modified of the standard entry; its Date is one hour later.
const MODIFIED: &str = "Mon, 01 Jan 2024 00:00:00 GMT";
const BEFORE: &str = "Sun, 31 Dec 2023 23:59:59 GMT";
const AFTER: &str = "Mon, 01 Jan 2024 00:00:01 GMT";
const DATED: &str = "Mon, 01 Jan 2024 01:00:00 GMT";
const LENGTH: u64 = 10_000;

fn at(date: &str) -> SystemTime {
    httpdate::parse_http_date(date).unwrap()
}

fn entry_with(status: StatusCode, headers: &[(HeaderName, &str)], body: Bytes) -> Entry {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    let stored_at = at(DATED);
    Entry {
        meta: Default::default(),
        status,
        headers: map,
        body,
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

fn body(length: u64) -> Bytes {
    (0..length).map(|i| (i % 251) as u8).collect()
}

/// A 200 with a strong ETag, Last-Modified, a Date one hour later and a 10 000-byte body.
fn standard() -> Entry {
    entry_with(
        StatusCode::OK,
        &[
            (ETAG, "\"v1\""),
            (LAST_MODIFIED, MODIFIED),
            (DATE, DATED),
            (CONTENT_TYPE, "application/json"),
        ],
        body(LENGTH),
    )
}

fn request(headers: &[(HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    map
}

/// Request fields from `name: value` lines; `@modified`, `@before`, `@after` and `@dated`
/// stand for the dates above.
fn fields(spec: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    for line in spec.lines().filter(|line| !line.is_empty()) {
        let (name, value) = line.split_once(": ").unwrap();
        let value = match value {
            "@modified" => MODIFIED,
            "@before" => BEFORE,
            "@after" => AFTER,
            "@dated" => DATED,
            other => other,
        };
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn partial(ranges: &[(u64, u64)]) -> Served {
    Served::Partial {
        ranges: ranges
            .iter()
            .map(|&(first, last)| ByteRange { first, last })
            .collect(),
    }
}

const GET: Method = Method::GET;
const HEAD: Method = Method::HEAD;
const POST: Method = Method::POST;

fn run(entry: &Entry, cases: &[(&str, Method, &str, Served)]) {
    for (name, method, spec, expected) in cases {
        let got = evaluate(method, &fields(spec), entry);
        assert_eq!(&got, expected, "case: {name}");
    }
}

#[test]
fn preconditions_follow_rfc_9110_section_13() {
    use Served::{Full, NotModified, PreconditionFailed as Failed};
    #[rustfmt::skip]
    let cases = [
        ("no conditionals", GET, "", Full),
        // §13.1.1 If-Match: strong comparison, `*` holds for any existing representation.
        ("if-match equal", GET, "if-match: \"v1\"", Full),
        ("if-match any", GET, "if-match: *", Full),
        ("if-match list", GET, "if-match: \"x\", \"v1\"", Full),
        ("if-match lines", GET, "if-match: \"x\"\nif-match: \"v1\"", Full),
        ("if-match comma in tag", GET, "if-match: \"a,b\", \"v1\"", Full),
        ("if-match weak", GET, "if-match: W/\"v1\"", Failed),
        ("if-match other", GET, "if-match: \"v2\"", Failed),
        ("if-match unquoted", GET, "if-match: v1", Failed),
        ("if-match empty", GET, "if-match: ", Failed),
        ("if-match junk after", GET, "if-match: \"v1\" x", Failed),
        // §13.1.4 If-Unmodified-Since, only without If-Match.
        ("ius after", GET, "if-unmodified-since: @after", Full),
        ("ius equal", GET, "if-unmodified-since: @modified", Full),
        ("ius before", GET, "if-unmodified-since: @before", Failed),
        ("ius invalid", GET, "if-unmodified-since: yesterday", Full),
        ("ius repeated", GET, "if-unmodified-since: @before\nif-unmodified-since: @before", Full),
        ("ius under if-match", GET, "if-match: *\nif-unmodified-since: @before", Full),
        // §13.1.2 If-None-Match: weak comparison, 304 for GET/HEAD, 412 otherwise.
        ("inm equal", GET, "if-none-match: \"v1\"", NotModified),
        ("inm weak", GET, "if-none-match: W/\"v1\"", NotModified),
        ("inm any", GET, "if-none-match: *", NotModified),
        ("inm list", GET, "if-none-match: \"a\" , ,W/\"v1\"", NotModified),
        ("inm head", HEAD, "if-none-match: \"v1\"", NotModified),
        ("inm post", POST, "if-none-match: \"v1\"", Failed),
        ("inm other", GET, "if-none-match: \"v2\"", Full),
        ("inm malformed", GET, "if-none-match: v1", Full),
        ("inm stops at malformed", GET, "if-none-match: x, \"v1\"", Full),
        // §13.1.3 If-Modified-Since: GET/HEAD only, only without If-None-Match.
        ("ims equal", GET, "if-modified-since: @modified", NotModified),
        ("ims later", GET, "if-modified-since: @after", NotModified),
        ("ims earlier", GET, "if-modified-since: @before", Full),
        ("ims head", HEAD, "if-modified-since: @after", NotModified),
        ("ims post", POST, "if-modified-since: @after", Full),
        ("ims rfc 850", GET, "if-modified-since: Monday, 01-Jan-24 00:00:00 GMT", NotModified),
        ("ims asctime", GET, "if-modified-since: Mon Jan  1 00:00:00 2024", NotModified),
        ("ims invalid", GET, "if-modified-since: soon", Full),
        ("ims repeated", GET, "if-modified-since: @after\nif-modified-since: @after", Full),
        ("ims under inm", GET, "if-none-match: \"v2\"\nif-modified-since: @after", Full),
        // §13.2.2 order: a failed If-Match / If-Unmodified-Since wins over a 304, a 304 over
        // a 206.
        ("if-match first", GET, "if-match: \"v2\"\nif-none-match: \"v1\"", Failed),
        ("ius first", GET, "if-unmodified-since: @before\nif-none-match: *", Failed),
        ("inm before range", GET, "if-none-match: \"v1\"\nrange: bytes=0-1", NotModified),
    ];
    run(&standard(), &cases);
}

#[test]
fn if_match_needs_a_strong_stored_etag_rfc_9110_13_1_1() {
    let weak = entry_with(StatusCode::OK, &[(ETAG, "W/\"v1\"")], body(10));
    let none = entry_with(StatusCode::OK, &[], body(10));
    for entry in [&weak, &none] {
        let headers = request(&[(IF_MATCH, "\"v1\"")]);
        assert_eq!(
            evaluate(&Method::GET, &headers, entry),
            Served::PreconditionFailed
        );
        let any = request(&[(IF_MATCH, "*")]);
        assert_eq!(evaluate(&Method::GET, &any, entry), Served::Full);
    }
    // §13.1.2: weak comparison matches a weak stored tag; `*` matches without any tag.
    let inm = request(&[(IF_NONE_MATCH, "\"v1\"")]);
    assert_eq!(evaluate(&Method::GET, &inm, &weak), Served::NotModified);
    assert_eq!(evaluate(&Method::GET, &inm, &none), Served::Full);
    let any = request(&[(IF_NONE_MATCH, "*")]);
    assert_eq!(evaluate(&Method::GET, &any, &none), Served::NotModified);
}

#[test]
fn if_unmodified_since_is_ignored_without_last_modified_rfc_9110_13_1_4() {
    let entry = entry_with(StatusCode::OK, &[(DATE, DATED)], body(10));
    let headers = request(&[(IF_UNMODIFIED_SINCE, BEFORE)]);
    assert_eq!(evaluate(&Method::GET, &headers, &entry), Served::Full);
}

#[test]
fn if_modified_since_falls_back_to_date_then_storage_time_rfc_9111_4_3_2() {
    let dated = entry_with(StatusCode::OK, &[(DATE, DATED)], body(10));
    let bare = entry_with(StatusCode::OK, &[], body(10));
    for entry in [&dated, &bare] {
        let same = request(&[(IF_MODIFIED_SINCE, DATED)]);
        assert_eq!(evaluate(&Method::GET, &same, entry), Served::NotModified);
        let earlier = request(&[(IF_MODIFIED_SINCE, MODIFIED)]);
        assert_eq!(evaluate(&Method::GET, &earlier, entry), Served::Full);
    }
}

#[test]
fn preconditions_are_ignored_on_non_2xx_entries_rfc_9110_13_2_1() {
    let not_found = entry_with(
        StatusCode::NOT_FOUND,
        &[(ETAG, "\"v1\""), (LAST_MODIFIED, MODIFIED)],
        body(10),
    );
    for headers in [
        vec![(IF_NONE_MATCH, "\"v1\"")],
        vec![(IF_MATCH, "\"v2\"")],
        vec![(IF_MODIFIED_SINCE, AFTER)],
        vec![(IF_UNMODIFIED_SINCE, BEFORE)],
        vec![(RANGE, "bytes=0-1")],
    ] {
        assert_eq!(
            evaluate(&Method::GET, &request(&headers), &not_found),
            Served::Full
        );
    }
}

#[test]
fn ranges_follow_rfc_9110_section_14() {
    use Served::Full;
    let unsatisfiable = || Served::Unsatisfiable {
        complete_length: LENGTH,
    };
    #[rustfmt::skip]
    let cases = [
        // §14.1.2 examples.
        ("first 500", GET, "range: bytes=0-499", partial(&[(0, 499)])),
        ("second 500", GET, "range: bytes=500-999", partial(&[(500, 999)])),
        ("suffix", GET, "range: bytes=-500", partial(&[(9500, 9999)])),
        ("open", GET, "range: bytes=9500-", partial(&[(9500, 9999)])),
        ("first and last", GET, "range: bytes=0-0,-1", partial(&[(0, 0), (9999, 9999)])),
        // §14.1.1: last-pos clamped, a suffix longer than the body takes all of it.
        ("clamped", GET, "range: bytes=9000-20000", partial(&[(9000, 9999)])),
        ("long suffix", GET, "range: bytes=-20000", partial(&[(0, 9999)])),
        ("huge last", GET, "range: bytes=1-99999999999999999999999", partial(&[(1, 9999)])),
        // §14.2: coalescing and reordering are allowed.
        ("adjacent", GET, "range: bytes=500-600,601-999", partial(&[(500, 999)])),
        ("overlapping", GET, "range: bytes=500-700,601-999", partial(&[(500, 999)])),
        ("reordered", GET, "range: bytes=900-999,0-9", partial(&[(0, 9), (900, 999)])),
        ("repeated", GET, "range: bytes=0-9,0-9,0-9", partial(&[(0, 9)])),
        ("one beyond", GET, "range: bytes=0-9,20000-", partial(&[(0, 9)])),
        ("unit case", GET, "range: BYTES=0-1", partial(&[(0, 1)])),
        ("list spaces", GET, "range: bytes= 0-1 ,\t5-6 ,", partial(&[(0, 1), (5, 6)])),
        // §14.1.1: no range overlaps the body.
        ("first-pos at length", GET, "range: bytes=10000-", unsatisfiable()),
        ("beyond", GET, "range: bytes=20000-30000", unsatisfiable()),
        ("zero suffix", GET, "range: bytes=-0", unsatisfiable()),
        // §14.2: an invalid Range, or another unit, is ignored.
        ("last before first", GET, "range: bytes=5-1", Full),
        ("other unit", GET, "range: items=0-5", Full),
        ("no equals", GET, "range: bytes 0-5", Full),
        ("space before equals", GET, "range: bytes =0-5", Full),
        ("not digits", GET, "range: bytes=a-b", Full),
        ("plus sign", GET, "range: bytes=+1-2", Full),
        ("empty set", GET, "range: bytes=", Full),
        ("only commas", GET, "range: bytes=, ,", Full),
        ("bare dash", GET, "range: bytes=-", Full),
        ("one invalid spec", GET, "range: bytes=0-1,x", Full),
        ("repeated field", GET, "range: bytes=0-1\nrange: bytes=2-3", Full),
        // Range is defined for GET only (§14.2).
        ("head", HEAD, "range: bytes=0-1", Full),
        ("post", POST, "range: bytes=0-1", Full),
    ];
    run(&standard(), &cases);
}

#[test]
fn more_than_max_ranges_serves_the_full_response_rfc_9110_14_2() {
    let spec = |n: usize| {
        (0..n)
            .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
            .collect::<Vec<_>>()
            .join(",")
    };
    let entry = standard();
    let at_limit = request(&[(RANGE, &format!("bytes={}", spec(MAX_RANGES)))]);
    match evaluate(&Method::GET, &at_limit, &entry) {
        Served::Partial { ranges } => assert_eq!(ranges.len(), MAX_RANGES),
        other => panic!("expected 206, got {other:?}"),
    }
    let over = request(&[(RANGE, &format!("bytes={}", spec(MAX_RANGES + 1)))]);
    assert_eq!(evaluate(&Method::GET, &over, &entry), Served::Full);
    // Overlapping copies count too: they are what amplification attacks send.
    let same = vec!["0-"; MAX_RANGES + 1].join(",");
    let over = request(&[(RANGE, &format!("bytes={same}"))]);
    assert_eq!(evaluate(&Method::GET, &over, &entry), Served::Full);
}

#[test]
fn if_range_gates_the_range_rfc_9110_13_1_5() {
    use Served::Full;
    let first = || partial(&[(0, 9)]);
    #[rustfmt::skip]
    let cases = [
        ("strong tag", GET, "range: bytes=0-9\nif-range: \"v1\"", first()),
        ("other tag", GET, "range: bytes=0-9\nif-range: \"v2\"", Full),
        ("weak tag", GET, "range: bytes=0-9\nif-range: W/\"v1\"", Full),
        ("exact date", GET, "range: bytes=0-9\nif-range: @modified", first()),
        ("later date", GET, "range: bytes=0-9\nif-range: @after", Full),
        ("garbage", GET, "range: bytes=0-9\nif-range: whenever", Full),
        ("repeated", GET, "range: bytes=0-9\nif-range: \"v1\"\nif-range: \"v1\"", Full),
        ("without range", GET, "if-range: \"v2\"", Full),
    ];
    run(&standard(), &cases);
    // A weak stored tag never matches; a Last-Modified within a second of Date is weak.
    let weak_tag = entry_with(StatusCode::OK, &[(ETAG, "W/\"v1\"")], body(10));
    let weak_date = entry_with(
        StatusCode::OK,
        &[(LAST_MODIFIED, MODIFIED), (DATE, MODIFIED)],
        body(10),
    );
    let by_tag = request(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"v1\"")]);
    assert_eq!(evaluate(&Method::GET, &by_tag, &weak_tag), Served::Full);
    let by_date = request(&[(RANGE, "bytes=0-1"), (IF_RANGE, MODIFIED)]);
    assert_eq!(evaluate(&Method::GET, &by_date, &weak_date), Served::Full);
}

#[test]
fn ranges_apply_only_to_200_entries_rfc_9110_14_2() {
    for status in [
        StatusCode::NON_AUTHORITATIVE_INFORMATION,
        StatusCode::NO_CONTENT,
    ] {
        let entry = entry_with(status, &[], body(10));
        let headers = request(&[(RANGE, "bytes=0-1")]);
        assert_eq!(evaluate(&Method::GET, &headers, &entry), Served::Full);
    }
}

#[test]
fn zero_length_body_has_no_satisfiable_range_rfc_9110_14_1_1() {
    let entry = entry_with(StatusCode::OK, &[], Bytes::new());
    for range in ["bytes=0-", "bytes=-5", "bytes=0-0"] {
        let headers = request(&[(RANGE, range)]);
        assert_eq!(
            evaluate(&Method::GET, &headers, &entry),
            Served::Unsatisfiable { complete_length: 0 },
            "{range}"
        );
    }
}

#[test]
fn content_coded_entries_get_single_ranges_only() {
    let gzip = entry_with(StatusCode::OK, &[(CONTENT_ENCODING, "gzip")], body(100));
    let identity = entry_with(StatusCode::OK, &[(CONTENT_ENCODING, "identity")], body(100));
    let one = request(&[(RANGE, "bytes=0-9")]);
    let two = request(&[(RANGE, "bytes=0-9,50-59")]);
    assert_eq!(evaluate(&Method::GET, &one, &gzip), partial(&[(0, 9)]));
    assert_eq!(evaluate(&Method::GET, &two, &gzip), Served::Full);
    assert_eq!(
        evaluate(&Method::GET, &two, &identity),
        partial(&[(0, 9), (50, 59)])
    );
}

#[test]
fn not_modified_keeps_only_the_fields_of_rfc_9110_15_4_5() {
    let entry = entry_with(
        StatusCode::OK,
        &[
            (CACHE_CONTROL, "max-age=60"),
            (CONTENT_LOCATION, "/a"),
            (DATE, DATED),
            (ETAG, "\"v1\""),
            (EXPIRES, DATED),
            (VARY, "accept"),
            (VARY, "accept-language"),
            (LAST_MODIFIED, MODIFIED),
            (CONTENT_TYPE, "application/json"),
            (CONTENT_LENGTH, "10"),
            (SET_COOKIE, "a=b"),
            (HeaderName::from_static("x-custom"), "1"),
        ],
        body(10),
    );
    let headers = not_modified_headers(&entry.headers);
    let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(
        names,
        [
            "cache-control",
            "content-location",
            "date",
            "etag",
            "expires",
            "vary",
            "last-modified"
        ]
    );
    assert_eq!(headers.get_all(VARY).iter().count(), 2);
    assert_eq!(headers.len(), 8);
}

#[test]
fn served_names_its_status() {
    let cases = [
        (Served::Full, StatusCode::NOT_FOUND),
        (Served::NotModified, StatusCode::NOT_MODIFIED),
        (Served::PreconditionFailed, StatusCode::PRECONDITION_FAILED),
        (partial(&[(0, 1)]), StatusCode::PARTIAL_CONTENT),
        (
            Served::Unsatisfiable { complete_length: 1 },
            StatusCode::RANGE_NOT_SATISFIABLE,
        ),
    ];
    for (served, status) in cases {
        assert_eq!(served.status(StatusCode::NOT_FOUND), status);
    }
}

fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "(bytes|BYTES|items)=[0-9, \\-]{0,30}",
        "(W/)?\"[a-z0-9,]{0,5}\"( ?, ?(W/)?\"[a-z0-9]{0,5}\"){0,3}",
        Just(MODIFIED.to_owned()),
    ]
}

proptest! {
    /// Arbitrary conditional and Range fields never panic, and a 206 always names ranges that
    /// are sorted, disjoint, non-adjacent and inside the body.
    #[test]
    fn evaluate_never_panics_and_ranges_stay_inside_the_body(
        fields in proptest::collection::vec((0usize..6, header_text()), 0..6),
        length in 0u64..64,
        head in any::<bool>(),
    ) {
        let names = [IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, IF_UNMODIFIED_SINCE, IF_RANGE, RANGE];
        let mut headers = HeaderMap::new();
        for (index, value) in &fields {
            headers.append(names[*index].clone(), HeaderValue::from_str(value).unwrap());
        }
        let mut entry = standard();
        entry.body = body(length);
        let method = if head { Method::HEAD } else { Method::GET };
        if let Served::Partial { ranges } = evaluate(&method, &headers, &entry) {
            prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
            for pair in ranges.windows(2) {
                prop_assert!(pair[0].last + 1 < pair[1].first);
            }
            for range in &ranges {
                prop_assert!(range.first <= range.last && range.last < length);
            }
        }
    }
}
