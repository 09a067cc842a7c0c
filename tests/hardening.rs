//! Malformed and hostile requests, sent as raw bytes: each gets a clear 4xx (501 for a
//! transfer coding Cachet does not implement), never reaches the origin, and ends its
//! connection when the framing of what follows cannot be trusted. Some of these are refused
//! by hyper's parser, the rest by `proxy::guard`; both are tested here, since what matters is
//! what a client on the socket sees. The admin API's token never reaches the logs.
//!
//! Requests are sent without `Connection: close`, so a connection Cachet leaves open fails the
//! test (the raw client's bounded wait for the end); only refusals whose framing is intact (a
//! target without a path or a host) may keep the connection, and those cases ask for the close.

mod support;

use support::client::RawConn;
use support::logs::Captured;
use support::proxy::SERVER;
use support::{Client, Origin, Proxy, Raw, Reply, raw};

/// Header lines a request may carry here: few enough that a request at the limit, with the
/// forwarding headers Cachet adds, stays within the origin's own limit (hyper's 100).
const MAX_HEADERS: usize = 50;

/// One route `/` keyed on `x-tenant-id`; small limits so that tests stay small, and a header
/// read timeout longer than the raw client's wait, so that only Cachet closing a connection
/// ends it in time.
fn config(origin: &Origin) -> String {
    let server = SERVER.replace(
        "drain_timeout = \"2s\"\n",
        &format!(
            "drain_timeout = \"2s\"\nheader_read_timeout = \"60s\"\nmax_header_bytes = \"16KiB\"\nmax_body_bytes = \"1KiB\"\nmax_headers = {MAX_HEADERS}\n"
        ),
    );
    assert_ne!(server, SERVER, "the [server] section changed shape");
    format!(
        "{server}\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\nkey_headers = [\"x-tenant-id\"]\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n",
        origin.url()
    )
}

async fn start() -> (Origin, Proxy) {
    let origin = Origin::numbered(Reply::empty().cache_control("max-age=60")).await;
    let proxy = Proxy::start(&config(&origin)).await;
    (origin, proxy)
}

/// Sends `request` on a fresh connection, reads to the end, and checks that exactly one
/// response with `status` came back before the connection ended (a connection left open fails
/// the raw client's bounded wait).
async fn one_answer(proxy: &Proxy, request: &[u8], status: u16) -> Raw {
    let answer = raw(proxy.addr, request).await;
    let what = String::from_utf8_lossy(request);
    assert_eq!(
        answer.status(),
        Some(status),
        "{what:?} got:\n{}",
        answer.head()
    );
    let responses = answer
        .bytes
        .windows(9)
        .filter(|w| w == b"HTTP/1.1 ")
        .count();
    assert_eq!(
        responses,
        1,
        "{what:?}: {}",
        String::from_utf8_lossy(&answer.bytes)
    );
    answer
}

/// [`one_answer`], a refusal by Cachet itself rather than the HTTP parser: the answer says it closes the
/// connection, and it does.
async fn rejected(proxy: &Proxy, request: &[u8], status: u16) -> Raw {
    let answer = one_answer(proxy, request, status).await;
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "{:?}: {}",
        String::from_utf8_lossy(request),
        answer.head()
    );
    answer
}

/// `GET target` with `Host: test.local` and `extra` header lines, keep-alive.
fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n{extra}\r\n").into_bytes()
}

