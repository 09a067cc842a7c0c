//! Semantic checks of `[[routes]]`: each route's fields (name, prefix, host, upstream, ttls,
//! key headers, tags), then the checks across routes (unique names, unique (host, prefix)
//! pairs, at least one route).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::uri::Authority;
use http::{HeaderName, Uri};

use super::check::{Check, header_name, required};
use crate::cache::key::without_root_dot;
use crate::cache::normalize_path_prefix;
use crate::config::schema::RouteSection;
use crate::config::{CacheConfig, Route};
use crate::purge::{AUTOMATIC_TAG_PREFIXES, is_automatic_tag};

/// Hop-by-hop headers (RFC 9110 §7.6.1 and their legacy companions): they do not describe the
/// resource, so they cannot partition the cache.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Every route, then the checks across routes (names, (host, prefix) pairs, at least one).
pub(super) fn routes(
    sections: Vec<Option<RouteSection>>,
    cache: &CacheConfig,
    check: &mut Check,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut names: HashMap<Arc<str>, usize> = HashMap::new();
    let mut matches: HashMap<(Option<String>, String), usize> = HashMap::new();
    let count = sections.len();
    for (i, section) in sections.into_iter().enumerate() {
        let Some(section) = section else { continue };
        let path = format!("routes[{i}]");
        let route = route(&path, section, cache, check);
        if !route.name.is_empty()
            && let Some(&first) = names.get(&route.name)
        {
            check.error(
                format!("{path}.name"),
                format!(
                    "duplicate route name {:?} (first at routes[{first}])",
                    route.name
                ),
            );
        } else {
            names.insert(Arc::clone(&route.name), i);
        }
        let key = (route.host.clone(), route.path_prefix.clone());
        if !route.path_prefix.is_empty()
            && let Some(&first) = matches.get(&key)
        {
            check.error(
                format!("{path}.path_prefix"),
                format!("same host and path_prefix as routes[{first}]"),
            );
        } else {
            matches.insert(key, i);
        }
        routes.push(route);
    }
    if count == 0 {
        check.error("routes", "at least one [[routes]] entry is required");
    }
    routes
}

fn route(path: &str, r: RouteSection, cache: &CacheConfig, check: &mut Check) -> Route {
    let at = |field: &str| format!("{path}.{field}");
    let name = required(&at("name"), r.name, check);
    if !name.is_empty()
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        check.error(at("name"), "must contain only letters, digits, '_' and '-'");
    }
    let path_prefix = required(&at("path_prefix"), r.path_prefix, check);
    // Compared with normalized request paths: in any other form it could never match.
    let path_prefix = if path_prefix.is_empty() {
        path_prefix
    } else {
        check
            .ok(
                &at("path_prefix"),
                normalize_path_prefix(&path_prefix).map_err(|error| error.to_string()),
            )
            .unwrap_or(path_prefix)
    };
    let host = r.host.and_then(|h| check.ok(&at("host"), route_host(&h)));
    let upstream = required(&at("upstream"), r.upstream, check);
    let upstream = if upstream.is_empty() {
        Uri::default()
    } else {
        check
            .ok(&at("upstream"), upstream_uri(&upstream))
            .unwrap_or_default()
    };
    let default_ttl = check.duration(&at("default_ttl"), &r.default_ttl);
    let max_ttl = r.max_ttl.map(|text| {
        let max = check.positive_duration(&at("max_ttl"), &text);
        if max.is_some_and(|max| !max.is_zero() && max < default_ttl) {
            check.error(at("max_ttl"), "must not be shorter than default_ttl");
        }
        max.unwrap_or_default()
    });
    if !(r.early_refresh_beta >= 0.0 && r.early_refresh_beta.is_finite()) {
        check.error(at("early_refresh_beta"), "must be 0 or greater");
    }
    if !(r.ttl_jitter >= 0.0 && r.ttl_jitter < 1.0) {
        check.error(at("ttl_jitter"), "must be at least 0 and less than 1");
    }
    let key_headers = key_headers(&at("key_headers"), &r.key_headers, check);
    tags(&at("tags"), &r.tags, cache, check);
    for (j, param) in r.ignore_query_params.iter().enumerate() {
        if param.is_empty() {
            check.error(
                format!("{path}.ignore_query_params[{j}]"),
                "must not be empty",
            );
        }
    }
    Route {
        name: name.into(),
        path_prefix,
        host,
        upstream,
        timeout: check
            .positive_duration(&at("timeout"), &r.timeout)
            .unwrap_or_default(),
        default_ttl,
        max_ttl,
        stale_while_revalidate: check
            .duration(&at("stale_while_revalidate"), &r.stale_while_revalidate),
        stale_if_error: check.duration(&at("stale_if_error"), &r.stale_if_error),
        early_refresh_beta: r.early_refresh_beta,
        ttl_jitter: r.ttl_jitter,
        key_headers,
        tags: r.tags,
        ignore_query_params: r.ignore_query_params,
        ignore_client_cache_control: r.ignore_client_cache_control,
        cache_set_cookie: r.cache_set_cookie,
        cache_authenticated_stale: r.cache_authenticated_stale,
    }
}

