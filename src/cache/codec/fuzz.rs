//! Randomized decoding of shared-tier blobs (issue 10, "Hardening"), beyond the round trip and
//! the plain arbitrary-bytes properties of `tests.rs`: blobs *shaped* like ours (every version
//! byte, every flags byte, postcard made of varints, huge length prefixes, zstd frames that
//! are truncated, lie about their size, come in twos or have damaged headers), many cases
//! each. A blob comes from the network: decoding answers `Ok` or a typed [`CodecError`],
//! never panics, and never allocates past its limit. A hand-written postcard writer pins the
//! wire format. Nasty blobs kept as files are run by `tests/decoders.rs`.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use proptest::prelude::*;

use super::{
    CodecError, Entry, EntryMeta, EntryTimes, Epoch, FLAG_ZSTD, FORMAT_VERSION, Fingerprint,
    HEADER_LEN, compress, decode, encode,
};

/// The decompression limit of these tests.
const LIMIT: usize = 64 * 1024;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Unsigned LEB128, as postcard writes every integer wider than a byte.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let low = u8::try_from(value & 0x7F).expect("seven bits");
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// Where a hand-written payload has a length prefix a test may inflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Headers,
    HeaderName,
    HeaderValue,
    Body,
    Tags,
    Tag,
    Path,
    Vary,
}

const LENGTHS: [Length; 8] = [
    Length::Headers,
    Length::HeaderName,
    Length::HeaderValue,
    Length::Body,
    Length::Tags,
    Length::Tag,
    Length::Path,
    Length::Vary,
];

fn nanos(time: std::time::SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos(),
    )
    .expect("before 2554")
}

