use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;

use super::*;

const LIMIT: usize = 1 << 20;
const EPOCH: Epoch = Epoch([7; 16]);

fn at(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// A JSON-like body, repetitive enough to compress.
const PATTERN: &[u8] = b"{\"id\":42,\"name\":\"widget\",\"price\":9.99}";

fn sample(body_len: usize) -> Entry {
    let mut headers = HeaderMap::new();
    headers.append("content-type", HeaderValue::from_static("application/json"));
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    headers.append("set-cookie", HeaderValue::from_static("b=2"));
    headers.append(
        "x-bin",
        HeaderValue::from_bytes(b"caf\xc3\xa9").expect("obs-text is allowed"),
    );
    let now = at(1_700_000_000_123_456_789);
    Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers,
        body: Bytes::from(
            PATTERN
                .iter()
                .copied()
                .cycle()
                .take(body_len)
                .collect::<Vec<u8>>(),
        ),
        partition: Fingerprint([9; 32]),
        tags: vec!["products".to_owned(), "route:products".to_owned()],
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::from_millis(1500),
            fresh_until: now + Duration::from_secs(60),
            stale_while_revalidate_until: now + Duration::from_secs(90),
            stale_if_error_until: now + Duration::from_secs(600),
            keep_until: now + Duration::from_secs(600),
            fetch_duration: Duration::from_millis(120),
            stale_forbidden: false,
        },
    }
}

fn assert_same(a: &Entry, b: &Entry) {
    assert_eq!(a.status, b.status);
    let pairs = |e: &Entry| -> Vec<(String, Vec<u8>)> {
        e.headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    assert_eq!(pairs(a), pairs(b));
    assert_eq!(a.body, b.body);
    assert_eq!(a.partition, b.partition);
    assert_eq!(a.tags, b.tags);
    assert_eq!(a.times, b.times);
}

#[test]
fn small_entries_round_trip_uncompressed() {
    let entry = sample(100);
    let blob = encode(&entry, EPOCH, 4096);
    assert_eq!(blob[0], FORMAT_VERSION);
    assert_eq!(&blob[1..17], &EPOCH.0);
    assert_eq!(blob[17], 0, "below compress_min_bytes the payload is plain");
    let (epoch, decoded) = decode(&blob, LIMIT).expect("round trip");
    assert_eq!(epoch, EPOCH);
    assert_same(&entry, &decoded);
}

#[test]
fn large_entries_are_compressed_and_round_trip() {
    let entry = sample(64 * 1024);
    let blob = encode(&entry, EPOCH, 4096);
    assert_eq!(blob[17], FLAG_ZSTD);
    assert!(
        blob.len() < 8 * 1024,
        "a repetitive body compresses: {} bytes",
        blob.len()
    );
    let (_, decoded) = decode(&blob, LIMIT).expect("round trip");
    assert_same(&entry, &decoded);
}

#[test]
fn decompression_is_bounded_by_the_limit() {
    let blob = encode(&sample(64 * 1024), EPOCH, 0);
    assert_eq!(
        decode(&blob, 1024).err(),
        Some(CodecError::Corrupt("payload over the size limit"))
    );
}

#[test]
fn versions_and_damage_are_told_apart() {
    let blob = encode(&sample(10), EPOCH, 4096);
    let with_version = |v: u8| {
        let mut b = blob.clone();
        b[0] = v;
        b
    };
    let cases: Vec<(&str, Vec<u8>, CodecError)> = vec![
        (
            "newer",
            with_version(FORMAT_VERSION + 1),
            CodecError::Newer(FORMAT_VERSION + 1),
        ),
        ("newest", with_version(u8::MAX), CodecError::Newer(u8::MAX)),
        ("older", with_version(0), CodecError::Older(0)),
        ("empty", Vec::new(), CodecError::Corrupt("empty blob")),
        (
            "header cut",
            blob[..10].to_vec(),
            CodecError::Corrupt("truncated header"),
        ),
        (
            "payload cut",
            blob[..blob.len() - 3].to_vec(),
            CodecError::Corrupt("undecodable payload"),
        ),
        (
            "trailing",
            [blob.as_slice(), b"x"].concat(),
            CodecError::Corrupt("trailing bytes"),
        ),
        (
            "flags",
            {
                let mut b = blob.clone();
                b[17] = 0x80;
                b
            },
            CodecError::Corrupt("unknown flags"),
        ),
        (
            "bad zstd",
            {
                let mut b = blob.clone();
                b[17] = FLAG_ZSTD;
                b
            },
            CodecError::Corrupt("bad compressed payload"),
        ),
    ];
    for (name, bytes, expected) in cases {
        let got = decode(&bytes, LIMIT).err();
        assert_eq!(got.as_ref(), Some(&expected), "{name}");
        assert_eq!(
            expected.should_delete(),
            !matches!(expected, CodecError::Newer(_)),
            "{name}"
        );
    }
}

#[test]
fn every_truncation_is_corrupt_not_a_panic() {
    for compress_min in [0, usize::MAX] {
        let blob = encode(&sample(300), EPOCH, compress_min);
        for len in 1..blob.len() {
            assert!(
                matches!(decode(&blob[..len], LIMIT), Err(CodecError::Corrupt(_))),
                "length {len} of {}",
                blob.len()
            );
        }
    }
}

#[test]
fn invalid_header_bytes_are_corrupt() {
    let mut entry = sample(0);
    entry.headers.clear();
    entry.headers.insert("x-a", HeaderValue::from_static("ok"));
    let blob = encode(&entry, EPOCH, usize::MAX);
    // Replace the value "ok" with a control character, which no header value may hold.
    let pos = blob
        .windows(2)
        .position(|w| w == b"ok")
        .expect("value is in the blob");
    let mut bad = blob.clone();
    bad[pos] = b'\n';
    assert_eq!(
        decode(&bad, LIMIT).err(),
        Some(CodecError::Corrupt("invalid header value"))
    );
}

#[test]
fn epochs_print_and_parse_as_hex() {
    let epoch = Epoch([0xab; 16]);
    let hex = epoch.to_string();
    assert_eq!(hex, "ab".repeat(16));
    assert_eq!(Epoch::from_hex(&hex), Some(epoch));
    assert_eq!(Epoch::from_hex(&hex.to_uppercase()), Some(epoch));
    for bad in [
        "",
        "ab",
        &"zz".repeat(16),
        &"a".repeat(33),
        "é".repeat(16).as_str(),
    ] {
        assert_eq!(Epoch::from_hex(bad), None, "{bad:?}");
    }
}

pub(super) fn header_strategy() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let names = prop::sample::select(vec![
        "content-type",
        "set-cookie",
        "vary",
        "x-custom-1",
        "etag",
    ]);
    let value = prop::collection::vec(prop_oneof![32u8..=126, 128u8..=255, Just(b'\t')], 0..40);
    (names, value).prop_map(|(name, value)| {
        (
            HeaderName::from_static(name),
            HeaderValue::from_bytes(&value).expect("visible bytes, obs-text and tab are allowed"),
        )
    })
}

