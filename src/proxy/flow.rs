//! The request path: normalize → route → look up → serve, or fill from the origin → store.
//!
//! GET and HEAD go through the cache; every other method passes through (`fwd=method`). On a
//! miss, requests for one key share one fill (the coalescer); a stale entry is served at once
//! within stale-while-revalidate while one background refresh runs, and stands in for a failing
//! origin within stale-if-error.

use std::convert::Infallible;
use std::future::{Future, Ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::future::Either;
use http::{HeaderMap, Method, Request, Response};

use super::error::ProxyError;
use super::fill::{Answer, Failure, Fill, FillLeader, FillOutcome};
use super::forward::{content_length, origin_headers};
use super::headers::{ClientInfo, set_cache_status, strip_for_fill};
use super::observe::Observed;
use super::serve::{ServeAs, serve_entry};
use super::{Body, Settings, Shared, empty, refresh};
use crate::cache::request::RequestDirectives;
use crate::cache::vary::{variant_fingerprint, variant_key};
use crate::cache::{
    CacheKey, CacheStatus, Entry, Partition, Target, Usability, assess, assess_soft_purged,
    early_refresh_possible, refresh_early, ttl_secs,
};
use crate::coalesce::lease::{Lease, LeaseOutcome};
use crate::coalesce::{Flight, Waited};
use crate::config::Route;
use crate::purge::{EntryRef, Verdict};
use crate::tiers::Source;

/// How much longer than the route's timeout a follower waits before taking over a fill:
/// the leader's own deadline passes first.
const FOLLOWER_MARGIN: Duration = Duration::from_secs(1);

/// The future of one request: ready at once when the answer needed no waiting, boxed
/// otherwise.
pub type ProxyFuture = Either<
    Ready<Result<Response<Body>, Infallible>>,
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>,
>;

/// Starts one client request; every failure becomes a response here. What needs no waiting
/// (a usable entry in memory, or a request refused before any I/O) is answered here and now:
/// the hit path never builds the future of the whole request path, several kilobytes that
/// would be allocated and copied per request. Everything else continues in a boxed future.
pub(super) fn begin(
    shared: &Arc<Shared>,
    request: Request<Body>,
    peer: Option<IpAddr>,
) -> ProxyFuture {
    let observed = Observed::begin(shared, &request);
    let mut routed = None;
    let answered = |observed: Observed, routed: Option<Arc<Route>>, response: Response<Body>| {
        observed.finish(shared, routed.as_deref(), &response);
        Either::Left(std::future::ready(Ok(response)))
    };
    let next = match route(shared, request, peer, &mut routed) {
        Ok(next) => next,
        // `into_response` logs it, once.
        Err(error) => return answered(observed, routed, error.into_response()),
    };
    match next {
        Next::Cached(cacheable) => {
            if let Some(response) = cacheable.memory_answer(shared.clock.now()) {
                return answered(observed, routed, response);
            }
            let shared = Arc::clone(shared);
            Either::Right(Box::pin(async move {
                let response = cacheable.answer().await;
                observed.finish(&shared, routed.as_deref(), &response);
                Ok(response)
            }))
        }
        Next::Pass(pass) => {
            let shared = Arc::clone(shared);
            Either::Right(Box::pin(async move {
                let response = pass
                    .run(&shared)
                    .await
                    .unwrap_or_else(ProxyError::into_response);
                observed.finish(&shared, routed.as_deref(), &response);
                Ok(response)
            }))
        }
    }
}

/// Where a routed request goes.
enum Next {
    /// GET and HEAD: through the cache.
    Cached(Cacheable),
    /// Every other method: to the origin (`fwd=method`).
    Pass(Passing),
}

/// A request passed through to the origin.
struct Passing {
    settings: Arc<Settings>,
    route: Arc<Route>,
    target: Target,
    client: ClientInfo,
    request: Request<Body>,
}

impl Passing {
    async fn run(self, shared: &Arc<Shared>) -> Result<Response<Body>, ProxyError> {
        super::pass::pass(
            shared,
            &self.settings,
            &self.route,
            &self.target,
            self.client,
            self.request,
        )
        .await
    }
}

/// Checks the request and chooses its route. Sets `routed` once a route is chosen, so that
/// even an error answer is counted on it.
fn route(
    shared: &Arc<Shared>,
    request: Request<Body>,
    peer: Option<IpAddr>,
    routed: &mut Option<Arc<Route>>,
) -> Result<Next, ProxyError> {
    // One snapshot per request: a reload in flight never mixes two sets of rules in one answer.
    let settings = shared.settings();
    super::guard::check(&request, &settings)?;
    let target = Target::from_request(request.uri(), request.headers())?;
    let route = Arc::clone(
        settings
            .routes
            .route(&target.host, &target.path)
            .ok_or(ProxyError::NoRoute)?,
    );
    *routed = Some(Arc::clone(&route));
    if content_length(request.headers()).is_some_and(|len| len > settings.limits.max_body_bytes) {
        return Err(ProxyError::BodyTooLarge);
    }
    let client = ClientInfo {
        peer,
        version: request.version(),
    };
    // The access log (`observe`) records every answer; nothing more to log here.
    Ok(if matches!(*request.method(), Method::GET | Method::HEAD) {
        Next::Cached(Cacheable::new(
            shared, settings, route, target, client, request,
        ))
    } else {
        Next::Pass(Passing {
            settings,
            route,
            target,
            client,
            request,
        })
    })
}

/// One cacheable request on its way through lookup and fill.
struct Lookup {
    shared: Arc<Shared>,
    /// The request's snapshot of routes, key rules and limits.
    settings: Arc<Settings>,
    route: Arc<Route>,
    target: Target,
    partition: Partition,
    /// The URL's key in this partition.
    primary: CacheKey,
    /// The key looked up and filled: the primary key, or the variant's once the stored Vary
    /// spec selected one (RFC 9111 §4.1).
    key: CacheKey,
    serve: ServeAs,
}

/// An entry a lookup may use, where it was, and what it may be used for (its freshness, after
/// any soft purge).
struct Found {
    entry: Arc<Entry>,
    source: Source,
    usability: Usability,
}

/// What a stored entry is to this request.
enum Usable {
    Yes(Found),
    /// Another partition's, or past every use.
    No,
    /// Removed by a purge: to be freed.
    Purged,
}

/// Why a cacheable request went to the origin: it decides the `Cache-Status` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// No usable entry (or a stale one): `fwd=miss` / `fwd=stale`.
    Miss,
    /// The URL's Vary spec is known but this variant is not stored: `fwd=vary-miss`.
    VaryMiss,
    /// The key is remembered as not storable: `fwd=bypass; detail=hit-for-miss`.
    HitForMiss,
    /// The client's own directives required it: `fwd=request` (RFC 9111 §5.2.1).
    Request,
}