/// Lower-cased host without port; matching ignores the request's port.
pub(super) fn route_host(text: &str) -> Result<String, String> {
    let no_port = "must be a host name without a port, e.g. \"api.example.com\"";
    if text.contains(':') && !text.starts_with('[') {
        return Err(no_port.into());
    }
    let authority = text
        .parse::<Authority>()
        .ok()
        .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
        .ok_or_else(|| format!("invalid host {text:?}"))?;
    if authority.port().is_some() {
        return Err(no_port.into());
    }
    Ok(without_root_dot(authority.host()).to_ascii_lowercase())
}

/// An absolute `http`/`https` URI with a host and no query. The text is not echoed: it may
/// carry credentials, which are rejected.
fn upstream_uri(text: &str) -> Result<Uri, String> {
    let uri = text
        .parse::<Uri>()
        .map_err(|e| format!("not a valid uri ({e})"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
        Some(s) => return Err(format!("scheme must be http or https, not {s:?}")),
        None => return Err("must start with http:// or https://".into()),
    }
    let authority = uri.authority().ok_or("missing host")?;
    if authority.host().is_empty() {
        return Err("missing host".into());
    }
    if authority.as_str().contains('@') {
        return Err("must not contain user info".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query".into());
    }
    Ok(uri)
}

fn key_headers(path: &str, names: &[String], check: &mut Check) -> Vec<HeaderName> {
    let mut seen = HashSet::new();
    names
        .iter()
        .enumerate()
        .filter_map(|(j, text)| {
            let at = format!("{path}[{j}]");
            let name = check.ok(&at, header_name(text))?;
            let problem = if name == http::header::COOKIE {
                Some(
                    "cookie cannot be a key header; name the header that identifies the partition"
                        .into(),
                )
            } else if HOP_BY_HOP.contains(&name.as_str()) {
                Some(format!(
                    "{name} is a hop-by-hop header and cannot be a key header"
                ))
            } else if !seen.insert(name.clone()) {
                Some(format!("{name} is listed twice"))
            } else {
                None
            };
            match problem {
                Some(message) => {
                    check.error(at, message);
                    None
                }
                None => Some(name),
            }
        })
        .collect()
}

fn tags(path: &str, tags: &[String], cache: &CacheConfig, check: &mut Check) {
    if tags.len() > cache.max_tags_per_entry {
        check.error(
            path,
            format!(
                "{} tags, more than cache.max_tags_per_entry ({})",
                tags.len(),
                cache.max_tags_per_entry
            ),
        );
    }
    for (j, tag) in tags.iter().enumerate() {
        let at = format!("{path}[{j}]");
        if tag.is_empty() {
            check.error(at, "must not be empty");
        } else if tag.contains(char::is_whitespace) {
            check.error(at, "must not contain whitespace");
        } else if is_automatic_tag(tag) {
            check.error(
                at,
                format!(
                    "must not start with {}: those are Cachet's automatic tags",
                    AUTOMATIC_TAG_PREFIXES.join(", ")
                ),
            );
        } else if tag.len() > cache.max_tag_bytes {
            check.error(
                at,
                format!(
                    "{} bytes, more than cache.max_tag_bytes ({})",
                    tag.len(),
                    cache.max_tag_bytes
                ),
            );
        }
    }
}
