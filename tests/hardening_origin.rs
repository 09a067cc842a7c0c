//! Malformed and misbehaving origins, scripted as raw bytes on a `TcpListener`: a response
//! with invalid framing or headers is a 502, a body that is cut short, overruns its declared
//! length or stalls past the route's `timeout` never looks complete to the client and is never
//! stored, the key is never left locked, and requests waiting on such a fill are released.
//!
//! `tests/proxy_errors.rs` covers an origin failing mid-body through hyper and one slow to
//! answer; `tests/coalescing.rs` a timeout shared by waiters. These cases are the ones only a
//! raw socket can produce.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use support::client::RawConn;
use support::origin::Gate;
use support::proxy::SERVER;
use support::{Client, Proxy, burst, join_all, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The route's `timeout`: real time, since stalling past it is the behaviour under test.
const ROUTE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long [`RawOrigin::next_request`] waits before failing the test.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// What the raw origin does with one request: `bytes` written as they are (after `gate`
/// opens, when there is one), then the connection closed or held open without another byte.
#[derive(Clone)]
struct Script {
    bytes: Vec<u8>,
    stall: bool,
    gate: Option<Gate>,
}

impl Script {
    /// Writes `bytes`, then closes the connection.
    fn close(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            stall: false,
            gate: None,
        }
    }

    /// Writes `bytes`, then holds the connection open and silent.
    fn stall(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            stall: true,
            ..Self::close(bytes)
        }
    }

    /// Holds the bytes until `gate` opens.
    fn gated(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

/// A complete, storable response with `body`.
fn fine(body: &str) -> Script {
    Script::close(format!(
        "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

type Handler = dyn Fn(&str, usize) -> Script + Send + Sync;

/// An origin that reads one request head per connection and answers with the handler's
/// script for `(path, how many requests for that path came before)`. Stops on `Drop`.
struct RawOrigin {
    url: String,
    per_path: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    seen: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawOrigin {
    async fn start(handler: impl Fn(&str, usize) -> Script + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("raw origin address")
        );
        let per_path = Arc::new(Mutex::new(HashMap::new()));
        let total = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let (per_path, total) = (Arc::clone(&per_path), Arc::clone(&total));
            async move {
                // Owns the connection tasks: aborting the accept task ends them all.
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    while connections.try_join_next().is_some() {}
                    let (handler, per_path, total, tx) = (
                        Arc::clone(&handler),
                        Arc::clone(&per_path),
                        Arc::clone(&total),
                        tx.clone(),
                    );
                    connections.spawn(answer(stream, handler, per_path, total, tx));
                }
            }
        });
        Self {
            url,
            per_path,
            total,
            seen: tokio::sync::Mutex::new(rx),
            task,
        }
    }

    fn hits(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    fn hits_for(&self, path: &str) -> usize {
        let per_path = self.per_path.lock().unwrap_or_else(PoisonError::into_inner);
        per_path.get(path).copied().unwrap_or(0)
    }

    /// The path of the next request the origin read; fails the test after a bound.
    async fn next_request(&self) -> String {
        let mut seen = self.seen.lock().await;
        tokio::time::timeout(REQUEST_WAIT, seen.recv())
            .await
            .expect("the raw origin received no request in time")
            .expect("the raw origin is running")
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head from `stream`, counts it, and plays the handler's script.
async fn answer(
    mut stream: TcpStream,
    handler: Arc<Handler>,
    per_path: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<String>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let before = {
        let mut per_path = per_path.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_path.entry(path.clone()).or_default();
        *count += 1;
        *count - 1
    };
    total.fetch_add(1, Ordering::SeqCst);
    let script = handler(&path, before);
    // The test may have stopped listening; the origin still answers.
    let _ = tx.send(path);
    if let Some(gate) = &script.gate {
        gate.passed().await;
    }
    if stream.write_all(&script.bytes).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    if script.stall {
        // Silent, and open until the origin is dropped.
        std::future::pending::<()>().await;
    }
}

/// One route `/` to `origin` with [`ROUTE_TIMEOUT`] and a 64 KiB object limit.
async fn proxy_for(origin: &RawOrigin) -> Proxy {
    let ms = ROUTE_TIMEOUT.as_millis();
    Proxy::start(&format!(
        "{SERVER}\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\ntimeout = \"{ms}ms\"\nttl_jitter = 0.0\nearly_refresh_beta = 0.0\n",
        origin.url
    ))
    .await
}

/// RFC 9112 §4, §5 and §6.3: a response whose status line, header section or framing is
/// invalid is a 502; nothing is stored, so the next request reaches the origin, and the key is
/// not left locked, so that request is answered at once.
#[tokio::test]
async fn invalid_response_framing_or_headers_get_502_and_nothing_is_stored() {
    let malformed: &[(&str, &[u8])] = &[
        ("/two-lengths", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("/length-list", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        ("/length-junk", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5x\r\n\r\nhello"),
        ("/bad-name", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nBad Name: x\r\nContent-Length: 5\r\n\r\nhello"),
        ("/obs-fold", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Folded: a\r\n b\r\nContent-Length: 5\r\n\r\nhello"),
        ("/nul-value", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Nul: a\x00b\r\nContent-Length: 5\r\n\r\nhello"),
        ("/bad-status", b"HTTP/1.1 2000 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello"),
        ("/not-http", b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        ("/bad-chunk", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        ("/http10-chunked", b"HTTP/1.0 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ];
    let scripts: HashMap<&str, &[u8]> = malformed.iter().copied().collect();
    let origin = RawOrigin::start(move |path, before| match (scripts.get(path), before) {
        (Some(bytes), 0) => Script::close(*bytes),
        _ => fine("fine"),
    })
    .await;
    let proxy = proxy_for(&origin).await;
    let client = Client::new(proxy.addr);

    for (path, _) in malformed {
        let broken = client.get(path, &[]).await;
        assert_eq!(broken.status, 502, "{path}: {}", broken.text());
        assert_eq!(broken.cache_status(), "cachet; fwd=miss", "{path}");
        assert!(
            !broken.text().contains("hello"),
            "{path}: {}",
            broken.text()
        );
        let next = client.get(path, &[]).await;
        assert_eq!(next.text(), "fine", "{path}");
        assert_eq!(next.cache_status(), "cachet; fwd=miss; stored", "{path}");
        assert_eq!(origin.hits_for(path), 2, "{path}");
    }
    proxy.shutdown().await;
}

/// RFC 9112 §6.3 (item 3): `Transfer-Encoding` frames the body and overrides
/// `Content-Length`, which an intermediary removes before forwarding: the client gets the
/// whole chunked body, never one cut to the stale length, whether it is stored or streamed.
#[tokio::test]
async fn content_length_next_to_transfer_encoding_is_dropped_rfc9112_6_3() {
    let origin = RawOrigin::start(|path, _| {
        let cache_control = if path == "/te-stored" {
            "max-age=60"
        } else {
            "no-store"
        };
        Script::close(format!(
            "HTTP/1.1 200 OK\r\nCache-Control: {cache_control}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"
        ))
    })
    .await;
    let proxy = proxy_for(&origin).await;

    for path in ["/te-stored", "/te-streamed"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(answer.status(), Some(200), "{path}: {}", answer.head());
        assert_ne!(
            answer.header("content-length").as_deref(),
            Some("5"),
            "{path}"
        );
        let body = String::from_utf8_lossy(answer.body()).into_owned();
        assert!(body.contains("SMUGGLED"), "{path}: {body:?}");
    }
    proxy.shutdown().await;
}

/// A storable response whose body ends before its declared length is a 502 and is not stored
/// (proxy_errors.rs covers the streamed case and a chunked body broken off).
#[tokio::test]
async fn a_truncated_declared_body_gets_502_and_is_not_stored_rfc9112_6_3() {
    let origin = RawOrigin::start(|_, before| match before {
        0 => Script::close(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly ten b",
        ),
        _ => fine("whole"),
    })
    .await;
    let proxy = proxy_for(&origin).await;
    let client = Client::new(proxy.addr);

    let broken = client.get("/truncated", &[]).await;
    assert_eq!(broken.status, 502, "{}", broken.text());
    assert!(!broken.text().contains("only ten"), "{}", broken.text());
    let next = client.get("/truncated", &[]).await;
    assert_eq!(next.text(), "whole");
    assert_eq!(next.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// RFC 9112 §6.3 and §11.1 (response splitting): bytes past the declared length are not part
/// of the response, and never become the response to another request on that connection.
#[tokio::test]
async fn bytes_past_the_declared_length_never_answer_another_request_rfc9112_11_1() {
    let origin = RawOrigin::start(|path, _| match path {
        "/overrun" => Script::stall(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\n\r\nhello\
             HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 8\r\n\r\npoisoned",
        ),
        _ => fine("the victim's own answer"),
    })
    .await;
    let proxy = proxy_for(&origin).await;
    let client = Client::new(proxy.addr);

    let first = client.get("/overrun", &[]).await;
    assert_eq!(first.text(), "hello");
    for _ in 0..3 {
        let victim = client
            .get("/victim", &[("cache-control", "no-cache")])
            .await;
        assert_eq!(victim.text(), "the victim's own answer");
    }
    assert_eq!(origin.hits_for("/victim"), 3);
    let again = client.get("/overrun", &[]).await;
    assert_eq!(again.text(), "hello", "{}", again.cache_status());
    proxy.shutdown().await;
}

/// A storable response whose body stalls past the route's `timeout` is a 504 (the head came,
/// the whole exchange did not), nothing is stored, and the key is free for the next request.
#[tokio::test]
async fn a_storable_body_stalling_past_the_timeout_gets_504_and_is_not_stored() {
    let origin = RawOrigin::start(|_, before| match before {
        0 => Script::stall(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly ten b",
        ),
        _ => fine("whole"),
    })
    .await;
    let proxy = proxy_for(&origin).await;
    let client = Client::new(proxy.addr);

    let started = Instant::now();
    let stalled = client.get("/stall-stored", &[]).await;
    assert_eq!(stalled.status, 504, "{}", stalled.text());
    assert!(
        started.elapsed() < 10 * ROUTE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    let next = client.get("/stall-stored", &[]).await;
    assert_eq!(next.text(), "whole");
    assert_eq!(next.cache_status(), "cachet; fwd=miss; stored");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// A streamed response (not storable) whose body stalls past the route's `timeout` after its
/// head went out: the client's connection is aborted, so the cut body never looks complete.
#[tokio::test]
async fn a_streamed_body_stalling_past_the_timeout_aborts_the_client_connection() {
    let origin = RawOrigin::start(|_, before| match before {
        0 => Script::stall(
            "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 100\r\n\r\nonly ten b",
        ),
        _ => fine("whole"),
    })
    .await;
    let proxy = proxy_for(&origin).await;

    let mut conn = RawConn::open(proxy.addr).await;
    // Keep-alive: only an abort ends this connection.
    conn.write(b"GET /stall-streamed HTTP/1.1\r\nHost: test.local\r\n\r\n")
        .await;
    conn.read_body_bytes(10).await;
    let started = Instant::now();
    let cut = conn.finish().await;
    assert!(
        started.elapsed() < 10 * ROUTE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(cut.status(), Some(200), "{}", cut.head());
    assert_eq!(
        cut.body(),
        b"only ten b",
        "the body stopped short of 100 bytes"
    );

    let next = Client::new(proxy.addr).get("/stall-streamed", &[]).await;
    assert_eq!(next.text(), "whole");
    assert_eq!(origin.hits(), 2);
    proxy.shutdown().await;
}

/// DESIGN.md step 6 with a malformed origin: requests waiting on a fill whose response is
/// invalid are released with the same 502 (one origin request), and the key is free after.
#[tokio::test]
async fn waiters_on_a_malformed_response_share_one_502_and_the_key_is_released() {
    const N: usize = 10;
    let gate = Gate::new();
    let origin = RawOrigin::start({
        let gate = gate.clone();
        move |path, before| match (path, before) {
            ("/waiters", 0) => Script::close(
                "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            )
            .gated(&gate),
            _ => fine("recovered"),
        }
    })
    .await;
    let proxy = proxy_for(&origin).await;
    let client = Client::new(proxy.addr);
    // One exchange first: background tasks that read the clock once at start-up (the
    // watermark sweep) have then done so, and do not count as waiting requests below.
    // (On a client of its own: a connection reused by the burst would not count again.)
    let settle = Client::new(proxy.addr).get("/settle", &[]).await;
    assert_eq!(settle.text(), "recovered");
    assert_eq!(origin.next_request().await, "/settle");
    let readers = proxy.clock_readers();

    let tasks = burst(&client, "/waiters", &[], N);
    assert_eq!(origin.next_request().await, "/waiters");
    // Every request's connection task and the fill task have read the clock: all N are inside
    // Cachet, N - 1 of them waiting on the fill.
    proxy.await_clock_readers(readers + N + 1).await;
    gate.open();
    let all = join_all(tasks).await;

    assert_eq!(origin.hits_for("/waiters"), 1);
    for response in &all {
        assert_eq!(response.status, 502, "{}", response.text());
        assert!(!response.text().contains("hello"));
    }
    let next = client.get("/waiters", &[]).await;
    assert_eq!(next.text(), "recovered");
    assert_eq!(next.cache_status(), "cachet; fwd=miss; stored");
    proxy.shutdown().await;
}
