//! The inner loops of a cache hit: building the key of a request (with and without partition
//! headers) and a whole memory-tier hit through `ProxyService` with `oneshot` (no sockets),
//! from request to collected body.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use cachet::app::memory_only_service;
use cachet::cache::{CacheKey, PartitionHasher, Target};
use cachet::clock::SystemClock;
use cachet::config::{self, Config};
use cachet::proxy::ProxyService;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

const TARGET: &str = "/api/products/42?lang=en&fields=name,price&utm_source=mail";

fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("api.example.com"));
    headers.insert("x-tenant-id", HeaderValue::from_static("acme"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert(
        "user-agent",
        HeaderValue::from_static("bench/1.0 (compatible)"),
    );
    headers
}

fn key_building(c: &mut Criterion) {
    let uri: Uri = TARGET.parse().expect("a valid target");
    let headers = request_headers();
    let hasher = PartitionHasher::new(Some("bench secret"));
    let ignore = vec!["utm_source".to_owned()];
    let none: Vec<HeaderName> = Vec::new();
    let tenant = vec![HeaderName::from_static("x-tenant-id")];
    let mut group = c.benchmark_group("key");
    for (name, key_headers) in [("no partition", &none), ("tenant partition", &tenant)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let target = Target::from_request(black_box(&uri), black_box(&headers))
                    .expect("a routable target");
                let partition = hasher.partition(key_headers, &headers);
                black_box(CacheKey::build("products", &target, &ignore, &partition))
            });
        });
    }
    group.finish();
}

/// A loopback origin answering every request with a cacheable `len`-byte body.
async fn origin(len: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=3600\r\ncontent-length: {len}\r\n\r\n{}",
        "x".repeat(len)
    );
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(response.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

fn config(upstream: &str) -> Config {
    let text = format!(
        "[cache]\nmemory_max_bytes = \"64MiB\"\n\n[[routes]]\nname = \"products\"\npath_prefix = \"/\"\nupstream = \"{upstream}\"\nkey_headers = [\"x-tenant-id\"]\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n"
    );
    config::from_toml_str(&text, Vec::new()).expect("a valid config")
}

async fn get(service: &ProxyService, headers: &HeaderMap) -> Bytes {
    let mut request = Request::get(TARGET)
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    *request.headers_mut() = headers.clone();
    let response = match service.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response
        .into_body()
        .collect()
        .await
        .expect("a whole body")
        .to_bytes()
}

fn memory_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let headers = request_headers();
    let mut group = c.benchmark_group("memory hit through the service");
    for len in [1024, 16 * 1024] {
        let service = runtime.block_on(async {
            let service =
                memory_only_service(&config(&origin(len).await), Arc::new(SystemClock), 1);
            // The fill; every later request is a memory hit.
            assert_eq!(get(&service, &headers).await.len(), len);
            service
        });
        group.bench_function(format!("{} KiB", len / 1024), |b| {
            b.iter(|| runtime.block_on(get(black_box(&service), &headers)));
        });
    }
    group.finish();
}

criterion_group!(benches, key_building, memory_hit);
criterion_main!(benches);