/// A GET or HEAD once its key is known.
struct Cacheable {
    lookup: Lookup,
    client_headers: HeaderMap,
    client: ClientInfo,
    directives: RequestDirectives,
}

impl Cacheable {
    fn new(
        shared: &Arc<Shared>,
        settings: Arc<Settings>,
        route: Arc<Route>,
        target: Target,
        client: ClientInfo,
        request: Request<Body>,
    ) -> Self {
        let (parts, _body) = request.into_parts();
        let client_headers = parts.headers;
        let serve = ServeAs::new(&parts.method, &client_headers);
        let partition = settings
            .hasher
            .partition(&route.key_headers, &client_headers);
        let primary = CacheKey::build(&route.name, &target, &route.ignore_query_params, &partition);
        let directives = if route.ignore_client_cache_control {
            RequestDirectives::default()
        } else {
            RequestDirectives::parse(&client_headers)
        };
        Self {
            lookup: Lookup {
                shared: Arc::clone(shared),
                settings,
                route,
                target,
                partition,
                primary,
                key: primary,
                serve,
            },
            client_headers,
            client,
            directives,
        }
    }

    /// The answer of an entry in memory under the primary key, when the URL does not vary and
    /// the entry answers without the origin; `None` leaves the request to [`Self::answer`].
    fn memory_answer(&self, now: SystemTime) -> Option<Response<Body>> {
        let lookup = &self.lookup;
        let entry = lookup.shared.tiers.memory_now(&lookup.primary)?;
        if !entry.meta.vary.is_empty() {
            return None;
        }
        match lookup.usable(entry, Source::Memory, now) {
            Usable::Yes(found) => self.stored_answer(&found, now, &mut Why::Miss),
            Usable::No | Usable::Purged => None,
        }
    }

