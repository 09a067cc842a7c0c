//! The request path: normalize → route → look up → serve, or fill from the origin → store.
//!
//! GET and HEAD go through the cache; every other method passes through (`fwd=method`). A
//! fill is a plain GET built from the normalized target and runs in its own task, so a client
//! that disconnects does not abandon it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::{BodyExt, Limited, StreamBody};
use tokio::time::Instant;

use super::error::ProxyError;
use super::headers::{
    ClientInfo, add_forwarding, clean_response, remove_hop_by_hop, set_age, set_cache_status,
    strip_for_fill,
};
use super::origin::OriginError;
use super::{Body, BoxError, PeerAddr, Shared, empty, full};
use crate::cache::{
    CacheKey, CacheStatus, Decision, Entry, EntryTimes, Partition, Target, Usability, assess,
    decide, sanitized_request, ttl_secs, url_fingerprint,
};
use crate::config::Route;
use crate::tiers::Tier;

/// Handles one client request; every failure becomes a response here.
pub(super) async fn handle<T: Tier>(
    shared: &Arc<Shared<T>>,
    request: Request<Body>,
) -> Response<Body> {
    let method = request.method().clone();
    match route_and_serve(shared, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%method, error = %error, "answered with an error");
            error.into_response()
        }
    }
}

async fn route_and_serve<T: Tier>(
    shared: &Arc<Shared<T>>,
    request: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let target = Target::from_request(request.uri(), request.headers())?;
    let route = Arc::clone(
        shared
            .routes
            .route(&target.host, &target.path)
            .ok_or(ProxyError::NoRoute)?,
    );
    if content_length(request.headers()).is_some_and(|len| len > shared.limits.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge);
    }
    let client = ClientInfo {
        peer: request.extensions().get::<PeerAddr>().map(|addr| addr.ip()),
        version: request.version(),
    };
    let response = if matches!(*request.method(), Method::GET | Method::HEAD) {
        cached(shared, route.clone(), target, client, request).await?
    } else {
        pass(shared, &route, &target, client, request).await?
    };
    tracing::debug!(
        route = %route.name,
        status = response.status().as_u16(),
        cache = response.headers().get(super::headers::CACHE_STATUS).and_then(|v| v.to_str().ok()).unwrap_or(""),
        "served"
    );
    Ok(response)
}

/// GET and HEAD: answer from the cache when a fresh entry of this partition exists, otherwise
/// fill from the origin.
async fn cached<T: Tier>(
    shared: &Arc<Shared<T>>,
    route: Arc<Route>,
    target: Target,
    client: ClientInfo,
    request: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let is_head = request.method() == Method::HEAD;
    let partition = shared
        .hasher
        .partition(&route.key_headers, request.headers());
    let key = CacheKey::build(&route.name, &target, &route.ignore_query_params, &partition);
    let now = shared.clock.now();
    let found = lookup(shared, &key, &partition, now).await;
    if let Some(entry) = &found {
        if assess(&entry.times, now) == Usability::Fresh {
            let status = CacheStatus::Hit {
                ttl: ttl_secs(&entry.times, now),
                shared: false,
            };
            return Ok(serve_entry(entry, status, now, is_head));
        }
    }

    let (parts, _body) = request.into_parts();
    let mut headers = parts.headers;
    strip_for_fill(&mut headers);
    let fill_request = origin_request(
        &route,
        &target,
        Method::GET,
        headers,
        client,
        shared,
        empty(),
    )?;
    let fill = Fill {
        shared: Arc::clone(shared),
        route,
        target,
        partition,
        key,
    };
    // Its own task: a client that goes away does not abandon a fill that may be stored.
    let outcome = tokio::spawn(fill.run(fill_request))
        .await
        .map_err(|join| ProxyError::Internal(join.into()))??;
    let had_stale = found.is_some();
    Ok(match outcome {
        FillOutcome::Stored(entry) => {
            let status = if had_stale {
                CacheStatus::Stale {
                    fwd_status: entry.status.as_u16(),
                    stored: true,
                }
            } else {
                CacheStatus::Miss { stored: true }
            };
            serve_entry(&entry, status, shared.clock.now(), is_head)
        }
        FillOutcome::Passed(mut response) => {
            let status = if had_stale {
                CacheStatus::Stale {
                    fwd_status: response.status().as_u16(),
                    stored: false,
                }
            } else {
                CacheStatus::Miss { stored: false }
            };
            set_cache_status(response.headers_mut(), status);
            if is_head {
                *response.body_mut() = empty();
            }
            response
        }
    })
}