/// The postcard payload of `entry`, written by hand field by field (the wire format of
/// version 1), with the length prefix `inflate` names replaced by `by` when given.
fn hand_payload(entry: &Entry, inflate: Option<(Length, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    let len = |field: Length, actual: usize, out: &mut Vec<u8>| match inflate {
        Some((which, by)) if which == field => varint(by, out),
        _ => varint(actual as u64, out),
    };
    let text = |field: Length, bytes: &[u8], out: &mut Vec<u8>| {
        len(field, bytes.len(), out);
        out.extend_from_slice(bytes);
    };
    varint(u64::from(entry.status.as_u16()), &mut out);
    len(Length::Headers, entry.headers.len(), &mut out);
    for (name, value) in &entry.headers {
        text(Length::HeaderName, name.as_str().as_bytes(), &mut out);
        text(Length::HeaderValue, value.as_bytes(), &mut out);
    }
    text(Length::Body, &entry.body, &mut out);
    out.extend_from_slice(&entry.partition.0);
    len(Length::Tags, entry.tags.len(), &mut out);
    for tag in &entry.tags {
        text(Length::Tag, tag.as_bytes(), &mut out);
    }
    let times = &entry.times;
    for value in [
        nanos(times.stored_at),
        u64::try_from(times.initial_age.as_nanos()).expect("small"),
        nanos(times.fresh_until),
        nanos(times.stale_while_revalidate_until),
        nanos(times.stale_if_error_until),
        nanos(times.keep_until),
        u64::try_from(times.fetch_duration.as_nanos()).expect("small"),
    ] {
        varint(value, &mut out);
    }
    out.push(u8::from(times.stale_forbidden));
    text(Length::Path, entry.meta.path.as_bytes(), &mut out);
    varint(entry.meta.purge_seq, &mut out);
    len(Length::Vary, entry.meta.vary.len(), &mut out);
    for name in &entry.meta.vary {
        text(Length::Tag, name.as_str().as_bytes(), &mut out);
    }
    out
}

fn blob(version: u8, epoch: [u8; 16], flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(HEADER_LEN + payload.len());
    blob.push(version);
    blob.extend_from_slice(&epoch);
    blob.push(flags);
    blob.extend_from_slice(payload);
    blob
}

/// Every decode answer is one of the typed outcomes, and the version byte alone decides the
/// version errors.
fn check_answer(bytes: &[u8]) -> Result<(), TestCaseError> {
    let answer = decode(bytes, LIMIT);
    match bytes.first() {
        None => prop_assert_eq!(answer.err(), Some(CodecError::Corrupt("empty blob"))),
        Some(&v) if v > FORMAT_VERSION => prop_assert_eq!(answer.err(), Some(CodecError::Newer(v))),
        Some(&v) if v < FORMAT_VERSION => prop_assert_eq!(answer.err(), Some(CodecError::Older(v))),
        Some(_) => {
            if let Ok((_, entry)) = &answer {
                // What decodes re-encodes, and decodes to the same again.
                let again = encode(entry, Epoch([0; 16]), usize::MAX);
                let (_, twice) = decode(&again, usize::MAX).map_err(|e| {
                    TestCaseError::fail(format!("a decoded entry does not round-trip: {e}"))
                })?;
                prop_assert_eq!(twice.status, entry.status);
                prop_assert_eq!(&twice.body, &entry.body);
                prop_assert_eq!(&twice.tags, &entry.tags);
                prop_assert_eq!(twice.times, entry.times);
                prop_assert_eq!(&twice.meta, &entry.meta);
            }
        }
    }
    Ok(())
}

/// Postcard-looking bytes: small and huge varints, valid-looking strings, raw bytes.
fn postcard_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        3 => (0u64..300).prop_map(|v| { let mut out = Vec::new(); varint(v, &mut out); out }),
        2 => prop_oneof![
            Just(u64::MAX),
            Just(u64::from(u32::MAX)),
            Just(1u64 << 32),
            Just(1u64 << 62),
            Just(usize::MAX as u64 / 2),
            any::<u64>(),
        ]
        .prop_map(|v| { let mut out = Vec::new(); varint(v, &mut out); out }),
        // An overlong or unterminated varint.
        1 => Just(vec![0xFF; 11]),
        1 => Just(vec![0x80, 0x80, 0x80, 0x00]),
        2 => "[a-z:-]{0,12}".prop_map(|s| { let mut out = Vec::new(); varint(s.len() as u64, &mut out); out.extend_from_slice(s.as_bytes()); out }),
        2 => prop::collection::vec(any::<u8>(), 0..40),
        1 => Just(vec![0u8; 32]),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

prop_compose! {
    fn entry()(
        status in 100u16..=999,
        headers in prop::collection::vec(super::tests::header_strategy(), 0..5),
        body in prop::collection::vec(any::<u8>(), 0..600),
        partition in any::<[u8; 32]>(),
        tags in prop::collection::vec(".{0,10}", 0..4),
        times in prop::collection::vec(0u64..(1 << 62), 7),
        stale_forbidden in any::<bool>(),
        path in "/[ -~]{0,20}",
        purge_seq in any::<u64>(),
        vary in prop::collection::vec(prop::sample::select(vec!["accept", "accept-language", "x-tenant-id"]), 0..3),
    ) -> Entry {
        let times: [u64; 7] = times.try_into().expect("7 drawn times");
        let meta = EntryMeta {
            path,
            purge_seq,
            vary: vary.into_iter().map(HeaderName::from_static).collect(),
        };
        let mut entry = super::tests::drawn_entry(status, headers, body, partition, tags, times, meta);
        entry.times.stale_forbidden = stale_forbidden;
        entry
    }
}

proptest! {
    #![proptest_config(config(5_000))]

    /// Any version byte, any flags byte, postcard-looking payloads: a typed answer, and what
    /// decodes round-trips.
    #[test]
    fn blobs_shaped_like_ours_never_panic(
        version in prop_oneof![Just(0u8), Just(FORMAT_VERSION), Just(FORMAT_VERSION + 1), Just(u8::MAX), any::<u8>()],
        epoch in any::<[u8; 16]>(),
        flags in prop_oneof![4 => Just(0u8), 2 => Just(FLAG_ZSTD), 1 => any::<u8>()],
        payload in postcard_ish(),
        cut in any::<prop::sample::Index>(),
        whole in any::<bool>(),
    ) {
        let mut bytes = blob(version, epoch, flags, &payload);
        if !whole {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_answer(&bytes)?;
    }

    /// zstd frames around arbitrary and postcard-looking payloads, damaged in their header or
    /// body, or cut anywhere: a typed answer, never a panic.
    #[test]
    fn damaged_zstd_frames_never_panic(
        payload in prop_oneof![postcard_ish(), prop::collection::vec(any::<u8>(), 0..2000)],
        damage in prop::collection::vec((0usize..24, any::<u8>()), 0..3),
        cut in any::<prop::sample::Index>(),
        whole in any::<bool>(),
        twice in any::<bool>(),
    ) {
        let mut frame = compress(&payload).expect("zstd compresses");
        for (at, xor) in damage {
            if let Some(byte) = frame.get_mut(at) {
                *byte ^= xor;
            }
        }
        if twice {
            frame.extend_from_within(..);
        }
        if !whole {
            frame.truncate(cut.index(frame.len() + 1));
        }
        check_answer(&blob(FORMAT_VERSION, [3; 16], FLAG_ZSTD, &frame))?;
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    /// The hand-written payload is byte for byte what `encode` writes (the wire format is
    /// pinned), and any length prefix inflated past the data (up to `u64::MAX`) is corrupt,
    /// not a panic or a huge allocation.
    #[test]
    fn huge_length_prefixes_are_corrupt(
        entry in entry(),
        which in prop::sample::select(LENGTHS.to_vec()),
        by in prop_oneof![Just(u64::MAX), Just(1u64 << 32), Just(1u64 << 40), (1u64 << 20)..(1u64 << 62)],
        compressed in any::<bool>(),
    ) {
        let honest = hand_payload(&entry, None);
        let encoded = encode(&entry, Epoch([5; 16]), usize::MAX);
        prop_assert_eq!(&encoded[HEADER_LEN..], &honest[..], "the wire format changed");

        let inflated = hand_payload(&entry, Some((which, by)));
        let has_field = match which {
            Length::HeaderName | Length::HeaderValue => !entry.headers.is_empty(),
            Length::Tag => !entry.tags.is_empty() || !entry.meta.vary.is_empty(),
            _ => true,
        };
        let bytes = if compressed {
            blob(FORMAT_VERSION, [5; 16], FLAG_ZSTD, &compress(&inflated).expect("zstd compresses"))
        } else {
            blob(FORMAT_VERSION, [5; 16], 0, &inflated)
        };
        let answer = decode(&bytes, LIMIT);
        if has_field {
            prop_assert!(
                matches!(answer, Err(CodecError::Corrupt(_))),
                "{:?} inflated to {} decoded as {:?}", which, by, answer.map(|(_, e)| e.status)
            );
        } else {
            check_answer(&bytes)?;
        }
    }

    /// The decompression limit holds exactly: a compressed blob decodes under a limit at least
    /// its payload's size and is refused as corrupt under a smaller one.
    #[test]
    fn the_decompression_limit_is_exact(entry in entry(), slack in -64i64..64) {
        let plain = encode(&entry, Epoch([6; 16]), usize::MAX);
        let size = plain.len() - HEADER_LEN;
        let compressed = blob(FORMAT_VERSION, [6; 16], FLAG_ZSTD, &compress(&plain[HEADER_LEN..]).expect("zstd compresses"));
        let limit = usize::try_from((size as i64 + slack).max(0)).expect("not negative");
        let answer = decode(&compressed, limit);
        if limit >= size {
            prop_assert!(answer.is_ok(), "limit {limit} for {size}: {:?}", answer.err());
        } else {
            prop_assert_eq!(answer.err(), Some(CodecError::Corrupt("payload over the size limit")));
        }
    }
}

/// A frame that declares far more than the limit is refused before anything is allocated
/// (a zip bomb: 16 MiB of zeros compress to a few hundred bytes).
#[test]
fn a_frame_declaring_more_than_the_limit_is_refused_up_front() {
    let zeros = vec![0u8; 16 << 20];
    let frame = compress(&zeros).expect("zstd compresses");
    assert!(frame.len() < 64 * 1024, "{} bytes", frame.len());
    drop(zeros);
    assert_eq!(
        decode(&blob(FORMAT_VERSION, [1; 16], FLAG_ZSTD, &frame), LIMIT).err(),
        Some(CodecError::Corrupt("payload over the size limit"))
    );
}

/// A frame without a declared content size (as a streaming encoder writes) is refused: the
/// size must be known before allocating.
#[test]
fn a_frame_without_a_content_size_is_refused() {
    let entry = Entry {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"body"),
        partition: Fingerprint([0; 32]),
        tags: Vec::new(),
        times: EntryTimes {
            stored_at: UNIX_EPOCH,
            initial_age: Duration::ZERO,
            fresh_until: UNIX_EPOCH,
            stale_while_revalidate_until: UNIX_EPOCH,
            stale_if_error_until: UNIX_EPOCH,
            keep_until: UNIX_EPOCH,
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        },
        meta: EntryMeta::default(),
    };
    let plain = encode(&entry, Epoch([1; 16]), usize::MAX);
    let mut streamed = Vec::new();
    {
        let mut encoder = zstd::stream::Encoder::new(&mut streamed, 1).expect("an encoder");
        encoder
            .include_contentsize(false)
            .expect("a frame parameter");
        std::io::Write::write_all(&mut encoder, &plain[HEADER_LEN..]).expect("in memory");
        encoder.finish().expect("in memory");
    }
    assert_eq!(
        decode(&blob(FORMAT_VERSION, [1; 16], FLAG_ZSTD, &streamed), LIMIT).err(),
        Some(CodecError::Corrupt("bad compressed payload"))
    );
}