/// RFC 9112 §6.1 and §6.3: a request with both `Content-Length` and `Transfer-Encoding` is
/// framed by the transfer coding alone, `Content-Length` never reaches the origin, and the
/// connection is closed after the response, so bytes smuggled behind the chunked body are
/// never read as a request. On GET the body itself is refused (see
/// `content_on_get_or_head_is_refused_rfc9110_9_3_1`).
#[tokio::test]
async fn content_length_with_transfer_encoding_is_framed_by_chunks_and_closes_rfc9112_6_1() {
    let (origin, proxy) = start().await;
    // CL.TE: a front end trusting Content-Length would pass "0\r\n\r\nGET /smuggled ..." as
    // this request's body; TE.CL: one trusting it would cut the chunked body short.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n";
    for (first, second) in [
        ("content-length: 4", "transfer-encoding: chunked"),
        ("transfer-encoding: chunked", "content-length: 4"),
    ] {
        let request = format!(
            "POST /framing HTTP/1.1\r\nHost: test.local\r\n{first}\r\n{second}\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n{smuggled}"
        );
        let answer = one_answer(&proxy, request.as_bytes(), 200).await;
        assert!(
            String::from_utf8_lossy(answer.body()).starts_with("/framing #"),
            "{}",
            answer.head()
        );
        let seen = origin.next_request().await;
        assert_eq!(seen.path(), "/framing");
        assert_eq!(seen.body.as_ref(), b"SMUGGLED", "{first}, {second}");
        assert!(seen.header("content-length").is_none(), "{first}, {second}");
    }
    assert_eq!(origin.hits_for("/smuggled"), 0);

    let request = "GET /framing HTTP/1.1\r\nHost: test.local\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    rejected(&proxy, request.as_bytes(), 400).await;
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9112 §6.3 (item 5) and RFC 9110 §8.6: a `Content-Length` that is not one decimal
/// number is refused, and the connection closed, since where the body ends is unknown.
#[tokio::test]
async fn duplicate_or_invalid_content_lengths_are_refused_rfc9112_6_3() {
    let (origin, proxy) = start().await;
    for lengths in [
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 99999999999999999999999\r\n",
    ] {
        let request = format!("POST /lengths HTTP/1.1\r\nHost: test.local\r\n{lengths}\r\nhello!");
        one_answer(&proxy, request.as_bytes(), 400).await;
    }
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 9112 §7.1: a chunk size that is not hex, or overflows, breaks the framing: the request
/// gets a 400 (the client's body failed, not the origin) and its connection ends. The body is
/// streamed, so the origin may have seen the head, never a whole body.
#[tokio::test]
async fn bad_chunk_sizes_end_the_request_rfc9112_7_1() {
    let (origin, proxy) = start().await;
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5 junk\r\nhello\r\n0\r\n\r\n",
    ] {
        let request = format!(
            "POST /chunks HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        one_answer(&proxy, request.as_bytes(), 400).await;
    }
    // Whatever reached the origin never carried a complete body.
    for seen in origin.drain_requests().await {
        assert!(seen.body.is_empty(), "{:?}", seen.body);
    }
    proxy.shutdown().await;
}

/// RFC 9112 §5.2: obs-fold in a request is refused, and so are header names that are not
/// tokens and values with control characters (RFC 9110 §5.1, §5.5).
#[tokio::test]
async fn obs_fold_and_invalid_header_names_or_values_are_refused_rfc9112_5() {
    let (origin, proxy) = start().await;
    let lines: [&[u8]; 9] = [
        b"X-Folded: a\r\n b\r\n",
        b"X-Folded: a\r\n\tb\r\n",
        b"Bad Name: x\r\n",
        b"X-Space : x\r\n",
        b"X-Par(en): x\r\n",
        b"X-Caf\xc3\xa9: x\r\n",
        b": no-name\r\n",
        b"X-Nul: a\x00b\r\n",
        b"X-Ctl: a\x01b\r\n",
    ];
    for line in lines {
        let mut request = b"GET /headers HTTP/1.1\r\nHost: test.local\r\n".to_vec();
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
        one_answer(&proxy, &request, 400).await;
    }
    let mut bare_cr = b"GET /headers HTTP/1.1\r\nHost: test.local\r\n".to_vec();
    bare_cr.extend_from_slice(b"X-Cr: a\rb\r\n\r\n");
    one_answer(&proxy, &bare_cr, 400).await;
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 6585 §5: a header section over `max_header_bytes` (here made of many small fields) or
/// with more than `[server] max_headers` field lines gets 431.
#[tokio::test]
async fn oversized_or_overlong_header_sections_get_431_rfc6585_5() {
    let (origin, proxy) = start().await;
    let lines = |n: usize, len: usize| -> String {
        (0..n)
            .map(|i| format!("X-H{i}: {}\r\n", "v".repeat(len)))
            .collect()
    };
    // With Host and Connection: exactly `max_headers` field lines, then one more.
    let at_limit = format!("{}Connection: close\r\n", lines(MAX_HEADERS - 2, 4));
    let answer = raw(proxy.addr, &get("/many-fits", &at_limit)).await;
    assert_eq!(answer.status(), Some(200), "{}", answer.head());
    one_answer(&proxy, &get("/many", &lines(MAX_HEADERS, 4)), 431).await;
    // 40 lines of 500 bytes: 20 KiB, over the 16 KiB configured.
    one_answer(&proxy, &get("/big", &lines(40, 500)), 431).await;
    assert_eq!(origin.hits_for("/many"), 0);
    assert_eq!(origin.hits_for("/big"), 0);
    proxy.shutdown().await;
}

/// RFC 9112 §3: a request target over `max_uri_bytes` (8 KiB by default) gets 414, on
/// HTTP/1.1 and HTTP/2 alike.
#[tokio::test]
async fn a_target_over_max_uri_bytes_gets_414_rfc9112_3() {
    let (origin, proxy) = start().await;
    let fits = format!("/uri?q={}", "a".repeat(8 * 1024 - 7));
    let answer = raw(proxy.addr, &get(&fits, "Connection: close\r\n")).await;
    assert_eq!(answer.status(), Some(200), "{}", answer.head());
    let long = format!("/uri?q={}", "a".repeat(8 * 1024));
    rejected(&proxy, &get(&long, ""), 414).await;
    let h2 = Client::h2c(proxy.addr).get(&long, &[]).await;
    assert_eq!(h2.status, 414);
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// HTTP/2 has no field-line count limit of its own: `max_headers` holds there too.
#[tokio::test]
async fn max_headers_holds_over_http2() {
    let (origin, proxy) = start().await;
    let names: Vec<String> = (0..=MAX_HEADERS).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let answer = Client::h2c(proxy.addr).get("/h2-many", &headers).await;
    assert_eq!(answer.status, 431);
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 9110 §9.3.6: Cachet is no tunnel, so CONNECT gets 405 (with `Allow`, §15.5.6);
/// authority-form is only for CONNECT (RFC 9112 §3.2.3), and asterisk-form only for
/// server-wide OPTIONS, which Cachet does not forward: both get 400.
#[tokio::test]
async fn connect_gets_405_and_other_non_path_targets_get_400_rfc9112_3_2() {
    let (origin, proxy) = start().await;
    let answer = rejected(
        &proxy,
        b"CONNECT test.local:443 HTTP/1.1\r\nHost: test.local:443\r\n\r\n",
        405,
    )
    .await;
    let allow = answer.header("allow").expect("a 405 names what is allowed");
    assert!(
        allow.contains("GET") && !allow.contains("CONNECT"),
        "{allow}"
    );
    rejected(
        &proxy,
        b"GET test.local:80 HTTP/1.1\r\nHost: test.local\r\n\r\n",
        400,
    )
    .await;
    one_answer(
        &proxy,
        b"OPTIONS * HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n",
        400,
    )
    .await;
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 9112 §3.2.2: an absolute-form target is normalized like an HTTP/2 request (the same key
/// as its origin-form twin), but its authority must name the same origin as `Host` (host
/// case-insensitive, default port equivalent), or the request is refused: otherwise a front
/// end routing by `Host` and Cachet keying by the target would disagree about the resource.
#[tokio::test]
async fn absolute_form_targets_are_normalized_and_must_agree_with_host_rfc9112_3_2_2() {
    let (origin, proxy) = start().await;
    let absolute = raw(
        proxy.addr,
        b"GET http://TEST.local:80/abs/./x HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(absolute.status(), Some(200), "{}", absolute.head());
    assert_eq!(absolute.body(), b"/abs/x #1");
    assert_eq!(origin.next_request().await.path(), "/abs/x");
    let twin = raw(proxy.addr, &get("/abs/x", "Connection: close\r\n")).await;
    assert_eq!(
        twin.header("cache-status").as_deref(),
        Some("cachet; hit; ttl=60")
    );

    for (target, host) in [
        ("http://other.local/abs/x", "test.local"),
        ("http://test.local:8080/abs/x", "test.local"),
        ("http://test.local/abs/x", "test.local:8080"),
        ("http://test.local/abs/x", "test.local."),
        ("https://test.local/abs/x", "test.local:80"),
        ("ftp://test.local/abs/x", "test.local"),
    ] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        rejected(&proxy, request.as_bytes(), 400).await;
    }
    rejected(&proxy, b"GET http://test.local/abs/x HTTP/1.1\r\n\r\n", 400).await;
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9112 §3.2: more than one `Host` field line is refused with 400 (a front end and
/// Cachet could otherwise each pick a different one); so is a request without one.
#[tokio::test]
async fn a_repeated_or_missing_host_is_refused_rfc9112_3_2() {
    let (origin, proxy) = start().await;
    rejected(
        &proxy,
        b"GET /hosts HTTP/1.1\r\nHost: test.local\r\nHost: evil.example\r\n\r\n",
        400,
    )
    .await;
    rejected(
        &proxy,
        b"GET /hosts HTTP/1.1\r\nHost: test.local\r\nhost: test.local\r\n\r\n",
        400,
    )
    .await;
    one_answer(
        &proxy,
        b"GET /hosts HTTP/1.1\r\nConnection: close\r\n\r\n",
        400,
    )
    .await;
    let h2 = Client::h2c(proxy.addr)
        .get("/hosts", &[("host", "evil.example")])
        .await;
    assert_eq!(
        h2.status, 400,
        "RFC 9113 §8.3.1: :authority and Host differ"
    );
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 9110 §9.3.1 and §9.3.2: content in a GET or HEAD has no meaning, would never be keyed
/// or forwarded, and is a request-smuggling device: refused, connection closed.
#[tokio::test]
async fn content_on_get_or_head_is_refused_rfc9110_9_3_1() {
    let (origin, proxy) = start().await;
    for request in [
        &b"GET /get-body HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n\r\nhello"[..],
        b"GET /get-body HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HEAD /get-body HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        rejected(&proxy, request, 400).await;
    }
    // An empty body is no body.
    let empty = raw(
        proxy.addr,
        &get("/get-body", "Content-Length: 0\r\nConnection: close\r\n"),
    )
    .await;
    assert_eq!(empty.status(), Some(200), "{}", empty.head());
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// RFC 9112 §6.1: a transfer coding other than `chunked` alone is not implemented (501);
/// HTTP/1.0 has no transfer codings at all.
#[tokio::test]
async fn transfer_codings_other_than_chunked_are_refused_rfc9112_6_1() {
    let (origin, proxy) = start().await;
    rejected(
        &proxy,
        b"POST /codings HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    )
    .await;
    one_answer(
        &proxy,
        b"POST /codings HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
    )
    .await;
    let answer = raw(
        proxy.addr,
        b"POST /codings HTTP/1.0\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status(), Some(400), "{}", answer.head());
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

/// RFC 9110 §15.5.14: a body over `max_body_bytes` gets 413 and never reaches the origin,
/// whether its length is declared or only found while reading.
#[tokio::test]
async fn a_body_over_max_body_bytes_gets_413_rfc9110_15_5_14() {
    let (origin, proxy) = start().await;
    let body = "x".repeat(2048);
    let declared = format!(
        "POST /big-body HTTP/1.1\r\nHost: test.local\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    rejected(&proxy, declared.as_bytes(), 413).await;
    assert_eq!(origin.hits(), 0);

    let chunked = format!(
        "POST /big-chunks HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    rejected(&proxy, chunked.as_bytes(), 413).await;
    for seen in origin.drain_requests().await {
        assert!(
            seen.body.len() < body.len(),
            "the origin got the whole body"
        );
    }
    proxy.shutdown().await;
}

/// RFC 9110 §7.6.1: a client must not name an end-to-end field in `Connection`. Naming a key
/// header would strip it on the way to the origin while the key still counts it: the origin's
/// answer for "no tenant" would be stored in the tenant's partition.
#[tokio::test]
async fn a_connection_option_naming_a_key_header_is_refused_rfc9110_7_6_1() {
    let (origin, proxy) = start().await;
    rejected(
        &proxy,
        &get(
            "/conn",
            "X-Tenant-Id: acme\r\nConnection: keep-alive, X-Tenant-Id\r\n",
        ),
        400,
    )
    .await;
    let ordinary = raw(
        proxy.addr,
        &get(
            "/conn",
            "X-Tenant-Id: acme\r\nConnection: close, x-trace\r\nX-Trace: 1\r\n",
        ),
    )
    .await;
    assert_eq!(ordinary.status(), Some(200), "{}", ordinary.head());
    assert!(origin.next_request().await.header("x-trace").is_none());
    assert_eq!(origin.hits(), 1);
    proxy.shutdown().await;
}

/// A refusal ends the connection even when the client asked to keep it: a pipelined request
/// behind a refused one is never answered.
#[tokio::test]
async fn nothing_after_a_refused_request_is_read() {
    let (origin, proxy) = start().await;
    let mut conn = RawConn::open(proxy.addr).await;
    let mut pipelined =
        b"GET /refused HTTP/1.1\r\nHost: test.local\r\nHost: evil.example\r\n\r\n".to_vec();
    pipelined.extend_from_slice(&get("/pipelined", ""));
    conn.write(&pipelined).await;
    let answer = conn.finish().await;
    assert_eq!(answer.status(), Some(400), "{}", answer.head());
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    let responses = answer
        .bytes
        .windows(9)
        .filter(|w| w == b"HTTP/1.1 ")
        .count();
    assert_eq!(responses, 1);
    assert_eq!(origin.hits(), 0);
    proxy.shutdown().await;
}

const ADMIN_TOKEN: &str = "adm1n-t0ken-9f3e";
const WRONG_TOKEN: &str = "wr0ng-t0ken-77c1";

/// The admin token never reaches the logs, at any level, whether a request carries the right
/// one or a wrong one; a refusal is a 401 that names nothing.
#[tokio::test]
async fn admin_tokens_never_reach_the_logs() {
    let captured = Captured::default();
    let _guard = captured.capture(false);
    let origin = Origin::numbered(Reply::empty()).await;
    let toml = config(&origin).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n"),
    );
    assert!(
        toml.contains(ADMIN_TOKEN),
        "the admin section changed shape"
    );
    let proxy = Proxy::start(&toml).await;
    let admin = Client::new(proxy.admin);
    let body = r#"{"all": true}"#;
    for token in [WRONG_TOKEN, ADMIN_TOKEN] {
        for path in ["/purge", "/reload"] {
            let bearer = format!("Bearer {token}");
            let answer = admin.post(path, &[("authorization", &bearer)], body).await;
            if token == WRONG_TOKEN {
                assert_eq!(answer.status, 401, "{path}");
                assert!(!answer.text().contains(token), "{path}: {}", answer.text());
            }
        }
    }
    let wrong = format!("Bearer {WRONG_TOKEN}");
    Client::new(proxy.addr)
        .get("/logged", &[("authorization", &wrong)])
        .await;
    proxy.shutdown().await;

    let text = captured.text();
    assert!(text.contains("purge"), "nothing was captured:\n{text}");
    for token in [ADMIN_TOKEN, WRONG_TOKEN] {
        assert!(!text.contains(token), "{token} in the logs:\n{text}");
    }
}
