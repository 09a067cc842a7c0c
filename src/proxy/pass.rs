//! Methods other than GET and HEAD: forwarded with their body streamed, never stored; a
//! successful unsafe one invalidates what it changed (RFC 9111 §4.4).

use std::sync::Arc;

use http::header::{CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};

use super::error::ProxyError;
use super::forward::{origin_headers, origin_request, streamed};
use super::headers::{ClientInfo, clean_response, set_cache_status};
use super::{Body, Settings, Shared};
use crate::cache::{CacheStatus, Target, url_fingerprint};
use crate::config::Route;
use crate::purge::{Selector, url_tag};

/// Methods other than GET and HEAD: forwarded with their body streamed, never stored.
pub(super) async fn pass(
    shared: &Arc<Shared>,
    settings: &Settings,
    route: &Route,
    target: &Target,
    client: ClientInfo,
    request: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let limit = usize::try_from(settings.limits.max_body_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(body, limit).boxed_unsync();
    let headers = origin_headers(
        parts.headers,
        client,
        &settings.limits.trusted_proxies,
        target,
    );
    let request = origin_request(route, target, method, headers, body)?;
    let unsafe_method = matches!(
        parts.method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let response = shared.send_to_origin(route, request).await?;
    let (mut head, body) = response.into_parts();
    if unsafe_method && (head.status.is_success() || head.status.is_redirection()) {
        invalidate_after_write(shared, settings, route, target, &head.headers);
    }
    clean_response(&mut head.headers);
    set_cache_status(&mut head, CacheStatus::Method);
    Ok(Response::from_parts(
        head,
        streamed(Vec::new(), body, route.timeout),
    ))
}

/// RFC 9111 §4.4: a successful unsafe request invalidates its target and the same-origin
/// `Location` and `Content-Location` it names — every partition and variant, on every tier,
/// through a watermark on their `url:` tag rather than by deleting keys.
fn invalidate_after_write(
    shared: &Shared,
    settings: &Settings,
    route: &Route,
    target: &Target,
    response: &HeaderMap,
) {
    let now = shared.clock.now();
    let mut urls = vec![url_fingerprint(
        &route.name,
        target,
        &route.ignore_query_params,
    )];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(named) = response
            .get(&name)
            .and_then(|v| same_origin_target(v, target))
        else {
            continue;
        };
        if let Some(named_route) = settings.routes.route(&named.host, &named.path) {
            urls.push(url_fingerprint(
                &named_route.name,
                &named,
                &named_route.ignore_query_params,
            ));
        }
    }
    for url in urls {
        shared
            .watermarks
            .purge(Selector::tag(url_tag(url)), false, now);
    }
    tracing::debug!(route = %route.name, "stored responses invalidated after a write");
}

/// The normalized target a `Location`-like field names, when it is on the request's own
/// origin: an absolute path, or an absolute URI with the same authority.
fn same_origin_target(value: &HeaderValue, request: &Target) -> Option<Target> {
    let uri: Uri = value.to_str().ok()?.trim().parse().ok()?;
    if uri.authority().is_none() && !uri.path().starts_with('/') {
        return None;
    }
    let mut host = HeaderMap::new();
    host.insert(
        http::header::HOST,
        HeaderValue::from_str(&request.authority).ok()?,
    );
    let named = Target::from_request(&uri, &host).ok()?;
    (named.authority == request.authority).then_some(named)
}
