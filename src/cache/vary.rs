//! Vary (RFC 9111 §4.1): which request headers select a stored variant, and the variant's
//! fingerprint.
//!
//! Lookup is two-step: the primary key finds an entry carrying the URL's Vary spec (the
//! header names); the request's values of those headers, normalized, select the variant key.
//! Values enter the fingerprint only through the keyed [`PartitionHasher`], so stored entries
//! never carry raw request header values.

use http::{HeaderMap, HeaderName};

use super::key::{CacheKey, Fingerprint, PartitionHasher};

/// What a response's `Vary` says about reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaryRule {
    /// No `Vary`: one representation for every request.
    None,
    /// `Vary: *` (or an unparsable value): never reused (RFC 9111 §4.1).
    Never,
    /// Variants are selected by these headers (lower-case, sorted, without duplicates).
    Headers(Vec<HeaderName>),
}

impl VaryRule {
    /// Reads the `Vary` field lines of a response.
    pub fn from_response(headers: &HeaderMap) -> Self {
        let mut names = Vec::new();
        for value in headers.get_all(http::header::VARY) {
            let Ok(value) = value.to_str() else {
                return Self::Never;
            };
            for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if name == "*" {
                    return Self::Never;
                }
                match HeaderName::from_bytes(name.as_bytes()) {
                    Ok(name) => names.push(name),
                    Err(_) => return Self::Never,
                }
            }
        }
        if names.is_empty() {
            return Self::None;
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self::Headers(names)
    }
}

/// Headers whose values compare case-insensitively (RFC 9110 §12.5): their values are
/// lower-cased before hashing, so `EN-us` and `en-US` select one variant.
const CASE_INSENSITIVE: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];

/// The normalized value of one header for variant selection: field lines joined, whitespace
/// around commas and runs of spaces collapsed, lower-cased where case does not matter, and
/// `Accept-Encoding` reduced to the bucket an origin would pick from.
pub fn normalized_value(name: &HeaderName, headers: &HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let joined = lines.join(",");
    let mut value: String = joined
        .split(',')
        .map(|part| part.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    if CASE_INSENSITIVE.contains(&name.as_str()) {
        value.make_ascii_lowercase();
    }
    if name == http::header::ACCEPT_ENCODING {
        return Some(encoding_bucket(&value).to_owned());
    }
    Some(value)
}

/// Accept-Encoding values vary wildly between clients but origins choose among few codings:
/// bucket them so that every browser does not get its own variant.
fn encoding_bucket(value: &str) -> &'static str {
    let accepts = |coding: &str| {
        value.split(',').any(|part| {
            let mut pieces = part.split(';');
            let name = pieces.next().unwrap_or_default().trim();
            let refused = pieces.any(|p| {
                let p = p.trim();
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            name == coding && !refused
        })
    };
    if accepts("br") {
        "br"
    } else if accepts("gzip") {
        "gzip"
    } else if accepts("zstd") {
        "zstd"
    } else {
        "identity"
    }
}

/// The fingerprint of a request's values for `names`; absent headers count as absent, not
/// as empty.
pub fn variant_fingerprint(
    hasher: &PartitionHasher,
    names: &[HeaderName],
    headers: &HeaderMap,
) -> Fingerprint {
    let mut values: Vec<Vec<u8>> = Vec::with_capacity(names.len());
    for name in names {
        match normalized_value(name, headers) {
            Some(value) => {
                let mut tagged = Vec::with_capacity(value.len() + 1);
                tagged.push(1);
                tagged.extend_from_slice(value.as_bytes());
                values.push(tagged);
            }
            None => values.push(vec![0]),
        }
    }
    let slices: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    // The names themselves enter the variant key (see `variant_key`).
    hasher.fingerprint(&http::header::VARY, &slices)
}

/// The key of one variant of the URL whose primary key is `primary`.
pub fn variant_key(primary: &CacheKey, names: &[HeaderName], variant: &Fingerprint) -> CacheKey {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"cachet variant v1");
    hasher.update(&primary.0.0);
    for name in names {
        hasher.update(&(name.as_str().len() as u64).to_le_bytes());
        hasher.update(name.as_str().as_bytes());
    }
    hasher.update(&variant.0);
    CacheKey(Fingerprint(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn vary_rules_rfc9111_4_1() {
        assert_eq!(VaryRule::from_response(&headers(&[])), VaryRule::None);
        assert_eq!(
            VaryRule::from_response(&headers(&[("vary", "*")])),
            VaryRule::Never
        );
        assert_eq!(
            VaryRule::from_response(&headers(&[("vary", "Accept, *")])),
            VaryRule::Never
        );
        assert_eq!(
            VaryRule::from_response(&headers(&[
                ("vary", "Accept-Language, accept"),
                ("vary", "accept")
            ])),
            VaryRule::Headers(vec![
                HeaderName::from_static("accept"),
                HeaderName::from_static("accept-language")
            ])
        );
    }

    #[test]
    fn values_are_normalized_before_selecting_a_variant() {
        let lang = HeaderName::from_static("accept-language");
        let a = normalized_value(&lang, &headers(&[("accept-language", "EN-us,  fr;q=0.5")]));
        let b = normalized_value(
            &lang,
            &headers(&[
                ("accept-language", "en-US"),
                ("accept-language", "fr;q=0.5"),
            ]),
        );
        assert_eq!(a, b);
        let enc = http::header::ACCEPT_ENCODING;
        for (value, bucket) in [
            ("gzip, deflate, br", "br"),
            ("gzip;q=1.0, identity; q=0.5", "gzip"),
            ("br;q=0, gzip", "gzip"),
            ("identity", "identity"),
        ] {
            let h = headers(&[("accept-encoding", value)]);
            assert_eq!(
                normalized_value(&enc, &h).as_deref(),
                Some(bucket),
                "{value}"
            );
        }
    }

    #[test]
    fn variants_differ_by_value_and_absence() {
        let hasher = PartitionHasher::new(Some("s"));
        let names = vec![HeaderName::from_static("accept-language")];
        let en = variant_fingerprint(&hasher, &names, &headers(&[("accept-language", "en")]));
        let en_again = variant_fingerprint(&hasher, &names, &headers(&[("accept-language", "EN")]));
        let fr = variant_fingerprint(&hasher, &names, &headers(&[("accept-language", "fr")]));
        let none = variant_fingerprint(&hasher, &names, &headers(&[]));
        let empty = variant_fingerprint(&hasher, &names, &headers(&[("accept-language", "")]));
        assert_eq!(en, en_again);
        assert_ne!(en, fr);
        assert_ne!(none, empty);
    }
}
