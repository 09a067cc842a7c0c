//! [`Entry`]: a stored response, immutable and shared as `Arc<Entry>`, with the times that
//! decide its freshness computed once, when it was stored.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

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

/// A copy of `headers` for an entry: every value a slice of one buffer of its own.
///
/// - Owned: hyper hands out header values as slices of its read buffer. Stored as they are,
///   each entry would keep a whole buffer alive that the memory tier's size accounting never
///   sees (RSS reached 4× the budget in the soak test).
/// - One buffer: every hit clones each value, and each clone bumps its buffer's reference
///   count. With a value per buffer that is a cache miss per header once the entries outgrow
///   the CPU caches; with one buffer per entry it is one.
///
/// Names need no copy: hyper builds them in their own allocation. A value that the buffer's
/// slice would not pass as valid (it always does: the bytes are a valid value's) stays as
/// it was.
pub fn packed_headers(headers: &HeaderMap) -> HeaderMap {
    let mut buffer = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let buffer = buffer.freeze();
    let mut packed = HeaderMap::with_capacity(headers.len());
    let mut at = 0;
    for (name, value) in headers {
        let end = at + value.len();
        let mut copy =
            HeaderValue::from_maybe_shared(buffer.slice(at..end)).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        packed.append(name.clone(), copy);
        at = end;
    }
    packed
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

/// What a body of `len` bytes weighs in the memory tier: its bytes and a sixteenth for the
/// allocator's fragmentation under churn (see [`Entry::weight`]).
pub const fn body_weight(len: u64) -> u64 {
    len.saturating_add(len / 16)
}

impl Entry {
    /// Approximate bytes this entry holds, for the memory tier's weigher.
    pub fn weight(&self) -> u32 {
        // What an entry costs beyond its bytes: the struct and its `Arc`, the cache's node and
        // queues, the header map's table, one allocation per header value and tag, and the
        // allocator's slack under churn. Measured by the soak test (load-tests/chaos/soak.sh):
        // about 2.4 KiB of resident memory per entry beyond body, header and tag bytes with a
        // 256-byte estimate, which let RSS reach 1.4x the budget. The slack also grows with
        // the body (most likely the holes freed large bodies leave, which small ones fill only
        // in part; measured as RSS, not traced in the allocator): on
        // quick_cache, which keeps more of the soak's 64 KiB bodies than moka did, RSS above
        // the fixed overhead was 11.6 KiB per 9.9 KiB accounted without `body_weight`'s
        // sixteenth, 1.198x the budget against the soak's 1.2x bound (1.166x with it, 30 min).
        const OVERHEAD: usize = 1536;
        const PER_HEADER: usize = 96;
        const PER_TAG: usize = 48;
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + PER_HEADER)
            .sum();
        let tags: usize = self.tags.iter().map(|t| t.len() + PER_TAG).sum();
        let bookkeeping = OVERHEAD + headers + tags + self.meta.path.len();
        let total = body_weight(self.body.len() as u64).saturating_add(bookkeeping as u64);
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    use super::packed_headers;

    #[test]
    fn packed_headers_keep_every_value_in_order_in_one_buffer_of_their_own() {
        // Values as hyper gives them: slices of one larger read buffer.
        let read_buffer = Bytes::from_static(b"text/plain max-age=60 a=1 b=2 secret");
        let mut headers = HeaderMap::new();
        let slice = |a: usize, b: usize| {
            HeaderValue::from_maybe_shared(read_buffer.slice(a..b)).expect("valid value")
        };
        headers.append("content-type", slice(0, 10));
        headers.append("cache-control", slice(11, 21));
        headers.append("set-cookie", slice(22, 25));
        headers.append("set-cookie", slice(26, 29));
        let mut secret = slice(30, 36);
        secret.set_sensitive(true);
        headers.append("x-token", secret);

        let packed = packed_headers(&headers);

        let original: Vec<_> = headers.iter().collect();
        let copied: Vec<_> = packed.iter().collect();
        assert_eq!(original, copied, "names, values and their order");
        assert!(packed.get("x-token").expect("kept").is_sensitive());
        assert!(!packed.get("content-type").expect("kept").is_sensitive());
        let outside = read_buffer.as_ptr_range();
        let mut next = None;
        for value in packed.values() {
            let at = value.as_bytes().as_ptr();
            assert!(
                !outside.contains(&at),
                "a value still points into the read buffer"
            );
            if let Some(expected) = next {
                assert_eq!(at, expected, "values are not laid out in one buffer");
            }
            next = Some(at.wrapping_add(value.len()));
        }
    }

    #[test]
    fn packing_no_headers_gives_none() {
        assert!(packed_headers(&HeaderMap::new()).is_empty());
    }
}
