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

/// A soft-purged entry is stale whatever its times say: usable as stale for as long as it has
/// stale windows, revalidated (or refetched) before use otherwise.
pub fn assess_soft_purged(times: &EntryTimes, now: SystemTime) -> Usability {
    match assess(times, now) {
        Usability::Fresh => Usability::Stale {
            within_swr: times.stale_while_revalidate_until > times.fresh_until,
            within_sie: times.stale_if_error_until > times.fresh_until,
        },
        other => other,
    }
}

/// Beyond this many `fetch_duration × beta` before expiry, the chance of an early refresh is
/// below e⁻¹⁰ (about 0.005 %): treated as zero, so most hits draw no random number.
const XFETCH_HORIZON: f64 = 10.0;

/// Whether a fresh entry is close enough to expiry that [`refresh_early`] may say yes.
pub fn early_refresh_possible(times: &EntryTimes, now: SystemTime, beta: f64) -> bool {
    let Ok(remaining) = times.fresh_until.duration_since(now) else {
        return false;
    };
    beta > 0.0
        && remaining.as_secs_f64() < times.fetch_duration.as_secs_f64() * beta * XFETCH_HORIZON
}

/// XFetch (Vattani, Chierichetti, Lowenstein 2015): refresh a fresh entry early when
/// `fetch_duration × beta × −ln(sample)` reaches its remaining freshness, so the probability
/// grows as expiry nears and hot keys are refreshed before they expire. `sample` is uniform
/// in `(0, 1]`.
pub fn refresh_early(times: &EntryTimes, now: SystemTime, beta: f64, sample: f64) -> bool {
    let Ok(remaining) = times.fresh_until.duration_since(now) else {
        return false;
    };
    if remaining.is_zero() || beta <= 0.0 || !(sample > 0.0 && sample <= 1.0) {
        return false;
    }
    times.fetch_duration.as_secs_f64() * beta * -sample.ln() >= remaining.as_secs_f64()
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
            fetch_duration: Duration::from_millis(200),
            stale_forbidden: false,
        }
    }

    #[test]
    fn early_refresh_grows_likelier_near_expiry_and_never_when_stale() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let t = times(start);
        let at = |ms| start + Duration::from_millis(ms);
        // Far from expiry: not even considered.
        assert!(!early_refresh_possible(&t, at(0), 1.0));
        assert!(early_refresh_possible(&t, at(9_000), 1.0));
        // 1s left, 200ms fetch: needs -ln(sample) >= 5, i.e. sample <= e^-5.
        assert!(!refresh_early(&t, at(9_000), 1.0, 0.5));
        assert!(refresh_early(&t, at(9_000), 1.0, 0.006));
        // 100ms left: -ln(sample) >= 0.5 is common.
        assert!(refresh_early(&t, at(9_900), 1.0, 0.5));
        // beta 0 disables; stale entries are not "early".
        assert!(!refresh_early(&t, at(9_900), 0.0, 0.01));
        assert!(!refresh_early(&t, at(10_000), 1.0, 0.01));
        // The share of samples that trigger matches exp(-remaining / (fetch × beta)).
        let hits = (1..=10_000)
            .filter(|i| refresh_early(&t, at(9_800), 1.0, f64::from(*i) / 10_000.0))
            .count();
        assert!((3_600..=3_760).contains(&hits), "{hits}");
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
