//! `Range: bytes=...` (RFC 9110 §14.1.2): parsing and resolving against the stored body, and
//! building 206 responses (§15.3.7), single-part or `multipart/byteranges` (§14.6).

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue};

use crate::cache::entry::Entry;

/// More range-specs than this and the `Range` header is ignored (the full response is served):
/// many small ranges cost far more to frame than they save, and are a known amplification
/// vector (RFC 9110 §14.2, §17.15).
pub const MAX_RANGES: usize = 16;

/// An inclusive byte range `first..=last` within a representation (RFC 9110 §14.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    /// Bytes in the range.
    pub fn len(&self) -> u64 {
        self.last
            .checked_sub(self.first)
            .map_or(0, |span| span.saturating_add(1))
    }

    /// Never true for a range [`super::evaluate`] returns; present for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }
}

/// What a `Range` field value means for a body of some length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resolution {
    /// Not a valid `bytes` range-set (or too many ranges): serve the full response.
    Ignore,
    /// Valid, but no range overlaps the body: 416.
    Unsatisfiable,
    /// Sorted, coalesced ranges, each within the body.
    Satisfiable(Vec<ByteRange>),
}

/// One range-spec before it meets the body's length.
#[derive(Debug, Clone, Copy)]
enum Spec {
    /// `first-` (last = None) or `first-last`.
    Int { first: u64, last: Option<u64> },
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

/// Parses `bytes=<range-set>` and resolves it against `complete_length`.
pub(super) fn resolve(value: &str, complete_length: u64) -> Resolution {
    let Some(specs) = parse(value) else {
        return Resolution::Ignore;
    };
    let mut ranges: Vec<ByteRange> = specs
        .iter()
        .filter_map(|spec| satisfiable(*spec, complete_length))
        .collect();
    if ranges.is_empty() {
        return Resolution::Unsatisfiable;
    }
    ranges.sort_unstable_by_key(|range| range.first);
    // Coalesce overlapping and adjacent ranges (§14.2 allows it, whatever the order asked):
    // the parts never overlap, so a response is never larger than the body plus framing.
    let mut coalesced: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match coalesced.last_mut() {
            Some(previous) if range.first <= previous.last.saturating_add(1) => {
                previous.last = previous.last.max(range.last);
            }
            _ => coalesced.push(range),
        }
    }
    Resolution::Satisfiable(coalesced)
}

/// The range-specs of a `bytes` range-set; `None` when the value is invalid, names another
/// unit, or has more than [`MAX_RANGES`] specs.
fn parse(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.trim_ascii().split_once('=')?;
    // Range units are case-insensitive (§14.1); no whitespace around `=`.
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        specs.push(parse_spec(element)?);
    }
    if specs.is_empty() { None } else { Some(specs) }
}

fn parse_spec(element: &str) -> Option<Spec> {
    let (first, last) = element.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    if last.is_empty() {
        return Some(Spec::Int { first, last: None });
    }
    let last = digits(last)?;
    // §14.1.1: a range whose last-pos is below its first-pos is invalid.
    (last >= first).then_some(Spec::Int {
        first,
        last: Some(last),
    })
}

/// `1*DIGIT`; values beyond `u64` saturate (they are beyond any body, which is what matters).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// §14.1.1: the part of `spec` inside a body of `length` bytes, if any.
fn satisfiable(spec: Spec, length: u64) -> Option<ByteRange> {
    let end = length.checked_sub(1)?;
    match spec {
        Spec::Int { first, last } => (first <= end).then(|| ByteRange {
            first,
            last: last.map_or(end, |last| last.min(end)),
        }),
        Spec::Suffix(0) => None,
        Spec::Suffix(suffix) => Some(ByteRange {
            first: length - suffix.min(length),
            last: end,
        }),
    }
}

/// `Content-Range: bytes */N` for a 416 (RFC 9110 §14.4, §15.5.17).
pub fn unsatisfiable_content_range(complete_length: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes */{complete_length}"))
        .expect("digits are a valid header value")
}

/// The `multipart/byteranges` boundary (RFC 2046 §5.1.1). Random by default, so a body cannot
/// be crafted to contain it; [`Boundary::from_u128`] gives a fixed one for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundary(String);

impl Boundary {
    /// A fresh random boundary (128 bits).
    pub fn random() -> Self {
        Self::from_u128(rand::random())
    }

    /// A boundary derived from `n`: `cachet-` and 32 hex digits.
    pub fn from_u128(n: u128) -> Self {
        Self(format!("cachet-{n:032x}"))
    }

