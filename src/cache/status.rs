//! [`CacheStatus`]: what the cache did for a response, as an RFC 9211 `Cache-Status` value and
//! as a bounded metric label.

use std::fmt::Write;

use arrayvec::ArrayString;
use http::HeaderValue;

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "cachet";

/// Room for the longest value: a stale-if-error with a 20-digit ttl is under 90 bytes.
const MAX_VALUE_LEN: usize = 128;

/// One situation of DESIGN.md's Cache-Status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Fresh hit; `shared` when it came from the shared tier.
    Hit { ttl: i64, shared: bool },
    /// Stale served while one refresh runs (RFC 5861 stale-while-revalidate).
    StaleWhileRevalidate { ttl: i64 },
    /// Stale served because the origin failed (RFC 5861 stale-if-error).
    StaleIfError { ttl: i64, fwd_status: Option<u16> },
    /// No usable entry; forwarded.
    Miss { stored: bool },
    /// Waited on another request's fetch of the same key.
    Collapsed,
    /// A stale entry was forwarded (revalidated or refetched).
    Stale { fwd_status: u16, stored: bool },
    /// The Vary-selected variant was not stored yet.
    VaryMiss { stored: bool },
    /// The client forced revalidation.
    Request { fwd_status: u16, stored: bool },
    /// Not cacheable by method.
    Method,
    /// Remembered as not storable.
    HitForMiss,
}

impl CacheStatus {
    /// The RFC 9211 field value, e.g. `cachet; hit; ttl=42`.
    pub fn header_value(&self) -> String {
        let mut v = String::with_capacity(MAX_VALUE_LEN);
        // Writing into a String cannot fail.
        let _ = self.write_value(&mut v);
        v
    }

    /// The field value as a header, formatted on the stack: one allocation per response (the
    /// header's own bytes) instead of a growing `String` and its copy.
    pub fn to_header(&self) -> HeaderValue {
        let mut v = ArrayString::<MAX_VALUE_LEN>::new();
        match self.write_value(&mut v) {
            Ok(()) => HeaderValue::from_str(&v).ok(),
            Err(_) => HeaderValue::from_str(&self.header_value()).ok(),
        }
        // Every value is ASCII letters, digits and `;= -`; the fallback never shows.
        .unwrap_or(HeaderValue::from_static(CACHE_NAME))
    }

    fn write_value(&self, v: &mut impl Write) -> std::fmt::Result {
        v.write_str(CACHE_NAME)?;
        match *self {
            Self::Hit { ttl, shared } => {
                write!(v, "; hit; ttl={ttl}")?;
                if shared {
                    v.write_str("; detail=shared")?;
                }
            }
            Self::StaleWhileRevalidate { ttl } => {
                write!(v, "; hit; ttl={ttl}; detail=stale-while-revalidate")?;
            }
            Self::StaleIfError { ttl, fwd_status } => {
                v.write_str("; fwd=stale")?;
                if let Some(status) = fwd_status {
                    write!(v, "; fwd-status={status}")?;
                }
                write!(v, "; ttl={ttl}; detail=stale-if-error")?;
            }
            Self::Miss { stored } => push_fwd(v, "miss", None, stored)?,
            Self::Collapsed => v.write_str("; fwd=miss; collapsed")?,
            Self::Stale { fwd_status, stored } => push_fwd(v, "stale", Some(fwd_status), stored)?,
            Self::VaryMiss { stored } => push_fwd(v, "vary-miss", None, stored)?,
            Self::Request { fwd_status, stored } => {
                push_fwd(v, "request", Some(fwd_status), stored)?;
            }
            Self::Method => v.write_str("; fwd=method")?,
            Self::HitForMiss => v.write_str("; fwd=bypass; detail=hit-for-miss")?,
        }
        Ok(())
    }

    /// The bounded metric label: `hit`, `stale`, `miss`, `collapsed` or `pass`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Hit { .. } => "hit",
            Self::StaleWhileRevalidate { .. } | Self::StaleIfError { .. } => "stale",
            Self::Miss { .. }
            | Self::Stale { .. }
            | Self::VaryMiss { .. }
            | Self::Request { .. } => "miss",
            Self::Collapsed => "collapsed",
            Self::Method | Self::HitForMiss => "pass",
        }
    }
}

fn push_fwd(
    v: &mut impl Write,
    fwd: &str,
    fwd_status: Option<u16>,
    stored: bool,
) -> std::fmt::Result {
    write!(v, "; fwd={fwd}")?;
    if let Some(status) = fwd_status {
        write!(v, "; fwd-status={status}")?;
    }
    if stored {
        v.write_str("; stored")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CacheStatus::*;

    /// Every row of DESIGN.md's table (RFC 9211 §2).
    #[test]
    fn header_values_match_the_contract_table() {
        let cases = [
            (
                Hit {
                    ttl: 42,
                    shared: false,
                },
                "cachet; hit; ttl=42",
            ),
            (
                Hit {
                    ttl: 42,
                    shared: true,
                },
                "cachet; hit; ttl=42; detail=shared",
            ),
            (
                StaleWhileRevalidate { ttl: -3 },
                "cachet; hit; ttl=-3; detail=stale-while-revalidate",
            ),
            (
                StaleIfError {
                    ttl: -30,
                    fwd_status: Some(503),
                },
                "cachet; fwd=stale; fwd-status=503; ttl=-30; detail=stale-if-error",
            ),
            (
                StaleIfError {
                    ttl: -30,
                    fwd_status: None,
                },
                "cachet; fwd=stale; ttl=-30; detail=stale-if-error",
            ),
            (Miss { stored: true }, "cachet; fwd=miss; stored"),
            (Miss { stored: false }, "cachet; fwd=miss"),
            (Collapsed, "cachet; fwd=miss; collapsed"),
            (
                Stale {
                    fwd_status: 304,
                    stored: true,
                },
                "cachet; fwd=stale; fwd-status=304; stored",
            ),
            (VaryMiss { stored: true }, "cachet; fwd=vary-miss; stored"),
            (
                Request {
                    fwd_status: 200,
                    stored: true,
                },
                "cachet; fwd=request; fwd-status=200; stored",
            ),
            (Method, "cachet; fwd=method"),
            (HitForMiss, "cachet; fwd=bypass; detail=hit-for-miss"),
        ];
        for (status, expected) in cases {
            assert_eq!(status.header_value(), expected, "{status:?}");
            assert_eq!(status.to_header(), expected, "{status:?}");
        }
    }

    #[test]
    fn the_longest_value_fits_the_stack_buffer() {
        let longest = StaleIfError {
            ttl: i64::MIN,
            fwd_status: Some(u16::MAX),
        };
        let mut v = arrayvec::ArrayString::<{ super::MAX_VALUE_LEN }>::new();
        assert!(longest.write_value(&mut v).is_ok());
        assert_eq!(v.as_str(), longest.header_value());
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            Hit {
                ttl: 1,
                shared: true
            }
            .label(),
            "hit"
        );
        assert_eq!(
            StaleIfError {
                ttl: -1,
                fwd_status: None
            }
            .label(),
            "stale"
        );
        assert_eq!(Miss { stored: false }.label(), "miss");
        assert_eq!(Collapsed.label(), "collapsed");
        assert_eq!(Method.label(), "pass");
    }
}
