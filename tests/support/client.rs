//! Clients for the proxy: [`Client`] (hyper-util's pooled client over plain HTTP/1.1, or h2c
//! with prior knowledge) returning whole responses, and [`raw`] for bytes a well-behaved
//! client would never send, reporting how the connection ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as Pooled;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// How long one exchange may take before the test fails.
const EXCHANGE_WAIT: Duration = Duration::from_secs(15);

/// A whole response.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    /// The value of header `name`, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Cache-Status`, or "" when absent.
    pub(crate) fn cache_status(&self) -> &str {
        self.header("cache-status").unwrap_or("")
    }

    /// Whether `Cache-Status` says the response was a hit (fresh or stale).
    pub(crate) fn is_hit(&self) -> bool {
        self.cache_status().starts_with("cachet; hit;")
    }

    /// `Age` as a number, if present.
    pub(crate) fn age(&self) -> Option<u64> {
        self.header("age").and_then(|v| v.parse().ok())
    }

    /// The body as UTF-8 (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A pooled client for one proxy address.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    base: String,
    inner: Pooled<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// HTTP/1.1 to `addr`.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            inner: Pooled::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// HTTP/2 with prior knowledge (h2c) to `addr`.
    pub(crate) fn h2c(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            inner: Pooled::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// GET `path` with `headers`.
    pub(crate) async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, path, headers, Bytes::new()).await
    }

    /// HEAD `path` with `headers`.
    pub(crate) async fn head(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::HEAD, path, headers, Bytes::new()).await
    }

    /// POST `body` to `path` with `headers`.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.send(Method::POST, path, headers, body.into()).await
    }

    /// Sends one request and reads the whole response; fails the test on a client error.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        match self.try_send(method, path, headers, body).await {
            Ok(resp) => resp,
            Err(error) => panic!("request to {path} failed: {error}"),
        }
    }

    /// Sends one request; a connection or body error is returned (e.g. an aborted body).
    pub(crate) async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Resp, Box<dyn std::error::Error + Send + Sync>> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let exchange = async {
            let response = self.inner.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Resp {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(EXCHANGE_WAIT, exchange)
            .await
            .map_err(|_| "exchange timed out")?
    }
}

/// What came back on a raw connection, and how it ended.
#[derive(Debug)]
pub(crate) struct Raw {
    /// Every byte read before the connection ended.
    pub(crate) bytes: Vec<u8>,
    /// The read error that ended it, if it did not end with a clean EOF (e.g. a reset).
    pub(crate) error: Option<std::io::Error>,
}

impl Raw {
    /// The status code of the first response line, if one arrived.
    pub(crate) fn status(&self) -> Option<u16> {
        let line = self.bytes.split(|b| *b == b'\n').next()?;
        let line = std::str::from_utf8(line).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// The response head as text (up to the blank line).
    pub(crate) fn head(&self) -> String {
        let end = self.head_len().unwrap_or(self.bytes.len());
        String::from_utf8_lossy(&self.bytes[..end]).into_owned()
    }

    /// The bytes after the head.
    pub(crate) fn body(&self) -> &[u8] {
        let start = self.head_len().map_or(self.bytes.len(), |len| len + 4);
        &self.bytes[start..]
    }

    /// The value of header `name` in the head (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head().lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn head_len(&self) -> Option<usize> {
        self.bytes.windows(4).position(|w| w == b"\r\n\r\n")
    }
}

/// A raw connection: write bytes as they are, read what comes back.
#[derive(Debug)]
pub(crate) struct RawConn {
    stream: TcpStream,
    bytes: Vec<u8>,
}

impl RawConn {
    /// Connects to `addr`.
    pub(crate) async fn open(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect to proxy"),
            bytes: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub(crate) async fn write(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write raw request");
    }

    /// Reads until the response head and at least `body_bytes` after it have arrived; fails
    /// the test if the connection ends or stalls first.
    pub(crate) async fn read_body_bytes(&mut self, body_bytes: usize) {
        let enough = |bytes: &[u8]| {
            bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|head| bytes.len() >= head + 4 + body_bytes)
        };
        let mut buf = vec![0u8; 64 * 1024];
        while !enough(&self.bytes) {
            let n = tokio::time::timeout(EXCHANGE_WAIT, self.stream.read(&mut buf))
                .await
                .expect("the response stalled")
                .expect("the connection failed early");
            assert!(
                n > 0,
                "the connection ended after {} bytes",
                self.bytes.len()
            );
            self.bytes.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads until the connection ends; fails the test if it stays open past a bound.
    pub(crate) async fn finish(mut self) -> Raw {
        let mut buf = vec![0u8; 64 * 1024];
        let bytes = &mut self.bytes;
        let stream = &mut self.stream;
        let read = tokio::time::timeout(EXCHANGE_WAIT, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(error) => return Some(error),
                }
            }
        })
        .await;
        match read {
            Ok(error) => Raw {
                bytes: self.bytes,
                error,
            },
            Err(_) => panic!(
                "raw connection still open after {EXCHANGE_WAIT:?}; read so far:\n{}",
                String::from_utf8_lossy(&self.bytes)
            ),
        }
    }
}

/// Writes `request` as is on a fresh connection to `addr` and reads until the connection ends
/// (send `Connection: close` to get a clean EOF after one response).
pub(crate) async fn raw(addr: SocketAddr, request: &[u8]) -> Raw {
    let mut conn = RawConn::open(addr).await;
    conn.write(request).await;
    conn.finish().await
}

/// A `GET` of `target` with `Host: test.local` and `Connection: close`, plus `extra` header
/// lines (each ending in CRLF).
pub(crate) fn raw_get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: test.local\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// Starts `n` GETs of `path` with `headers`, each in its own task, released together by a
/// barrier (a stampede). Join them with [`join_all`].
pub(crate) fn burst(
    client: &Client,
    path: &str,
    headers: &[(&'static str, &'static str)],
    n: usize,
) -> Vec<JoinHandle<Resp>> {
    let barrier = Arc::new(Barrier::new(n));
    (0..n)
        .map(|_| {
            let (client, barrier, path) = (client.clone(), Arc::clone(&barrier), path.to_owned());
            let headers = headers.to_vec();
            tokio::spawn(async move {
                barrier.wait().await;
                client.get(&path, &headers).await
            })
        })
        .collect()
}

/// Joins request tasks in order, re-raising a task's panic.
pub(crate) async fn join_all(tasks: Vec<JoinHandle<Resp>>) -> Vec<Resp> {
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(task.await.expect("request task"));
    }
    all
}
