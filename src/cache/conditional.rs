//! Answering a client request from a stored full response: conditional requests
//! (RFC 9110 §13) and range requests (RFC 9110 §14).
//!
//! The fill always fetches the full object (DESIGN.md request path step 5); this module
//! decides, from the client's request headers and the stored [`Entry`], whether the client gets
//! the entry as is, a 304, a 412, a 206 or a 416 ([`evaluate`]), and builds the header fields
//! and body those answers carry ([`not_modified_headers`], [`partial_content`],
//! [`unsatisfiable_content_range`]). Pure: no I/O, no clock; HTTP dates are compared with each
//! other, never with `now`.
//!
//! Deliberate choices, each allowed by RFC 9110:
//! - a malformed member of an `If-Match` / `If-None-Match` list matches nothing (so a garbled
//!   `If-Match` fails with 412 and a garbled `If-None-Match` never yields a 304);
//! - repeated `If-Modified-Since`, `If-Unmodified-Since`, `If-Range` or `Range` field lines are
//!   treated as invalid: the date conditions and `Range` are ignored, `If-Range` is false;
//! - overlapping and adjacent ranges are coalesced, more than [`MAX_RANGES`] ranges are ignored
//!   (the full response is served), and several disjoint ranges of a content-coded entry are
//!   answered with the full response, because a top-level `Content-Encoding` on a
//!   `multipart/byteranges` body would make clients decode the multipart framing;
//! - a zero-length representation has no satisfiable range: any valid `Range` gets a 416.

mod range;

use std::time::{Duration, SystemTime};

use http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LOCATION, DATE, ETAG, EXPIRES, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, LAST_MODIFIED, RANGE, VARY,
};
use http::{HeaderMap, HeaderName, Method, StatusCode};

use super::entry::Entry;

pub use range::{
    Boundary, ByteRange, MAX_RANGES, PartialContent, RangeError, partial_content,
    unsatisfiable_content_range,
};

/// How to answer a request from a stored full response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// Serve the entry as is (its own status, headers and body; no body for HEAD).
    Full,
    /// 304 with [`not_modified_headers`]; no body.
    NotModified,
    /// 412: an `If-Match` or `If-Unmodified-Since` precondition failed; no body needed.
    PreconditionFailed,
    /// 206 with these ranges: sorted, disjoint, non-adjacent, within the body; build the
    /// response with [`partial_content`].
    Partial { ranges: Vec<ByteRange> },
    /// 416 with `Content-Range: bytes */complete_length` ([`unsatisfiable_content_range`]).
    Unsatisfiable { complete_length: u64 },
}

