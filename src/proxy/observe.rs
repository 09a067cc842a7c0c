//! What the request path reports about itself: request and origin metrics, the access-log
//! event, and the figures the admin API copies into the registry at scrape time.
//!
//! The cache outcome of a response is the [`CacheStatus`] that `set_cache_status` left in its
//! extensions; nothing is parsed back from headers. A response without one is an error answer:
//! it counts as `miss` for GET and HEAD (a cacheable request that reached no usable entry) and
//! as `pass` for other methods.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use super::headers::CACHE_STATUS;
use super::origin::OriginError;
use super::{Body, ProxyService, Shared};
use crate::cache::CacheStatus;
use crate::config::Route;
use crate::telemetry::Metrics;
use crate::telemetry::metrics::{OriginOutcome, Scrape};

/// The access-log event's target, so operators can route or filter it on its own.
const ACCESS_TARGET: &str = "cachet::access";

/// What is noted of a request before it is handled, to report once it is answered.
pub(super) struct Observed {
    method: Method,
    /// When the request began and its path only (never the query): for the access log, when
    /// it is on (otherwise no clock is read).
    access: Option<(Instant, String)>,
    /// The bounded tenant label, when per-tenant figures are on.
    tenant: Option<Arc<str>>,
}

impl Observed {
    pub(super) fn begin<B>(shared: &Shared, request: &Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            access: shared
                .access_log
                .then(|| (Instant::now(), request.uri().path().to_owned())),
            tenant: shared.metrics.tenant_label(request.headers()),
        }
    }

    /// Counts the answer on `route` (`None`: answered before a route was chosen) and writes the
    /// access-log event.
    pub(super) fn finish(self, shared: &Shared, route: Option<&Route>, response: &Response<Body>) {
        let metrics = &shared.metrics;
        let status = response.extensions().get::<CacheStatus>();
        match route {
            Some(route) => {
                let name = &route.name;
                let label = status.map_or_else(|| self.error_label(), CacheStatus::label);
                metrics.request(name, label, self.tenant.as_ref());
                match status {
                    Some(CacheStatus::StaleWhileRevalidate { .. }) => {
                        metrics.stale_served(name, "stale-while-revalidate");
                    }
                    Some(CacheStatus::StaleIfError { .. }) => {
                        metrics.stale_served(name, "stale-if-error");
                    }
                    Some(CacheStatus::Collapsed) => metrics.coalesced(name),
                    _ => {}
                }
            }
            None => metrics.unrouted(),
        }
        if let Some((started, path)) = &self.access {
            let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
            let cache = response
                .headers()
                .get(CACHE_STATUS)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info!(
                target: ACCESS_TARGET,
                route = route.map_or("-", |r| &*r.name),
                method = %self.method,
                path = %path,
                status = response.status().as_u16(),
                cache,
                tenant = self.tenant.as_deref(),
                duration_ms,
                "request"
            );
        }
    }

    /// The cache label of an error answer (no `Cache-Status`).
    fn error_label(&self) -> &'static str {
        if matches!(self.method, Method::GET | Method::HEAD) {
            "miss"
        } else {
            "pass"
        }
    }
}

impl Shared {
    /// Sends `request` to `route`'s origin within its timeout, counting the exchange and timing
    /// its response head.
    pub(crate) async fn send_to_origin(
        &self,
        route: &Route,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, OriginError> {
        let started = Instant::now();
        let result = self.origin.send(request, route.timeout).await;
        let outcome = match &result {
            Ok(response) => OriginOutcome::Status(response.status().as_u16()),
            Err(OriginError::Timeout) => OriginOutcome::Timeout,
            Err(_) => OriginOutcome::Error,
        };
        self.metrics.origin(&route.name, outcome, started.elapsed());
        result
    }
}

impl ProxyService {
    /// This instance's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The figures the proxy holds for a scrape: memory tier size (expired entries swept
    /// first), watermarks, fills in flight. The shared tier's part is left to the
    /// caller, which knows whether it is in sync.
    pub async fn scrape(&self) -> Scrape {
        let shared = &self.shared;
        let memory = shared.tiers.memory();
        memory.remove_expired();
        let watermarks = shared.watermarks.len() + shared.local_marks.len();
        Scrape {
            memory_bytes: memory.weighted_size(),
            memory_entries: memory.entry_count(),
            watermarks: watermarks as u64,
            fills_in_flight: shared.coalescer.in_flight() as u64,
            shared: None,
        }
    }
}
