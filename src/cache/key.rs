//! Request-target normalization, partitions and [`CacheKey`]: the only place keys are built.
//!
//! The target is normalized once (percent-encoding of unreserved characters decoded, hex
//! upper-cased, dot-segments resolved, encoded `/`, `\` and NUL rejected); the result is what
//! is routed, keyed and forwarded, so a path can never be routed as one thing and served as
//! another.
//!
//! Keys are BLAKE3 hashes of length-prefixed fields: fixed-size, collision-resistant, and fast
//! enough that hashing never shows up next to a socket write. Key-header values enter a key only
//! as a keyed hash ([`PartitionHasher`]), so neither keys nor stored entries carry raw
//! credentials, and someone who can read the shared tier cannot test guesses of short tokens
//! offline without the partition secret.

use std::fmt;

use http::header::{AUTHORIZATION, HOST};
use http::{HeaderMap, HeaderName, Uri};

/// Why a request target was refused (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("request target must be an absolute path")]
    NotAbsolutePath,
    #[error("invalid percent-encoding in request target")]
    BadPercentEncoding,
    #[error("encoded slash, backslash or NUL in request path")]
    ForbiddenEncoding,
    #[error("missing or invalid host")]
    BadHost,
}

/// Why a path prefix (a route's `path_prefix`, a purge's `prefix`) can never match a
/// normalized request path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must start with \"/\"")]
    NotAbsolute,
    #[error("contains a control character, a space, '?' or '#', which no request path carries")]
    ForbiddenCharacter,
    #[error("invalid percent-encoding")]
    BadPercentEncoding,
    #[error(
        "contains a backslash, or an encoded slash, backslash or NUL, which request paths may not"
    )]
    ForbiddenEncoding,
    #[error("contains a \".\" or \"..\" segment; request paths are matched with those resolved")]
    DotSegment,
}

/// `prefix` in the normal form of request paths (percent-encoded unreserved characters
/// decoded, hex upper-cased, non-ASCII percent-encoded), so that comparing it with a
/// [`Target`]'s path means what it says: `/caf%c3%a9/` and `/café/` select `/caf%C3%A9/…`. A
/// prefix no normalized path could start with is refused rather than silently never matching.
///
/// # Errors
/// A [`PrefixError`] naming why the prefix could never match.
pub fn normalize_path_prefix(prefix: &str) -> Result<String, PrefixError> {
    if !prefix.starts_with('/') {
        return Err(PrefixError::NotAbsolute);
    }
    if prefix
        .bytes()
        .any(|b| b.is_ascii_control() || matches!(b, b' ' | b'?' | b'#'))
    {
        return Err(PrefixError::ForbiddenCharacter);
    }
    let normal = normalize_percent(prefix, true).map_err(|error| match error {
        TargetError::BadPercentEncoding => PrefixError::BadPercentEncoding,
        // The only other refusal of `normalize_percent`.
        _ => PrefixError::ForbiddenEncoding,
    })?;
    // Only whole segments: the last one may be the start of a longer name (`/a/.well`).
    let whole = &normal[..normal.rfind('/').map_or(0, |end| end + 1)];
    if whole
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(PrefixError::DotSegment);
    }
    Ok(normal)
}

/// The normalized request target: what is routed, keyed and forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case host, with the port only when it is not the scheme's default.
    pub authority: String,
    /// Host alone (lower-case, no port), for route matching.
    pub host: String,
    /// Normalized absolute path.
    pub path: String,
    /// Normalized query without the `?`, if the target had one.
    pub query: Option<String>,
}

impl Target {
    /// Normalizes the request's target. `host_header` is used when the URI carries no authority
    /// (origin-form, HTTP/1.1); HTTP/2 requests carry it in the URI.
    ///
    /// # Errors
    /// A [`TargetError`] naming what was wrong; nothing is guessed.
    pub fn from_request(uri: &Uri, headers: &HeaderMap) -> Result<Self, TargetError> {
        let raw_authority = match uri.authority() {
            Some(authority) => authority.as_str(),
            None => headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .ok_or(TargetError::BadHost)?,
        };
        let (host, authority) = normalize_authority(raw_authority)?;
        let raw_path = uri.path();
        if !raw_path.starts_with('/') {
            return Err(TargetError::NotAbsolutePath);
        }
        let path = remove_dot_segments(normalize_percent(raw_path, true)?);
        let query = uri
            .query()
            .map(|q| normalize_percent(q, false))
            .transpose()?;
        Ok(Self {
            authority,
            host,
            path,
            query,
        })
    }

