//! [`CacheStatus`]: what the cache did for a response, as an RFC 9211 `Cache-Status` value and
//! as a bounded metric label.

use std::fmt;

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

/// The RFC 9211 field value, e.g. `cachet; hit; ttl=42`.
impl fmt::Display for CacheStatus {
    fn fmt(&self, v: &mut fmt::Formatter<'_>) -> fmt::Result {
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
}

fn push_fwd(
    v: &mut fmt::Formatter<'_>,
    fwd: &str,
    fwd_status: Option<u16>,
    stored: bool,
) -> fmt::Result {
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
            assert_eq!(status.to_string(), expected, "{status:?}");
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
