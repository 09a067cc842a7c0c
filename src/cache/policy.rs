//! The storage decision (RFC 9111 §3) and the entry's times (§4.2), made once per fill.
//!
//! `http-cache-semantics` decides storability and the origin's freshness lifetime, on a
//! *sanitized* request that never carries raw credentials or key-header values. Route rules
//! are applied on top: `default_ttl` when the origin gave no freshness information, `max_ttl`
//! as a cap, the stale windows (RFC 5861) where the origin does not forbid them.

use std::time::{Duration, SystemTime};

use http::header::{
    AGE, AUTHORIZATION, CACHE_CONTROL, DATE, ETAG, EXPIRES, HeaderName, LAST_MODIFIED, PRAGMA,
    SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::entry::EntryTimes;
use super::key::{Partition, Target};
use super::vary::VaryRule;
use crate::config::Route;

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStorable {
    /// RFC 9111 §3 said no (`no-store`, `private` in a shared partition, credentials without
    /// `public`, a status the cache does not understand or may not store).
    Policy,
    /// `Set-Cookie` on a route without `cache_set_cookie`.
    SetCookie,
    /// `Vary: *`: never reusable (RFC 9111 §4.1).
    Vary,
    /// Nothing to serve: no freshness and no stale window.
    NoLifetime,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Store(EntryTimes),
    DontStore(NotStorable),
}

/// Shortest time an entry with a validator is kept past freshness: even `no-cache` entries
/// are worth a conditional request for a while.
const MIN_REVALIDATION_KEEP: Duration = Duration::from_secs(60);
/// Longest such time: beyond a day an unchanged validator is unlikely to save much.
const MAX_REVALIDATION_KEEP: Duration = Duration::from_secs(24 * 3600);

/// RFC 9213: directives for CDNs and reverse proxies, taking precedence over Cache-Control.
pub const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// Statuses `default_ttl` applies to: successful and permanent-redirect answers that are
/// cacheable by default (RFC 9110 §15.1). Error statuses are stored only when the origin marks
/// them cacheable itself.
const DEFAULT_TTL_STATUSES: [u16; 6] = [200, 203, 204, 300, 301, 308];

/// When a fill was sent and answered, and the jitter drawn for it.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// When the fill was sent.
    pub request_time: SystemTime,
    /// When its response head arrived.
    pub response_time: SystemTime,
    /// Uniform in `[0, 1)`: freshness is shortened by up to the route's `ttl_jitter` times this.
    pub jitter_sample: f64,
}

/// The request the policy is evaluated on: method, path and a placeholder for credentials.
/// Nothing secret reaches it, because the policy may be serialized into a shared tier.
pub fn sanitized_request(target: &Target, partition: &Partition) -> http::request::Parts {
    let mut request = http::Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = http::Uri::try_from(target.path_and_query())
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    if partition.had_credentials {
        request
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("redacted"));
    }
    request.into_parts().0
}

