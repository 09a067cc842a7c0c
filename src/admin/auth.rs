//! The admin bearer-token check: `Authorization: Bearer <token>`, compared in constant time.

use std::fmt;

use http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The configured admin token, kept only as a digest.
///
/// Both sides are hashed before the comparison so that it takes the same time whatever the
/// presented token's length or content (a plain slice comparison returns early on a length
/// mismatch), and so that the secret itself is not kept in memory longer than needed.
#[derive(Clone)]
pub(crate) struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// Keeps the digest of `token`. An empty token matches nothing (the config refuses one).
    pub(crate) fn new(token: &str) -> Self {
        Self {
            digest: *blake3::hash(token.as_bytes()).as_bytes(),
        }
    }

    /// Whether `headers` carry exactly one `Authorization: Bearer <token>` with this token.
    /// The scheme is case-insensitive (RFC 9110 §11.1); anything else is a plain `false`, with
    /// no hint of what was wrong.
    pub(crate) fn verify(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let Some(presented) = bearer_credentials(value.as_bytes()) else {
            return false;
        };
        let digest = blake3::hash(presented);
        bool::from(self.digest[..].ct_eq(&digest.as_bytes()[..]))
    }
}

/// Redacted: the digest is not secret in itself, but it has no business in logs either.
impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

/// The credentials of a `Bearer` authorization value: the text after the scheme and its
/// separating spaces, or `None` when the scheme differs or the credentials are empty.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let credentials = rest.trim_ascii_start();
    if credentials.len() == rest.len() || credentials.is_empty() {
        // No separator ("Bearerabc") or nothing after it.
        return None;
    }
    Some(credentials.trim_ascii_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_is_accepted() {
        let token = BearerToken::new("s3cret");
        let cases: &[(&[&'static str], bool)] = &[
            (&["Bearer s3cret"], true),
            (&["bearer s3cret"], true),
            (&["BEARER   s3cret "], true),
            (&[], false),
            (&["Bearer"], false),
            (&["Bearer "], false),
            (&["Bearers3cret"], false),
            (&["Bearer s3cre"], false),
            (&["Bearer s3cret2"], false),
            (&["Bearer S3CRET"], false),
            (&["Basic s3cret"], false),
            (&["s3cret"], false),
            (&["Token s3cret"], false),
            (&["Bearer s3cret", "Bearer s3cret"], false),
        ];
        for (values, expected) in cases {
            assert_eq!(token.verify(&headers(values)), *expected, "{values:?}");
        }
    }

    #[test]
    fn an_empty_token_matches_nothing() {
        let token = BearerToken::new("");
        for value in ["Bearer", "Bearer ", "Bearer  ", ""] {
            assert!(!token.verify(&headers(&[value])), "{value:?}");
        }
    }

    #[test]
    fn debug_does_not_show_the_digest() {
        assert_eq!(
            format!("{:?}", BearerToken::new("s3cret")),
            "BearerToken(..)"
        );
    }
}
