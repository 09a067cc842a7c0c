//! [`Fill`]: one origin fetch for a key, the storage decision on its response, and the
//! outcome shared with the coalescer's followers.
//!
//! A fill is a plain GET of the normalized target. It always runs in its own task, so a client
//! that disconnects does not abandon a response that may be stored.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, SET_COOKIE};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::REFRESH_BACKOFF;
use super::forward::{content_length, origin_request, streamed};
use super::headers::{clean_response, remove_hop_by_hop, set_cache_status};
use super::origin::{OriginError, OriginFault};
use super::{Body, Settings, Shared, empty, full};
use crate::cache::revalidation::{add_conditionals, merge_not_modified};
use crate::cache::vary::{VaryRule, variant_fingerprint, variant_key};
use crate::cache::{
    CacheKey, CacheStatus, Decision, Entry, EntryMeta, EntryTimes, Partition, Target, Timing,
    Usability, assess, decide, packed_headers, sanitized_request, url_fingerprint,
};
use crate::coalesce::LeaderGuard;
use crate::coalesce::lease::{Lease, LeaseOutcome};
use crate::config::Route;
use crate::purge::{is_automatic_tag, part_tag, route_tag, url_tag};

/// What followers of a fill receive.
#[derive(Debug, Clone)]
pub(crate) enum FillOutcome {
    /// Stored: serve it.
    Stored(Arc<Entry>),
    /// Not storable: go to the origin yourself (the key is now hit-for-miss).
    NotStorable,
    /// The origin failed: serve stale-if-error or the same failure.
    Failed(Failure),
}

/// The leader of a fill, as the coalescer knows it.
pub(crate) type FillLeader = LeaderGuard<CacheKey, FillOutcome>;

/// How the origin failed; shared, so every waiter answers the same.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// No usable response came.
    Origin(OriginFault),
    /// A 5xx answer, buffered so that every waiter can be given it.
    Status(Arc<Buffered>),
}

/// A complete response held in memory.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Failure {
    /// The origin's status, when it answered at all (`fwd-status` of RFC 9211).
    pub(crate) fn fwd_status(&self) -> Option<u16> {
        match self {
            Self::Status(buffered) => Some(buffered.status.as_u16()),
            Self::Origin(_) => None,
        }
    }

    /// The answer when no stale entry may stand in: the origin's own 5xx, or 502/504.
    pub(crate) fn to_response(&self, status: CacheStatus, is_head: bool) -> Response<Body> {
        let mut response = match self {
            Self::Status(buffered) => {
                let body = if is_head {
                    empty()
                } else {
                    full(buffered.body.clone())
                };
                let mut response = Response::new(body);
                *response.status_mut() = buffered.status;
                *response.headers_mut() = buffered.headers.clone();
                response
            }
            Self::Origin(fault) => fault.response(),
        };
        set_cache_status(&mut response, status);
        response
    }
}

impl From<OriginError> for Failure {
    fn from(error: OriginError) -> Self {
        // Logged here, once per fill: every waiter shares the failure without logging it.
        tracing::warn!(%error, source = ?std::error::Error::source(&error), "fill failed");
        Self::Origin(match error {
            OriginError::Connect(_) => OriginFault::Connect,
            OriginError::Timeout => OriginFault::Timeout,
            OriginError::Exchange(_) | OriginError::RequestBody(_) => OriginFault::Exchange,
        })
    }
}

/// What the request that ran the fill answers with.
pub(crate) enum Answer {
    Stored(Arc<Entry>),
    /// The stale entry was validated by a 304 (and stored again when still storable).
    Revalidated {
        entry: Arc<Entry>,
        stored: bool,
    },
    /// Not stored: the origin's response, streaming.
    Passed(Response<Body>),
    Failed(Failure),
}

