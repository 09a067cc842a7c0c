//! [`Entry`]: a stored response, immutable and shared as `Arc<Entry>`, with the times that
//! decide its freshness computed once, when it was stored.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};

use super::key::Fingerprint;

/// When an entry stops being fresh, usable stale, and worth keeping; fixed at store time so
/// that a lookup is a few comparisons with `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryTimes {
    /// When the response was received from the origin.
    pub stored_at: SystemTime,
    /// The response's age when it was received (upstream `Age` and time in transit).
    pub initial_age: Duration,
    pub fresh_until: SystemTime,
    pub stale_while_revalidate_until: SystemTime,
    pub stale_if_error_until: SystemTime,
    /// After this the entry is useless and may be dropped by every tier.
    pub keep_until: SystemTime,
    /// How long the origin took to answer the fill: the cost early refresh (XFetch) weighs.
    pub fetch_duration: Duration,
    /// The origin forbids serving it stale (`must-revalidate`, `proxy-revalidate`, `s-maxage`,
    /// `no-cache`; RFC 9111 §4.2.4): not even a client's `max-stale` may have it.
    pub stale_forbidden: bool,
}

/// A stored response. Headers are pre-built (hop-by-hop and tag headers removed), the body is
/// `Bytes`: serving a hit copies refcounts, not bytes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The partition the entry was filled in; a lookup from another partition is a miss.
    pub partition: Fingerprint,
    /// Origin, static and automatic tags; never raw header values.
    pub tags: Vec<String>,
    pub times: EntryTimes,
    pub meta: EntryMeta,
}

/// What purge checks and variant selection need to know about an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// The normalized path it was filled for, for prefix purges.
    pub path: String,
    /// The purge sequence its instance had seen when the fill *started*: a purge with a higher
    /// sequence covers it.
    pub purge_seq: u64,
    /// The response's `Vary` header names (lower-case, sorted); empty when it has none.
    pub vary: Vec<HeaderName>,
}

impl Entry {
    /// Approximate bytes this entry holds, for the memory tier's weigher.
    pub fn weight(&self) -> u32 {
        // What an entry costs beyond its bytes: the struct and its `Arc`, moka's node and
        // queues, the header map's table, one allocation per header value and tag, and the
        // allocator's slack under churn. Measured by the soak test (load-tests/chaos/soak.sh):
        // about 2.4 KiB of resident memory per entry beyond body, header and tag bytes with a
        // 256-byte estimate, which let RSS reach 1.4x the budget.
        const OVERHEAD: usize = 1536;
        const PER_HEADER: usize = 96;
        const PER_TAG: usize = 48;
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + PER_HEADER)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + PER_TAG).sum();
        let total = OVERHEAD + headers + tags + self.meta.path.len() + self.body.len();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// `Age` (RFC 9111 §5.1) at `now`, in whole seconds.
    pub fn age(&self, now: SystemTime) -> u64 {
        let resident = now.duration_since(self.times.stored_at).unwrap_or_default();
        (self.times.initial_age + resident).as_secs()
    }

    /// How long the tiers should keep the entry from `now`; zero when it is no longer useful.
    pub fn keep_for(&self, now: SystemTime) -> Duration {
        self.times
            .keep_until
            .duration_since(now)
            .unwrap_or_default()
    }
}
