//! [`AdminService`]: the admin listener's tower service — `/healthz`, `/readyz`, `/metrics`,
//! `POST /purge` and `POST /reload` (a stub for now) — over an [`AdminBackend`] that does the
//! work.
//!
//! Request handling only: what a purge does is the backend's business, so this module is
//! tested with a fake backend and no sockets. `auth` checks the bearer token; `purge` turns the
//! body into a [`PurgeRequest`] and is the one place an admin error becomes JSON.

mod auth;
#[cfg(test)]
mod fuzz;
mod purge;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use self::auth::BearerToken;
use self::purge::AdminError;
use crate::answer;
use crate::config::CacheConfig;
use crate::purge::PurgeRequest;

/// What the admin API drives: purges, readiness and metrics. Implemented by the app's wiring.
pub trait AdminBackend: Send + Sync + 'static {
    /// Applies a purge; `Ok(seq)` once it holds on this instance and in the shared tier.
    fn purge(
        &self,
        request: PurgeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<u64, PurgeRejected>> + Send + '_>>;

    /// Readiness details for `/readyz`.
    fn readiness(&self) -> Readiness;

    /// The `/metrics` body: Prometheus text in the OpenMetrics format
    /// ([`crate::telemetry::metrics::CONTENT_TYPE`]), figures refreshed for this scrape
    /// (asynchronously: the memory tier settles its pending counts first).
    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>>;

    /// Re-reads the config file and swaps what can change live; every problem when it is
    /// invalid (the old config stays). The default: no file to re-read.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<(), ReloadRejected>> + Send + '_>> {
        Box::pin(async { Err(ReloadRejected::Unavailable) })
    }
}

/// Why a reload did not happen; the running config is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadRejected {
    /// Started without a config file (e.g. `cachet demo`): 501.
    #[error("reload not available: no config file")]
    Unavailable,
    /// The file is invalid: 400 listing every problem.
    #[error("invalid configuration")]
    Invalid(Vec<String>),
}

/// Why the backend did not carry out a purge in full.
#[derive(Debug, thiserror::Error)]
pub enum PurgeRejected {
    /// A value the backend could not resolve (unknown route, URL matching no route, unknown
    /// partition header): 400 naming `field`. The message must not contain partition values.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Applied on this instance, but the shared tier could not record it:
    /// 503 `{"ok": false, "applied_locally": true}`.
    #[error("shared tier unavailable")]
    SharedUnavailable,
}

/// The `/readyz` body.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    /// False while starting or draining: `/readyz` then answers 503.
    pub ready: bool,
    /// `"none"` (no shared tier configured), `"up"` or `"down"`. Informational: a shared tier
    /// that is down does not make the instance unready, since it serves from memory meanwhile.
    pub shared_tier: &'static str,
    /// The shared tier's circuit breaker: `"closed"`, `"open"`, `"half-open"` or `"none"`.
    pub breaker: &'static str,
}

/// Limits the admin API applies to purge bodies, from `[cache]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminLimits {
    /// A purged tag longer than this is refused (no entry could carry it).
    pub max_tag_bytes: usize,
}

impl From<&CacheConfig> for AdminLimits {
    fn from(cache: &CacheConfig) -> Self {
        Self {
            max_tag_bytes: cache.max_tag_bytes,
        }
    }
}

/// The admin API. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct AdminService {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn AdminBackend>,
    /// `None`: any caller may purge (the config allows this on a loopback listener only).
    token: Option<BearerToken>,
    limits: AdminLimits,
}

impl AdminService {
    /// An admin API over `backend`. With `token`, `/purge` and `/reload` require
    /// `Authorization: Bearer <token>`; without, they accept any caller.
    pub fn new(backend: Arc<dyn AdminBackend>, token: Option<String>, limits: AdminLimits) -> Self {
        let token = token.as_deref().map(BearerToken::new);
        Self {
            inner: Arc::new(Inner {
                backend,
                token,
                limits,
            }),
        }
    }
}

/// Never shows the token.
impl fmt::Debug for AdminService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminService")
            .field("token", &self.inner.token.as_ref().map(|_| ".."))
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl<B> tower::Service<Request<B>> for AdminService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            Ok(inner
                .route(request)
                .await
                .unwrap_or_else(AdminError::into_response))
        })
    }
}

impl Inner {
    async fn route<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, AdminError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let endpoint = match request.uri().path() {
            "/healthz" => Endpoint::Health,
            "/readyz" => Endpoint::Ready,
            "/metrics" => Endpoint::Metrics,
            "/purge" => Endpoint::Purge,
            "/reload" => Endpoint::Reload,
            _ => return Err(AdminError::NotFound),
        };
        match endpoint {
            Endpoint::Health => {
                allow_get(request.method())?;
                Ok(answer::json(StatusCode::OK, &json!({ "ok": true })))
            }
            Endpoint::Ready => {
                allow_get(request.method())?;
                let readiness = self.backend.readiness();
                let status = if readiness.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Ok(answer::json(status, &readiness))
            }
            Endpoint::Metrics => {
                // No token: the admin listener itself is the boundary, as for `/readyz`.
                allow_get(request.method())?;
                Ok(metrics_response(self.backend.metrics().await))
            }
            Endpoint::Purge => {
                allow_post(request.method())?;
                self.authorize(&request)?;
                purge::handle(&*self.backend, self.limits.max_tag_bytes, request).await
            }
            Endpoint::Reload => {
                allow_post(request.method())?;
                self.authorize(&request)?;
                self.backend.reload().await?;
                Ok(answer::json(StatusCode::OK, &json!({ "ok": true })))
            }
        }
    }

    /// Passes when no token is configured or the request carries it.
    fn authorize<B>(&self, request: &Request<B>) -> Result<(), AdminError> {
        match &self.token {
            Some(token) if !token.verify(request.headers()) => {
                tracing::debug!(
                    path = request.uri().path(),
                    "admin request refused: bad or missing token"
                );
                Err(AdminError::Unauthorized)
            }
            _ => Ok(()),
        }
    }
}

/// The admin API's paths.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Health,
    Ready,
    Metrics,
    Purge,
    Reload,
}

/// GET, and HEAD with it (hyper sends no body for HEAD).
fn allow_get(method: &Method) -> Result<(), AdminError> {
    match *method {
        Method::GET | Method::HEAD => Ok(()),
        _ => Err(AdminError::MethodNotAllowed { allow: "GET, HEAD" }),
    }
}

fn allow_post(method: &Method) -> Result<(), AdminError> {
    match *method {
        Method::POST => Ok(()),
        _ => Err(AdminError::MethodNotAllowed { allow: "POST" }),
    }
}

/// The `/metrics` answer: the exposition text, not to be cached.
fn metrics_response(text: String) -> Response<Full<Bytes>> {
    answer::uncacheable(
        StatusCode::OK,
        crate::telemetry::metrics::CONTENT_TYPE,
        Bytes::from(text),
    )
}
