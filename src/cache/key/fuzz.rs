//! Randomized properties of target normalization and key building (issue 10, "Hardening"),
//! with many cases: arbitrary request targets and hosts never panic; a normalized target is a
//! valid origin-form target that normalizes to itself; equivalent spellings of one target
//! (percent-encoded unreserved characters, hex case, dot-segments, default port, host case)
//! give one key; distinct normalized targets never share one. The table tests and the smaller
//! properties are in `tests.rs`; nasty targets kept as files are run by `tests/decoders.rs`.

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Uri};
use proptest::prelude::*;

use super::{
    CacheKey, PartitionHasher, Target, normalize_authority, normalize_percent,
    normalize_percent_bytewise, parse_authority, remove_dot_segments, resolve_dot_segments,
    sorted_query,
};

/// Cases of the cheap properties below.
const CASES: u32 = 5_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

fn headers_with_host(host: &str) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_str(host).ok()?);
    Some(headers)
}

fn key_of(target: &Target) -> CacheKey {
    let partition = PartitionHasher::new(Some("fuzz")).partition(&[], &HeaderMap::new());
    CacheKey::build("fuzz", target, &["utm_source".to_owned()], &partition)
}

/// Pieces that make request targets interesting: separators, dot-segments plain and encoded,
/// forbidden encodings, overlong UTF-8 (`%c0%af`), broken escapes, mixed-case hex, and any
/// character at all (most of which `http::Uri` refuses first).
fn target_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9~_.-]{1,4}",
        3 => prop::sample::select(vec![
            "/", "/", "/", ".", "..", "./", "../", "?", "&", "=", "#", ";", "+", ":", "@", "!",
            "$", "'", "(", ")", "*", ",", "[", "]", "|", "^", "`", "{", "}", "\"", "<", ">",
            "%", "%%", "%2e", "%2E", "%2e%2e", "%2E%2e", ".%2e", "%2f", "%2F", "%5c", "%5C",
            "%00", "%c0%af", "%C0%AE", "%e0%80%af", "%25", "%252e", "%7e", "%7E", "%41", "%zz",
            "%4", "%g0", "\\", " ", "\t",
        ])
        .prop_map(str::to_owned),
        2 => "%[0-9a-fA-F]{2}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn arbitrary_target() -> impl Strategy<Value = String> {
    prop::collection::vec(target_piece(), 0..24).prop_map(|pieces| format!("/{}", pieces.concat()))
}

fn arbitrary_host() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9-]{1,6}",
        2 => prop::sample::select(vec![
            ".", ":", ":80", ":8080", ":0", ":65535", ":65536", ":99999999999", "@", "[", "]",
            "[::1]", "%", "_", " ", "\t", "..", ":a",
        ])
        .prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

/// One segment of a canonical path: unreserved characters and sub-delimiters, never a
/// dot-segment.
fn canonical_segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9~_.!$'()*+,;=:@-]{1,8}".prop_filter("not a dot-segment", |s| s != "." && s != "..")
}

/// A canonical query parameter: name and value of unreserved characters (distinct names are
/// made by the caller).
fn canonical_value() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9~_.-]{0,6}"
}