    /// Path and query as sent to the origin (`/a/b?x=1`).
    pub fn path_and_query(&self) -> String {
        self.path_and_query_under("")
    }

    /// `base` (an upstream's base path, no trailing `/`) followed by the path and query, in a
    /// string of exactly that length: a URI made from it takes the bytes without a copy.
    pub fn path_and_query_under(&self, base: &str) -> String {
        let query_len = self.query.as_ref().map_or(0, |q| q.len() + 1);
        let mut out = String::with_capacity(base.len() + self.path.len() + query_len);
        out.push_str(base);
        out.push_str(&self.path);
        if let Some(query) = &self.query {
            out.push('?');
            out.push_str(query);
        }
        out
    }
}

/// Lower-cases the host, validates it, and drops the default port (the client side is plain
/// HTTP). Returns `(host, authority)`.
fn normalize_authority(raw: &str) -> Result<(String, String), TargetError> {
    let canonical =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-');
    if !raw.is_empty() && !raw.ends_with('.') && raw.bytes().all(canonical) {
        // The common host: lower-case, no port, nothing to refuse; its own normal form.
        return Ok((raw.to_owned(), raw.to_owned()));
    }
    parse_authority(raw)
}

/// [`normalize_authority`] through `http`'s authority parser.
fn parse_authority(raw: &str) -> Result<(String, String), TargetError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.contains('@') {
        return Err(TargetError::BadHost);
    }
    let authority: http::uri::Authority = raw.parse().map_err(|_| TargetError::BadHost)?;
    // `http` reads "host:junk" as a host without a port; only digits may follow the colon.
    let after_host = raw.get(authority.host().len()..).unwrap_or_default();
    let port_ok = after_host.is_empty()
        || after_host
            .strip_prefix(':')
            .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if !port_ok || (!after_host.is_empty() && authority.port_u16().is_none()) {
        return Err(TargetError::BadHost);
    }
    let host = without_root_dot(authority.host()).to_ascii_lowercase();
    if host.is_empty()
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
    {
        return Err(TargetError::BadHost);
    }
    let authority = match authority.port_u16() {
        None | Some(80) => host.clone(),
        Some(port) => format!("{host}:{port}"),
    };
    Ok((host, authority))
}

/// `api.example.com.` names the same host as `api.example.com` (the DNS root's empty label),
/// and must select the same route: otherwise a trailing dot would move a request from a
/// host-bound route to a catch-all one with other rules. nginx drops it too. Every trailing
/// dot goes, so that normalizing is idempotent.
pub(crate) fn without_root_dot(host: &str) -> &str {
    match host.trim_end_matches('.') {
        "" => host,
        name => name,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex of the rest
/// (RFC 3986 §6.2.2). In a path, encoded `/`, `\` and NUL are refused: an origin may decode
/// them into separators, which would let one path be routed as another.
fn normalize_percent(input: &str, is_path: bool) -> Result<String, TargetError> {
    let bytes = input.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || !b.is_ascii() || (is_path && b == b'\\'))
    {
        // The common target: nothing to decode, encode or refuse; copied whole.
        return Ok(input.to_owned());
    }
    normalize_percent_bytewise(input, is_path)
}

/// [`normalize_percent`] byte by byte, for input with something to decode, encode or refuse.
fn normalize_percent_bytewise(input: &str, is_path: bool) -> Result<String, TargetError> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or(TargetError::BadPercentEncoding)?;
            let hi = hex_value(hex[0]).ok_or(TargetError::BadPercentEncoding)?;
            let lo = hex_value(hex[1]).ok_or(TargetError::BadPercentEncoding)?;
            let decoded = (hi << 4) | lo;
            if is_path && matches!(decoded, b'/' | b'\\' | 0) {
                return Err(TargetError::ForbiddenEncoding);
            }
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
        } else {
            if is_path && b == b'\\' {
                return Err(TargetError::ForbiddenEncoding);
            }
            if b.is_ascii() {
                // `http::Uri` has already refused ASCII controls and spaces.
                out.push(char::from(b));
            } else {
                // `http::Uri` (and hyper's parser) let raw UTF-8 through; pushed byte by byte
                // as chars it would be re-read as Latin-1 and forwarded as another path.
                // Percent-encoded, as a URI must carry it (RFC 3986 §2.1), it is the same
                // target as its encoded spelling.
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0x0F)]));
            }
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4, on an absolute path. `..` never climbs above the root.
fn remove_dot_segments(path: String) -> String {
    if !path.contains("/.") {
        // Every dot segment starts with "/.": without one the path is its own result.
        return path;
    }
    resolve_dot_segments(&path)
}

