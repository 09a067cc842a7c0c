//! The connection timeouts of `[server]`: `header_read_timeout` cuts off a client that is slow
//! to send a request head (slowloris), from its first byte (or from accept, for the first
//! request); `idle_timeout` closes a keep-alive connection after that long without a request,
//! however short the header timeout. The two are far apart here (300 ms and 2.5 s), so that
//! which one closed a connection shows in how long it stayed open. Time passing is the
//! behaviour under test, so these tests wait on the clock. A client that stops reading is
//! dropped once a write to it has been blocked for `idle_timeout`. A connection asked to close
//! ends cleanly after its whole answer.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::proxy::SERVER;
use support::{Origin, Proxy, Reply};

const HEADER_READ: Duration = Duration::from_millis(300);
const IDLE: Duration = Duration::from_millis(2500);
/// Timers fire a little late, more so on a loaded machine; never early.
const LATE: Duration = Duration::from_secs(5);

/// Cachet in front of `origin` with `server` lines added to `[server]` and `route` lines to
/// its one route.
async fn proxy(origin: &Origin, server: &str, route: &str) -> Proxy {
    let with = SERVER.replace(
        "drain_timeout = \"2s\"\n",
        &format!("drain_timeout = \"2s\"\n{server}"),
    );
    assert_ne!(with, SERVER, "the [server] section changed shape");
    Proxy::start(&format!(
        "{with}\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{}\"\n{route}",
        origin.url()
    ))
    .await
}

async fn start() -> (Origin, Proxy) {
    let origin = Origin::fixed(Reply::ok("hello").cache_control("max-age=60")).await;
    let server = format!(
        "header_read_timeout = \"{}ms\"\nidle_timeout = \"{}ms\"\n",
        HEADER_READ.as_millis(),
        IDLE.as_millis()
    );
    let proxy = proxy(&origin, &server, "").await;
    (origin, proxy)
}

/// One GET on an open connection; the status and body.
async fn get<B>(sender: &mut B, path: &str) -> (StatusCode, Bytes)
where
    B: Exchange,
{
    let request = Request::get(path)
        .header("host", "cachet.test")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(LATE, sender.send(request))
        .await
        .expect("the answer came in time")
        .expect("the request was answered");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

/// `send_request` of hyper's HTTP/1 and HTTP/2 client connections, under one name.
trait Exchange {
    fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>;
}

impl Exchange for http1::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        self.ready().await?;
        self.send_request(request).await
    }
}

impl Exchange for http2::SendRequest<Empty<Bytes>> {
    async fn send(
        &mut self,
        request: Request<Empty<Bytes>>,
    ) -> hyper::Result<http::Response<hyper::body::Incoming>> {
        self.ready().await?;
        self.send_request(request).await
    }
}

/// Waits for a client connection's task to end (the proxy closed it); how long that took.
async fn closed_after(connection: JoinHandle<()>, since: Instant) -> Duration {
    tokio::time::timeout(IDLE + LATE, connection)
        .await
        .expect("the proxy closed the connection")
        .expect("connection task");
    since.elapsed()
}

/// Waits for the proxy to close a client connection just answered; fails if that came before
/// `idle_timeout`.
async fn closed_at_idle_timeout(connection: JoinHandle<()>) {
    let answered = Instant::now();
    let open_for = closed_after(connection, answered).await;
    assert!(
        open_for >= IDLE - Duration::from_millis(100),
        "closed {open_for:?} after the last answer, before idle_timeout ({IDLE:?})"
    );
}

