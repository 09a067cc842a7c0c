//! The answers Cachet writes itself — proxy errors, admin replies, the metrics text: a complete
//! body with its content type, marked `no-store` so nothing downstream keeps it.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// `body` as `content_type`, with `Cache-Control: no-store`.
pub fn uncacheable(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `value` as JSON. A value that cannot be encoded (a map with non-string keys) is a bug,
/// answered 500 rather than a panic.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_vec(value) {
        Ok(body) => uncacheable(status, "application/json", Bytes::from(body)),
        Err(error) => {
            tracing::error!(%error, "cannot encode a JSON answer");
            uncacheable(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application/json",
                Bytes::from_static(br#"{"error":"internal error"}"#),
            )
        }
    }
}