/// [`remove_dot_segments`] segment by segment.
fn resolve_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = path.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            other => {
                segments.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Keys the hash of key-header values. The same secret must be used by every instance that
/// shares a cache tier.
#[derive(Clone)]
pub struct PartitionHasher {
    key: [u8; 32],
    /// The partition of a route without key headers, without and with credentials: a
    /// constant, so it is hashed once here rather than on every request.
    unkeyed: [Fingerprint; 2],
}

impl fmt::Debug for PartitionHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartitionHasher(..)")
    }
}

/// Used when no `partition_secret` is configured; `cachet check` warns when credentials are
/// key headers under it.
const BUILT_IN_PARTITION_SECRET: &str =
    "cachet built-in partition secret; set cache.partition_secret";

impl PartitionHasher {
    /// Derives the hashing key from the configured secret (or the built-in constant).
    pub fn new(secret: Option<&str>) -> Self {
        let secret = secret.unwrap_or(BUILT_IN_PARTITION_SECRET);
        Self {
            key: blake3::derive_key("cachet 2026 partition fingerprint v1", secret.as_bytes()),
            unkeyed: [false, true].map(|had_credentials| {
                Fingerprint(*partition_hasher(had_credentials).finalize().as_bytes())
            }),
        }
    }

    /// Keyed fingerprint of one header's value(s), as used in keys and `part:` tags. Values
    /// of a repeated header are joined the way HTTP combines field lines.
    pub fn fingerprint(&self, header: &HeaderName, values: &[&[u8]]) -> Fingerprint {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        put(&mut hasher, header.as_str().as_bytes());
        hasher.update(&(values.len() as u64).to_le_bytes());
        for value in values {
            put(&mut hasher, value);
        }
        Fingerprint(*hasher.finalize().as_bytes())
    }

    /// The partition a request belongs to on a route with these key headers.
    pub fn partition(&self, key_headers: &[HeaderName], headers: &HeaderMap) -> Partition {
        let had_credentials = headers.contains_key(AUTHORIZATION);
        if key_headers.is_empty() {
            return Partition {
                id: self.unkeyed[usize::from(had_credentials)],
                had_credentials,
                credential: false,
                parts: Vec::new(),
            };
        }
        let mut credential = false;
        let mut hasher = partition_hasher(had_credentials);
        let mut parts = Vec::with_capacity(key_headers.len());
        for name in key_headers {
            let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
            if values.is_empty() {
                // Absent is its own partition: requests without the header never share one
                // with requests that carry it.
                hasher.update(&[0]);
                continue;
            }
            if name == AUTHORIZATION {
                credential = true;
            }
            let fingerprint = self.fingerprint(name, &values);
            hasher.update(&[1]);
            hasher.update(&fingerprint.0);
            parts.push((name.clone(), fingerprint));
        }
        Partition {
            id: Fingerprint(*hasher.finalize().as_bytes()),
            had_credentials,
            credential,
            parts,
        }
    }
}

/// The partition hash before its key headers.
fn partition_hasher(had_credentials: bool) -> blake3::Hasher {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cachet partition v1");
    hasher.update(&[u8::from(had_credentials)]);
    hasher
}

fn put(hasher: &mut blake3::Hasher, field: &[u8]) {
    hasher.update(&(field.len() as u64).to_le_bytes());
    hasher.update(field);
}

