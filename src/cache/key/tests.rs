use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use proptest::prelude::*;

use super::*;

fn target(uri: &str, host: &str) -> Result<Target, TargetError> {
    let uri: Uri = uri.parse().expect("test URI parses");
    let mut headers = HeaderMap::new();
    headers.insert(
        HOST,
        HeaderValue::from_str(host).expect("test host is a header value"),
    );
    Target::from_request(&uri, &headers)
}

#[test]
fn targets_are_normalized_before_routing() {
    let cases = [
        ("/a/b", "/a/b", None),
        ("/a/./b", "/a/b", None),
        ("/a/../b", "/b", None),
        ("/../../etc/passwd", "/etc/passwd", None),
        ("/a/b/..", "/a/", None),
        ("/a/%2e%2e/b", "/b", None),
        ("/%41%62c", "/Abc", None),
        ("/caf%c3%a9", "/caf%C3%A9", None),
        ("/x?b=%7e&a=1", "/x", Some("b=~&a=1")),
        ("/", "/", None),
        ("/a//b", "/a//b", None),
    ];
    for (input, path, query) in cases {
        let t = target(input, "example.com").unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(t.path, path, "{input}");
        assert_eq!(t.query.as_deref(), query, "{input}");
    }
}

#[test]
fn encoded_separators_and_bad_encodings_are_refused() {
    for input in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%00b", "/a%zz", "/a%4"] {
        assert!(
            target(input, "example.com").is_err(),
            "{input} must be refused"
        );
    }
}

#[test]
fn path_prefixes_take_the_normal_form_of_request_paths() {
    let cases = [
        ("/", "/"),
        ("/api/products", "/api/products"),
        ("/caf%c3%a9/", "/caf%C3%A9/"),
        ("/café/", "/caf%C3%A9/"),
        ("/%7euser/", "/~user/"),
        ("/a/.well", "/a/.well"),
        ("/a/..b/", "/a/..b/"),
    ];
    for (input, normal) in cases {
        assert_eq!(
            normalize_path_prefix(input).as_deref(),
            Ok(normal),
            "{input}"
        );
    }
}

#[test]
fn path_prefixes_no_request_path_could_start_with_are_refused() {
    let cases = [
        ("api/", PrefixError::NotAbsolute),
        ("", PrefixError::NotAbsolute),
        ("/a b", PrefixError::ForbiddenCharacter),
        ("/a\tb", PrefixError::ForbiddenCharacter),
        ("/a?x=1", PrefixError::ForbiddenCharacter),
        ("/a#top", PrefixError::ForbiddenCharacter),
        ("/a%zz", PrefixError::BadPercentEncoding),
        ("/a%4", PrefixError::BadPercentEncoding),
        ("/a%2Fb", PrefixError::ForbiddenEncoding),
        ("/a\\b", PrefixError::ForbiddenEncoding),
        ("/a/../b", PrefixError::DotSegment),
        ("/a/./", PrefixError::DotSegment),
        ("/a/%2e%2E/", PrefixError::DotSegment),
    ];
    for (input, error) in cases {
        assert_eq!(normalize_path_prefix(input), Err(error), "{input:?}");
    }
}

/// One path segment as a client may spell it: unreserved and sub-delim characters, escapes of
/// either case (of unreserved and reserved bytes alike), and non-ASCII text.
fn spelled_segment() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9_~!$&'()*+,;=:@-]",
        (0x20u8..0x7f)
            .prop_filter("not a separator", |b| !matches!(b, b'/' | b'\\' | b'.'))
            .prop_flat_map(|b| prop_oneof![Just(format!("%{b:02x}")), Just(format!("%{b:02X}"))]),
        Just("é".to_owned()),
    ];
    proptest::collection::vec(piece, 1..4).prop_map(|pieces| pieces.concat())
}

proptest! {
    /// What a prefix is for: every request path written under it, normalized, still starts
    /// with the normalized prefix.
    #[test]
    fn a_normalized_prefix_matches_every_path_written_under_it(
        prefix in proptest::collection::vec(spelled_segment(), 0..3),
        partial in proptest::option::of(spelled_segment()),
        rest in proptest::collection::vec(spelled_segment(), 0..3),
    ) {
        let mut written = format!("/{}", prefix.iter().map(|s| format!("{s}/")).collect::<String>());
        if let Some(partial) = &partial {
            written.push_str(partial);
        }
        let normal = normalize_path_prefix(&written).expect("a prefix of spelled segments is valid");
        let path = format!("{written}{}", rest.join("/"));
        let target = target(&path, "example.com").expect("a path of spelled segments is valid");
        prop_assert!(target.path.starts_with(&normal), "{path} -> {} vs {normal}", target.path);
    }
}

