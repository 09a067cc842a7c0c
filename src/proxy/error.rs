//! [`ProxyError`] and its single conversion into a response: status chosen by the fault's
//! source, a short JSON body, no internal detail.

use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt as _;

use super::Body;
use super::guard::GuardError;
use super::origin::{OriginError, OriginFault};
use crate::cache::TargetError;

/// Every way a client request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Refused by `proxy::guard` before routing.
    #[error(transparent)]
    Rejected(#[from] GuardError),
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
            Self::Rejected(rejected) => rejected_status_and_message(*rejected),
            Self::BadTarget(TargetError::BadHost) => {
                (StatusCode::BAD_REQUEST, "missing or invalid host")
            }
            Self::BadTarget(_) => (StatusCode::BAD_REQUEST, "invalid request target"),
            Self::NoRoute => (StatusCode::NOT_FOUND, "no route matches this request"),
            Self::NotCached => (StatusCode::GATEWAY_TIMEOUT, "not in cache (only-if-cached)"),
            Self::BodyTooLarge | Self::Origin(OriginError::RequestBody(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            }
            Self::Origin(OriginError::Exchange(source)) if request_body_failed(source.as_ref()) => {
                (StatusCode::BAD_REQUEST, "invalid request body")
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
            // A refused request is the client's doing whatever its status (501 included).
            s if s.is_server_error() && !matches!(self, Self::Rejected(_)) => {
                tracing::warn!(error = %self, source = ?std::error::Error::source(&self), status = s.as_u16(), "request failed")
            }
            s => tracing::debug!(error = %self, status = s.as_u16(), "request refused"),
        }
        let mut response = error_response(status, message);
        let headers = response.headers_mut();
        if matches!(
            self,
            Self::Rejected(_) | Self::BodyTooLarge | Self::Origin(OriginError::RequestBody(_))
        ) {
            // Whatever follows a suspect request on this connection may be framed differently
            // from what the client meant (RFC 9112 §6.1, §11.2), and an unread oversized body
            // is not worth draining (RFC 9110 §15.5.14): read nothing more from it.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(self, Self::Rejected(GuardError::Connect)) {
            // RFC 9110 §15.5.6: a 405 lists what the target does support.
            headers.insert(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
        }
        response
    }
}

/// Whether an origin exchange broke because the client's request body did (a malformed chunk
/// size, a client gone mid-body): hyper reports a failure of the body it was given to send as
/// a user error. That is the client's fault, not the origin's.
fn request_body_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// What a 405 offers instead: every method Cachet forwards that a route's origin is likely to
/// implement.
const ALLOWED_METHODS: &str = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

/// The status and short message of a request refused before routing.
fn rejected_status_and_message(rejected: GuardError) -> (StatusCode, &'static str) {
    match rejected {
        GuardError::Connect => (StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"),
        GuardError::AuthorityForm | GuardError::Scheme => {
            (StatusCode::BAD_REQUEST, "unsupported request target form")
        }
        GuardError::MissingHost | GuardError::DuplicateHost | GuardError::HostMismatch => (
            StatusCode::BAD_REQUEST,
            "missing, repeated or mismatched host",
        ),
        GuardError::UriTooLong => (StatusCode::URI_TOO_LONG, "request target too long"),
        GuardError::TooManyHeaders => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ),
        GuardError::BadContentLength | GuardError::ConflictingFraming => {
            (StatusCode::BAD_REQUEST, "invalid message framing")
        }
        GuardError::TransferCoding => (
            StatusCode::NOT_IMPLEMENTED,
            "transfer coding not implemented",
        ),
        GuardError::ContentWithoutMeaning => (
            StatusCode::BAD_REQUEST,
            "GET and HEAD requests take no content",
        ),
        GuardError::ConnectionNamesKeyHeader => (
            StatusCode::BAD_REQUEST,
            "connection header names a key header",
        ),
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
    crate::answer::json(status, &serde_json::json!({ "error": message }))
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}