/// One origin fetch for a key.
pub(crate) struct Fill {
    pub(crate) shared: Arc<Shared>,
    /// The snapshot of routes, key rules and limits of the request that started the fill.
    pub(crate) settings: Arc<Settings>,
    pub(crate) route: Arc<Route>,
    pub(crate) target: Target,
    pub(crate) partition: Partition,
    /// The URL's key in this partition: where the Vary spec lives.
    pub(crate) primary: CacheKey,
    /// The key this fill fills: the primary key, or a variant's key once the Vary spec is known.
    pub(crate) key: CacheKey,
    /// Request headers for the origin: end-to-end, forwarding added, fill-stripped.
    pub(crate) headers: HeaderMap,
    /// The stale entry the request found, if any: stands in when the origin fails.
    pub(crate) stale: Option<Arc<Entry>>,
    /// The client said `no-store`: nothing of this exchange is stored.
    pub(crate) no_store: bool,
    /// The cross-instance lease, when this instance fills for every instance sharing Redis.
    pub(crate) lease: Option<Lease>,
}

impl Fill {
    /// Fetches, decides, stores; shares the outcome with `leader`'s followers and remembers
    /// not-storable keys as hit-for-miss.
    pub(crate) async fn run(mut self, leader: Option<FillLeader>) -> Answer {
        let answer = self.fetch().await;
        let leases = self
            .shared
            .leases
            .as_ref()
            .filter(|_| self.shared.tiers.shared_available());
        // With the breaker open the lease is left to expire: waiters give up at its deadline.
        if let (Some(lease), Some(leases)) = (self.lease.take(), leases) {
            // Published after the entry is in Redis (`store` waited for it).
            let outcome = match &answer {
                Answer::Stored(_) | Answer::Revalidated { stored: true, .. } => {
                    LeaseOutcome::Stored
                }
                Answer::Revalidated { .. } | Answer::Passed(_) => LeaseOutcome::NotStorable,
                Answer::Failed(_) => LeaseOutcome::Failed,
            };
            leases.complete(lease, outcome).await;
        }
        let outcome = match &answer {
            Answer::Stored(entry) | Answer::Revalidated { entry, .. } => {
                self.shared.hit_for_miss.remove(&self.key);
                FillOutcome::Stored(Arc::clone(entry))
            }
            Answer::Passed(_) => {
                // A client's own `no-store` says nothing about the response.
                if !self.no_store {
                    let until = self.shared.clock.now() + self.shared.hit_for_miss_ttl;
                    self.shared.hit_for_miss.insert(self.key, until);
                }
                FillOutcome::NotStorable
            }
            Answer::Failed(failure) => {
                // Recorded before the key is released, so no refresh slips in between.
                let until = self.shared.clock.now() + REFRESH_BACKOFF;
                self.shared.refresh_backoff.insert(self.key, until);
                match failure {
                    // A cookie is one client's: waiters ask the origin themselves.
                    Failure::Status(buffered) if buffered.headers.contains_key(SET_COOKIE) => {
                        FillOutcome::NotStorable
                    }
                    _ => FillOutcome::Failed(failure.clone()),
                }
            }
        };
        if let Some(leader) = leader {
            leader.finish(outcome);
        }
        answer
    }

