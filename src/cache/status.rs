//! [`CacheStatus`]: what the cache did for a response, as an RFC 9211 `Cache-Status` value and
//! as a bounded metric label.

use std::fmt::Write as _;

/// The cache's name in `Cache-Status`.
pub const CACHE_NAME: &str = "cachet";

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
        let mut v = String::from(CACHE_NAME);
        // Writing into a String cannot fail, hence the ignored results.
        match *self {
            Self::Hit { ttl, shared } => {
                let _ = write!(v, "; hit; ttl={ttl}");
                if shared {
                    v.push_str("; detail=shared");
                }
            }
            Self::StaleWhileRevalidate { ttl } => {
                let _ = write!(v, "; hit; ttl={ttl}; detail=stale-while-revalidate");
            }
            Self::StaleIfError { ttl, fwd_status } => {
                v.push_str("; fwd=stale");
                if let Some(status) = fwd_status {
                    let _ = write!(v, "; fwd-status={status}");
                }
                let _ = write!(v, "; ttl={ttl}; detail=stale-if-error");
            }
            Self::Miss { stored } => push_fwd(&mut v, "miss", None, stored),
            Self::Collapsed => v.push_str("; fwd=miss; collapsed"),
            Self::Stale { fwd_status, stored } => {
                push_fwd(&mut v, "stale", Some(fwd_status), stored)
            }
            Self::VaryMiss { stored } => push_fwd(&mut v, "vary-miss", None, stored),
            Self::Request { fwd_status, stored } => {
                push_fwd(&mut v, "request", Some(fwd_status), stored);
            }
            Self::Method => v.push_str("; fwd=method"),
            Self::HitForMiss => v.push_str("; fwd=bypass; detail=hit-for-miss"),
        }
        v
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

fn push_fwd(v: &mut String, fwd: &str, fwd_status: Option<u16>, stored: bool) {
    let _ = write!(v, "; fwd={fwd}");
    if let Some(status) = fwd_status {
        let _ = write!(v, "; fwd-status={status}");
    }
    if stored {
        v.push_str("; stored");
    }
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
        }
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