    /// The answer a usable entry gives without the origin: fresh, or stale within
    /// stale-while-revalidate or the client's `max-stale`; spawns the refresh it calls for.
    /// `None` when the origin must answer, with `why` set when the client's directives
    /// decided it.
    fn stored_answer(
        &self,
        found: &Found,
        now: SystemTime,
        why: &mut Why,
    ) -> Option<Response<Body>> {
        let Found {
            entry,
            source,
            usability,
        } = found;
        let lookup = &self.lookup;
        let ttl = ttl_secs(&entry.times, now);
        match usability {
            Usability::Fresh => {
                let age = Duration::from_secs(entry.age(now));
                if self.directives.accepts_fresh(&entry.times, age, now) {
                    let beta = lookup.route.early_refresh_beta;
                    if early_refresh_possible(&entry.times, now, beta)
                        && refresh_early(&entry.times, now, beta, lookup.shared.sample())
                    {
                        refresh::spawn(&lookup.shared, lookup.key, || {
                            self.fill(Some(Arc::clone(entry)))
                        });
                    }
                    let status = CacheStatus::Hit {
                        ttl,
                        shared: *source == Source::Shared,
                    };
                    return Some(serve_entry(entry, status, now, &lookup.serve));
                }
                *why = Why::Request;
            }
            Usability::Stale {
                within_swr: true, ..
            } if !self.directives.no_cache => {
                refresh::spawn(&lookup.shared, lookup.key, || {
                    self.fill(Some(Arc::clone(entry)))
                });
                // A soft-purged entry is stale before its time: never report a positive ttl.
                let status = CacheStatus::StaleWhileRevalidate { ttl: ttl.min(-1) };
                return Some(serve_entry(entry, status, now, &lookup.serve));
            }
            Usability::Stale { .. } if self.directives.accepts_stale(&entry.times, now) => {
                let status = CacheStatus::Hit {
                    ttl,
                    shared: *source == Source::Shared,
                };
                return Some(serve_entry(entry, status, now, &lookup.serve));
            }
            Usability::Stale { .. } | Usability::Unusable => {}
        }
        None
    }

    /// The fill of this request, built only when one happens: hits stay cheap.
    fn fill(&self, stale: Option<Arc<Entry>>) -> Fill {
        let lookup = &self.lookup;
        let mut headers = self.client_headers.clone();
        strip_for_fill(&mut headers);
        Fill {
            shared: Arc::clone(&lookup.shared),
            settings: Arc::clone(&lookup.settings),
            route: Arc::clone(&lookup.route),
            target: lookup.target.clone(),
            partition: lookup.partition.clone(),
            primary: lookup.primary,
            key: lookup.key,
            headers: origin_headers(
                headers,
                self.client,
                &lookup.settings.limits.trusted_proxies,
                &lookup.target,
            ),
            stale,
            no_store: self.directives.no_store,
            lease: None,
        }
    }

