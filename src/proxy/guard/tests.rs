use http::{HeaderValue, Request};
use proptest::prelude::*;

use super::*;

/// One route keyed on `x-tenant-id`; the default limits: 8 KiB targets, 100 header lines.
fn settings() -> Settings {
    let config = crate::config::from_toml_str(
        r#"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "http://127.0.0.1:9"
key_headers = ["x-tenant-id"]
"#,
        Vec::new(),
    )
    .expect("a valid test config");
    Settings::from_config(&config)
}

/// The `Host` of most test requests.
const HOST: (&str, &str) = ("host", "api.example.com");

/// Header lines of a test request.
type Lines = &'static [(&'static str, &'static str)];

fn request(method: &str, target: &str, version: Version, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .version(version);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).expect("a valid test request")
}

fn check_h1(method: &str, target: &str, headers: &[(&str, &str)]) -> Result<(), GuardError> {
    check(
        &request(method, target, Version::HTTP_11, headers),
        &settings(),
    )
}

#[test]
fn ordinary_requests_pass() {
    let cases: &[(&str, &str, Lines)] = &[
        ("GET", "/a?b=1", &[HOST]),
        ("GET", "/a", &[HOST, ("content-length", "0")]),
        ("HEAD", "/a", &[HOST, ("connection", "keep-alive, x-hop")]),
        ("POST", "/a", &[HOST, ("content-length", "12")]),
        ("POST", "/a", &[HOST, ("transfer-encoding", "Chunked")]),
        ("DELETE", "/a", &[HOST]),
        ("OPTIONS", "/a", &[HOST]),
        // RFC 9112 §3.2.2: absolute-form agreeing with Host, default ports equivalent.
        ("GET", "http://API.example.com/a", &[HOST]),
        ("GET", "http://api.example.com:80/a", &[HOST]),
        (
            "GET",
            "http://api.example.com/a",
            &[("host", "api.example.com:80")],
        ),
        ("GET", "https://api.example.com:443/a", &[HOST]),
        (
            "GET",
            "http://api.example.com:8080/a",
            &[("host", "API.example.com:8080")],
        ),
        ("GET", "http://[::1]:8080/a", &[("host", "[::1]:8080")]),
    ];
    for (method, target, headers) in cases {
        assert_eq!(
            check_h1(method, target, headers),
            Ok(()),
            "{method} {target} {headers:?}"
        );
    }
    // HTTP/2 (and HTTP/1.0) may leave `Host` out: the authority is in the target.
    for version in [Version::HTTP_2, Version::HTTP_10] {
        let h = request("GET", "http://api.example.com/a", version, &[]);
        assert_eq!(check(&h, &settings()), Ok(()), "{version:?}");
    }
}

#[test]
fn target_forms_cachet_does_not_serve_are_refused_rfc9112_3_2() {
    let cases: &[(&str, &str, Lines, GuardError)] = &[
        (
            "CONNECT",
            "api.example.com:443",
            &[HOST],
            GuardError::Connect,
        ),
        (
            "GET",
            "api.example.com:80",
            &[HOST],
            GuardError::AuthorityForm,
        ),
        (
            "GET",
            "ftp://api.example.com/a",
            &[HOST],
            GuardError::Scheme,
        ),
        (
            "GET",
            "http://api.example.com/a",
            &[],
            GuardError::MissingHost,
        ),
        ("GET", "/a", &[HOST, HOST], GuardError::DuplicateHost),
        (
            "GET",
            "http://other.example/a",
            &[HOST],
            GuardError::HostMismatch,
        ),
        (
            "GET",
            "http://api.example.com:8080/a",
            &[HOST],
            GuardError::HostMismatch,
        ),
        (
            "GET",
            "https://api.example.com/a",
            &[("host", "api.example.com:80")],
            GuardError::HostMismatch,
        ),
        (
            "GET",
            "http://api.example.com/a",
            &[("host", "api.example.com.")],
            GuardError::HostMismatch,
        ),
        (
            "GET",
            "http://api.example.com/a",
            &[("host", "api.example.com:x")],
            GuardError::HostMismatch,
        ),
        (
            "GET",
            "http://u@api.example.com/a",
            &[HOST],
            GuardError::HostMismatch,
        ),
    ];
    for (method, target, headers, expected) in cases {
        assert_eq!(
            check_h1(method, target, headers),
            Err(*expected),
            "{method} {target} {headers:?}"
        );
    }
    let h2 = request(
        "GET",
        "http://api.example.com/a",
        Version::HTTP_2,
        &[("host", "other.example")],
    );
    assert_eq!(
        check(&h2, &settings()),
        Err(GuardError::HostMismatch),
        "RFC 9113 §8.3.1"
    );
}

