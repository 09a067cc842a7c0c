//! Purge cost (DESIGN.md "Purge without scanning"): the lookup-time watermark check with 10⁴
//! active watermarks, and a purge plus the next lookup with 10⁶ entries in the memory tier
//! carrying the purged tag — flat, whatever the population.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachet::cache::{CacheKey, Entry, EntryMeta, EntryTimes, Fingerprint};
use cachet::purge::{EntryRef, Selector, SharedWatermarks};
use cachet::tiers::{MemoryTier, Tier};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, StatusCode};

fn watermarks(n: usize) -> SharedWatermarks {
    let marks = SharedWatermarks::new();
    let now = SystemTime::now();
    for i in 0..n {
        let selector = if i % 10 == 0 {
            Selector::prefix(format!("/api/p{i}/"))
        } else {
            Selector::tag(format!("product:{i}"))
        };
        marks.raise(selector, i as u64 + 1, i % 3 == 0, now);
    }
    marks
}

fn entry(tags: Vec<String>, seq: u64) -> Entry {
    let now = SystemTime::now();
    Entry {
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"{}"),
        partition: Fingerprint([0; 32]),
        tags,
        times: EntryTimes {
            stored_at: now,
            initial_age: Duration::ZERO,
            fresh_until: now + Duration::from_secs(3600),
            stale_while_revalidate_until: now + Duration::from_secs(3600),
            stale_if_error_until: now + Duration::from_secs(3600),
            keep_until: now + Duration::from_secs(3600),
            fetch_duration: Duration::ZERO,
            stale_forbidden: false,
        },
        meta: EntryMeta {
            path: "/api/products/42".into(),
            purge_seq: seq,
            vary: Vec::new(),
        },
    }
}

fn verdict_with_many_watermarks(c: &mut Criterion) {
    let marks = watermarks(10_000);
    let tags: Vec<String> = [
        "product:42",
        "category:shoes",
        "route:products",
        "url:abc",
        "part:x-tenant-id:def",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect();
    // Filled before the purges (seq 0): every watermark must be consulted.
    c.bench_function("verdict, 10^4 watermarks, entry older than all", |b| {
        b.iter(|| {
            black_box(marks.verdict(EntryRef {
                tags: black_box(&tags),
                path: "/api/products/42",
                seq: 0,
            }))
        });
    });
    c.bench_function("verdict, 10^4 watermarks, entry newer than all", |b| {
        b.iter(|| {
            black_box(marks.verdict(EntryRef {
                tags: &tags,
                path: "/api/products/42",
                seq: u64::MAX,
            }))
        });
    });
}

fn purge_with_a_million_entries(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tier = MemoryTier::new(4 << 30);
    let shared_entry = Arc::new(entry(vec!["catalog".into()], 1));
    let entries = if std::env::args().any(|a| a == "--bench") {
        1_000_000u32
    } else {
        10_000
    };
    runtime.block_on(async {
        for i in 0..entries {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            let _ = tier
                .put(
                    &CacheKey(Fingerprint(key)),
                    Arc::clone(&shared_entry),
                    Duration::from_secs(3600),
                )
                .await;
        }
    });
    let marks = SharedWatermarks::new();
    let probe = CacheKey(Fingerprint([0; 32]));
    c.bench_function("purge a tag on 10^6 entries, then the next lookup", |b| {
        b.iter(|| {
            let seq = marks.purge(Selector::tag("catalog"), false, SystemTime::now());
            let found = runtime
                .block_on(tier.get(&probe))
                .expect("memory tier")
                .expect("stored");
            let verdict = marks.verdict(EntryRef {
                tags: &found.tags,
                path: &found.meta.path,
                seq: found.meta.purge_seq,
            });
            black_box((seq, verdict))
        });
    });
}

criterion_group!(
    benches,
    verdict_with_many_watermarks,
    purge_with_a_million_entries
);
criterion_main!(benches);
