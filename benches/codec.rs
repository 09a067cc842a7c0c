//! Encode and decode of a 4 KiB entry, as the shared tier stores it: plain and zstd-compressed.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachet::cache::codec::{self, Epoch};
use cachet::cache::{Entry, EntryTimes, Fingerprint};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, StatusCode};

/// A JSON API response of `len` bytes with typical headers and tags.
fn entry(len: usize) -> Entry {
    let mut body = String::with_capacity(len + 64);
    let mut id = 0;
    while body.len() < len {
        body.push_str(&format!(
            "{{\"id\":{id},\"name\":\"product {id}\",\"price\":{}.99}},",
            id % 97
        ));
        id += 1;
    }
    body.truncate(len);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=60"),
    );
    headers.insert("etag", HeaderValue::from_static("\"5f3a9c1e\""));
    headers.insert(
        "date",
        HeaderValue::from_static("Mon, 01 Jun 2026 12:00:00 GMT"),
    );
    let now = SystemTime::now();
    Entry {
        meta: Default::default(),
        status: StatusCode::OK,
        headers,
        body: Bytes::from(body),
        partition: Fingerprint([7; 32]),
        tags: vec![
            "products".to_owned(),
            "route:products".to_owned(),
            format!("url:{}", "ab".repeat(32)),
        ],
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + Duration::from_secs(60),
            stale_while_revalidate_until: now + Duration::from_secs(90),
            stale_if_error_until: now + Duration::from_secs(600),
            keep_until: now + Duration::from_secs(600),
            fetch_duration: Duration::from_millis(20),
            stale_forbidden: false,
        },
    }
}

fn bench(c: &mut Criterion) {
    let entry = entry(4096);
    let epoch = Epoch([1; 16]);
    for (name, compress_min) in [("plain", usize::MAX), ("zstd", 1024)] {
        let blob = codec::encode(&entry, epoch, compress_min);
        let mut group = c.benchmark_group(format!("codec_4KiB_{name}"));
        group.bench_function("encode", |b| {
            b.iter(|| codec::encode(black_box(&entry), epoch, compress_min));
        });
        group.bench_function("decode", |b| {
            b.iter(|| codec::decode(black_box(&blob), 1 << 20).expect("own blob decodes"));
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
