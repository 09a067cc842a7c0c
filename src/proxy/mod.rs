//! The client-facing proxy: [`ProxyService`], a tower `Service` whose error type is
//! `Infallible`, because every failure becomes a response.

mod error;
mod fill;
mod flow;
mod forward;
#[cfg(test)]
mod fuzz;
mod guard;
mod headers;
mod observe;
mod origin;
mod pass;
mod purge;
mod recent;
mod refresh;
mod router;
mod serve;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use ipnet::IpNet;

pub use error::ProxyError;
pub use flow::ProxyFuture;
pub use guard::GuardError;
pub use origin::{OriginClient, OriginError};
pub use purge::ResolveError;
pub use router::RouteTable;

use crate::cache::{CacheKey, PartitionHasher};
use crate::clock::Clock;
use crate::coalesce::Coalescer;
use crate::coalesce::lease::Leases;
use crate::config::Config;
use crate::purge::SharedWatermarks;
use crate::telemetry::Metrics;
use crate::tiers::Tiers;
use recent::RecentKeys;

/// Boxed error of bodies and sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response Cachet sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub(crate) fn empty() -> Body {
    full(Bytes::new())
}

/// Limits and trust settings the request path needs.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: u64,
    /// `[server] max_uri_bytes`: longer targets get 414 (HTTP/2 included).
    pub(crate) max_uri_bytes: usize,
    /// `[server] max_headers`: more header lines get 431 (hyper enforces it for HTTP/1).
    pub(crate) max_headers: usize,
    pub(crate) max_object_bytes: u64,
    pub(crate) max_tags_per_entry: usize,
    pub(crate) max_tag_bytes: usize,
    pub(crate) trusted_proxies: Vec<IpNet>,
}

/// State shared by every request.
#[derive(Debug)]
pub(crate) struct Shared {
    /// What a reload may change, swapped whole for new requests.
    settings: RwLock<Arc<Settings>>,
    pub(crate) tiers: Tiers,
    pub(crate) origin: OriginClient,
    pub(crate) clock: Arc<dyn Clock>,
    /// Purge watermarks: checked before every serve.
    pub(crate) watermarks: SharedWatermarks,
    /// Purges the shared tier could not record: numbered by local time in milliseconds and
    /// checked against each entry's fill start, never mixed with shared sequence numbers.
    pub(crate) local_marks: SharedWatermarks,
    /// One fill per key across instances, when the shared tier is configured.
    pub(crate) leases: Option<Arc<Leases>>,
    /// `[cache.redis] lease_ttl`; zero means the route's timeout plus a margin.
    pub(crate) lease_ttl: std::time::Duration,
    /// One fill per key at a time.
    pub(crate) coalescer: Arc<Coalescer<CacheKey, fill::FillOutcome>>,
    /// Keys whose last response was not storable, until when (`hit_for_miss_ttl` by
    /// [`Shared::clock`]): they bypass coalescing meanwhile.
    pub(crate) hit_for_miss: RecentKeys,
    /// `[cache] hit_for_miss_ttl`.
    pub(crate) hit_for_miss_ttl: std::time::Duration,
    /// Keys whose last background refresh failed, with the time (by [`Shared::clock`]) before
    /// which they are not refreshed again: an origin that is down is not sent a refresh per
    /// stale hit.
    pub(crate) refresh_backoff: RecentKeys,
    /// Jitter and early-refresh draws; seeded by tests for repeatable runs.
    // A std mutex: held for one draw, never across an await.
    rng: std::sync::Mutex<rand::rngs::SmallRng>,
    /// This instance's metrics.
    pub(crate) metrics: Metrics,
    /// `[log] access_log`: one event per answered request.
    pub(crate) access_log: bool,
}

/// Margin of a lease over the route's timeout: the holder's own deadline passes first.
const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The part of the configuration a reload swaps: routes, key rules and request limits.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) routes: RouteTable,
    pub(crate) hasher: PartitionHasher,
    pub(crate) limits: Limits,
    /// How long purge watermarks are kept ([`Config::watermark_retention`]).
    pub(crate) watermark_retention: Option<std::time::Duration>,
}