/// Decides whether a fill's response is stored and computes its times.
///
/// Jitter shortens freshness by up to the route's `ttl_jitter` fraction, so that entries
/// filled together do not all expire together.
pub fn decide(
    route: &Route,
    request: &http::request::Parts,
    partition: &Partition,
    status: StatusCode,
    headers: &HeaderMap,
    timing: Timing,
) -> Decision {
    let Timing {
        request_time,
        response_time,
        jitter_sample,
    } = timing;
    if headers.contains_key(SET_COOKIE) && !route.cache_set_cookie {
        return Decision::DontStore(NotStorable::SetCookie);
    }
    if VaryRule::from_response(headers) == VaryRule::Never {
        return Decision::DontStore(NotStorable::Vary);
    }
    if matches!(
        status,
        StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
    ) {
        return Decision::DontStore(NotStorable::Policy);
    }
    // In a per-credential partition the cache acts as a private cache (DESIGN.md
    // "Authenticated responses"): `private` may be stored.
    let shared = !partition.credential;
    // RFC 9213 §2.1: CDN-Cache-Control, when present, replaces Cache-Control (and Expires)
    // for this cache's decisions.
    let cdn = headers.get(CDN_CACHE_CONTROL).cloned();
    let cc = match &cdn {
        Some(value) => Directives::parse(std::iter::once(value)),
        None => Directives::parse(headers.get_all(CACHE_CONTROL)),
    };
    // RFC 9111 §3: `no-store`, and `private` in a shared cache, refuse storage outright; the
    // library would say the same after copying every header (2.7 % of a miss's CPU).
    if cc.has("no-store") || (shared && cc.has("private")) {
        return Decision::DontStore(NotStorable::Policy);
    }
    let expires = if cdn.is_some() {
        None
    } else {
        headers.get(EXPIRES)
    };
    let explicit = cc.has("max-age") || (shared && cc.has("s-maxage")) || expires.is_some();
    let mut response = http::Response::new(());
    // RFC 9111 §3 asks a cache to understand the status only for 206, 304 and
    // `must-understand`; the library (RFC 7234 era) refuses every status it does not list.
    // An error the origin explicitly marks fresh is stored, so it is evaluated as a 200.
    *response.status_mut() = if explicit && !cc.has("must-understand") && status.as_u16() >= 400 {
        StatusCode::OK
    } else {
        status
    };
    *response.headers_mut() = headers.clone();
    if let Some(cdn) = cdn {
        let h = response.headers_mut();
        h.insert(CACHE_CONTROL, cdn);
        h.remove(EXPIRES);
        h.remove(PRAGMA);
    }
    if route.cache_set_cookie {
        // Opted in: the library would otherwise give such responses no freshness.
        response.headers_mut().remove(SET_COOKIE);
    }
    let options = CacheOptions {
        shared,
        ..CacheOptions::default()
    };
    let policy = CachePolicy::new_options(request, &response, response_time, options);
    if !policy.is_storable() {
        return Decision::DontStore(NotStorable::Policy);
    }

    let initial_age = initial_age(headers, request_time, response_time);
    let mut lifetime = match freshness_lifetime(&cc, expires, headers, shared, response_time) {
        Some(lifetime) => lifetime,
        None if !route.default_ttl.is_zero() && DEFAULT_TTL_STATUSES.contains(&status.as_u16()) => {
            route.default_ttl
        }
        None => {
            // Heuristic freshness (§4.2.2), from the library; it counts from the response's
            // generation, so add back the age it subtracted.
            let ttl = policy.time_to_live(response_time);
            if ttl.is_zero() {
                Duration::ZERO
            } else {
                ttl + policy.age(response_time)
            }
        }
    };
    if let Some(max_ttl) = route.max_ttl {
        lifetime = lifetime.min(max_ttl);
    }
    // Jitter only ever shortens freshness.
    let jitter = (route.ttl_jitter * jitter_sample).clamp(0.0, 1.0);
    let fresh_for = lifetime.saturating_sub(initial_age).mul_f64(1.0 - jitter);

    // RFC 9111 §4.2.4 and §5.2.2: these directives forbid serving stale, whatever the route says.
    let stale_forbidden = cc.has("must-revalidate")
        || cc.has("proxy-revalidate")
        || cc.has("no-cache")
        || (shared && cc.has("s-maxage"))
        || (partition.credential && !route.cache_authenticated_stale);
    let window = |route_window: Duration, directive: &str| {
        if stale_forbidden {
            Duration::ZERO
        } else {
            let asked = cc.seconds(directive).unwrap_or_default();
            // `max_ttl` bounds what the origin may ask for beyond the route's own window, so
            // an entry's whole life (and how long purge watermarks are kept) stays bounded.
            route_window.max(route.max_ttl.map_or(asked, |max| asked.min(max)))
        }
    };
    let swr = window(route.stale_while_revalidate, "stale-while-revalidate");
    let sie = window(route.stale_if_error, "stale-if-error");

    let fresh_until = response_time + fresh_for;
    let times = EntryTimes {
        stored_at: response_time,
        initial_age,
        fresh_until,
        stale_while_revalidate_until: fresh_until + swr,
        stale_if_error_until: fresh_until + sie,
        keep_until: fresh_until
            + swr
                .max(sie)
                .max(revalidation_window(headers, lifetime, route)),
        fetch_duration: response_time
            .duration_since(request_time)
            .unwrap_or_default(),
        stale_forbidden,
    };
    if times.keep_until <= response_time {
        return Decision::DontStore(NotStorable::NoLifetime);
    }
    Decision::Store(times)
}

/// How long past freshness an entry with a validator is kept so that it can be revalidated
/// (RFC 9111 §4.3) instead of fetched again: as long again as it was fresh, at least
/// [`MIN_REVALIDATION_KEEP`], at most [`MAX_REVALIDATION_KEEP`] and `max_ttl`.
fn revalidation_window(headers: &HeaderMap, lifetime: Duration, route: &Route) -> Duration {
    if !headers.contains_key(ETAG) && !headers.contains_key(LAST_MODIFIED) {
        return Duration::ZERO;
    }
    let window = lifetime.clamp(MIN_REVALIDATION_KEEP, MAX_REVALIDATION_KEEP);
    route.max_ttl.map_or(window, |max| window.min(max))
}

/// RFC 9111 §4.2.1: the origin's freshness lifetime, `None` when it states none. `no-cache`
/// (§5.2.2.4) gives zero: stored, but never served without validation. An invalid value means
/// already expired (§5.3, §1.2.2).
fn freshness_lifetime(
    cc: &Directives,
    expires: Option<&HeaderValue>,
    headers: &HeaderMap,
    shared: bool,
    response_time: SystemTime,
) -> Option<Duration> {
    if cc.has("no-cache") {
        return Some(Duration::ZERO);
    }
    if shared && cc.has("s-maxage") {
        return Some(cc.seconds("s-maxage").unwrap_or_default());
    }
    if cc.has("max-age") {
        return Some(cc.seconds("max-age").unwrap_or_default());
    }
    let expires = expires?;
    let date = headers
        .get(DATE)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?).ok())
        .unwrap_or(response_time);
    Some(
        expires
            .to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|expires| expires.duration_since(date).ok())
            .unwrap_or_default(),
    )
}

/// RFC 9111 §4.2.3: the larger of the apparent age (from `Date`) and the origin's `Age` plus
/// the time the request spent in transit.
fn initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let age_value = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    let apparent_age = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|date| response_time.duration_since(date).ok())
        .unwrap_or_default();
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or_default();
    apparent_age.max(age_value + response_delay)
}

/// The response's `Cache-Control` directives, names lower-cased.
struct Directives(Vec<(String, Option<String>)>);

impl Directives {
    fn parse<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let directives = values
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|d| {
                let mut kv = d.splitn(2, '=');
                let name = kv.next()?.trim().to_ascii_lowercase();
                let value = kv.next().map(|v| v.trim().trim_matches('"').to_owned());
                (!name.is_empty()).then_some((name, value))
            })
            .collect();
        Self(directives)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn seconds(&self, name: &str) -> Option<Duration> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref()?.parse::<u64>().ok())
            .map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests;