impl Served {
    /// The status code of the answer; `entry_status` for [`Served::Full`].
    pub fn status(&self, entry_status: StatusCode) -> StatusCode {
        match self {
            Self::Full => entry_status,
            Self::NotModified => StatusCode::NOT_MODIFIED,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::Partial { .. } => StatusCode::PARTIAL_CONTENT,
            Self::Unsatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }
}

/// Decides how to answer `method` with `request_headers` from `entry`, in the order of
/// RFC 9110 §13.2.2: `If-Match`, else `If-Unmodified-Since`; then `If-None-Match`, else
/// `If-Modified-Since`; then `Range` (GET only, 200 entries only, gated by `If-Range`).
pub fn evaluate(method: &Method, request_headers: &HeaderMap, entry: &Entry) -> Served {
    // §13.2.1: preconditions are ignored when the answer without them would not be a 2xx.
    if entry.status.is_success() {
        if let Some(answer) = preconditions(method, request_headers, entry) {
            return answer;
        }
    }
    // §14.2: Range is only defined for GET; only a 200 carries the representation to slice.
    if method == Method::GET && entry.status == StatusCode::OK {
        return ranges(request_headers, entry);
    }
    Served::Full
}

/// Header fields of a 304 built from the stored response's (RFC 9110 §15.4.5): the fields a
/// 200 would have carried among `Cache-Control`, `Content-Location`, `Date`, `ETag`,
/// `Expires` and `Vary`, plus `Last-Modified` to guide cache updates. The caller adds `Age`
/// and `Cache-Status`.
pub fn not_modified_headers(entry_headers: &HeaderMap) -> HeaderMap {
    const KEPT: [HeaderName; 7] = [
        CACHE_CONTROL,
        CONTENT_LOCATION,
        DATE,
        ETAG,
        EXPIRES,
        VARY,
        LAST_MODIFIED,
    ];
    let mut headers = HeaderMap::with_capacity(KEPT.len());
    for name in KEPT {
        for value in entry_headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Steps 1 to 4 of RFC 9110 §13.2.2; `None` when every precondition present holds.
fn preconditions(method: &Method, request: &HeaderMap, entry: &Entry) -> Option<Served> {
    let etag = entity_tag(&entry.headers);
    let last_modified = single_date(&entry.headers, &LAST_MODIFIED);
    let safe = method == Method::GET || method == Method::HEAD;

    if request.contains_key(IF_MATCH) {
        // §13.1.1: strong comparison; `*` holds because a representation exists.
        let holds = any_member(request, &IF_MATCH, |tag| {
            etag.is_some_and(|current| current.strong_eq(tag))
        });
        if !holds {
            return Some(Served::PreconditionFailed);
        }
    } else if let Some(since) = single_date(request, &IF_UNMODIFIED_SINCE) {
        // §13.1.4: ignored without a modification date.
        if last_modified.is_some_and(|modified| modified > since) {
            return Some(Served::PreconditionFailed);
        }
    }

    if request.contains_key(IF_NONE_MATCH) {
        // §13.1.2: weak comparison; `*` matches because a representation exists.
        let matched = any_member(request, &IF_NONE_MATCH, |tag| {
            etag.is_some_and(|current| current.weak_eq(tag))
        });
        if matched {
            return Some(if safe {
                Served::NotModified
            } else {
                Served::PreconditionFailed
            });
        }
    } else if safe {
        if let Some(since) = single_date(request, &IF_MODIFIED_SINCE) {
            // RFC 9111 §4.3.2: Last-Modified, else Date, else when the cache received it.
            let modified = last_modified
                .or_else(|| single_date(&entry.headers, &DATE))
                .unwrap_or(entry.times.stored_at);
            if modified <= since {
                return Some(Served::NotModified);
            }
        }
    }
    None
}

/// Step 5 of RFC 9110 §13.2.2 for a GET of a 200 entry.
fn ranges(request: &HeaderMap, entry: &Entry) -> Served {
    let mut lines = request.get_all(RANGE).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Served::Full;
    };
    if request.contains_key(IF_RANGE) && !if_range_holds(request, entry) {
        return Served::Full;
    }
    let Ok(text) = line.to_str() else {
        return Served::Full;
    };
    let complete_length = entry.body.len() as u64;
    match range::resolve(text, complete_length) {
        range::Resolution::Ignore => Served::Full,
        range::Resolution::Unsatisfiable => Served::Unsatisfiable { complete_length },
        range::Resolution::Satisfiable(ranges) => {
            if ranges.len() > 1 && is_content_coded(&entry.headers) {
                Served::Full
            } else {
                Served::Partial { ranges }
            }
        }
    }
}

/// RFC 9110 §13.1.5: an entity-tag matches by strong comparison; a date matches only when it
/// equals `Last-Modified` exactly and that date is strong (§8.8.2.2: the entry's `Date`, or
/// the time it was stored, at least one second after it).
fn if_range_holds(request: &HeaderMap, entry: &Entry) -> bool {
    let mut lines = request.get_all(IF_RANGE).iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return false;
    };
    let value = line.as_bytes().trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let given = single_tag(value);
        let current = entity_tag(&entry.headers);
        return matches!((given, current), (Some(given), Some(current)) if current.strong_eq(given));
    }
    let Some(given) = parse_date(value) else {
        return false;
    };
    let Some(modified) = single_date(&entry.headers, &LAST_MODIFIED) else {
        return false;
    };
    let date = single_date(&entry.headers, &DATE).unwrap_or(entry.times.stored_at);
    let strong = modified
        .checked_add(Duration::from_secs(1))
        .is_some_and(|limit| date >= limit);
    strong && given == modified
}

