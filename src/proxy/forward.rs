//! Building the request to the origin and streaming an origin body back: shared by
//! pass-through requests and fills.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use super::error::ProxyError;
use super::headers::{ClientInfo, add_forwarding, remove_hop_by_hop};
use super::{Body, BoxError};
use crate::cache::Target;
use crate::config::Route;

/// Prepares client headers for the origin: hop-by-hop headers and `Host` removed (the client
/// library sets the upstream's), forwarding headers added.
pub(crate) fn origin_headers(
    mut headers: HeaderMap,
    client: ClientInfo,
    trusted_proxies: &[ipnet::IpNet],
    target: &Target,
) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    headers.remove(HOST);
    add_forwarding(&mut headers, client, trusted_proxies, target);
    headers
}

/// The request to the origin: the normalized target appended to the upstream's base path.
pub(crate) fn origin_request(
    route: &Route,
    target: &Target,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Request<Body>, ProxyError> {
    let base = route.upstream.path().trim_end_matches('/');
    let mut builder = Uri::builder().path_and_query(target.path_and_query_under(base));
    if let Some(scheme) = route.upstream.scheme() {
        builder = builder.scheme(scheme.clone());
    }
    if let Some(authority) = route.upstream.authority() {
        builder = builder.authority(authority.clone());
    }
    let uri = builder
        .build()
        .map_err(|error| ProxyError::Internal(error.into()))?;
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// Streams `prefix` and then the rest of an origin body to the client. A body that fails or
/// stalls for `idle` yields an error, which makes the server abort the client connection:
/// headers are already sent, and a truncated body must not look complete.
pub(crate) fn streamed(prefix: Vec<Bytes>, rest: hyper::body::Incoming, idle: Duration) -> Body {
    let rest = futures_util::stream::unfold(Some(rest), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => Some((Err(BoxError::from("origin body stalled")), None)),
            Ok(None) => None,
            Ok(Some(Ok(frame))) => Some((Ok(frame), Some(body))),
            Ok(Some(Err(error))) => Some((Err(BoxError::from(error)), None)),
        }
    });
    let prefix = futures_util::stream::iter(prefix.into_iter().map(|data| Ok(Frame::data(data))));
    StreamBody::new(prefix.chain(rest)).boxed_unsync()
}

/// The declared body length, if valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