#[test]
fn ambiguous_framing_and_content_on_get_are_refused_rfc9112_6() {
    let cases: &[(&str, Lines, GuardError)] = &[
        (
            "POST",
            &[HOST, ("content-length", "5"), ("content-length", "5")],
            GuardError::BadContentLength,
        ),
        (
            "POST",
            &[HOST, ("content-length", "5, 5")],
            GuardError::BadContentLength,
        ),
        (
            "POST",
            &[HOST, ("content-length", "+5")],
            GuardError::BadContentLength,
        ),
        (
            "POST",
            &[HOST, ("content-length", "")],
            GuardError::BadContentLength,
        ),
        (
            "POST",
            &[HOST, ("content-length", "99999999999999999999999")],
            GuardError::BadContentLength,
        ),
        (
            "POST",
            &[
                HOST,
                ("content-length", "5"),
                ("transfer-encoding", "chunked"),
            ],
            GuardError::ConflictingFraming,
        ),
        (
            "POST",
            &[HOST, ("transfer-encoding", "gzip, chunked")],
            GuardError::TransferCoding,
        ),
        (
            "POST",
            &[
                HOST,
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            GuardError::TransferCoding,
        ),
        (
            "POST",
            &[HOST, ("transfer-encoding", "identity")],
            GuardError::TransferCoding,
        ),
        (
            "GET",
            &[HOST, ("content-length", "3")],
            GuardError::ContentWithoutMeaning,
        ),
        (
            "HEAD",
            &[HOST, ("transfer-encoding", "chunked")],
            GuardError::ContentWithoutMeaning,
        ),
    ];
    for (method, headers, expected) in cases {
        assert_eq!(
            check_h1(method, "/a", headers),
            Err(*expected),
            "{method} {headers:?}"
        );
    }
    let mut request = request("POST", "/a", Version::HTTP_11, &[HOST]);
    request.headers_mut().insert(
        TRANSFER_ENCODING,
        HeaderValue::from_bytes(b"chunked\xff").expect("obs-text is a valid value"),
    );
    assert_eq!(
        check(&request, &settings()),
        Err(GuardError::TransferCoding)
    );
}

#[test]
fn limits_and_connection_options_naming_key_headers_are_enforced() {
    let long = format!("/{}", "a".repeat(8 * 1024));
    assert_eq!(check_h1("GET", &long, &[HOST]), Err(GuardError::UriTooLong));
    assert_eq!(check_h1("GET", &long[..8 * 1024], &[HOST]), Ok(()));
    let long_query = format!("/?q={}", "a".repeat(8 * 1024));
    assert_eq!(
        check_h1("GET", &long_query, &[HOST]),
        Err(GuardError::UriTooLong)
    );

    let names: Vec<String> = (0..100).map(|i| format!("x-h{i}")).collect();
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    headers[0] = HOST;
    assert_eq!(check_h1("GET", "/", &headers), Ok(()));
    headers.push(("x-one-more", "v"));
    assert_eq!(
        check_h1("GET", "/", &headers),
        Err(GuardError::TooManyHeaders)
    );

    for connection in ["x-tenant-id", "keep-alive, X-Tenant-Id", " , x-tenant-id "] {
        assert_eq!(
            check_h1("GET", "/", &[HOST, ("connection", connection)]),
            Err(GuardError::ConnectionNamesKeyHeader),
            "{connection}"
        );
    }
}

proptest! {
    /// The guard never panics, whatever the target and header bytes.
    #[test]
    fn checking_never_panics(
        target in "[ -~]{0,40}",
        headers in proptest::collection::vec(
            (prop::sample::select(vec!["host", "content-length", "transfer-encoding", "connection"]),
             proptest::collection::vec(any::<u8>(), 0..12)),
            0..6,
        ),
        version in prop::sample::select(vec![Version::HTTP_10, Version::HTTP_11, Version::HTTP_2]),
    ) {
        let Ok(uri) = target.parse::<Uri>() else { return Ok(()); };
        let mut request = Request::new(());
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                request.headers_mut().append(name, value);
            }
        }
        let _ = check(&request, &settings());
    }
}