    /// The boundary text, without the leading `--`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why [`partial_content`] could not build a 206.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("no ranges to serve")]
    NoRanges,
    #[error("range {first}-{last} is not within a body of {complete_length} bytes")]
    OutOfBounds {
        first: u64,
        last: u64,
        complete_length: u64,
    },
}

/// The header fields and body of a 206 response.
#[derive(Debug, Clone)]
pub struct PartialContent {
    /// The entry's header fields with `Content-Length` set, and either `Content-Range`
    /// (one range) or `Content-Type: multipart/byteranges; boundary=...` (several). The
    /// caller adds `Age` and `Cache-Status`.
    pub headers: HeaderMap,
    /// The body in order. One range: a single slice of the stored body (no copy). Several:
    /// framing chunks interleaved with slices of the stored body.
    pub body: Vec<Bytes>,
    /// Total bytes of `body`, also in `headers` as `Content-Length`.
    pub content_length: u64,
}

impl PartialContent {
    /// The body as one buffer: the slice itself for one range, a concatenation otherwise.
    pub fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.body) {
            Ok([single]) => single,
            Err(chunks) => Bytes::from(chunks.concat()),
        }
    }
}

/// Builds the 206 response for `ranges` of `entry` (RFC 9110 §15.3.7): one range as the body
/// slice with `Content-Range: bytes a-b/N`; several as `multipart/byteranges` with `boundary`,
/// each part carrying the entry's `Content-Type` and its `Content-Range`.
///
/// # Errors
/// [`RangeError`] when `ranges` is empty or a range is not within the body; ranges from
/// [`super::evaluate`] never are.
pub fn partial_content(
    entry: &Entry,
    ranges: &[ByteRange],
    boundary: &Boundary,
) -> Result<PartialContent, RangeError> {
    if ranges.is_empty() {
        return Err(RangeError::NoRanges);
    }
    let complete_length = entry.body.len() as u64;
    let mut slices = Vec::with_capacity(ranges.len());
    for range in ranges {
        let out_of_bounds = RangeError::OutOfBounds {
            first: range.first,
            last: range.last,
            complete_length,
        };
        if range.is_empty() || range.last >= complete_length {
            return Err(out_of_bounds);
        }
        let first = usize::try_from(range.first).map_err(|_| out_of_bounds.clone())?;
        let last = usize::try_from(range.last).map_err(|_| out_of_bounds)?;
        slices.push((range, entry.body.slice(first..=last)));
    }
    let mut headers = entry.headers.clone();
    headers.remove(CONTENT_RANGE);
    let body = match slices.as_slice() {
        [(range, slice)] => {
            headers.insert(CONTENT_RANGE, content_range(range, complete_length));
            vec![slice.clone()]
        }
        _ => {
            let content_type = headers.remove(CONTENT_TYPE);
            let multipart = format!("multipart/byteranges; boundary={}", boundary.as_str());
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_str(&multipart).expect("the boundary is ASCII"),
            );
            multipart_body(&slices, content_type.as_ref(), boundary, complete_length)
        }
    };
    let content_length = body.iter().map(|chunk| chunk.len() as u64).sum();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(content_length));
    Ok(PartialContent {
        headers,
        body,
        content_length,
    })
}

/// RFC 9110 §14.6 framing: `--boundary`, part headers, blank line, bytes; `--boundary--`.
fn multipart_body(
    slices: &[(&ByteRange, Bytes)],
    content_type: Option<&HeaderValue>,
    boundary: &Boundary,
    complete_length: u64,
) -> Vec<Bytes> {
    let mut body = Vec::with_capacity(slices.len() * 2 + 1);
    for (index, (range, slice)) in slices.iter().enumerate() {
        let mut head = Vec::with_capacity(128);
        if index > 0 {
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"--");
        head.extend_from_slice(boundary.as_str().as_bytes());
        head.extend_from_slice(b"\r\n");
        if let Some(content_type) = content_type {
            head.extend_from_slice(b"Content-Type: ");
            head.extend_from_slice(content_type.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Content-Range: ");
        head.extend_from_slice(content_range(range, complete_length).as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        body.push(Bytes::from(head));
        body.push(slice.clone());
    }
    body.push(Bytes::from(format!("\r\n--{}--\r\n", boundary.as_str())));
    body
}

fn content_range(range: &ByteRange, complete_length: u64) -> HeaderValue {
    let text = format!("bytes {}-{}/{complete_length}", range.first, range.last);
    HeaderValue::from_str(&text).expect("digits are a valid header value")
}

#[cfg(test)]
mod tests;