/// Reads until the proxy ends the connection; how long after `since` that was.
async fn eof_after(stream: &mut TcpStream, since: Instant) -> (Duration, Vec<u8>) {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(IDLE + LATE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the proxy closed the connection");
    (since.elapsed(), bytes)
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_read_timeout_until_idle_timeout() {
    let (_origin, proxy) = start().await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    assert_eq!(get(&mut sender, "/a").await.0, StatusCode::OK);

    tokio::time::sleep(HEADER_READ * 3).await;
    let (status, body) = get(&mut sender, "/a").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the keep-alive connection was cut early"
    );
    assert_eq!(body, "hello");

    closed_at_idle_timeout(connection).await;
}

#[tokio::test]
async fn an_idle_http2_connection_outlives_the_header_read_timeout_until_idle_timeout() {
    let (_origin, proxy) = start().await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .expect("h2c handshake");
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    assert_eq!(get(&mut sender, "/h2").await.0, StatusCode::OK);

    tokio::time::sleep(HEADER_READ * 3).await;
    assert_eq!(
        get(&mut sender, "/h2").await.0,
        StatusCode::OK,
        "the HTTP/2 connection was cut early"
    );

    closed_at_idle_timeout(connection).await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_header_read_timeout() {
    let (origin, proxy) = start().await;
    let opened = Instant::now();
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (open_for, bytes) = eof_after(&mut stream, opened).await;
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(
        open_for >= HEADER_READ && open_for < IDLE,
        "open for {open_for:?}"
    );
    assert_eq!(origin.hits(), 0);
}

/// A slowloris client: the head comes one header line every 50 ms, which never lets the
/// connection sit idle, yet the head as a whole is late.
#[tokio::test]
async fn a_head_trickled_line_by_line_is_cut_off_at_the_header_read_timeout() {
    let (origin, proxy) = start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let started = Instant::now();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: cachet.test\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let mut lines = 0;
    let open_for = loop {
        match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => panic!(
                "an answer to an unfinished head: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < IDLE + LATE,
            "the slow head was never cut off"
        );
        lines += 1;
        if stream
            .write_all(format!("x-line-{lines}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            break started.elapsed();
        }
    };
    assert!(
        open_for >= HEADER_READ && open_for < IDLE,
        "open for {open_for:?} ({lines} lines sent)"
    );
    assert_eq!(origin.hits(), 0, "an unfinished head reached the origin");
}

#[tokio::test]
async fn a_partial_head_after_a_keep_alive_request_gets_the_header_read_timeout() {
    let (origin, proxy) = start().await;
    let mut stream = TcpStream::connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /first HTTP/1.1\r\nhost: cachet.test\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"hello") {
        let n = tokio::time::timeout(LATE, stream.read(&mut buf))
            .await
            .expect("the first answer came in time")
            .expect("read");
        assert!(n > 0, "closed before the first answer");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");

    stream
        .write_all(b"GET /second HTTP/1.1\r\nhost: cach")
        .await
        .expect("write");
    let sent = Instant::now();
    let (open_for, bytes) = eof_after(&mut stream, sent).await;
    assert!(bytes.is_empty(), "{:?}", String::from_utf8_lossy(&bytes));
    assert!(
        open_for >= HEADER_READ - Duration::from_millis(50) && open_for < IDLE,
        "open for {open_for:?} after the partial head"
    );
    assert_eq!(
        origin.hits(),
        1,
        "only the first request reached the origin"
    );
}

/// A request in flight is bounded by the route's timeouts, not by the header timeout: an
/// origin slower than `header_read_timeout` still gets its answer through.
#[tokio::test]
async fn a_slow_answer_is_not_cut_by_the_header_read_timeout() {
    let origin = Origin::fixed(
        Reply::ok("slow")
            .cache_control("max-age=60")
            .delay(HEADER_READ * 2),
    )
    .await;
    let server = format!("header_read_timeout = \"{}ms\"\n", HEADER_READ.as_millis());
    let proxy = proxy(&origin, &server, "").await;
    let stream = TcpStream::connect(proxy.addr).await.expect("connect");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let (status, body) = get(&mut sender, "/slow").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slow");
}

/// A body large enough to fill the socket buffers of both ends on loopback many times over.
const BIG: usize = 32 << 20;

async fn start_big() -> (Origin, Proxy) {
    let origin =
        Origin::fixed(Reply::ok(support::origin::pattern(BIG)).cache_control("no-store")).await;
    let server = format!("idle_timeout = \"{}ms\"\n", IDLE.as_millis());
    let proxy = proxy(&origin, &server, "timeout = \"60s\"\n").await;
    (origin, proxy)
}

/// GETs the big body and reads the answer until the connection ends, pausing `pause` after
/// each read (`None`: one pause of `IDLE` + 1 s after the first read); the bytes that came,
/// head included.
async fn read_big(proxy: &Proxy, pause: Option<Duration>) -> usize {
    // A small receive buffer, so that what the kernel holds for the client stays small next
    // to the body: a connection cut before the end shows as missing bytes.
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(32 << 10)
        .expect("receive buffer");
    let mut stream = socket.connect(proxy.addr).await.expect("connect");
    stream
        .write_all(b"GET /big HTTP/1.1\r\nhost: cachet.test\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    let started = Instant::now();
    let first = tokio::time::timeout(LATE, stream.read(&mut buf))
        .await
        .expect("the answer started")
        .expect("read");
    total += first;
    if pause.is_none() {
        tokio::time::sleep(IDLE + Duration::from_secs(1)).await;
    }
    loop {
        let read = tokio::time::timeout(LATE, stream.read(&mut buf))
            .await
            .expect("the connection neither moved nor ended");
        match read {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the read took too long"
        );
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
    }
}

/// A client that stops reading a response is dropped once a write has been blocked for
/// `idle_timeout`, long before the route's 60 s timeout: its connection and the response
/// buffered for it are not held.
#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_after_idle_timeout() {
    let (_origin, proxy) = start_big().await;
    let received = read_big(&proxy, None).await;
    assert!(
        received < BIG,
        "the whole body ({received} bytes) came to a client that stopped reading"
    );
}

/// A slow reader that keeps reading is not a stalled one, however long the body takes: its
/// writes keep going through, and the body in flight keeps the connection from counting as
/// idle (a connection counted idle while its body streams is closed one second after
/// `idle_timeout`).
#[tokio::test]
async fn a_slow_reader_that_keeps_reading_gets_the_whole_body() {
    let (_origin, proxy) = start_big().await;
    let started = Instant::now();
    let received = read_big(&proxy, Some(Duration::from_millis(20))).await;
    assert!(
        received > BIG,
        "the body was cut at {received} bytes after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() > IDLE + Duration::from_secs(1),
        "the reader took less than idle_timeout and a second ({:?}); the test proves nothing",
        started.elapsed()
    );
}

/// A request with `Connection: close` gets its whole answer, then a clean end of the
/// connection (a FIN, not a reset) once Cachet closes it (RFC 9112 §9.6); the close waits
/// behind other ready work and makes no separate `shutdown(2)`, so this is what shows it still
/// ends properly.
#[tokio::test]
async fn a_connection_close_request_gets_the_whole_answer_then_a_clean_end() {
    let body = support::origin::pattern(1 << 20);
    let origin = Origin::fixed(Reply::ok(body.clone()).cache_control("max-age=60")).await;
    let server = format!("idle_timeout = \"{}ms\"\n", IDLE.as_millis());
    let proxy = proxy(&origin, &server, "").await;
    for round in ["from the origin", "from the cache"] {
        let answer = support::raw(proxy.addr, &support::raw_get("/close", "")).await;
        assert_eq!(answer.status(), Some(200), "{round}");
        assert!(
            answer.error.is_none(),
            "{round}: ended by {:?}",
            answer.error
        );
        assert_eq!(answer.body(), &body[..], "{round}: the body differs");
    }
}