    async fn fetch(&self) -> Answer {
        let shared = &self.shared;
        let route = &self.route;
        // Stamped when the fetch starts: a purge that lands while it runs covers this response.
        let purge_seq = shared.watermarks.current_seq();
        let deadline = Instant::now() + route.timeout;
        // A copy: the stored variant's key is computed from these headers afterwards.
        let mut headers = self.headers.clone();
        // A stale entry with validators is revalidated rather than fetched again (RFC 9111 §4.3.1).
        let validating = self
            .stale
            .as_deref()
            .is_some_and(|stale| add_conditionals(stale, &mut headers));
        let request = match origin_request(route, &self.target, Method::GET, headers, empty()) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, route = %route.name, "cannot build origin request");
                return Answer::Failed(Failure::Origin(OriginFault::Exchange));
            }
        };
        let request_time = shared.clock.now();
        let response = match shared.send_to_origin(route, request).await {
            Ok(response) => response,
            Err(error) => return Answer::Failed(error.into()),
        };
        let response_time = shared.clock.now();
        let (mut head, body) = response.into_parts();
        if head.status == StatusCode::NOT_MODIFIED && validating {
            if let Some(stale) = &self.stale {
                return self
                    .revalidated(stale, head.headers, request_time, response_time, purge_seq)
                    .await;
            }
        }
        let server_error = head.status.is_server_error();
        // RFC 5861 §4: a 5xx is an error the stale entry may stand in for; never store it over
        // that entry.
        let stale_stands_in = server_error
            && self.stale.as_ref().is_some_and(|entry| {
                matches!(
                    assess(&entry.times, response_time),
                    Usability::Stale {
                        within_sie: true,
                        ..
                    }
                )
            });
        let sanitized = sanitized_request(&self.target, &self.partition);
        let decision = decide(
            route,
            &sanitized,
            &self.partition,
            head.status,
            &head.headers,
            Timing {
                request_time,
                response_time,
                jitter_sample: 1.0 - shared.sample(),
            },
        );
        // After the decision, which reads `Age` and `CDN-Cache-Control` before they go.
        let origin_tags = clean_response(&mut head.headers);
        let max = self.settings.limits.max_object_bytes;
        let times = match decision {
            Decision::Store(times)
                if !stale_stands_in
                    && !self.no_store
                    && content_length(&head.headers).is_none_or(|len| len <= max) =>
            {
                Some(times)
            }
            _ => None,
        };
        if times.is_none() && !server_error {
            tracing::debug!(key = %self.key, ?decision, "not storing");
            self.forget_replaced().await;
            return Answer::Passed(Response::from_parts(
                head,
                streamed(Vec::new(), body, route.timeout),
            ));
        }
        let body = match read_limited(body, max, deadline).await {
            Ok(Read::Complete(body)) => body,
            Ok(Read::TooLarge { prefix, rest }) => {
                tracing::debug!(key = %self.key, max, "response over max_object_bytes; streamed, not stored");
                self.forget_replaced().await;
                return Answer::Passed(Response::from_parts(
                    head,
                    streamed(prefix, rest, route.timeout),
                ));
            }
            Err(error) => return Answer::Failed(error.into()),
        };
        let Some(times) = times else {
            head.headers.remove(CONTENT_LENGTH);
            let buffered = Buffered {
                status: head.status,
                headers: head.headers,
                body,
            };
            return Answer::Failed(Failure::Status(Arc::new(buffered)));
        };
        let vary = match VaryRule::from_response(&head.headers) {
            VaryRule::Headers(names) => names,
            VaryRule::None => Vec::new(),
            // `decide` refuses `Vary: *`.
            VaryRule::Never => return Answer::Failed(Failure::Origin(OriginFault::Exchange)),
        };
        let meta = EntryMeta {
            path: self.target.path.clone(),
            purge_seq,
            vary,
        };
        let tags = self.tags(origin_tags);
        let entry = Arc::new(build_entry(head, body, &self.partition, tags, times, meta));
        self.store(&entry, response_time).await;
        Answer::Stored(entry)
    }

    /// The stale entry, updated by a 304 (RFC 9111 §4.3.4): same body, merged headers, new
    /// freshness.
    async fn revalidated(
        &self,
        stale: &Entry,
        not_modified: HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        purge_seq: u64,
    ) -> Answer {
        let mut headers = merge_not_modified(&stale.headers, &not_modified);
        remove_hop_by_hop(&mut headers);
        let sanitized = sanitized_request(&self.target, &self.partition);
        let decision = decide(
            &self.route,
            &sanitized,
            &self.partition,
            stale.status,
            &headers,
            Timing {
                request_time,
                response_time,
                jitter_sample: 1.0 - self.shared.sample(),
            },
        );
        clean_response(&mut headers);
        if self.no_store {
            let entry = Entry {
                headers,
                ..stale.clone()
            };
            return Answer::Revalidated {
                entry: Arc::new(entry),
                stored: false,
            };
        }
        let Decision::Store(times) = decision else {
            // Validated but no longer storable: serve this once, keep nothing.
            tracing::debug!(key = %self.key, ?decision, "revalidated response not storable");
            self.remove().await;
            let buffered = Entry {
                headers,
                times: stale.times,
                ..stale.clone()
            };
            return Answer::Revalidated {
                entry: Arc::new(buffered),
                stored: false,
            };
        };
        let meta = EntryMeta {
            purge_seq,
            ..stale.meta.clone()
        };
        let entry = Arc::new(Entry {
            headers: packed_headers(&headers),
            times,
            meta,
            ..stale.clone()
        });
        self.store(&entry, response_time).await;
        Answer::Revalidated {
            entry,
            stored: true,
        }
    }

    /// Stores under the primary key and, for a response with `Vary`, under its variant's key
    /// too: the primary entry carries the Vary spec that selects variants (RFC 9111 §4.1).
    async fn store(&self, entry: &Arc<Entry>, now: SystemTime) {
        // L1 at once; the shared tier off the response path (tier errors stop in `Tiered`).
        let mut keys = vec![self.primary];
        if !entry.meta.vary.is_empty() {
            let variant =
                variant_fingerprint(&self.settings.hasher, &entry.meta.vary, &self.headers);
            keys.push(variant_key(&self.primary, &entry.meta.vary, &variant));
        }
        let tiers = &self.shared.tiers;
        for key in keys {
            if self.lease.is_some() {
                // Other instances read it as soon as the outcome is published.
                tiers.put_through(&key, Arc::clone(entry), now).await;
            } else {
                tiers.put(&key, Arc::clone(entry), now).await;
            }
        }
    }

    /// The origin answered anew and its answer is not storable: the stale entry it replaces
    /// must not go on being served (unless only the client's own `no-store` kept it out).
    async fn forget_replaced(&self) {
        if self.stale.is_some() && !self.no_store {
            self.remove().await;
        }
    }

    async fn remove(&self) {
        self.shared.tiers.remove(&self.key).await;
    }

    /// The entry's tags: the origin's (bounded), the route's, and automatic ones made of
    /// fingerprints only.
    fn tags(&self, origin_tags: Vec<String>) -> Vec<String> {
        let limits = &self.settings.limits;
        let route = &self.route;
        let mut tags: Vec<String> = Vec::with_capacity(origin_tags.len() + route.tags.len() + 3);
        let mut dropped = 0usize;
        for tag in origin_tags.into_iter().chain(route.tags.iter().cloned()) {
            // An origin may not put its entries under another route's, URL's or partition's
            // purge (route tags with these prefixes are refused by the config).
            if tag.len() > limits.max_tag_bytes
                || tags.len() >= limits.max_tags_per_entry
                || is_automatic_tag(&tag)
            {
                dropped += 1;
            } else if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if dropped > 0 {
            tracing::debug!(key = %self.key, dropped, "tags over the limits or reserved dropped");
        }
        tags.push(route_tag(&route.name));
        let url = url_fingerprint(&route.name, &self.target, &route.ignore_query_params);
        tags.push(url_tag(url));
        for (header, fingerprint) in &self.partition.parts {
            tags.push(part_tag(header, fingerprint));
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
    meta: EntryMeta,
) -> Entry {
    let mut headers = packed_headers(&head.headers);
    // Framing is the server's business: it knows the stored body's length.
    headers.remove(CONTENT_LENGTH);
    Entry {
        meta,
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
        // A single frame is a slice of hyper's read buffer: copied, so a stored body keeps
        // only its own bytes alive.
        1 => Bytes::copy_from_slice(&chunks[0]),
        _ => {
            let mut all = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
            for chunk in chunks {
                all.extend_from_slice(&chunk);
            }
            all.freeze()
        }
    }))
}
