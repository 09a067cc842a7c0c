//! The admin API through its tower door (`ServiceExt::oneshot`), over a fake backend that
//! records every purge it is handed.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::purge::{PurgeRequest, PurgeTarget};

const TOKEN: &str = "s3cret";
const MAX_TAG_BYTES: usize = 16;

/// Answers every purge the same way and remembers what it was asked.
struct FakeBackend {
    answer: fn() -> Result<u64, PurgeRejected>,
    ready: bool,
    calls: Mutex<Vec<PurgeRequest>>,
}

impl FakeBackend {
    fn answering(answer: fn() -> Result<u64, PurgeRejected>) -> Arc<Self> {
        Arc::new(Self {
            answer,
            ready: true,
            calls: Mutex::default(),
        })
    }

    fn ok() -> Arc<Self> {
        Self::answering(|| Ok(7))
    }

    fn calls(&self) -> Vec<PurgeRequest> {
        self.calls.lock().unwrap().clone()
    }
}

impl AdminBackend for FakeBackend {
    fn purge(
        &self,
        request: PurgeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<u64, PurgeRejected>> + Send + '_>> {
        self.calls.lock().unwrap().push(request);
        Box::pin(std::future::ready((self.answer)()))
    }

    fn readiness(&self) -> Readiness {
        Readiness {
            ready: self.ready,
            shared_tier: "down",
            breaker: "open",
        }
    }

    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(std::future::ready(
            "cachet_memory_bytes 7\n# EOF\n".to_owned(),
        ))
    }
}

fn service(backend: &Arc<FakeBackend>, token: Option<&str>) -> AdminService {
    let limits = AdminLimits {
        max_tag_bytes: MAX_TAG_BYTES,
    };
    AdminService::new(backend.clone(), token.map(str::to_owned), limits)
}

async fn send<B>(service: AdminService, request: Request<B>) -> (StatusCode, HeaderMap, Value)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
    let body = body.collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&body).unwrap();
    (parts.status, parts.headers, body)
}