impl Settings {
    fn from_config(config: &Config) -> Self {
        Self {
            routes: RouteTable::new(&config.routes),
            hasher: PartitionHasher::new(config.cache.partition_secret.as_deref()),
            limits: Limits {
                max_body_bytes: config.server.max_body_bytes,
                max_uri_bytes: config.server.max_uri_bytes,
                max_headers: config.server.max_headers,
                max_object_bytes: config.cache.max_object_bytes,
                max_tags_per_entry: config.cache.max_tags_per_entry,
                max_tag_bytes: config.cache.max_tag_bytes,
                trusted_proxies: config.server.trusted_proxies.clone(),
            },
            watermark_retention: config.watermark_retention(),
        }
    }
}

impl Shared {
    /// The current routes, key rules and limits.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        Arc::clone(
            &self
                .settings
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// How long a fill's cross-instance lease lives: `lease_ttl`, or the route's timeout plus
    /// a margin.
    pub(crate) fn lease_ttl(&self, route: &crate::config::Route) -> std::time::Duration {
        if self.lease_ttl.is_zero() {
            route.timeout + LEASE_MARGIN
        } else {
            self.lease_ttl
        }
    }

    /// A uniform sample in `(0, 1]`.
    pub(crate) fn sample(&self) -> f64 {
        use rand::RngExt as _;
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        1.0 - rng.random::<f64>()
    }
}

/// How long a key whose background refresh failed is served stale without another attempt.
pub(crate) const REFRESH_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// The tower service for client traffic. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct ProxyService {
    shared: Arc<Shared>,
    /// The address of the client connection this copy serves, when there is one.
    peer: Option<IpAddr>,
}

impl ProxyService {
    /// This service for the requests of one client connection: its peer address is what
    /// `X-Forwarded-For` adds and trusted-proxy rules check.
    #[must_use]
    pub fn for_peer(&self, peer: SocketAddr) -> Self {
        Self {
            peer: Some(peer.ip()),
            ..self.clone()
        }
    }

    /// Swaps in the routes, key rules and request limits of `config` for new requests
    /// (requests in flight finish under the old ones). Listeners, tiers and the memory budget
    /// need a restart.
    pub fn reload(&self, config: &Config) {
        let settings = Arc::new(Settings::from_config(config));
        *self
            .shared
            .settings
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = settings;
    }

    /// Builds the service from the validated config, the tiers, a clock, the seed of its
    /// random draws (jitter, early refresh), the cross-instance leases and the instance's
    /// metrics.
    pub fn new(
        config: &Config,
        tiers: Tiers,
        origin: OriginClient,
        clock: Arc<dyn Clock>,
        seed: u64,
        leases: Option<Arc<Leases>>,
        metrics: Metrics,
    ) -> Self {
        use rand::SeedableRng as _;
        let shared = Shared {
            settings: RwLock::new(Arc::new(Settings::from_config(config))),
            tiers,
            origin,
            clock,
            watermarks: SharedWatermarks::new(),
            local_marks: SharedWatermarks::new(),
            leases,
            lease_ttl: config
                .cache
                .redis
                .as_ref()
                .map(|r| r.lease_ttl)
                .unwrap_or_default(),
            coalescer: Arc::new(Coalescer::new()),
            hit_for_miss: RecentKeys::new(rand::random()),
            hit_for_miss_ttl: config.cache.hit_for_miss_ttl,
            refresh_backoff: RecentKeys::new(rand::random()),
            rng: std::sync::Mutex::new(rand::rngs::SmallRng::seed_from_u64(seed)),
            metrics,
            access_log: config.log.access_log,
        };
        Self {
            shared: Arc::new(shared),
            peer: None,
        }
    }
}

impl<B> tower::Service<Request<B>> for ProxyService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ProxyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        flow::begin(&self.shared, request, self.peer)
    }
}