/// A 32-byte hash. `Display` is hex; it never reveals what was hashed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The first 16 hex digits: enough to tell partitions apart in tags and logs.
    pub fn short(&self) -> String {
        self.0[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

/// The partition of the cache a request reads and writes: its key-header fingerprints and
/// whether it carried credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Hash of everything below; stored in the entry and compared on every lookup.
    pub id: Fingerprint,
    /// The request carried `Authorization`: entries it fills are never served without it.
    pub had_credentials: bool,
    /// `authorization` is a key header and the request carried it: a per-credential partition,
    /// where the cache behaves as a private cache.
    pub credential: bool,
    /// Per key header present, its keyed fingerprint (for `part:` tags).
    pub parts: Vec<(HeaderName, Fingerprint)>,
}

/// The fixed-size key of a cache entry. `Display` is hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub Fingerprint);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0.short())
    }
}

impl CacheKey {
    /// Reads the hex form [`Display`](fmt::Display) writes (as carried in fill messages).
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(Fingerprint(bytes)))
    }

    /// The only key builder: route name, normalized authority and path, query parameters
    /// sorted with `ignore_query_params` dropped, and the partition.
    pub fn build(
        route: &str,
        target: &Target,
        ignore_query_params: &[String],
        partition: &Partition,
    ) -> Self {
        const DOMAIN: &[u8] = b"cachet key v1";
        let params = sorted_query(target.query.as_deref(), ignore_query_params);
        let fields = [route, &target.authority, &target.path];
        let len = DOMAIN.len()
            + fields.iter().map(|f| 8 + f.len()).sum::<usize>()
            + 8
            + params.iter().map(|p| 8 + p.len()).sum::<usize>()
            + partition.id.0.len();
        // The material is laid out whole and hashed once: BLAKE3 fed a dozen small pieces
        // spent more on the calls than on the hashing. The bytes are those of the streaming
        // form before it, so keys (and what the shared tier holds) did not change.
        let mut material = Vec::with_capacity(len);
        material.extend_from_slice(DOMAIN);
        for field in fields {
            put_bytes(&mut material, field.as_bytes());
        }
        material.extend_from_slice(&(params.len() as u64).to_le_bytes());
        for param in params {
            put_bytes(&mut material, param.as_bytes());
        }
        material.extend_from_slice(&partition.id.0);
        Self(Fingerprint(*blake3::hash(&material).as_bytes()))
    }
}

/// Appends one length-prefixed field, as [`put`] feeds it to a hasher.
fn put_bytes(material: &mut Vec<u8>, field: &[u8]) {
    material.extend_from_slice(&(field.len() as u64).to_le_bytes());
    material.extend_from_slice(field);
}

/// Fingerprint of route + normalized path and query, shared by every partition and variant of
/// that URL: the `url:` tag, so a URL purge reaches every tenant's copy. The authority is left
/// out: the route already names the service, and a purge may name a path alone.
pub fn url_fingerprint(
    route: &str,
    target: &Target,
    ignore_query_params: &[String],
) -> Fingerprint {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cachet url v2");
    put(&mut hasher, route.as_bytes());
    put(&mut hasher, target.path.as_bytes());
    for param in sorted_query(target.query.as_deref(), ignore_query_params) {
        put(&mut hasher, param.as_bytes());
    }
    Fingerprint(*hasher.finalize().as_bytes())
}

/// Query parameters in a canonical order, ignored ones dropped. Empty pieces (`a=1&&b=2`)
/// carry nothing and are dropped too.
///
/// Parameters are ordered by name, and the sort is stable: repeated names keep their order, so
/// `id=1&id=2` and `id=2&id=1` stay apart (an origin reading the first or the last value answers
/// them differently). An ignored parameter is dropped only when it cannot hide another: with a
/// `;` in it (`utm_source=x;id=2`), an origin that also splits on `;` would read a parameter the
/// key never saw, so it stays in the key.
fn sorted_query<'a>(query: Option<&'a str>, ignore: &[String]) -> Vec<&'a str> {
    let Some(query) = query else {
        return Vec::new();
    };
    let name = |param: &'a str| param.split('=').next().unwrap_or(param);
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| p.contains(';') || !ignore.iter().any(|i| i == name(p)))
        .collect();
    params.sort_by(|a, b| name(a).cmp(name(b)));
    params
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
