//! Validation of stale entries (RFC 9111 §4.3): the conditional request a stale entry's
//! validators allow, and the update of a stored response by a 304.

use http::header::{self, HeaderMap, HeaderName};

use super::entry::Entry;

/// Adds `If-None-Match` / `If-Modified-Since` from the entry's validators (§4.3.1) to a fill's
/// headers; returns whether any was added.
pub fn add_conditionals(entry: &Entry, request: &mut HeaderMap) -> bool {
    let mut added = false;
    if let Some(etag) = entry.headers.get(header::ETAG) {
        request.insert(header::IF_NONE_MATCH, etag.clone());
        added = true;
    }
    if let Some(modified) = entry.headers.get(header::LAST_MODIFIED) {
        request.insert(header::IF_MODIFIED_SINCE, modified.clone());
        added = true;
    }
    added
}

/// Fields a 304 never changes in the stored response (§3.2): the stored body's own framing
/// and the representation metadata it depends on.
const NOT_UPDATED: [HeaderName; 5] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_TYPE,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

/// The stored header fields updated with a 304's (§3.2, §4.3.4): each field the 304 carries
/// replaces the stored one of the same name.
pub fn merge_not_modified(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut merged = stored.clone();
    for name in not_modified.keys() {
        if NOT_UPDATED.contains(name) {
            continue;
        }
        merged.remove(name);
        for value in not_modified.get_all(name) {
            merged.append(name.clone(), value.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_304_replaces_fields_but_not_representation_metadata_rfc9111_3_2() {
        let mut stored = HeaderMap::new();
        stored.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        stored.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10"),
        );
        stored.insert("x-version", HeaderValue::from_static("1"));
        let mut not_modified = HeaderMap::new();
        not_modified.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        not_modified.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        not_modified.append("x-version", HeaderValue::from_static("2"));
        not_modified.append("x-version", HeaderValue::from_static("3"));
        let merged = merge_not_modified(&stored, &not_modified);
        assert_eq!(merged[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(merged[header::CONTENT_TYPE], "application/json");
        let versions: Vec<_> = merged.get_all("x-version").iter().collect();
        assert_eq!(versions, ["2", "3"]);
    }
}
