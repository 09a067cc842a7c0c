//! The versioned binary form of an [`Entry`], as stored in the shared tier.
//!
//! A blob is one format-version byte, the 16-byte [`Epoch`] of the shared tier it was written
//! under, one flags byte, then the entry as postcard (a maintained, compact serde format),
//! zstd-compressed when large. The version comes first so that a reader can tell a blob of a
//! *newer* binary (left alone: rolling upgrades run mixed versions) from an older or damaged
//! one (deleted) before it looks at anything else.
//!
//! Decoding never panics and never allocates more than the limit it is given: blobs come from
//! the network.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use zstd::bulk::{Compressor, Decompressor};

use super::entry::{Entry, EntryMeta, EntryTimes, packed_headers};
use super::key::Fingerprint;

/// The blob format this binary writes. Bump it whenever the serialized entry changes shape.
pub const FORMAT_VERSION: u8 = 1;

/// Bytes before the payload: version, epoch, flags.
const HEADER_LEN: usize = 1 + 16 + 1;
/// Flags bit: the payload is zstd-compressed.
const FLAG_ZSTD: u8 = 0b0000_0001;
/// zstd level 1: a few times faster than the default level for a slightly larger blob; the
/// shared tier's bandwidth is cheaper than the CPU of every instance that writes.
const ZSTD_LEVEL: i32 = 1;

/// Identity of one life of the shared tier's data. An entry written under another epoch was
/// written before the tier lost its data (restart, flush, failover) and is never served.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub [u8; 16]);

impl Epoch {
    /// Parses the 32 lower- or upper-case hex digits [`Display`](fmt::Display) writes.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            *slot = u8::try_from((hi << 4) | lo).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({self})")
    }
}

/// Why a blob could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Written by a newer binary: a miss, but leave the blob for the instances that read it.
    #[error("blob format version {0} is newer than this binary's")]
    Newer(u8),
    /// Written in a format this binary no longer reads: a miss, delete it.
    #[error("blob format version {0} is no longer supported")]
    Older(u8),
    /// Not a blob this binary could have written: a miss, delete it.
    #[error("corrupt blob: {0}")]
    Corrupt(&'static str),
}

impl CodecError {
    /// Whether the blob should be deleted from the tier (everything but [`CodecError::Newer`]).
    pub fn should_delete(&self) -> bool {
        !matches!(self, Self::Newer(_))
    }
}

/// The serde mirror of [`Entry`]. Field order is the wire format: append-only changes still
/// need a [`FORMAT_VERSION`] bump, since postcard is not self-describing.
#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    status: u16,
    /// In order, repeated names kept.
    #[serde(borrow)]
    headers: Vec<WireHeader<'a>>,
    #[serde(with = "raw")]
    body: &'a [u8],
    partition: [u8; 32],
    #[serde(borrow)]
    tags: Vec<&'a str>,
    /// Unix nanoseconds (u64 lasts until 2554; later times saturate).
    stored_at: u64,
    initial_age: u64,
    fresh_until: u64,
    stale_while_revalidate_until: u64,
    stale_if_error_until: u64,
    keep_until: u64,
    fetch_duration: u64,
    stale_forbidden: bool,
    #[serde(borrow)]
    path: &'a str,
    purge_seq: u64,
    #[serde(borrow)]
    vary: Vec<&'a str>,
}

#[derive(Serialize, Deserialize)]
struct WireHeader<'a> {
    name: &'a str,
    #[serde(with = "raw")]
    value: &'a [u8],
}

/// Byte slices as serde bytes (one length and a copy) instead of a sequence of `u8`s.
mod raw {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &&[u8],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de: 'a, 'a, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<&'a [u8], D::Error> {
        <&'de [u8]>::deserialize(deserializer)
    }
}

fn to_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_nanos(time: SystemTime) -> u64 {
    // Times before 1970 do not occur in entries; they saturate to the epoch.
    to_nanos(time.duration_since(UNIX_EPOCH).unwrap_or_default())
}

fn from_unix_nanos(nanos: u64) -> Result<SystemTime, CodecError> {
    UNIX_EPOCH
        .checked_add(Duration::from_nanos(nanos))
        .ok_or(CodecError::Corrupt("time out of range"))
}

/// Encodes `entry` as a blob stamped with `epoch`, compressing the payload when it is at least
/// `compress_min_bytes` long and compression makes it smaller.
pub fn encode(entry: &Entry, epoch: Epoch, compress_min_bytes: usize) -> Vec<u8> {
    let times = &entry.times;
    let wire = Wire {
        status: entry.status.as_u16(),
        headers: entry
            .headers
            .iter()
            .map(|(name, value)| WireHeader {
                name: name.as_str(),
                value: value.as_bytes(),
            })
            .collect(),
        body: &entry.body,
        partition: entry.partition.0,
        tags: entry.tags.iter().map(String::as_str).collect(),
        stored_at: unix_nanos(times.stored_at),
        initial_age: to_nanos(times.initial_age),
        fresh_until: unix_nanos(times.fresh_until),
        stale_while_revalidate_until: unix_nanos(times.stale_while_revalidate_until),
        stale_if_error_until: unix_nanos(times.stale_if_error_until),
        keep_until: unix_nanos(times.keep_until),
        fetch_duration: to_nanos(times.fetch_duration),
        stale_forbidden: times.stale_forbidden,
        path: &entry.meta.path,
        purge_seq: entry.meta.purge_seq,
        vary: entry.meta.vary.iter().map(HeaderName::as_str).collect(),
    };
    let mut blob = Vec::with_capacity(HEADER_LEN + entry.body.len() + 256);
    blob.push(FORMAT_VERSION);
    blob.extend_from_slice(&epoch.0);
    blob.push(0);
    let mut blob = postcard::to_extend(&wire, blob)
        .expect("the wire struct has only sized fields postcard can serialize");
    let payload = &blob[HEADER_LEN..];
    if payload.len() >= compress_min_bytes {
        // A failed or useless compression only costs space: keep the plain payload.
        if let Ok(compressed) = compress(payload) {
            if compressed.len() < payload.len() {
                blob.truncate(HEADER_LEN);
                blob[HEADER_LEN - 1] = FLAG_ZSTD;
                blob.extend_from_slice(&compressed);
            }
        }
    }
    blob
}

