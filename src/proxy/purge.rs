//! Turning the admin API's purge targets into watermark selectors: URLs routed and normalized
//! exactly as requests are, partition values fingerprinted exactly as keys are.

use std::time::SystemTime;

use http::header::{HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Uri};

use super::{ProxyService, RouteTable};
use crate::cache::{Target, url_fingerprint};
use crate::purge::{
    PurgeTarget, Selector, SharedWatermarks, part_tag, route_tag, unix_ms, url_tag,
};

/// A purge target naming something the proxy does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ResolveError {
    /// The JSON field at fault, e.g. `urls[1]`.
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: &str) -> ResolveError {
    ResolveError {
        field: field.into(),
        message: message.to_owned(),
    }
}

impl ProxyService {
    /// The watermarks every serve checks.
    pub fn watermarks(&self) -> &SharedWatermarks {
        &self.shared.watermarks
    }

    /// Applies a purge on this instance alone (no shared tier): one new sequence for every
    /// selector.
    pub fn purge_locally(&self, selectors: &[Selector], soft: bool, now: SystemTime) -> u64 {
        let watermarks = &self.shared.watermarks;
        let seq = watermarks.current_seq() + 1;
        for selector in selectors {
            watermarks.raise(selector.clone(), seq, soft, now);
        }
        seq
    }

    /// Applies a purge the shared tier could not record, on this instance, by local time: it
    /// covers every entry whose fill started before `now`.
    pub fn purge_local_only(&self, selectors: &[Selector], soft: bool, now: SystemTime) {
        for selector in selectors {
            self.shared
                .local_marks
                // One past `now`: a fill that started in this very millisecond is covered too.
                .raise(selector.clone(), unix_ms(now) + 1, soft, now);
        }
    }

    /// Forgets purge watermarks (shared and local-only) older than the current routes'
    /// retention; returns the cutoff, for the shared tier's own sweep, or `None` when marks
    /// are kept forever (a route without `max_ttl`).
    pub fn sweep_watermarks(&self, now: SystemTime) -> Option<SystemTime> {
        let retention = self.shared.settings().watermark_retention?;
        let dropped = self.shared.watermarks.drop_older_than(now, retention)
            + self.shared.local_marks.drop_older_than(now, retention);
        if dropped > 0 {
            tracing::debug!(dropped, "old purge watermarks forgotten");
        }
        now.checked_sub(retention)
    }

    /// The selectors a purge target covers.
    ///
    /// # Errors
    /// [`ResolveError`] for a URL that is malformed or matches no route, an unknown route, or
    /// a partition header no route keys on. Partition values never appear in the message.
    pub fn resolve_purge(&self, target: &PurgeTarget) -> Result<Vec<Selector>, ResolveError> {
        let settings = self.shared.settings();
        Ok(match target {
            PurgeTarget::All => vec![Selector::All],
            PurgeTarget::Tags(tags) => tags.iter().cloned().map(Selector::Tag).collect(),
            PurgeTarget::Prefix(prefix) => vec![Selector::prefix(prefix.clone())],
            PurgeTarget::Route(name) => {
                let route = settings
                    .routes
                    .by_name(name)
                    .ok_or_else(|| invalid("route", "no such route"))?;
                vec![Selector::tag(route_tag(&route.name))]
            }
            PurgeTarget::Urls(urls) => urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    url_selector(&settings.routes, url)
                        .map_err(|message| invalid(format!("urls[{i}]"), message))
                })
                .collect::<Result<_, _>>()?,
            PurgeTarget::Partition(pairs) => pairs
                .iter()
                .map(|(name, value)| {
                    let field = format!("partition.{name}");
                    let header = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| invalid(&field, "not a header name"))?;
                    if !settings.routes.has_key_header(&header) {
                        return Err(invalid(&field, "no route keys on this header"));
                    }
                    let fingerprint = settings.hasher.fingerprint(&header, &[value.as_bytes()]);
                    Ok(Selector::tag(part_tag(&header, fingerprint)))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `url:` selector of one purge URL: an absolute path, or an absolute `http(s)` URL whose host
/// selects among host-bound routes.
fn url_selector(routes: &RouteTable, url: &str) -> Result<Selector, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "not a URL")?;
    let (target, route) = if uri.authority().is_some() {
        let target = Target::from_request(&uri, &HeaderMap::new()).map_err(|_| "invalid URL")?;
        let route = routes
            .route(&target.host, &target.path)
            .ok_or("no route matches this URL")?;
        (target, route)
    } else {
        let mut host = HeaderMap::new();
        // Any host: the `url:` fingerprint does not include it.
        host.insert(HOST, HeaderValue::from_static("purge.invalid"));
        let target = Target::from_request(&uri, &host).map_err(|_| "invalid URL path")?;
        let route = routes
            .route_for_path(&target.path)
            .ok_or("no route matches this path")?;
        (target, route)
    };
    let fingerprint = url_fingerprint(&route.name, &target, &route.ignore_query_params);
    Ok(Selector::tag(url_tag(fingerprint)))
}