    /// The whole lookup (both tiers, variants) and, when no entry answers, the origin.
    async fn answer(mut self) -> Response<Body> {
        let now = self.lookup.shared.clock.now();
        let (found, mut why) = self.lookup.find(now, &self.client_headers).await;
        let stale = found.as_ref().map(|f| Arc::clone(&f.entry));
        if let Some(found) = &found {
            if let Some(response) = self.stored_answer(found, now, &mut why) {
                return response;
            }
        }
        if self.directives.only_if_cached {
            // RFC 9111 §5.2.1.7: no stored response satisfies the request.
            return ProxyError::NotCached.into_response();
        }
        if self.directives.no_store {
            // Nothing of this exchange may be stored, so it shares no fill either.
            let answer = run_fill(self.fill(stale.clone()), None).await;
            return self.lookup.respond(answer, stale.as_ref(), Why::Request);
        }
        if self.lookup.shared.hit_for_miss.holds(&self.lookup.key, now) {
            // Remembered as not storable: straight to the origin, nobody queues behind it, and
            // the client's own Range and conditionals travel with it since nothing will be
            // stored.
            let mut passing = self.fill(None);
            passing.headers = origin_headers(
                self.client_headers.clone(),
                self.client,
                &self.lookup.settings.limits.trusted_proxies,
                &self.lookup.target,
            );
            let answer = run_fill(passing, None).await;
            return self.lookup.respond(answer, stale.as_ref(), Why::HitForMiss);
        }

        let patience = self.lookup.route.timeout + FOLLOWER_MARGIN;
        let leader = match self.lookup.shared.coalescer.join(self.lookup.key) {
            Flight::Leader(leader) => leader,
            Flight::Follower(waiter) => match waiter.wait(patience).await {
                Waited::Done(outcome) => {
                    return self
                        .lookup
                        .follow(
                            outcome,
                            stale.as_ref(),
                            &|stale| self.fill(stale),
                            &self.client_headers,
                        )
                        .await;
                }
                Waited::Lead(leader) => {
                    // The previous leader went away; its fill may still have stored the entry.
                    let now = self.lookup.shared.clock.now();
                    let stored = self.lookup.stored_for(now, &self.client_headers).await;
                    if let Some(Found {
                        entry,
                        usability: Usability::Fresh,
                        ..
                    }) = stored
                    {
                        leader.finish(FillOutcome::Stored(Arc::clone(&entry)));
                        return serve_entry(
                            &entry,
                            CacheStatus::Collapsed,
                            now,
                            &self.lookup.serve,
                        );
                    }
                    leader
                }
            },
        };
        let (leader, lease) = match self
            .lookup
            .across_instances(leader, &self.client_headers)
            .await
        {
            Across::Fill(leader, lease) => (leader, lease),
            Across::Served(response) => return response,
        };
        let mut leading = self.fill(stale.clone());
        leading.lease = lease;
        // A fill task that dies drops its leader guard, which wakes any followers.
        let answer = run_fill(leading, Some(leader)).await;
        self.lookup.respond(answer, stale.as_ref(), why)
    }
}

/// What the in-process leader does about other instances.
enum Across {
    /// Fill: with the lease, or without one when Redis is absent or failing.
    Fill(FillLeader, Option<Lease>),
    /// Another instance filled it; served from the shared tier.
    Served(Response<Body>),
}

/// Runs a fill in its own task: a client that goes away does not abandon it.
async fn run_fill(fill: Fill, leader: Option<FillLeader>) -> Result<Answer, ProxyError> {
    tokio::spawn(fill.run(leader))
        .await
        .map_err(|join| ProxyError::Internal(join.into()))
}