/// Decodes a blob into the epoch it was written under and its entry. A compressed payload
/// larger than `max_payload_bytes` once decompressed is refused as corrupt.
///
/// # Errors
/// [`CodecError::Newer`] for a blob of a newer format (leave it alone), [`CodecError::Older`]
/// or [`CodecError::Corrupt`] for one that should be deleted.
pub fn decode(blob: &[u8], max_payload_bytes: usize) -> Result<(Epoch, Entry), CodecError> {
    let (&version, rest) = blob
        .split_first()
        .ok_or(CodecError::Corrupt("empty blob"))?;
    if version > FORMAT_VERSION {
        return Err(CodecError::Newer(version));
    }
    if version < FORMAT_VERSION {
        return Err(CodecError::Older(version));
    }
    let (epoch, rest) = rest
        .split_first_chunk::<16>()
        .ok_or(CodecError::Corrupt("truncated header"))?;
    let (&flags, payload) = rest
        .split_first()
        .ok_or(CodecError::Corrupt("truncated header"))?;
    let decompressed;
    let payload = match flags {
        0 => payload,
        FLAG_ZSTD => {
            decompressed = decompress(payload, max_payload_bytes)?;
            &decompressed[..]
        }
        _ => return Err(CodecError::Corrupt("unknown flags")),
    };
    let (wire, trailing) = postcard::take_from_bytes::<Wire<'_>>(payload)
        .map_err(|_| CodecError::Corrupt("undecodable payload"))?;
    if !trailing.is_empty() {
        return Err(CodecError::Corrupt("trailing bytes"));
    }
    Ok((Epoch(*epoch), entry_from_wire(wire)?))
}

thread_local! {
    // zstd contexts are costly to set up (more than compressing 4 KiB); each thread keeps one.
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's context from `slot`, creating it on first use.
fn with_context<C, T>(
    slot: &'static std::thread::LocalKey<RefCell<Option<C>>>,
    create: impl FnOnce() -> io::Result<C>,
    f: impl FnOnce(&mut C) -> io::Result<T>,
) -> io::Result<T> {
    slot.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(io::Error::other)?;
        match &mut *slot {
            Some(context) => f(context),
            None => {
                let mut context = create()?;
                let result = f(&mut context);
                *slot = Some(context);
                result
            }
        }
    })
}

fn compress(payload: &[u8]) -> io::Result<Vec<u8>> {
    with_context(
        &COMPRESSOR,
        || Compressor::new(ZSTD_LEVEL),
        |c| c.compress(payload),
    )
}

/// Decompresses one zstd frame that records its size (ours always do), refusing one that
/// would exceed `limit` before allocating anything.
fn decompress(payload: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let size = zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .ok_or(CodecError::Corrupt("bad compressed payload"))?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&size| size <= limit)
        .ok_or(CodecError::Corrupt("payload over the size limit"))?;
    let mut out = Vec::with_capacity(size);
    // The output cannot outgrow `out`'s capacity: more data (or a second frame) is an error.
    with_context(&DECOMPRESSOR, Decompressor::new, |d| {
        d.decompress_to_buffer(payload, &mut out)
    })
    .map_err(|_| CodecError::Corrupt("bad compressed payload"))?;
    Ok(out)
}

fn entry_from_wire(wire: Wire<'_>) -> Result<Entry, CodecError> {
    let status =
        StatusCode::from_u16(wire.status).map_err(|_| CodecError::Corrupt("invalid status"))?;
    let mut headers = HeaderMap::with_capacity(wire.headers.len());
    for header in wire.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| CodecError::Corrupt("invalid header name"))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| CodecError::Corrupt("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Entry {
        status,
        headers: packed_headers(&headers),
        body: Bytes::copy_from_slice(wire.body),
        partition: Fingerprint(wire.partition),
        tags: wire.tags.into_iter().map(str::to_owned).collect(),
        times: EntryTimes {
            stored_at: from_unix_nanos(wire.stored_at)?,
            initial_age: Duration::from_nanos(wire.initial_age),
            fresh_until: from_unix_nanos(wire.fresh_until)?,
            stale_while_revalidate_until: from_unix_nanos(wire.stale_while_revalidate_until)?,
            stale_if_error_until: from_unix_nanos(wire.stale_if_error_until)?,
            keep_until: from_unix_nanos(wire.keep_until)?,
            fetch_duration: Duration::from_nanos(wire.fetch_duration),
            stale_forbidden: wire.stale_forbidden,
        },
        meta: EntryMeta {
            path: wire.path.to_owned(),
            purge_seq: wire.purge_seq,
            vary: wire
                .vary
                .into_iter()
                .map(|name| HeaderName::from_bytes(name.as_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|_| CodecError::Corrupt("invalid vary name"))?,
        },
    })
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