prop_compose! {
    fn entry_strategy()(
        status in 100u16..=999,
        headers in prop::collection::vec(header_strategy(), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..3000),
        partition in any::<[u8; 32]>(),
        tags in prop::collection::vec(".{0,12}", 0..5),
        times in any::<[u64; 7]>(),
    ) -> Entry {
        drawn_entry(status, headers, body, partition, tags, times, EntryMeta::default())
    }
}

/// The entry a strategy drew: `times` are nanoseconds, in `EntryTimes` field order (instants
/// since the epoch, durations as they are); `stale_forbidden` is false.
pub(super) fn drawn_entry(
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    partition: [u8; 32],
    tags: Vec<String>,
    times: [u64; 7],
    meta: EntryMeta,
) -> Entry {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name, value);
    }
    Entry {
        meta,
        status: StatusCode::from_u16(status).expect("100..=999 is a valid status"),
        headers: map,
        body: Bytes::from(body),
        partition: Fingerprint(partition),
        tags,
        times: EntryTimes {
            stored_at: at(times[0]),
            initial_age: Duration::from_nanos(times[1]),
            fresh_until: at(times[2]),
            stale_while_revalidate_until: at(times[3]),
            stale_if_error_until: at(times[4]),
            keep_until: at(times[5]),
            fetch_duration: Duration::from_nanos(times[6]),
            stale_forbidden: false,
        },
    }
}

proptest! {
    #[test]
    fn encoded_entries_decode_to_the_same_entry(
        entry in entry_strategy(),
        epoch in any::<[u8; 16]>(),
        compress_min in prop_oneof![Just(0usize), 0usize..4000, Just(usize::MAX)],
    ) {
        let blob = encode(&entry, Epoch(epoch), compress_min);
        let (got_epoch, decoded) = decode(&blob, LIMIT).expect("own blobs decode");
        prop_assert_eq!(got_epoch, Epoch(epoch));
        assert_same(&entry, &decoded);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, LIMIT);
    }

    #[test]
    fn arbitrary_payloads_behind_a_valid_header_never_panic(
        compressed in any::<bool>(),
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut blob = vec![FORMAT_VERSION];
        blob.extend_from_slice(&[0; 16]);
        blob.push(if compressed { FLAG_ZSTD } else { 0 });
        blob.extend_from_slice(&payload);
        let _ = decode(&blob, LIMIT);
    }

    #[test]
    fn flipped_bytes_in_real_blobs_never_panic(
        entry in entry_strategy(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        compress_min in prop_oneof![Just(0usize), Just(usize::MAX)],
    ) {
        let mut blob = encode(&entry, EPOCH, compress_min);
        for (index, byte) in flips {
            let i = index.index(blob.len());
            blob[i] ^= byte;
        }
        let _ = decode(&blob, LIMIT);
    }
}
