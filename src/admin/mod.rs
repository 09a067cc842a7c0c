//! [`AdminService`]: the admin listener's tower service. Today: `/healthz` and `/readyz`;
//! metrics, purge and reload join it in later issues.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;

/// Health and readiness. Cloning is cheap.
#[derive(Debug, Clone, Default)]
pub struct AdminService;

impl<B> tower::Service<Request<B>> for AdminService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (status, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => (StatusCode::OK, r#"{"ok":true}"#),
            // Listeners are bound before the services run, so serving at all means ready.
            (&Method::GET, "/readyz") => (StatusCode::OK, r#"{"ready":true,"shared_tier":"none"}"#),
            _ => (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
        };
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ready(Ok(response))
    }
}