fn request(
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// `POST /purge` with the right token.
async fn purge(backend: &Arc<FakeBackend>, body: &str) -> (StatusCode, Value) {
    let request = request(Method::POST, "/purge", Some("Bearer s3cret"), body);
    let (status, _, body) = send(service(backend, Some(TOKEN)), request).await;
    (status, body)
}

fn purge_request(target: PurgeTarget, soft: bool) -> PurgeRequest {
    PurgeRequest { target, soft }
}

#[tokio::test]
async fn each_selector_reaches_the_backend_as_its_target() {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let cases = [
        (
            r#"{"tags": ["product:42", "category:shoes"]}"#,
            purge_request(
                PurgeTarget::Tags(strings(&["product:42", "category:shoes"])),
                false,
            ),
        ),
        (
            r#"{"urls": ["/api/products/42?lang=en", "https://api.example.com/x"]}"#,
            purge_request(
                PurgeTarget::Urls(strings(&[
                    "/api/products/42?lang=en",
                    "https://api.example.com/x",
                ])),
                false,
            ),
        ),
        (
            r#"{"prefix": "/api/products/", "soft": true}"#,
            purge_request(PurgeTarget::Prefix("/api/products/".into()), true),
        ),
        (
            // Normalized as request paths are, or it would select nothing.
            r#"{"prefix": "/caf%c3%a9/%7euser/"}"#,
            purge_request(PurgeTarget::Prefix("/caf%C3%A9/~user/".into()), false),
        ),
        (
            r#"{"soft": false, "route": "products"}"#,
            purge_request(PurgeTarget::Route("products".into()), false),
        ),
        (
            r#"{"partition": {"X-Tenant-Id": "acme", "authorization": "Bearer abc"}}"#,
            purge_request(
                PurgeTarget::Partition(vec![
                    ("authorization".into(), "Bearer abc".into()),
                    ("x-tenant-id".into(), "acme".into()),
                ]),
                false,
            ),
        ),
        (
            r#"{"all": true, "soft": true}"#,
            purge_request(PurgeTarget::All, true),
        ),
    ];
    for (body, expected) in cases {
        let backend = FakeBackend::ok();
        let (status, answer) = purge(&backend, body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(answer, json!({"ok": true, "seq": 7}), "{body}");
        assert_eq!(backend.calls(), [expected], "{body}");
    }
}

/// One case per line: `body => start of the error`. The bodies around `s3cret` check that
/// values are never echoed.
const MALFORMED: &str = r##"
 => body: invalid JSON (EOF while parsing a value at line 1 column 0)
{ => body: invalid JSON (
{"all": true} {} => body: invalid JSON (trailing characters
[] => body: expected a JSON object
"s3cret" => body: expected a JSON object
{} => body: no selector (expected one of tags, urls, prefix, route, partition, all)
{"soft": true} => body: no selector (
{"tag": ["a"]} => tag: unknown field
{"all": true, "hard": true} => hard: unknown field
{"tags": ["a"], "urls": ["/a"]} => body: two selectors: tags and urls
{"route": "r", "tags": ["a"], "all": true} => body: 3 selectors: route, tags and all
{"tags": ["a"], "tags": ["b"]} => tags: given more than once
{"tags": []} => tags: empty list
{"tags": "a"} => tags: expected a list of strings
{"tags": ["a", 1]} => tags[1]: expected a string
{"tags": [""]} => tags[0]: empty
{"tags": ["ok", "a b"]} => tags[1]: contains whitespace or a control character
{"tags": ["a\u0001"]} => tags[0]: contains whitespace or a control character
{"tags": ["seventeen-bytes-xx"]} => tags[0]: longer than 16 bytes
{"urls": []} => urls: empty list
{"urls": [null]} => urls[0]: expected a string
{"urls": ["api/x"]} => urls[0]: expected a path starting with "/" or an absolute http(s) URL
{"urls": ["ftp://host/x"]} => urls[0]: expected a path
{"urls": ["/a b"]} => urls[0]: not a valid URL
{"urls": ["http:///x"]} => urls[0]: not a valid URL
{"prefix": "api/"} => prefix: must start with "/"
{"prefix": ""} => prefix: empty
{"prefix": ["/a"]} => prefix: expected a string
{"prefix": "/a/../"} => prefix: contains a "." or ".." segment
{"prefix": "/a%2Fb"} => prefix: contains a backslash, or an encoded slash
{"prefix": "/a%zz"} => prefix: invalid percent-encoding
{"prefix": "/a?b"} => prefix: contains a control character, a space, '?' or '#'
{"prefix": "/a\u0001"} => prefix: contains a control character
{"route": ""} => route: empty
{"route": 7} => route: expected a string
{"partition": {}} => partition: no headers
{"partition": "s3cret"} => partition: expected an object of header names to values
{"partition": {"x-tenant-id": 1}} => partition.x-tenant-id: expected a string
{"partition": {"bad header": "s3cret"}} => partition.bad header: not a valid header name
{"partition": {"X-A": "s3cret", "x-a": "w"}} => partition.x-a: given more than once
{"partition": {"x-a": "s3cret\n"}} => partition.x-a: not a valid header value
{"all": false} => all: must be true
{"all": "true"} => all: must be true
{"all": true, "soft": "yes"} => soft: expected true or false
{"all": true, "soft": null} => soft: expected true or false
"##;

#[tokio::test]
async fn a_malformed_body_is_a_400_naming_the_field_and_never_reaches_the_backend() {
    let many_tags = format!(r#"{{"tags": [{}"t"]}}"#, r#""t","#.repeat(1000));
    let cases = MALFORMED
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.split_once(" => ").unwrap())
        .chain([(many_tags.as_str(), "tags: more than 1000 items")]);
    for (body, expected) in cases {
        let backend = FakeBackend::ok();
        let (status, answer) = purge(&backend, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["ok"], false, "{body}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(expected), "{body}: {error}");
        assert!(!error.contains("s3cret"), "{body}: {error}");
        assert!(backend.calls().is_empty(), "{body}");
    }
}

#[tokio::test]
async fn a_list_of_exactly_1000_items_is_accepted() {
    let backend = FakeBackend::ok();
    let body = format!(r#"{{"urls": [{}"/a"]}}"#, r#""/a","#.repeat(999));
    assert_eq!(purge(&backend, &body).await.0, StatusCode::OK);
}

#[tokio::test]
async fn purge_and_reload_refuse_a_missing_or_wrong_token_without_detail() {
    let cases = [
        None,
        Some("Bearer wrong"),
        Some("Basic s3cret"),
        Some("s3cret"),
        Some("Bearer "),
    ];
    for path in ["/purge", "/reload"] {
        for authorization in cases {
            let backend = FakeBackend::ok();
            let request = request(Method::POST, path, authorization, r#"{"all": true}"#);
            let (status, headers, body) = send(service(&backend, Some(TOKEN)), request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization:?}");
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
            assert_eq!(body, json!({"ok": false, "error": "unauthorized"}));
            assert!(backend.calls().is_empty());
        }
    }
}

#[tokio::test]
async fn without_a_configured_token_any_caller_may_purge() {
    let backend = FakeBackend::ok();
    let request = request(Method::POST, "/purge", None, r#"{"route": "products"}"#);
    let (status, _, body) = send(service(&backend, None), request).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"ok": true, "seq": 7}))
    );
    assert_eq!(backend.calls().len(), 1);
}

#[tokio::test]
async fn reload_without_a_config_file_is_not_available() {
    let backend = FakeBackend::ok();
    let request = request(Method::POST, "/reload", Some("Bearer s3cret"), "");
    let (status, _, body) = send(service(&backend, Some(TOKEN)), request).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(
        body,
        json!({"ok": false, "error": "reload not available: no config file"})
    );
}

/// A body padded with spaces to `len` bytes.
fn padded_body(len: usize) -> String {
    let body = r#"{"all": true}"#;
    format!("{body}{}", " ".repeat(len - body.len()))
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_413_whether_declared_or_streamed() {
    let big = padded_body(100 * 1024);
    let backend = FakeBackend::ok();

    let declared = Request::post("/purge")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let (status, _, body) = send(service(&backend, Some(TOKEN)), declared).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["ok"], false);

    let chunks = big
        .into_bytes()
        .chunks(4096)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    let frames = chunks
        .into_iter()
        .map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk)));
    let streamed = Request::post("/purge")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap();
    let (status, _, _) = send(service(&backend, Some(TOKEN)), streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(backend.calls().is_empty());
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_read() {
    let backend = FakeBackend::ok();
    assert_eq!(
        purge(&backend, &padded_body(64 * 1024)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        purge(&backend, &padded_body(64 * 1024 + 1)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(backend.calls().len(), 1);
}

#[tokio::test]
async fn a_body_that_fails_mid_read_is_a_400() {
    let backend = FakeBackend::ok();
    let frames = [
        Ok(Frame::data(Bytes::from_static(b"{\"all\""))),
        Err(std::io::Error::other("connection reset")),
    ];
    let request = Request::post("/purge")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap();
    let (status, _, body) = send(service(&backend, None), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "body: could not be read");
    assert!(backend.calls().is_empty());
}

#[tokio::test]
async fn backend_rejections_become_400_and_503() {
    let invalid = FakeBackend::answering(|| {
        Err(PurgeRejected::Invalid {
            field: "route".into(),
            message: "no such route".into(),
        })
    });
    let (status, body) = purge(&invalid, r#"{"route": "nope"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"ok": false, "error": "route: no such route"}));

    let shared = FakeBackend::answering(|| Err(PurgeRejected::SharedUnavailable));
    let (status, body) = purge(&shared, r#"{"tags": ["a"], "soft": true}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ok"], false);
    assert_eq!(body["applied_locally"], true);
    assert_eq!(shared.calls().len(), 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let backend = FakeBackend::ok();
    let get = |path| request(Method::GET, path, None, "");
    let (status, _, body) = send(service(&backend, Some(TOKEN)), get("/healthz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));

    let readiness = json!({"ready": true, "shared_tier": "down", "breaker": "open"});
    let (status, _, body) = send(service(&backend, Some(TOKEN)), get("/readyz")).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, readiness),
        "a shared tier down is still ready"
    );

    let draining = Arc::new(FakeBackend {
        answer: || Ok(1),
        ready: false,
        calls: Mutex::default(),
    });
    let (status, _, body) = send(service(&draining, None), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
}

/// `/metrics` needs no token (like `/readyz`) and answers the backend's text as OpenMetrics.
#[tokio::test]
async fn metrics_are_the_backends_text_without_a_token() {
    let backend = FakeBackend::ok();
    let request = request(Method::GET, "/metrics", None, "");
    let response = service(&backend, Some(TOKEN))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"cachet_memory_bytes 7\n# EOF\n");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let backend = FakeBackend::ok();
    for path in ["/", "/metrics/", "/purge/", "/healthz/x"] {
        let request = request(Method::GET, path, None, "");
        let (status, _, body) = send(service(&backend, None), request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, json!({"ok": false, "error": "not found"}));
    }
    let cases = [
        (Method::GET, "/purge", "POST"),
        (Method::PUT, "/reload", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::DELETE, "/readyz", "GET, HEAD"),
        (Method::POST, "/metrics", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let request = request(
            method.clone(),
            path,
            Some("Bearer s3cret"),
            r#"{"all": true}"#,
        );
        let (status, headers, _) = send(service(&backend, Some(TOKEN)), request).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(headers[header::ALLOW], allow);
    }
    assert!(backend.calls().is_empty());
}

#[test]
fn debug_never_shows_the_token() {
    let shown = format!("{:?}", service(&FakeBackend::ok(), Some(TOKEN)));
    assert!(!shown.contains(TOKEN), "{shown}");
}
