//! The request path: normalize → route → look up → serve, or fill from the origin → store.
//!
//! GET and HEAD go through the cache; every other method passes through (`fwd=method`). On a
//! miss, requests for one key share one fill (the coalescer); a stale entry is served at once
//! within stale-while-revalidate while one background refresh runs, and stands in for a failing
//! origin within stale-if-error.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};

use super::error::ProxyError;
use super::fill::{Answer, Failure, Fill, FillLeader, FillOutcome};
use super::serve::{ServeAs, serve_entry};
use super::forward::{content_length, origin_headers, origin_request, streamed};
use super::headers::{CACHE_STATUS, ClientInfo, clean_response, set_cache_status, strip_for_fill};
use super::{Body, PeerAddr, Shared, empty, refresh};
use crate::cache::request::RequestDirectives;
use crate::cache::{
    CacheKey, CacheStatus, Entry, Partition, Target, Usability, assess, early_refresh_possible,
    refresh_early, ttl_secs,
};
use crate::coalesce::{Flight, Waited};
use crate::config::Route;
use crate::tiers::Tier;

/// How much longer than the route's timeout a follower waits before taking over a fill:
/// the leader's own deadline passes first.
const FOLLOWER_MARGIN: Duration = Duration::from_secs(1);

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
        cached(shared, Arc::clone(&route), target, client, request).await
    } else {
        pass(shared, &route, &target, client, request).await?
    };
    tracing::debug!(
        route = %route.name,
        status = response.status().as_u16(),
        cache = response.headers().get(CACHE_STATUS).and_then(|v| v.to_str().ok()).unwrap_or(""),
        "served"
    );
    Ok(response)
}

/// One cacheable request on its way through lookup and fill.
struct Lookup<T> {
    shared: Arc<Shared<T>>,
    route: Arc<Route>,
    target: Target,
    partition: Partition,
    key: CacheKey,
    serve: ServeAs,
}

/// Why a cacheable request went to the origin: it decides the `Cache-Status` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// No usable entry (or a stale one): `fwd=miss` / `fwd=stale`.
    Miss,
    /// The key is remembered as not storable: `fwd=bypass; detail=hit-for-miss`.
    HitForMiss,
    /// The client's own directives required it: `fwd=request` (RFC 9111 §5.2.1).
    Request,
}

/// GET and HEAD.
async fn cached<T: Tier>(
    shared: &Arc<Shared<T>>,
    route: Arc<Route>,
    target: Target,
    client: ClientInfo,
    request: Request<Body>,
) -> Response<Body> {
    let serve = ServeAs::new(request.method(), request.headers());
    let partition = shared.hasher.partition(&route.key_headers, request.headers());
    let key = CacheKey::build(&route.name, &target, &route.ignore_query_params, &partition);
    let directives = if route.ignore_client_cache_control {
        RequestDirectives::default()
    } else {
        RequestDirectives::parse(request.headers())
    };
    let lookup = Lookup { shared: Arc::clone(shared), route, target, partition, key, serve };
    let now = shared.clock.now();
    let found = lookup.find(now).await;
    // Fill headers are built only when a fill happens: hits stay cheap.
    let client_headers = request.into_parts().0.headers;
    let fill = |stale: Option<Arc<Entry>>| {
        let mut headers = client_headers.clone();
        strip_for_fill(&mut headers);
        Fill {
            shared: Arc::clone(shared),
            route: Arc::clone(&lookup.route),
            target: lookup.target.clone(),
            partition: lookup.partition.clone(),
            key: lookup.key,
            headers: origin_headers(headers, client, &shared.limits.trusted_proxies, &lookup.target),
            stale,
            no_store: directives.no_store,
        }
    };

    let mut why = Why::Miss;
    if let Some(entry) = &found {
        let ttl = ttl_secs(&entry.times, now);
        match assess(&entry.times, now) {
            Usability::Fresh => {
                let age = Duration::from_secs(entry.age(now));
                if directives.accepts_fresh(&entry.times, age, now) {
                    let beta = lookup.route.early_refresh_beta;
                    if early_refresh_possible(&entry.times, now, beta)
                        && refresh_early(&entry.times, now, beta, shared.sample())
                    {
                        refresh::spawn(fill(Some(Arc::clone(entry))));
                    }
                    return serve_entry(entry, CacheStatus::Hit { ttl, shared: false }, now, &lookup.serve);
                }
                why = Why::Request;
            }
            Usability::Stale { within_swr: true, .. } if !directives.no_cache => {
                refresh::spawn(fill(Some(Arc::clone(entry))));
                let status = CacheStatus::StaleWhileRevalidate { ttl };
                return serve_entry(entry, status, now, &lookup.serve);
            }
            Usability::Stale { .. } | Usability::Unusable => {}
        }
    }
    if directives.only_if_cached {
        // RFC 9111 §5.2.1.7: no stored response satisfies the request.
        return ProxyError::NotCached.into_response();
    }
    if directives.no_store {
        // Nothing of this exchange may be stored, so it shares no fill either.
        let answer = run_fill(fill(found.clone()), None).await;
        return lookup.respond(answer, found.as_ref(), Why::Request);
    }
    if shared.hit_for_miss.contains_key(&lookup.key) {
        // Remembered as not storable: straight to the origin, nobody queues behind it.
        let answer = run_fill(fill(found.clone()), None).await;
        return lookup.respond(answer, found.as_ref(), Why::HitForMiss);
    }

    let patience = lookup.route.timeout + FOLLOWER_MARGIN;
    let leader = match shared.coalescer.join(lookup.key) {
        Flight::Leader(leader) => leader,
        Flight::Follower(waiter) => match waiter.wait(patience).await {
            Waited::Done(outcome) => return lookup.follow(outcome, found.as_ref(), &fill).await,
            Waited::Lead(leader) => {
                // The previous leader went away; its fill may still have stored the entry.
                let now = shared.clock.now();
                let stored = lookup.find(now).await.filter(|e| assess(&e.times, now) == Usability::Fresh);
                if let Some(entry) = stored {
                    leader.finish(FillOutcome::Stored(Arc::clone(&entry)));
                    return serve_entry(&entry, CacheStatus::Collapsed, now, &lookup.serve);
                }
                leader
            }
        },
    };
    // A fill task that dies drops its leader guard, which wakes any followers.
    let answer = run_fill(fill(found.clone()), Some(leader)).await;
    lookup.respond(answer, found.as_ref(), why)
}

