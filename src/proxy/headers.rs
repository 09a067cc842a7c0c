//! Header rules at the proxy's edges: hop-by-hop removal (RFC 9110 §7.6.1), the forwarding
//! headers Cachet adds towards the origin, tag headers read and stripped from responses, and
//! the `Age` and `Cache-Status` of responses to the client.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use arrayvec::ArrayString;
use http::header::{self, HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, Version};
use ipnet::IpNet;

use crate::cache::policy::CDN_CACHE_CONTROL;
use crate::cache::{CacheStatus, Target};

/// Origin tag header, space separated (Fastly style).
pub(crate) const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
/// Origin tag header, comma separated (Cloudflare style).
pub(crate) const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// RFC 9211.
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus
/// `Proxy-Authorization`, which is addressed to Cachet and must not travel on.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Request headers that some origin frameworks read as a different target, method, scheme,
/// host, port or client (IIS and Symfony's `X-Original-URL`, method-override middleware,
/// Rack's `X-Forwarded-Scheme`, RFC 7239 `Forwarded`, ...). No cache key includes them, so an
/// origin that honoured one would let a single client shape what everyone is served: they are
/// removed from every request Cachet forwards, whoever sent them. Cachet states forwarding
/// facts in `X-Forwarded-For`, `-Proto`, `-Host` and `Via` only.
const NEVER_FORWARDED: [HeaderName; 17] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-url-scheme"),
    HeaderName::from_static("front-end-https"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-host"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("forwarded"),
];

/// Request headers a fill never carries: the fill is a plain GET of the full representation
/// (DESIGN.md request path, step 5), so conditionals, ranges and the client's cache directives
/// stay with the client's own request.
const NOT_IN_FILLS: [HeaderName; 9] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::CONTENT_LENGTH,
];

/// Removes hop-by-hop headers, including every header the `Connection` field names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Removes what a fill must not carry (see [`NOT_IN_FILLS`]).
pub(crate) fn strip_for_fill(headers: &mut HeaderMap) {
    for name in &NOT_IN_FILLS {
        headers.remove(name);
    }
}

/// Where the request came from, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientInfo {
    pub(crate) peer: Option<IpAddr>,
    pub(crate) version: Version,
}

/// Adds `X-Forwarded-For` (kept only from trusted proxies), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` (always Cachet's own view of the host) and `Via`, after removing the
/// override headers of [`NEVER_FORWARDED`].
pub(crate) fn add_forwarding(
    headers: &mut HeaderMap,
    client: ClientInfo,
    trusted_proxies: &[IpNet],
    target: &Target,
) {
    for name in &NEVER_FORWARDED {
        headers.remove(name);
    }
    let trusted = client
        .peer
        .is_some_and(|ip| trusted_proxies.iter().any(|net| net.contains(&ip)));
    let prior_for = trusted.then(|| joined(headers, &X_FORWARDED_FOR)).flatten();
    let prior_proto = trusted
        .then(|| headers.get(&X_FORWARDED_PROTO).cloned())
        .flatten();
    headers.remove(&X_FORWARDED_FOR);
    headers.remove(&X_FORWARDED_PROTO);
    headers.remove(&X_FORWARDED_HOST);
    if let Some(peer) = client.peer {
        let value = match prior_for {
            Some(prior) => HeaderValue::from_str(&format!("{prior}, {peer}")).ok(),
            None => formatted(peer),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        prior_proto.unwrap_or(HeaderValue::from_static("http")),
    );
    if let Ok(host) = HeaderValue::from_str(&target.authority) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    let via = match client.version {
        Version::HTTP_2 => "2 cachet",
        Version::HTTP_10 => "1.0 cachet",
        _ => "1.1 cachet",
    };
    let via = match joined(headers, &header::VIA) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {via}")).ok(),
        None => Some(HeaderValue::from_static(via)),
    };
    if let Some(via) = via {
        headers.insert(header::VIA, via);
    }
}

/// All field lines of `name` joined with ", ", if any and all are visible ASCII.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str())
        .collect::<Result<_, _>>()
        .ok()?;
    (!values.is_empty()).then(|| values.join(", "))
}

/// Cleans a response head from the origin for the client and the store: hop-by-hop headers,
/// tag headers and `CDN-Cache-Control` go; the tags they named are returned. `Age` and
/// `Content-Length` go too: Cachet sets its own.
pub(crate) fn clean_response(headers: &mut HeaderMap) -> Vec<String> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // RFC 9112 §6.3: the transfer coding framed the body, so a `Content-Length` next to it
        // describes nothing the client gets; an intermediary must drop it before forwarding.
        headers.remove(header::CONTENT_LENGTH);
    }
    remove_hop_by_hop(headers);
    let mut tags = Vec::new();
    for value in headers
        .get_all(&SURROGATE_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(value.split_ascii_whitespace().map(str::to_owned));
    }
    for value in headers
        .get_all(&CACHE_TAG)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
    }
    headers.remove(&SURROGATE_KEY);
    headers.remove(&CACHE_TAG);
    headers.remove(&CDN_CACHE_CONTROL);
    headers.remove(header::AGE);
    tags
}

