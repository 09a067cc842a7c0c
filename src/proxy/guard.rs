//! Request checks that run before anything else reads a request: what hyper's parser lets
//! through but a caching proxy must not act on. Target forms Cachet does not serve (CONNECT,
//! authority-form), a `Host` that disagrees with an absolute target, ambiguous framing, content
//! on GET or HEAD, targets and header sections over the configured limits, and `Connection`
//! options that would strip a key header between the key and the origin.
//!
//! Each refusal is a [`GuardError`]; `proxy::error` turns it into the response (4xx, or 501
//! for a transfer coding Cachet does not implement) and closes the connection, since what
//! follows a suspect request on it cannot be trusted to be framed as the client meant.

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::uri::Scheme;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};

use super::Settings;

/// Why a request was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Cachet is no tunnel (405).
    #[error("CONNECT is not supported")]
    Connect,
    /// `host:port` as the target of a method other than CONNECT (RFC 9112 §3.2.3).
    #[error("authority-form request target")]
    AuthorityForm,
    /// An absolute target whose scheme is neither `http` nor `https`.
    #[error("request target scheme is not http or https")]
    Scheme,
    /// HTTP/1.1 with an absolute target and no `Host` (RFC 9112 §3.2).
    #[error("missing host header")]
    MissingHost,
    /// More than one `Host` field line (RFC 9112 §3.2).
    #[error("more than one host header")]
    DuplicateHost,
    /// The target's authority (absolute-form, or HTTP/2's `:authority`) and `Host` name
    /// different origins (RFC 9113 §8.3.1), or `Host` is malformed next to one.
    #[error("host header does not match the request target")]
    HostMismatch,
    /// Over `[server] max_uri_bytes` (414).
    #[error("request target too long")]
    UriTooLong,
    /// Over `[server] max_headers` (431).
    #[error("too many header fields")]
    TooManyHeaders,
    /// Not exactly one `Content-Length` of decimal digits (RFC 9110 §8.6, RFC 9112 §6.3).
    #[error("invalid content-length")]
    BadContentLength,
    /// `Content-Length` and `Transfer-Encoding` together (RFC 9112 §6.1).
    #[error("content-length and transfer-encoding together")]
    ConflictingFraming,
    /// A transfer coding other than a single `chunked` (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    TransferCoding,
    /// Content on GET or HEAD (RFC 9110 §9.3.1, §9.3.2): it has no meaning, is never keyed or
    /// forwarded, and is a request-smuggling device.
    #[error("content in a GET or HEAD request")]
    ContentWithoutMeaning,
    /// A `Connection` option naming a key header: the key would include a value the origin
    /// never sees (RFC 9110 §7.6.1 forbids such options).
    #[error("connection header names a key header")]
    ConnectionNamesKeyHeader,
}

/// Checks one request against the rules above and the limits of `settings`.
///
/// # Errors
/// The first rule the request breaks.
pub(super) fn check<B>(request: &Request<B>, settings: &Settings) -> Result<(), GuardError> {
    let limits = &settings.limits;
    let (uri, headers) = (request.uri(), request.headers());
    if target_len(uri) > limits.max_uri_bytes {
        return Err(GuardError::UriTooLong);
    }
    // hyper enforces this for HTTP/1 while parsing; HTTP/2 only bounds the bytes.
    if headers.len() > limits.max_headers {
        return Err(GuardError::TooManyHeaders);
    }
    if request.method() == Method::CONNECT {
        return Err(GuardError::Connect);
    }
    check_host(uri, headers, request.version())?;
    check_framing(request.method(), headers)?;
    let names_key_header = |option: &str| {
        HeaderName::from_bytes(option.trim().as_bytes())
            .is_ok_and(|name| settings.routes.has_key_header(&name))
    };
    if options(headers.get_all(CONNECTION)).any(names_key_header) {
        return Err(GuardError::ConnectionNamesKeyHeader);
    }
    Ok(())
}

/// The target's length as received: scheme, authority, path and query.
fn target_len(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

/// One `Host` at most; with an absolute target (or HTTP/2's `:authority`), an http(s) scheme
/// and a `Host` naming the same origin: case-insensitive host, default port equivalent.
fn check_host(uri: &Uri, headers: &HeaderMap, version: Version) -> Result<(), GuardError> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(GuardError::DuplicateHost);
    }
    let Some(authority) = uri.authority() else {
        // Origin-form: the target is built from `Host` alone.
        return Ok(());
    };
    let default_port = match uri.scheme() {
        None => return Err(GuardError::AuthorityForm),
        Some(scheme) if *scheme == Scheme::HTTP => 80,
        Some(scheme) if *scheme == Scheme::HTTPS => 443,
        Some(_) => return Err(GuardError::Scheme),
    };
    let Some(host) = host else {
        // HTTP/2 carries the authority in `:authority` alone; HTTP/1.0 predates `Host`.
        return if version == Version::HTTP_11 {
            Err(GuardError::MissingHost)
        } else {
            Ok(())
        };
    };
    let same = host
        .to_str()
        .ok()
        .and_then(|host| host_port(host.trim(), default_port))
        .zip(host_port(authority.as_str(), default_port))
        .is_some_and(|((h1, p1), (h2, p2))| h1.eq_ignore_ascii_case(h2) && p1 == p2);
    if same {
        Ok(())
    } else {
        Err(GuardError::HostMismatch)
    }
}

/// Host and port (the default when absent or empty) of `host`, `host:port` or `[v6]:port`;
/// `None` when malformed or carrying userinfo (RFC 9110 §4.2.4 treats it as an error).
fn host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            (&authority[..colon], &authority[colon + 1..])
        }
        _ => (authority, ""),
    };
    let port = match port {
        "" => default_port,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        _ => return None,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Exactly one decimal `Content-Length`, never next to `Transfer-Encoding`, whose only coding
/// is `chunked`; no content at all on GET and HEAD.
fn check_framing(method: &Method, headers: &HeaderMap) -> Result<(), GuardError> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some(value), None) => Some(decimal(value).ok_or(GuardError::BadContentLength)?),
        (Some(_), Some(_)) => return Err(GuardError::BadContentLength),
    };
    let codings = headers.get_all(TRANSFER_ENCODING);
    let chunked = match codings.iter().next() {
        None => false,
        Some(_) if length.is_some() => return Err(GuardError::ConflictingFraming),
        Some(_) => {
            let mut all = options(codings);
            match (all.next(), all.next()) {
                (Some(coding), None) if coding.trim().eq_ignore_ascii_case("chunked") => true,
                _ => return Err(GuardError::TransferCoding),
            }
        }
    };
    let has_content = chunked || length.is_some_and(|len| len > 0);
    if has_content && matches!(*method, Method::GET | Method::HEAD) {
        return Err(GuardError::ContentWithoutMeaning);
    }
    Ok(())
}

/// `1*DIGIT` as a number.
fn decimal(value: &HeaderValue) -> Option<u64> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.to_str().ok()?.parse().ok()
}

/// The non-empty comma-separated elements of every line of a list field; a line that is not
/// visible ASCII counts as one element, so it can never pass as a known token.
fn options<'a>(lines: http::header::GetAll<'a, HeaderValue>) -> impl Iterator<Item = &'a str> {
    lines
        .into_iter()
        .flat_map(|line| line.to_str().unwrap_or("\u{fffd}").split(','))
        .filter(|element| !element.trim().is_empty())
}

#[cfg(test)]
mod tests;