/// Runs a fill in its own task: a client that goes away does not abandon it.
async fn run_fill<T: Tier>(fill: Fill<T>, leader: Option<FillLeader>) -> Result<Answer, ProxyError> {
    tokio::spawn(fill.run(leader))
        .await
        .map_err(|join| ProxyError::Internal(join.into()))
}

impl<T: Tier> Lookup<T> {
    /// The entry under the key if it belongs to this partition and may still be used.
    async fn find(&self, now: SystemTime) -> Option<Arc<Entry>> {
        let entry = match self.shared.tier.get(&self.key).await {
            Ok(entry) => entry?,
            Err(error) => {
                tracing::warn!(key = %self.key, %error, "cache tier read failed; treating as a miss");
                return None;
            }
        };
        // The key already covers the partition; comparing the entry's own record as well means
        // even a hash collision can never serve one partition's data to another.
        (entry.partition == self.partition.id && assess(&entry.times, now) != Usability::Unusable)
            .then_some(entry)
    }

    /// The `Cache-Status` of an answer from the origin with status `fwd_status`.
    fn forwarded(why: Why, stale: bool, fwd_status: u16, stored: bool) -> CacheStatus {
        match why {
            Why::HitForMiss => CacheStatus::HitForMiss,
            Why::Request => CacheStatus::Request { fwd_status, stored },
            Why::Miss if stale => CacheStatus::Stale { fwd_status, stored },
            Why::Miss => CacheStatus::Miss { stored },
        }
    }

    /// The answer of a fill this request ran.
    fn respond(&self, answer: Result<Answer, ProxyError>, stale: Option<&Arc<Entry>>, why: Why) -> Response<Body> {
        let now = self.shared.clock.now();
        let had_stale = stale.is_some();
        match answer {
            Ok(Answer::Stored(entry)) => {
                let status = Self::forwarded(why, had_stale, entry.status.as_u16(), true);
                serve_entry(&entry, status, now, &self.serve)
            }
            Ok(Answer::Revalidated { entry, stored }) => {
                let status = Self::forwarded(why, had_stale, 304, stored);
                serve_entry(&entry, status, now, &self.serve)
            }
            Ok(Answer::Passed(mut response)) => {
                let status = Self::forwarded(why, had_stale, response.status().as_u16(), false);
                set_cache_status(response.headers_mut(), status);
                if self.serve.is_head() {
                    *response.body_mut() = empty();
                }
                response
            }
            Ok(Answer::Failed(failure)) => self.failed(&failure, stale, now, why),
            Err(error) => error.into_response(),
        }
    }

    /// A follower's answer from the leader's outcome.
    async fn follow(
        &self,
        outcome: FillOutcome,
        stale: Option<&Arc<Entry>>,
        fill: &impl Fn(Option<Arc<Entry>>) -> Fill<T>,
    ) -> Response<Body> {
        let now = self.shared.clock.now();
        match outcome {
            FillOutcome::Stored(entry) => {
                serve_entry(&entry, CacheStatus::Collapsed, now, &self.serve)
            }
            FillOutcome::Failed(failure) => self.failed(&failure, stale, now, Why::Miss),
            // Not storable: each follower asks the origin itself, as it would without a cache.
            FillOutcome::NotStorable => {
                let answer = run_fill(fill(stale.cloned()), None).await;
                self.respond(answer, stale, Why::Miss)
            }
        }
    }

    /// The origin failed: the stale entry stands in within stale-if-error (RFC 5861 §4),
    /// otherwise the failure itself.
    fn failed(
        &self,
        failure: &Failure,
        stale: Option<&Arc<Entry>>,
        now: SystemTime,
        why: Why,
    ) -> Response<Body> {
        if let Some(entry) = stale {
            if matches!(
                assess(&entry.times, now),
                Usability::Stale {
                    within_sie: true,
                    ..
                }
            ) {
                let status = CacheStatus::StaleIfError {
                    ttl: ttl_secs(&entry.times, now),
                    fwd_status: failure.fwd_status(),
                };
                return serve_entry(entry, status, now, &self.serve);
            }
        }
        let status = match failure.fwd_status() {
            Some(fwd_status) => Self::forwarded(why, stale.is_some(), fwd_status, false),
            None if why == Why::HitForMiss => CacheStatus::HitForMiss,
            None => CacheStatus::Miss { stored: false },
        };
        failure.to_response(status, self.serve.is_head())
    }
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
    let headers = origin_headers(
        parts.headers,
        client,
        &shared.limits.trusted_proxies,
        target,
    );
    let request = origin_request(route, target, parts.method, headers, body)?;
    let response = shared.origin.send(request, route.timeout).await?;
    let (mut head, body) = response.into_parts();
    clean_response(&mut head.headers);
    set_cache_status(&mut head.headers, CacheStatus::Method);
    Ok(Response::from_parts(
        head,
        streamed(Vec::new(), body, route.timeout),
    ))
}