/// `text` with each unreserved character percent-encoded where `encode` says so, hex case
/// chosen by `upper`: an equivalent spelling (RFC 3986 §6.2.2.2).
fn respell(text: &str, encode: &[bool], upper: &[bool]) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for (i, c) in text.chars().enumerate() {
        let unreserved = c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
        if unreserved && encode.get(i).copied().unwrap_or(false) {
            let hex = if upper.get(i).copied().unwrap_or(true) {
                format!("%{:02X}", u32::from(c))
            } else {
                format!("%{:02x}", u32::from(c))
            };
            out.push_str(&hex);
        } else {
            out.push(c);
        }
    }
    out
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the target and host, normalization answers Ok or a typed error; an accepted
    /// target is a valid origin-form target (it is forwarded as is) that normalizes to itself,
    /// with the same key.
    #[test]
    fn normalization_never_panics_and_is_idempotent(
        raw in arbitrary_target(),
        host in arbitrary_host(),
    ) {
        let Ok(uri) = raw.parse::<Uri>() else { return Ok(()) };
        let Some(headers) = headers_with_host(&host) else { return Ok(()) };
        let Ok(target) = Target::from_request(&uri, &headers) else { return Ok(()) };
        prop_assert!(target.path.starts_with('/'), "{:?}", target);
        let forwarded = target.path_and_query();
        let again_uri = forwarded.parse::<Uri>();
        prop_assert!(again_uri.is_ok(), "normalized target {forwarded:?} of {raw:?} is not a URI");
        let again_uri = again_uri.expect("checked above");
        let again_headers = headers_with_host(&target.authority);
        prop_assert!(again_headers.is_some(), "authority {:?} is not a header value", target.authority);
        let again = Target::from_request(&again_uri, &again_headers.expect("checked above"));
        prop_assert_eq!(again.as_ref(), Ok(&target), "{:?} normalized twice", raw);
        prop_assert_eq!(key_of(again.as_ref().expect("checked above")), key_of(&target));
    }

    /// Dot-segment removal on any absolute path: never climbs above the root, leaves no
    /// dot-segment, and is idempotent.
    #[test]
    fn dot_segment_removal_is_idempotent(raw in arbitrary_target()) {
        let once = remove_dot_segments(raw.clone());
        prop_assert!(once.starts_with('/'));
        prop_assert!(
            !once.split('/').any(|segment| segment == "." || segment == ".."),
            "{raw:?} → {once:?}"
        );
        prop_assert_eq!(remove_dot_segments(once.clone()), once);
    }

    /// The shortcuts for targets with nothing to normalize give what the general algorithms
    /// give.
    #[test]
    fn shortcuts_agree_with_the_general_algorithms(raw in arbitrary_target(), is_path in any::<bool>()) {
        prop_assert_eq!(remove_dot_segments(raw.clone()), resolve_dot_segments(&raw));
        prop_assert_eq!(normalize_percent(&raw, is_path), normalize_percent_bytewise(&raw, is_path));
    }

    /// The same for hosts, the canonical ones included.
    #[test]
    fn host_shortcut_agrees_with_the_parser(
        host in prop_oneof![arbitrary_host(), "[a-z0-9.-]{1,80}", "[a-zA-Z0-9.:-]{1,12}"],
    ) {
        prop_assert_eq!(normalize_authority(&host), parse_authority(&host));
    }

    /// Percent normalization on any text: a typed error, or a result whose escapes are
    /// upper-case, name no unreserved character, and which normalizes to itself.
    #[test]
    fn percent_normalization_is_idempotent(raw in arbitrary_target(), is_path in any::<bool>()) {
        let Ok(once) = normalize_percent(&raw, is_path) else { return Ok(()) };
        let bytes = once.as_bytes();
        for (i, _) in once.match_indices('%') {
            let hex = &bytes[i + 1..i + 3];
            prop_assert!(hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)), "{once:?}");
            let decoded = u8::from_str_radix(std::str::from_utf8(hex).expect("hex digits"), 16).expect("hex");
            prop_assert!(!(decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded)), "{once:?}");
        }
        let twice = normalize_percent(&once, is_path);
        prop_assert_eq!(twice.as_deref(), Ok(once.as_str()));
    }

    /// Equivalent spellings of one target give one key: unreserved characters percent-encoded
    /// in either hex case, dot-segments (plain or encoded) inserted, parameters reordered, an
    /// ignored parameter added, the host's case changed and its default port spelled out.
    #[test]
    fn equivalent_spellings_give_one_key(
        segments in prop::collection::vec(canonical_segment(), 1..5),
        params in prop::collection::btree_map("[a-z]{1,4}", canonical_value(), 0..5),
        trailing_slash in any::<bool>(),
        encode in prop::collection::vec(any::<bool>(), 64),
        upper in prop::collection::vec(any::<bool>(), 64),
        detours in prop::collection::vec((any::<prop::sample::Index>(), 0..4usize), 0..3),
        order in any::<prop::sample::Index>(),
        with_ignored in any::<bool>(),
        host_case in prop::collection::vec(any::<bool>(), 16),
        default_port in any::<bool>(),
    ) {
        let mut path = format!("/{}", segments.join("/"));
        if trailing_slash {
            path.push('/');
        }
        let pairs: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let canonical = if pairs.is_empty() { path.clone() } else { format!("{path}?{}", pairs.join("&")) };

        // The respelled path: segments encoded, detours inserted before some of them.
        let mut spelled_segments: Vec<String> = segments.iter().map(|s| respell(s, &encode, &upper)).collect();
        for (at, kind) in &detours {
            let detour = ["./", "x/../", "%2e/", "%2E%2e/"][*kind];
            let at = at.index(spelled_segments.len());
            // `%2E%2e/` climbs one up: it needs a segment to undo.
            let detour = if *kind == 3 { format!("undone/{detour}") } else { detour.to_owned() };
            spelled_segments[at] = format!("{detour}{}", spelled_segments[at]);
        }
        let mut spelled_path = format!("/{}", spelled_segments.join("/"));
        if trailing_slash {
            spelled_path.push('/');
        }
        let mut spelled_pairs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", respell(k, &encode, &upper), respell(v, &upper, &encode)))
            .collect();
        if with_ignored {
            spelled_pairs.push("utm_source=newsletter".to_owned());
        }
        if !spelled_pairs.is_empty() {
            let rotate = order.index(spelled_pairs.len());
            spelled_pairs.rotate_left(rotate);
        }
        let spelled = if spelled_pairs.is_empty() {
            spelled_path
        } else {
            format!("{spelled_path}?{}", spelled_pairs.join("&"))
        };
        let host: String = "api.example.com"
            .chars()
            .zip(host_case.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let host = if default_port { format!("{host}:80") } else { host };

        let plain_headers = headers_with_host("api.example.com").expect("a valid host");
        let spelled_headers = headers_with_host(&host).expect("a valid host");
        let plain = Target::from_request(&canonical.parse::<Uri>().expect("canonical target"), &plain_headers);
        let again = Target::from_request(&spelled.parse::<Uri>().expect("respelled target"), &spelled_headers);
        let plain = plain.expect("a canonical target is accepted");
        let again = again.expect("an equivalent spelling is accepted");
        prop_assert_eq!(&plain.path, &path);
        prop_assert_eq!(&again.path, &plain.path, "{} vs {}", canonical, spelled);
        prop_assert_eq!(key_of(&again), key_of(&plain), "{} vs {}", canonical, spelled);
    }

    /// Targets that differ once normalized never share a key.
    #[test]
    fn distinct_normalized_targets_never_share_a_key(a in arbitrary_target(), b in arbitrary_target()) {
        let headers = headers_with_host("h").expect("a valid host");
        let normalize = |raw: &str| raw.parse::<Uri>().ok().and_then(|uri| Target::from_request(&uri, &headers).ok());
        let (Some(a), Some(b)) = (normalize(&a), normalize(&b)) else { return Ok(()) };
        let ignore = ["utm_source".to_owned()];
        let keyed = |t: &Target| {
            let params: Vec<String> = sorted_query(t.query.as_deref(), &ignore)
                .into_iter()
                .map(str::to_owned)
                .collect();
            (t.path.clone(), params)
        };
        if keyed(&a) != keyed(&b) {
            prop_assert_ne!(key_of(&a), key_of(&b), "{:?} vs {:?}", a, b);
        }
    }
}

/// Found by `normalization_never_panics_and_is_idempotent`: `http::Uri` and hyper let raw
/// UTF-8 through, and normalization re-read it byte by byte as Latin-1 (`/¡` became `/Â¡`, then
/// `/Ã\u{82}Â¡`), forwarding another path than the client's. Raw UTF-8 is percent-encoded now,
/// and so equals its encoded spelling.
#[test]
fn raw_utf8_is_percent_encoded_not_reread_as_latin1() {
    let headers = headers_with_host("h").expect("a valid host");
    let raw = Target::from_request(
        &"/caf\u{e9}/\u{a1}?q=\u{65e5}".parse().expect("a URI"),
        &headers,
    )
    .expect("raw UTF-8 is accepted");
    assert_eq!(raw.path, "/caf%C3%A9/%C2%A1");
    assert_eq!(raw.query.as_deref(), Some("q=%E6%97%A5"));
    let encoded = Target::from_request(
        &"/caf%c3%a9/%C2%a1?q=%e6%97%a5".parse().expect("a URI"),
        &headers,
    )
    .expect("the encoded spelling is accepted");
    assert_eq!(encoded, raw);
    assert_eq!(key_of(&encoded), key_of(&raw));
}