fn is_content_coded(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|coding| {
            let coding = coding.trim_ascii();
            !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity")
        })
}

/// An HTTP-date from a field that must appear exactly once (RFC 9110 §13.1.3, §13.1.4).
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => parse_date(line.as_bytes()),
        _ => None,
    }
}

/// IMF-fixdate, or the obsolete RFC 850 and asctime forms (RFC 9110 §5.6.7).
fn parse_date(value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value.trim_ascii()).ok()?;
    httpdate::parse_http_date(text).ok()
}

/// An entity-tag (RFC 9110 §8.8.3), borrowed from a field value; `opaque` excludes the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

impl EntityTag<'_> {
    /// §8.8.3.2: both strong and character-by-character equal.
    fn strong_eq(self, other: EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    /// §8.8.3.2: opaque tags equal, weakness ignored.
    fn weak_eq(self, other: EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// One member of an `If-Match` / `If-None-Match` field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member<'a> {
    Any,
    Tag(EntityTag<'a>),
}

/// Whether any member of the field's lines is `*` or a tag `matches` accepts.
fn any_member(
    headers: &HeaderMap,
    name: &HeaderName,
    matches: impl Fn(EntityTag<'_>) -> bool,
) -> bool {
    headers.get_all(name).iter().any(|line| {
        Members::new(line.as_bytes()).any(|member| match member {
            Member::Any => true,
            Member::Tag(tag) => matches(tag),
        })
    })
}

/// The stored response's `ETag`, when it is present once and well-formed.
fn entity_tag(headers: &HeaderMap) -> Option<EntityTag<'_>> {
    let mut lines = headers.get_all(ETAG).iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => single_tag(line.as_bytes()),
        _ => None,
    }
}

/// A field value that is exactly one entity-tag.
fn single_tag(value: &[u8]) -> Option<EntityTag<'_>> {
    let mut members = Members::new(value);
    match (members.next(), members.next()) {
        (Some(Member::Tag(tag)), None) => Some(tag),
        _ => None,
    }
}

/// The members of one comma-separated field line (`#` list rule, RFC 9110 §5.6.1: empty
/// elements skipped); ends at the first malformed member.
#[derive(Debug)]
struct Members<'a> {
    rest: &'a [u8],
}

impl<'a> Members<'a> {
    fn new(line: &'a [u8]) -> Self {
        Self { rest: line }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = Member<'a>;

    fn next(&mut self) -> Option<Member<'a>> {
        let start = self
            .rest
            .iter()
            .position(|&b| !matches!(b, b' ' | b'\t' | b','));
        let rest = start.map_or(&[][..], |start| self.rest.split_at(start).1);
        self.rest = &[];
        let (member, after) = parse_member(rest)?;
        let after = after.trim_ascii_start();
        if !(after.is_empty() || after.starts_with(b",")) {
            return None;
        }
        self.rest = after;
        Some(member)
    }
}

/// `*` or `[W/]"opaque"` at the start of `input`, and what follows it.
fn parse_member(input: &[u8]) -> Option<(Member<'_>, &[u8])> {
    if let Some(after) = input.strip_prefix(b"*") {
        return Some((Member::Any, after));
    }
    let (weak, quoted) = match input.strip_prefix(b"W/") {
        Some(quoted) => (true, quoted),
        None => (false, input),
    };
    let body = quoted.strip_prefix(b"\"")?;
    let end = body.iter().position(|&b| b == b'"')?;
    let (opaque, closing) = body.split_at(end);
    // etagc = %x21 / %x23-7E / obs-text
    if !opaque
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    let after = closing.strip_prefix(b"\"")?;
    Some((Member::Tag(EntityTag { weak, opaque }), after))
}

#[cfg(test)]
mod tests;
