//! Freshness decisions on lookup: pure functions of the entry's stored times and `now`.

use std::time::SystemTime;

use super::entry::EntryTimes;

/// What an entry can be used for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Serve it.
    Fresh,
    /// Past freshness; the flags say which stale windows (RFC 5861) are still open.
    Stale { within_swr: bool, within_sie: bool },
    /// Past every window: as good as absent.
    Unusable,
}

/// Classifies `times` at `now`.
pub fn assess(times: &EntryTimes, now: SystemTime) -> Usability {
    if now < times.fresh_until {
        Usability::Fresh
    } else if now < times.keep_until {
        Usability::Stale {
            within_swr: now < times.stale_while_revalidate_until,
            within_sie: now < times.stale_if_error_until,
        }
    } else {
        Usability::Unusable
    }
}

/// Remaining freshness in whole seconds, negative once stale (the `ttl` of RFC 9211).
pub fn ttl_secs(times: &EntryTimes, now: SystemTime) -> i64 {
    match times.fresh_until.duration_since(now) {
        Ok(left) => i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        Err(past) => {
            let past = past.duration();
            // A stale entry reports at least -1 so that "stale" is never shown as ttl=0.
            -i64::try_from(past.as_secs().max(1)).unwrap_or(i64::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn times(start: SystemTime) -> EntryTimes {
        EntryTimes {
            stored_at: start,
            initial_age: Duration::ZERO,
            fresh_until: start + Duration::from_secs(10),
            stale_while_revalidate_until: start + Duration::from_secs(20),
            stale_if_error_until: start + Duration::from_secs(30),
            keep_until: start + Duration::from_secs(30),
        }
    }

    #[test]
    fn entry_moves_from_fresh_through_stale_windows_to_unusable() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = times(start);
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(assess(&t, at(0)), Usability::Fresh);
        assert_eq!(assess(&t, at(9)), Usability::Fresh);
        assert_eq!(
            assess(&t, at(10)),
            Usability::Stale {
                within_swr: true,
                within_sie: true
            }
        );
        assert_eq!(
            assess(&t, at(25)),
            Usability::Stale {
                within_swr: false,
                within_sie: true
            }
        );
        assert_eq!(assess(&t, at(30)), Usability::Unusable);
    }

    #[test]
    fn ttl_counts_down_and_goes_negative_when_stale() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = times(start);
        assert_eq!(ttl_secs(&t, start), 10);
        assert_eq!(ttl_secs(&t, start + Duration::from_millis(9_500)), 0);
        assert_eq!(ttl_secs(&t, start + Duration::from_millis(10_200)), -1);
        assert_eq!(ttl_secs(&t, start + Duration::from_secs(13)), -3);
    }
}
