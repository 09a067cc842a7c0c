//! The client's own cache directives (RFC 9111 §5.2.1): whether a stored response may answer
//! this request, or the request forces the cache to go to the origin.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::{CACHE_CONTROL, PRAGMA};

use super::entry::EntryTimes;

/// Parsed request directives; the default is "no directive".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache` (or `Pragma: no-cache` without `Cache-Control`, §5.4), or `max-age=0`.
    pub no_cache: bool,
    /// `no-store`: nothing of this exchange may be stored (§5.2.1.5).
    pub no_store: bool,
    /// `max-age=N`: the client accepts no response older than N.
    pub max_age: Option<Duration>,
    /// `min-fresh=N`: the response must stay fresh for N more.
    pub min_fresh: Option<Duration>,
    /// `max-stale[=N]`: the client accepts a response stale by up to N (any, without N).
    pub max_stale: Option<Duration>,
    /// `only-if-cached`: answer from the cache or 504 (§5.2.1.7).
    pub only_if_cached: bool,
}

impl RequestDirectives {
    /// Reads `Cache-Control` and, without it, `Pragma`.
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        let mut any_cache_control = false;
        for value in headers
            .get_all(CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            any_cache_control = true;
            for directive in value.split(',') {
                let mut kv = directive.splitn(2, '=');
                let name = kv.next().unwrap_or_default().trim().to_ascii_lowercase();
                // An invalid number is treated as the strictest value: 0.
                let seconds = || {
                    let v = kv
                        .clone()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .trim_matches('"');
                    Duration::from_secs(v.parse().unwrap_or(0))
                };
                match name.as_str() {
                    "no-cache" => directives.no_cache = true,
                    "no-store" => directives.no_store = true,
                    "only-if-cached" => directives.only_if_cached = true,
                    "max-age" => directives.max_age = Some(seconds()),
                    "min-fresh" => directives.min_fresh = Some(seconds()),
                    "max-stale" => {
                        let limit = kv
                            .clone()
                            .next()
                            .map(|_| seconds())
                            .unwrap_or(Duration::MAX);
                        directives.max_stale = Some(limit);
                    }
                    _ => {}
                }
            }
        }
        if !any_cache_control {
            directives.no_cache = headers
                .get_all(PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|p| p.trim().eq_ignore_ascii_case("no-cache"))
                });
        }
        if directives.max_age == Some(Duration::ZERO) {
            directives.no_cache = true;
        }
        directives
    }

    /// Whether a fresh entry satisfies this request (§5.2.1.1, §5.2.1.3, §5.2.1.4).
    pub fn accepts_fresh(&self, times: &EntryTimes, age: Duration, now: SystemTime) -> bool {
        if self.no_cache {
            return false;
        }
        if self.max_age.is_some_and(|max| age > max) {
            return false;
        }
        if let Some(min_fresh) = self.min_fresh {
            let left = times.fresh_until.duration_since(now).unwrap_or_default();
            if left < min_fresh {
                return false;
            }
        }
        true
    }

    /// Whether a stale entry satisfies this request through `max-stale` (§5.2.1.2), which the
    /// origin's `must-revalidate` and its kin override (§4.2.4).
    pub fn accepts_stale(&self, times: &EntryTimes, now: SystemTime) -> bool {
        let Some(max_stale) = self.max_stale else {
            return false;
        };
        if self.no_cache || times.stale_forbidden {
            return false;
        }
        now.duration_since(times.fresh_until)
            .is_ok_and(|stale_for| stale_for <= max_stale)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn parse(pairs: &[(&'static str, &'static str)]) -> RequestDirectives {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        RequestDirectives::parse(&h)
    }

    #[test]
    fn directives_rfc9111_5_2_1() {
        assert!(parse(&[("cache-control", "no-cache")]).no_cache);
        assert!(parse(&[("cache-control", "max-age=0")]).no_cache);
        assert!(
            parse(&[("pragma", "no-cache")]).no_cache,
            "§5.4 without Cache-Control"
        );
        assert!(!parse(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]).no_cache);
        assert!(parse(&[("cache-control", "only-if-cached")]).only_if_cached);
        assert!(parse(&[("cache-control", "no-store")]).no_store);
        let d = parse(&[("cache-control", "max-age=30, min-fresh=\"10\"")]);
        assert_eq!(d.max_age, Some(Duration::from_secs(30)));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(10)));
    }

    #[test]
    fn max_age_and_min_fresh_limit_what_a_fresh_entry_may_answer() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let times = EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + Duration::from_secs(20),
            stale_while_revalidate_until: now + Duration::from_secs(20),
            stale_if_error_until: now + Duration::from_secs(20),
            keep_until: now + Duration::from_secs(20),
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        };
        let d = parse(&[("cache-control", "max-age=30")]);
        assert!(d.accepts_fresh(&times, Duration::from_secs(30), now));
        assert!(!d.accepts_fresh(&times, Duration::from_secs(31), now));
        let d = parse(&[("cache-control", "min-fresh=15")]);
        assert!(d.accepts_fresh(&times, Duration::ZERO, now));
        assert!(!d.accepts_fresh(&times, Duration::ZERO, now + Duration::from_secs(6)));
        assert!(RequestDirectives::default().accepts_fresh(&times, Duration::from_secs(99), now));
    }

    #[test]
    fn max_stale_accepts_stale_entries_unless_the_origin_forbids_it_rfc9111_5_2_1_2() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut times = EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now,
            stale_while_revalidate_until: now,
            stale_if_error_until: now,
            keep_until: now + Duration::from_secs(600),
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        };
        let later = now + Duration::from_secs(30);
        assert!(parse(&[("cache-control", "max-stale")]).accepts_stale(&times, later));
        assert!(parse(&[("cache-control", "max-stale=60")]).accepts_stale(&times, later));
        assert!(!parse(&[("cache-control", "max-stale=10")]).accepts_stale(&times, later));
        assert!(!RequestDirectives::default().accepts_stale(&times, later));
        times.stale_forbidden = true;
        assert!(!parse(&[("cache-control", "max-stale")]).accepts_stale(&times, later));
    }
}