/// The entry under `key` if it belongs to this partition and may still be used.
async fn lookup<T: Tier>(
    shared: &Shared<T>,
    key: &CacheKey,
    partition: &Partition,
    now: SystemTime,
) -> Option<Arc<Entry>> {
    let entry = match shared.tier.get(key).await {
        Ok(entry) => entry?,
        Err(error) => {
            tracing::warn!(%key, %error, "cache tier read failed; treating as a miss");
            return None;
        }
    };
    // The key already covers the partition; comparing the entry's own record as well means
    // even a hash collision can never serve one partition's data to another.
    (entry.partition == partition.id && assess(&entry.times, now) != Usability::Unusable)
        .then_some(entry)
}

/// Builds a response from a stored entry: refcount copies of headers and body, plus `Age`
/// and `Cache-Status`.
fn serve_entry(
    entry: &Arc<Entry>,
    status: CacheStatus,
    now: SystemTime,
    is_head: bool,
) -> Response<Body> {
    let body = if is_head {
        empty()
    } else {
        full(entry.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = entry.status;
    *response.headers_mut() = entry.headers.clone();
    let headers = response.headers_mut();
    if is_head && entry.status != StatusCode::NO_CONTENT && entry.status != StatusCode::NOT_MODIFIED
    {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    set_age(headers, entry.age(now));
    set_cache_status(headers, status);
    response
}

/// Methods other than GET and HEAD: forwarded with their body streamed, never stored.
async fn pass<T: Tier>(
    shared: &Arc<Shared<T>>,
    route: &Route,
    target: &Target,
    client: ClientInfo,
    request: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = request.into_parts();
    let limit = usize::try_from(shared.limits.max_body_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(body, limit).boxed_unsync();
    let request = origin_request(
        route,
        target,
        parts.method,
        parts.headers,
        client,
        shared,
        body,
    )?;
    let response = shared.origin.send(request, route.timeout).await?;
    let (mut head, body) = response.into_parts();
    clean_response(&mut head.headers);
    set_cache_status(&mut head.headers, CacheStatus::Method);
    Ok(Response::from_parts(
        head,
        streamed(Vec::new(), body, route.timeout),
    ))
}

/// The request to the origin: normalized target on the upstream, end-to-end headers,
/// forwarding headers; `Host` is the upstream's (the client's host travels in
/// `X-Forwarded-Host`).
fn origin_request<T>(
    route: &Route,
    target: &Target,
    method: Method,
    mut headers: HeaderMap,
    client: ClientInfo,
    shared: &Shared<T>,
    body: Body,
) -> Result<Request<Body>, ProxyError> {
    remove_hop_by_hop(&mut headers);
    headers.remove(HOST);
    add_forwarding(&mut headers, client, &shared.limits.trusted_proxies, target);
    let base = route.upstream.path().trim_end_matches('/');
    let mut builder = Uri::builder().path_and_query(format!("{base}{}", target.path_and_query()));
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

/// What a fill produced for the request that started it.
enum FillOutcome {
    /// Stored; serve the entry.
    Stored(Arc<Entry>),
    /// Not stored; the origin's response, streaming.
    Passed(Response<Body>),
}

/// One origin fetch for a key, and the storage decision on its response.
struct Fill<T> {
    shared: Arc<Shared<T>>,
    route: Arc<Route>,
    target: Target,
    partition: Partition,
    key: CacheKey,
}

impl<T: Tier> Fill<T> {
    async fn run(self, request: Request<Body>) -> Result<FillOutcome, ProxyError> {
        let shared = &self.shared;
        let deadline = Instant::now() + self.route.timeout;
        let request_time = shared.clock.now();
        let response = shared.origin.send(request, self.route.timeout).await?;
        let response_time = shared.clock.now();
        let (mut head, body) = response.into_parts();
        let origin_tags = clean_response(&mut head.headers);
        let sanitized = sanitized_request(&self.target, &self.partition);
        let decision = decide(
            &self.route,
            &sanitized,
            &self.partition,
            head.status,
            &head.headers,
            request_time,
            response_time,
        );
        let max = shared.limits.max_object_bytes;
        let times = match decision {
            Decision::Store(times)
                if content_length(&head.headers).is_none_or(|len| len <= max) =>
            {
                times
            }
            Decision::Store(_) | Decision::DontStore(_) => {
                tracing::debug!(key = %self.key, ?decision, "not storing");
                let body = streamed(Vec::new(), body, self.route.timeout);
                return Ok(FillOutcome::Passed(Response::from_parts(head, body)));
            }
        };
        match read_limited(body, max, deadline).await? {
            Read::Complete(body) => {
                let tags = self.tags(origin_tags);
                let entry = Arc::new(build_entry(head, body, &self.partition, tags, times));
                let keep = entry.keep_for(response_time);
                if let Err(error) = shared.tier.put(&self.key, Arc::clone(&entry), keep).await {
                    tracing::warn!(key = %self.key, %error, "cache tier write failed");
                }
                Ok(FillOutcome::Stored(entry))
            }
            Read::TooLarge { prefix, rest } => {
                tracing::debug!(key = %self.key, max, "response over max_object_bytes; streamed, not stored");
                let body = streamed(prefix, rest, self.route.timeout);
                Ok(FillOutcome::Passed(Response::from_parts(head, body)))
            }
        }
    }

    /// The entry's tags: the origin's (bounded), the route's, and automatic ones made of
    /// fingerprints only.
    fn tags(&self, origin_tags: Vec<String>) -> Vec<String> {
        let limits = &self.shared.limits;
        let route = &self.route;
        let mut tags: Vec<String> = Vec::with_capacity(origin_tags.len() + route.tags.len() + 3);
        let mut dropped = 0usize;
        for tag in origin_tags.into_iter().chain(route.tags.iter().cloned()) {
            if tag.len() > limits.max_tag_bytes || tags.len() >= limits.max_tags_per_entry {
                dropped += 1;
            } else if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if dropped > 0 {
            tracing::debug!(key = %self.key, dropped, "tags over the limits dropped");
        }
        tags.push(format!("route:{}", route.name));
        let url = url_fingerprint(&route.name, &self.target, &route.ignore_query_params);
        tags.push(format!("url:{url}"));
        for (header, fingerprint) in &self.partition.parts {
            tags.push(format!("part:{header}:{fingerprint}"));
        }
        tags
    }
}

fn build_entry(
    head: http::response::Parts,
    body: Bytes,
    partition: &Partition,
    tags: Vec<String>,
    times: EntryTimes,
) -> Entry {
    let mut headers = head.headers;
    // Framing is the server's business: it knows the stored body's length.
    headers.remove(CONTENT_LENGTH);
    Entry {
        status: head.status,
        headers,
        body,
        partition: partition.id,
        tags,
        times,
    }
}

enum Read {
    Complete(Bytes),
    /// Over the limit: what was read so far and the rest of the body, to stream.
    TooLarge {
        prefix: Vec<Bytes>,
        rest: hyper::body::Incoming,
    },
}

/// Reads a body to the end, unless it grows past `max` or `deadline` passes.
async fn read_limited(
    mut body: hyper::body::Incoming,
    max: u64,
    deadline: Instant,
) -> Result<Read, OriginError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total: u64 = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(OriginError::Timeout),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|error| OriginError::Exchange(error.into()))?,
        };
        // Trailers are not stored.
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            chunks.push(data);
            if total > max {
                return Ok(Read::TooLarge {
                    prefix: chunks,
                    rest: body,
                });
            }
        }
    }
    Ok(Read::Complete(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut all = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }))
}

/// Streams `prefix` and then the rest of an origin body to the client. A body that fails or
/// stalls for `idle` yields an error, which makes the server abort the client connection:
/// headers are already sent, and a truncated body must not look complete.
fn streamed(prefix: Vec<Bytes>, rest: hyper::body::Incoming, idle: Duration) -> Body {
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

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
