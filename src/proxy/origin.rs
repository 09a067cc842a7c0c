//! [`OriginClient`]: the one HTTP client, pooled keep-alive connections to every upstream
//! (http, or https through rustls), each exchange bounded by its route's deadline, failures
//! classified by fault.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{Body, BoxError};

/// Why an origin exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No connection could be made (refused, unreachable, TLS handshake failed): 502.
    #[error("cannot connect to origin")]
    Connect(#[source] BoxError),
    /// The route's deadline passed before the response (or, for a stored response, its body)
    /// was complete: 504.
    #[error("origin timed out")]
    Timeout,
    /// The origin broke the protocol or the connection: 502.
    #[error("origin exchange failed")]
    Exchange(#[source] BoxError),
    /// The request body broke off or grew past `max_body_bytes`.
    #[error("request body failed")]
    RequestBody(#[source] BoxError),
}

/// An origin fault without its cause: what a failed fill shares with its waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginFault {
    Connect,
    Timeout,
    Exchange,
}

/// Idle keep-alive connections are closed after this; origins commonly close at 60-120s.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// TCP connect deadline, under any sensible route timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pooled client. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct OriginClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

impl Default for OriginClient {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginClient {
    /// A client for http and https upstreams (webpki roots, HTTP/1.1 and HTTP/2 by ALPN).
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Self { client }
    }

    /// Sends `request` and waits for the response head, at most `timeout`.
    ///
    /// # Errors
    /// An [`OriginError`] classifying the fault.
    pub async fn send(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, OriginError> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(OriginError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) if error.is_connect() => Err(OriginError::Connect(error.into())),
            Ok(Err(error)) => Err(classify_exchange_error(error)),
        }
    }
}

/// A request body that failed (too large, client gone) is the client's fault, not the origin's.
fn classify_exchange_error(error: hyper_util::client::legacy::Error) -> OriginError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&error);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            return OriginError::RequestBody(error.into());
        }
        source = cause.source();
    }
    OriginError::Exchange(error.into())
}
