//! [`ProxyError`] and its single conversion into a response: status chosen by the fault's
//! source, a short JSON body, no internal detail.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::Body;
use super::origin::{OriginError, OriginFault};
use crate::cache::TargetError;

/// Every way a client request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request target")]
    BadTarget(#[from] TargetError),
    #[error("no route for this request")]
    NoRoute,
    #[error("request body too large")]
    BodyTooLarge,
    /// `only-if-cached` and nothing usable is stored (RFC 9111 §5.2.1.7).
    #[error("not in cache")]
    NotCached,
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("internal error")]
    Internal(#[source] super::BoxError),
}

impl ProxyError {
    /// The status and short message the client sees.
    fn status_and_message(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadTarget(TargetError::BadHost) => {
                (StatusCode::BAD_REQUEST, "missing or invalid host")
            }
            Self::BadTarget(_) => (StatusCode::BAD_REQUEST, "invalid request target"),
            Self::NoRoute => (StatusCode::NOT_FOUND, "no route matches this request"),
            Self::NotCached => (StatusCode::GATEWAY_TIMEOUT, "not in cache (only-if-cached)"),
            Self::BodyTooLarge | Self::Origin(OriginError::RequestBody(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            Self::Origin(OriginError::Connect(_)) => OriginFault::Connect.status_and_message(),
            Self::Origin(OriginError::Exchange(_)) => OriginFault::Exchange.status_and_message(),
            Self::Origin(OriginError::Timeout) => OriginFault::Timeout.status_and_message(),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }

    /// The one place a `ProxyError` becomes a response.
    pub fn into_response(self) -> Response<Body> {
        let (status, message) = self.status_and_message();
        match status {
            s if s.is_server_error() => {
                tracing::warn!(error = %self, source = ?std::error::Error::source(&self), status = s.as_u16(), "request failed")
            }
            s => tracing::debug!(error = %self, status = s.as_u16(), "request refused"),
        }
        error_response(status, message)
    }
}

impl OriginFault {
    /// The status and short message of an origin fault: 502 or 504.
    pub(crate) fn status_and_message(self) -> (StatusCode, &'static str) {
        match self {
            Self::Connect => (StatusCode::BAD_GATEWAY, "origin unreachable"),
            Self::Exchange => (StatusCode::BAD_GATEWAY, "origin failed"),
            Self::Timeout => (StatusCode::GATEWAY_TIMEOUT, "origin timed out"),
        }
    }

    /// The answer every waiter of a failed fill gets; the fill logged the fault once.
    pub(crate) fn response(self) -> Response<Body> {
        let (status, message) = self.status_and_message();
        error_response(status, message)
    }
}

/// A short JSON error body, never cached downstream.
fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(super::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