/// A response head `Cache-Status` can be set on: a whole response or its parts.
pub(crate) trait ResponseHead {
    fn headers_mut(&mut self) -> &mut HeaderMap;
    fn extensions_mut(&mut self) -> &mut Extensions;
}

impl<B> ResponseHead for http::Response<B> {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }
    fn extensions_mut(&mut self) -> &mut Extensions {
        self.extensions_mut()
    }
}

impl ResponseHead for http::response::Parts {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }
    fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

/// Sets `Cache-Status` (replacing any value from upstream: one value per response), and keeps
/// the [`CacheStatus`] itself as a response extension for metrics and the access log.
pub(crate) fn set_cache_status(response: &mut impl ResponseHead, status: CacheStatus) {
    if let Some(value) = formatted(status) {
        response.headers_mut().insert(CACHE_STATUS, value);
    }
    response.extensions_mut().insert(status);
}

/// Room for the values [`formatted`] makes: the longest `Cache-Status` is under 90 bytes, an
/// IPv6 address under 40.
const FORMATTED_MAX: usize = 128;

/// `value` as a header value, formatted on the stack: the header's own bytes are the one
/// allocation, where `to_string` would add a growing `String` and a copy of it. `None` when the
/// text does not fit or is not a valid field value.
fn formatted(value: impl fmt::Display) -> Option<HeaderValue> {
    let mut text = ArrayString::<FORMATTED_MAX>::new();
    write!(text, "{value}").ok()?;
    HeaderValue::from_str(&text).ok()
}

/// Sets `Age` (RFC 9111 §5.1).
pub(crate) fn set_age(headers: &mut HeaderMap, age_secs: u64) {
    headers.insert(header::AGE, HeaderValue::from(age_secs));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            authority: "api.example.com".into(),
            host: "api.example.com".into(),
            path: "/".into(),
            query: None,
        }
    }

    #[test]
    fn connection_named_headers_are_removed_with_the_standard_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn forwarded_for_is_replaced_unless_the_peer_is_trusted() {
        let client = ClientInfo {
            peer: Some("10.1.2.3".parse().unwrap()),
            version: Version::HTTP_11,
        };
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("6.6.6.6"));
        h.insert(X_FORWARDED_HOST, HeaderValue::from_static("evil.example"));
        add_forwarding(&mut h, client, &[], &target());
        assert_eq!(h[&X_FORWARDED_FOR], "10.1.2.3");
        assert_eq!(h[&X_FORWARDED_HOST], "api.example.com");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[header::VIA], "1.1 cachet");

        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        add_forwarding(&mut h, client, &trusted, &target());
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9, 10.1.2.3");
    }

    #[test]
    fn the_longest_peer_addresses_are_forwarded_whole() {
        for peer in [
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
            "255.255.255.255",
        ] {
            let client = ClientInfo {
                peer: Some(peer.parse().unwrap()),
                version: Version::HTTP_11,
            };
            let mut h = HeaderMap::new();
            add_forwarding(&mut h, client, &[], &target());
            assert_eq!(h[&X_FORWARDED_FOR], peer);
        }
    }

    #[test]
    fn the_longest_cache_status_fits_the_stack_buffer() {
        let longest = CacheStatus::StaleIfError {
            ttl: i64::MIN,
            fwd_status: Some(u16::MAX),
        };
        let value = formatted(longest).expect("fits");
        assert_eq!(value, longest.to_string().as_str());
        let mut response = http::Response::new(());
        set_cache_status(&mut response, longest);
        assert_eq!(response.headers()[&CACHE_STATUS], value);
    }

    #[test]
    fn override_headers_are_never_forwarded_even_from_trusted_proxies() {
        let client = ClientInfo {
            peer: Some("10.1.2.3".parse().unwrap()),
            version: Version::HTTP_11,
        };
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        for name in &NEVER_FORWARDED {
            h.insert(name, HeaderValue::from_static("/admin"));
        }
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        add_forwarding(&mut h, client, &trusted, &target());
        for name in &NEVER_FORWARDED {
            assert!(!h.contains_key(name), "{name} forwarded");
        }
        assert_eq!(h[header::ACCEPT], "*/*");
    }

    #[test]
    fn content_length_next_to_transfer_encoding_is_dropped_rfc9112_6_3() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        clean_response(&mut h);
        assert!(h.is_empty(), "{h:?}");
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        clean_response(&mut h);
        assert_eq!(h[header::CONTENT_LENGTH], "5");
    }

    #[test]
    fn tag_headers_are_read_and_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            &SURROGATE_KEY,
            HeaderValue::from_static("product:42  category:shoes"),
        );
        h.insert(&CACHE_TAG, HeaderValue::from_static("a, b,,c"));
        h.insert(&CDN_CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let tags = clean_response(&mut h);
        assert_eq!(tags, ["product:42", "category:shoes", "a", "b", "c"]);
        assert_eq!(h.len(), 1);
    }
}