#[test]
fn authority_is_lower_cased_and_the_default_port_dropped() {
    let t = target("/", "API.Example.COM:80").unwrap();
    assert_eq!(
        (t.host.as_str(), t.authority.as_str()),
        ("api.example.com", "api.example.com")
    );
    let t = target("/", "api.example.com:8080").unwrap();
    assert_eq!(t.authority, "api.example.com:8080");
    // The DNS root's empty label names the same host.
    for spelled in ["api.example.com.", "API.example.com.:80"] {
        let t = target("/", spelled).unwrap();
        assert_eq!(
            (t.host.as_str(), t.authority.as_str()),
            ("api.example.com", "api.example.com"),
            "{spelled}"
        );
    }
    assert_eq!(
        target("/", "api.example.com.:8080").unwrap().authority,
        "api.example.com:8080"
    );
    for bad in ["", "user@host", "a b", "host:port"] {
        assert!(target("/", bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn absolute_form_uses_its_own_authority() {
    let uri: Uri = "http://Other.example/p".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(HOST, HeaderValue::from_static("ignored.example"));
    let t = Target::from_request(&uri, &headers).unwrap();
    assert_eq!(t.authority, "other.example");
}

fn tenant_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// Pinned so that a change of the key scheme (which orphans every shared-tier entry) is a
/// deliberate decision, not an accident.
#[test]
fn key_scheme_is_pinned() {
    let hasher = PartitionHasher::new(Some("secret"));
    let partition = hasher.partition(&[], &HeaderMap::new());
    let key = CacheKey::build(
        "products",
        &target("/p?b=2&a=1", "example.com").unwrap(),
        &[],
        &partition,
    );
    assert_eq!(key.to_string().len(), 64);
    let again = CacheKey::build(
        "products",
        &target("/p?a=1&b=2", "example.com").unwrap(),
        &[],
        &partition,
    );
    assert_eq!(key, again);
    assert_eq!(
        key.to_string(),
        CacheKey::build(
            "products",
            &target("/p?a=1&b=2", "EXAMPLE.com:80").unwrap(),
            &[],
            &partition
        )
        .to_string()
    );
}

/// The key as it was first defined: a BLAKE3 stream of length-prefixed fields. `build` lays
/// the same bytes out in one buffer; any other byte would orphan every shared-tier entry.
fn streamed_key(route: &str, target: &Target, ignore: &[String], partition: &Partition) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cachet key v1");
    for field in [route, &target.authority, &target.path] {
        hasher.update(&(field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    let params = sorted_query(target.query.as_deref(), ignore);
    hasher.update(&(params.len() as u64).to_le_bytes());
    for param in params {
        hasher.update(&(param.len() as u64).to_le_bytes());
        hasher.update(param.as_bytes());
    }
    hasher.update(&partition.id.0);
    hasher.finalize().to_hex().to_string()
}

#[test]
fn keys_are_the_bytes_of_the_streamed_definition() {
    let hasher = PartitionHasher::new(Some("secret"));
    let tenant = [HeaderName::from_static("x-tenant-id")];
    let partitions = [
        hasher.partition(&[], &HeaderMap::new()),
        hasher.partition(&tenant, &tenant_headers(&[("x-tenant-id", "acme")])),
    ];
    let ignore = ["utm_source".to_owned()];
    for (path, host) in [
        ("/", "example.com"),
        ("/p?b=2&a=1", "example.com:8080"),
        ("/a/b%20c?x=1&&utm_source=mail&x=0", "api.example.com"),
        ("/p?", "h"),
    ] {
        let target = target(path, host).unwrap();
        for partition in &partitions {
            assert_eq!(
                CacheKey::build("products", &target, &ignore, partition).to_string(),
                streamed_key("products", &target, &ignore, partition),
                "{path} on {host}"
            );
        }
    }
    let pinned = CacheKey::build(
        "products",
        &target("/p?b=2&a=1", "example.com").unwrap(),
        &[],
        &partitions[0],
    );
    assert_eq!(
        pinned.to_string(),
        "d780ade72cc658a8b70fd91637818f16d98620590e77cc87bac5ebe9d8fc9a6a"
    );
}

#[test]
fn absent_key_header_is_its_own_partition() {
    let hasher = PartitionHasher::new(None);
    let key_headers = [HeaderName::from_static("x-tenant-id")];
    let none = hasher.partition(&key_headers, &HeaderMap::new());
    let empty = hasher.partition(&key_headers, &tenant_headers(&[("x-tenant-id", "")]));
    let acme = hasher.partition(&key_headers, &tenant_headers(&[("x-tenant-id", "acme")]));
    assert_ne!(none.id, empty.id);
    assert_ne!(none.id, acme.id);
    assert_ne!(empty.id, acme.id);
    assert!(none.parts.is_empty());
    assert_eq!(acme.parts.len(), 1);
}

#[test]
fn credentials_mark_the_partition() {
    let hasher = PartitionHasher::new(None);
    let with = hasher.partition(&[], &tenant_headers(&[("authorization", "Bearer a")]));
    let without = hasher.partition(&[], &HeaderMap::new());
    assert!(with.had_credentials && !with.credential);
    assert_ne!(with.id, without.id);
    let per_credential = hasher.partition(
        &[AUTHORIZATION],
        &tenant_headers(&[("authorization", "Bearer a")]),
    );
    assert!(per_credential.credential);
}

#[test]
fn partition_fingerprints_depend_on_the_secret_and_never_show_the_value() {
    let key_headers = [HeaderName::from_static("authorization")];
    let headers = tenant_headers(&[("authorization", "Bearer tok3n-value")]);
    let a = PartitionHasher::new(Some("one")).partition(&key_headers, &headers);
    let b = PartitionHasher::new(Some("two")).partition(&key_headers, &headers);
    assert_ne!(a.id, b.id);
    let shown = format!("{a:?} {} {}", a.id, a.parts[0].1);
    assert!(!shown.contains("tok3n"), "{shown}");
}

#[test]
fn ignored_query_parameters_do_not_split_the_key() {
    let hasher = PartitionHasher::new(None);
    let p = hasher.partition(&[], &HeaderMap::new());
    let ignore = vec!["utm_source".to_owned()];
    let a = CacheKey::build(
        "r",
        &target("/x?id=1&utm_source=mail", "h").unwrap(),
        &ignore,
        &p,
    );
    let b = CacheKey::build("r", &target("/x?id=1", "h").unwrap(), &ignore, &p);
    let c = CacheKey::build("r", &target("/x?id=2", "h").unwrap(), &ignore, &p);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

/// Parameter cloaking and order tricks: what an origin may read differently is keyed apart.
#[test]
fn repeated_parameters_keep_their_order_and_cloaked_ones_stay_keyed() {
    let hasher = PartitionHasher::new(None);
    let p = hasher.partition(&[], &HeaderMap::new());
    let ignore = vec!["utm_source".to_owned()];
    let key = |uri: &str| CacheKey::build("r", &target(uri, "h").unwrap(), &ignore, &p);
    // The first (or last) `id` differs: an origin answers these differently.
    assert_ne!(key("/x?id=1&id=2"), key("/x?id=2&id=1"));
    assert_eq!(key("/x?id=1&b=3&id=2"), key("/x?b=3&id=1&id=2"));
    // An origin splitting on `;` reads `id=2` inside the ignored parameter.
    assert_ne!(key("/x?id=1&utm_source=x;id=2"), key("/x?id=1"));
    assert_eq!(key("/x?id=1&utm_source=x"), key("/x?id=1"));
    // `;` is not a separator for the key: these are different values of `a`.
    assert_ne!(key("/x?a=1;b=2"), key("/x?b=2;a=1"));
    // An encoded `&` is data, not a separator.
    assert_ne!(key("/x?a=1%26b=2"), key("/x?a=1&b=2"));
}

proptest! {
    /// The order of differently named parameters never changes a key (repeated names keep
    /// theirs: see `repeated_parameters_keep_their_order_and_cloaked_ones_stay_keyed`).
    #[test]
    fn query_order_never_changes_a_key(
        params in proptest::collection::btree_map("[a-z]{1,3}", "[a-z0-9]{0,3}", 0..6),
        seed in any::<u64>(),
    ) {
        let params: Vec<(String, String)> = params.into_iter().collect();
        let hasher = PartitionHasher::new(None);
        let p = hasher.partition(&[], &HeaderMap::new());
        let join = |ps: &[(String, String)]| ps.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut shuffled = params.clone();
        // A deterministic shuffle driven by the seed.
        let len = shuffled.len();
        if len > 1 {
            for i in 0..len {
                let j = usize::try_from(seed.rotate_left(u32::try_from(i).unwrap()) % (len as u64)).unwrap();
                shuffled.swap(i, j);
            }
        }
        let a = CacheKey::build("r", &target(&format!("/p?{}", join(&params)), "h").unwrap(), &[], &p);
        let b = CacheKey::build("r", &target(&format!("/p?{}", join(&shuffled)), "h").unwrap(), &[], &p);
        prop_assert_eq!(a, b);
    }

    /// Distinct partitions never share a key for the same URL.
    #[test]
    fn distinct_partitions_never_share_a_key(a in "[ -~]{0,12}", b in "[ -~]{0,12}", with_auth in any::<bool>()) {
        prop_assume!(a.trim() != b.trim());
        let hasher = PartitionHasher::new(Some("s"));
        let key_headers = [HeaderName::from_static("x-tenant-id")];
        let headers_for = |tenant: &str| {
            let mut h = tenant_headers(&[("x-tenant-id", tenant.trim())]);
            if with_auth {
                h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
            }
            h
        };
        let t = target("/same", "h").unwrap();
        let pa = hasher.partition(&key_headers, &headers_for(&a));
        let pb = hasher.partition(&key_headers, &headers_for(&b));
        prop_assert_ne!(&pa.id, &pb.id);
        prop_assert_ne!(CacheKey::build("r", &t, &[], &pa), CacheKey::build("r", &t, &[], &pb));
    }

    /// Normalization never panics, and is idempotent: a normalized target normalizes to itself.
    #[test]
    fn normalization_never_panics_and_is_idempotent(path in "/[a-zA-Z0-9%./_~-]{0,40}") {
        if let Ok(uri) = path.parse::<Uri>() {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_static("h"));
            if let Ok(t) = Target::from_request(&uri, &headers) {
                let again = Target::from_request(&t.path.parse::<Uri>().unwrap(), &headers).unwrap();
                prop_assert_eq!(again.path, t.path);
            }
        }
    }
}

#[test]
fn the_origin_path_is_the_base_then_path_and_query_in_an_exact_buffer() {
    let with_query = target("/a/b?y=2&x=1", "h").expect("routable");
    let without = target("/a/b", "h").expect("routable");
    for (t, base, expected) in [
        (&with_query, "", "/a/b?y=2&x=1"),
        (&with_query, "/v1", "/v1/a/b?y=2&x=1"),
        (&without, "/v1", "/v1/a/b"),
        (&without, "", "/a/b"),
    ] {
        let out = t.path_and_query_under(base);
        assert_eq!(out, expected);
        // No spare room: `Bytes::from` takes the buffer without copying it.
        assert_eq!(out.capacity(), out.len(), "{expected}");
    }
    assert_eq!(with_query.path_and_query(), "/a/b?y=2&x=1");
}

/// A route without key headers gets one of two precomputed partitions; each must be the hash
/// the streamed definition gives, or every such key (and the shared tier's entries) would move.
#[test]
fn the_partition_without_key_headers_is_the_streamed_definitions() {
    let hasher = PartitionHasher::new(Some("secret"));
    let mut with_credentials = HeaderMap::new();
    with_credentials.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
    for (headers, had) in [(HeaderMap::new(), 0u8), (with_credentials, 1)] {
        let mut streamed = blake3::Hasher::new();
        streamed.update(b"cachet partition v1");
        streamed.update(&[had]);
        let partition = hasher.partition(&[], &headers);
        assert_eq!(partition.id.0, *streamed.finalize().as_bytes());
        assert_eq!(partition.had_credentials, had == 1);
        assert!(!partition.credential);
        assert!(partition.parts.is_empty());
    }
}