impl Lookup {
    /// Takes the cross-instance lease for this key, or waits for the instance holding it and
    /// serves what it stored.
    async fn across_instances(&self, leader: FillLeader, request_headers: &HeaderMap) -> Across {
        let Some(leases) = &self.shared.leases else {
            return Across::Fill(leader, None);
        };
        if !self.shared.tiers.shared_available() {
            // The breaker is open: no Redis latency, one fill per key in this process only.
            return Across::Fill(leader, None);
        }
        let ttl = self.shared.lease_ttl(&self.route);
        match leases.acquire(&self.key, ttl).await {
            Ok(Some(lease)) => return Across::Fill(leader, Some(lease)),
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(key = %self.key, %error, "no lease; filling without one");
                return Across::Fill(leader, None);
            }
        }
        // Registered before re-reading: a publish in between is not missed.
        let registration = leases.register(&self.key);
        let leader = match self.collapse_into_stored(leader, request_headers).await {
            Ok(response) => return Across::Served(response),
            Err(leader) => leader,
        };
        // The holder releases its lease before it publishes: a lease that is gone now was
        // released before this registration, and its outcome may have been missed (one that
        // left nothing in the shared tier: not storable, failed). Take the lease and fill.
        match leases.acquire(&self.key, ttl).await {
            Ok(Some(lease)) => return Across::Fill(leader, Some(lease)),
            Ok(None) => {}
            Err(_) => return Across::Fill(leader, None),
        }
        if registration.wait(ttl).await != Some(LeaseOutcome::Stored) {
            // Not storable, failed, or the holder vanished: fill here.
            return Across::Fill(leader, None);
        }
        match self.collapse_into_stored(leader, request_headers).await {
            Ok(response) => Across::Served(response),
            Err(leader) => Across::Fill(leader, None),
        }
    }

    /// Serves a fresh entry another fill stored, sharing it with local followers; gives the
    /// leadership back when there is none.
    async fn collapse_into_stored(
        &self,
        leader: FillLeader,
        request_headers: &HeaderMap,
    ) -> Result<Response<Body>, FillLeader> {
        let now = self.shared.clock.now();
        match self.stored_for(now, request_headers).await {
            Some(found) if found.usability == Usability::Fresh => {
                leader.finish(FillOutcome::Stored(Arc::clone(&found.entry)));
                Ok(serve_entry(
                    &found.entry,
                    CacheStatus::Collapsed,
                    now,
                    &self.serve,
                ))
            }
            _ => Err(leader),
        }
    }

    /// What every purge says of `entry`: shared purges by sequence, local-only ones by the time
    /// its fill started. The stricter verdict wins.
    fn verdict(&self, entry: &Entry) -> Verdict {
        let shared = EntryRef {
            tags: &entry.tags,
            path: &entry.meta.path,
            seq: entry.meta.purge_seq,
        };
        let fill_started = entry
            .times
            .stored_at
            .checked_sub(entry.times.fetch_duration);
        let local = EntryRef {
            seq: fill_started.map(crate::purge::unix_ms).unwrap_or_default(),
            ..shared
        };
        match (
            self.shared.watermarks.verdict(shared),
            self.shared.local_marks.verdict(local),
        ) {
            (Verdict::Invalid, _) | (_, Verdict::Invalid) => Verdict::Invalid,
            (Verdict::Stale, _) | (_, Verdict::Stale) => Verdict::Stale,
            (Verdict::Valid, Verdict::Valid) => Verdict::Valid,
        }
    }

    /// What another fill stored for this request: the entry under its key, and when that is
    /// the primary key of a URL found to vary, the variant this request selects (never the
    /// primary entry itself, which is the variant of whoever filled it).
    async fn stored_for(&self, now: SystemTime, request_headers: &HeaderMap) -> Option<Found> {
        let found = self.find_at(&self.key, now).await?;
        if self.key != self.primary || found.entry.meta.vary.is_empty() {
            return Some(found);
        }
        let names = &found.entry.meta.vary;
        let variant = variant_fingerprint(&self.settings.hasher, names, request_headers);
        self.find_at(&variant_key(&self.primary, names, &variant), now)
            .await
    }

    /// The usable entry for this request, two steps when the URL varies: the primary key's
    /// entry carries the Vary spec, whose header values select the variant's key. Also says
    /// why a request without a usable entry goes to the origin.
    async fn find(&mut self, now: SystemTime, request_headers: &HeaderMap) -> (Option<Found>, Why) {
        let Some(found) = self.find_at(&self.primary, now).await else {
            return (None, Why::Miss);
        };
        let names = &found.entry.meta.vary;
        if names.is_empty() {
            return (Some(found), Why::Miss);
        }
        let variant = variant_fingerprint(&self.settings.hasher, names, request_headers);
        self.key = variant_key(&self.primary, names, &variant);
        match self.find_at(&self.key, now).await {
            Some(found) => (Some(found), Why::Miss),
            None => (None, Why::VaryMiss),
        }
    }

    /// The entry under `key` if it belongs to this partition, survived every purge and may
    /// still be used.
    async fn find_at(&self, key: &CacheKey, now: SystemTime) -> Option<Found> {
        let (entry, source) = self.shared.tiers.get(key, now).await?;
        match self.usable(entry, source, now) {
            Usable::Yes(found) => Some(found),
            Usable::No => None,
            Usable::Purged => {
                // Free it now rather than at expiry.
                self.shared.tiers.remove(key).await;
                None
            }
        }
    }

    /// What `entry`, read from `source`, is to this request.
    fn usable(&self, entry: Arc<Entry>, source: Source, now: SystemTime) -> Usable {
        // The key already covers the partition; comparing the entry's own record as well means
        // even a hash collision can never serve one partition's data to another.
        if entry.partition != self.partition.id {
            return Usable::No;
        }
        let usability = match self.verdict(&entry) {
            Verdict::Valid => assess(&entry.times, now),
            Verdict::Stale => assess_soft_purged(&entry.times, now),
            Verdict::Invalid => return Usable::Purged,
        };
        if usability == Usability::Unusable {
            return Usable::No;
        }
        Usable::Yes(Found {
            entry,
            source,
            usability,
        })
    }

    /// The `Cache-Status` of an answer from the origin with status `fwd_status`.
    fn forwarded(why: Why, stale: bool, fwd_status: u16, stored: bool) -> CacheStatus {
        match why {
            Why::HitForMiss if !stored => CacheStatus::HitForMiss,
            Why::Request => CacheStatus::Request { fwd_status, stored },
            // A remembered-as-not-storable key whose response is now stored is a plain miss.
            Why::VaryMiss => CacheStatus::VaryMiss { stored },
            Why::Miss | Why::HitForMiss if stale => CacheStatus::Stale { fwd_status, stored },
            Why::Miss | Why::HitForMiss => CacheStatus::Miss { stored },
        }
    }

    /// The answer of a fill this request ran.
    fn respond(
        &self,
        answer: Result<Answer, ProxyError>,
        stale: Option<&Arc<Entry>>,
        why: Why,
    ) -> Response<Body> {
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
                set_cache_status(&mut response, status);
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
        fill: &impl Fn(Option<Arc<Entry>>) -> Fill,
        request_headers: &HeaderMap,
    ) -> Response<Body> {
        let now = self.shared.clock.now();
        match outcome {
            FillOutcome::Stored(entry)
                if entry.meta.vary.is_empty() || self.key != self.primary =>
            {
                serve_entry(&entry, CacheStatus::Collapsed, now, &self.serve)
            }
            // The leader's response varies and the Vary spec was unknown when this request
            // joined: it is this request's answer only if this request selects the same variant.
            FillOutcome::Stored(entry) => {
                let names = &entry.meta.vary;
                let variant = variant_fingerprint(&self.settings.hasher, names, request_headers);
                let key = variant_key(&self.primary, names, &variant);
                if let Some(found) = self.find_at(&key, now).await {
                    if found.usability == Usability::Fresh {
                        return serve_entry(&found.entry, CacheStatus::Collapsed, now, &self.serve);
                    }
                }
                let mut own = fill(stale.cloned());
                own.key = key;
                let answer = run_fill(own, None).await;
                self.respond(answer, stale, Why::VaryMiss)
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
