//! A scripted origin: a real hyper HTTP/1.1 server on `127.0.0.1:0`.
//!
//! A handler closure turns each request the origin receives ([`Seen`]) into a [`Reply`]:
//! status, headers, a body (whole, streamed in chunks, or chunks then a failure) and an
//! optional delay. The origin counts requests (in total and per path) and delivers each one on
//! a channel, so tests await what the origin saw instead of sleeping. A [`Gate`] holds a reply
//! (its head, or the end of its body) until the test opens it. It stops on `Drop`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long [`Origin::next_request`] waits before failing the test.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Seen {
    /// The value of header `name`, if present and visible ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The path of the request target.
    pub(crate) fn path(&self) -> &str {
        self.uri.path()
    }
}

/// How the body of a [`Reply`] is sent.
#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    /// One buffer, with `Content-Length`.
    Full(Bytes),
    /// These chunks one after another (chunked encoding unless a `Content-Length` header is
    /// scripted), then the end of the body or, with `fail`, an error, which makes hyper abort
    /// the connection.
    Chunks {
        chunks: Vec<Bytes>,
        fail: Option<Fail>,
    },
}

/// A scripted response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: ReplyBody,
    pub(crate) delay: Option<Duration>,
    /// Holds the response head until this gate opens.
    pub(crate) gate: Option<Gate>,
    /// Sends the body but holds its end until this gate opens.
    pub(crate) end_gate: Option<Gate>,
}

/// A latch the test opens: replies waiting on it are held until then, and once it is open
/// every reply passes at once. Clones share one latch.
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }

    /// Opens the gate for every reply held on it, and every later one.
    pub(crate) fn open(&self) {
        self.0.send_replace(true);
    }

    /// Whether the gate is open.
    pub(crate) fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the gate is open.
    pub(crate) async fn passed(&self) {
        let mut open = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = open.wait_for(|open| *open).await;
    }
}

impl Reply {
    /// 200 with an empty body (for [`Origin::numbered`], which fills it in).
    pub(crate) fn empty() -> Self {
        Self::ok(Bytes::new())
    }

    /// 200 with `body` and no caching headers.
    pub(crate) fn ok(body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: ReplyBody::Full(body.into()),
            delay: None,
            gate: None,
            end_gate: None,
        }
    }

    /// Sets the status.
    pub(crate) fn status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).expect("scripted status is valid");
        self
    }

    /// Adds a header (repeatable).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("scripted header name is valid"),
            HeaderValue::from_str(value).expect("scripted header value is valid"),
        ));
        self
    }

    /// Shorthand for a `Cache-Control` header.
    pub(crate) fn cache_control(self, value: &str) -> Self {
        self.header("cache-control", value)
    }

    /// Waits this long before sending the response head.
    pub(crate) fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Holds the response head until `gate` opens (after the request was counted and
    /// delivered on the origin's channel).
    pub(crate) fn gate(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }

    /// Sends the head and the body at once but holds the end of the body until `gate` opens
    /// (chunked encoding unless a `Content-Length` is scripted).
    pub(crate) fn hold_end(mut self, gate: &Gate) -> Self {
        self.end_gate = Some(gate.clone());
        self
    }

    /// Sends the body as these chunks (chunked encoding unless a `Content-Length` is set).
    pub(crate) fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.body = ReplyBody::Chunks { chunks, fail: None };
        self
    }

    /// Sends these chunks and then fails the body, aborting the connection mid-body.
    pub(crate) fn chunks_then_fail(mut self, chunks: Vec<Bytes>, fail: Fail) -> Self {
        self.body = ReplyBody::Chunks {
            chunks,
            fail: Some(fail),
        };
        self
    }
}

/// `len` bytes of a repeating, position-dependent pattern: a truncated or reordered copy
/// never compares equal.
pub(crate) fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| u8::try_from((i * 7 + i / 251) % 251).expect("below 251"))
        .collect::<Vec<u8>>()
        .into()
}

/// `body` cut into chunks of `size` bytes.
pub(crate) fn split(body: &Bytes, size: usize) -> Vec<Bytes> {
    (0..body.len())
        .step_by(size)
        .map(|start| body.slice(start..(start + size).min(body.len())))
        .collect()
}

/// An origin handler for a representation that never changes: `stored body` with
/// `x-version: 1`, `cache_control` and the validator header `validator`; to a request whose
/// `conditional` header equals the validator's value, a 304 with `not_modified` headers.
pub(crate) fn validating(
    validator: (&'static str, &'static str),
    conditional: &'static str,
    cache_control: &'static str,
    not_modified: &'static [(&'static str, &'static str)],
) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |seen| {
        if seen.header(conditional) == Some(validator.1) {
            let mut reply = Reply::ok("").status(304).header(validator.0, validator.1);
            for (name, value) in not_modified {
                reply = reply.header(name, value);
            }
            reply
        } else {
            Reply::ok("stored body")
                .cache_control(cache_control)
                .header(validator.0, validator.1)
                .header("x-version", "1")
        }
    }
}

/// When a failing body breaks off after its chunks.
#[derive(Debug, Clone)]
pub(crate) enum Fail {
    /// At once. hyper may then drop chunks it has not flushed yet, so the peer sees less.
    Now,
    /// Once the test calls `notify_one` (e.g. after the client has read the chunks), so the
    /// chunks are surely delivered before the failure.
    When(Arc<Notify>),
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

#[derive(Default)]
struct Counters {
    total: AtomicUsize,
    // A std mutex: held for an increment or a read, never across an await.
    per_path: Mutex<HashMap<String, usize>>,
    /// Panics of the handler: reported when the origin is dropped, so they fail the test.
    panics: Mutex<Vec<String>>,
}

/// The running origin. Dropping it stops the server and its connections.
pub(crate) struct Origin {
    addr: SocketAddr,
    counters: Arc<Counters>,
    seen: tokio::sync::Mutex<mpsc::UnboundedReceiver<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin").field("addr", &self.addr).finish()
    }
}

impl Origin {
    /// Starts an origin answering every request with `handler`'s reply.
    pub(crate) async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind origin listener");
        let addr = listener.local_addr().expect("origin address");
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(accept_loop(listener, handler, Arc::clone(&counters), tx));
        Self {
            addr,
            counters,
            seen: tokio::sync::Mutex::new(rx),
            task,
        }
    }

    /// Starts an origin that answers every request with the same reply.
    pub(crate) async fn fixed(reply: Reply) -> Self {
        Self::start(move |_| reply.clone()).await
    }

    /// Starts an origin answering `template` with the body `<path> #<n>`, where `n` numbers
    /// the origin's requests from 1: a body tells which origin response a client got.
    pub(crate) async fn numbered(template: Reply) -> Self {
        let count = AtomicUsize::new(0);
        Self::start(move |seen| {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let mut reply = template.clone();
            reply.body = ReplyBody::Full(format!("{} #{n}", seen.path()).into());
            reply
        })
        .await
    }

    /// `http://127.0.0.1:<port>`, for a route's `upstream`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received so far.
    pub(crate) fn hits(&self) -> usize {
        self.counters.total.load(Ordering::SeqCst)
    }

    /// Requests received so far for `path` (the path alone, without the query).
    pub(crate) fn hits_for(&self, path: &str) -> usize {
        let per_path = self
            .counters
            .per_path
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        per_path.get(path).copied().unwrap_or(0)
    }

    /// The next request the origin received, in arrival order; fails the test after a bound.
    pub(crate) async fn next_request(&self) -> Seen {
        let mut seen = self.seen.lock().await;
        tokio::time::timeout(REQUEST_WAIT, seen.recv())
            .await
            .expect("the origin received no request in time")
            .expect("the origin is running")
    }

    /// Every request received and not yet taken by `next_request`.
    pub(crate) async fn drain_requests(&self) -> Vec<Seen> {
        let mut seen = self.seen.lock().await;
        let mut all = Vec::new();
        while let Ok(request) = seen.try_recv() {
            all.push(request);
        }
        all
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a `JoinSet`): aborting it ends them all.
        self.task.abort();
        let panics = std::mem::take(
            &mut *self
                .counters
                .panics
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        if !panics.is_empty() && !std::thread::panicking() {
            panic!("the origin's handler panicked: {panics:?}");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    counters: Arc<Counters>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        let handler = Arc::clone(&handler);
        let counters = Arc::clone(&counters);
        let tx = tx.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                respond(
                    request,
                    Arc::clone(&handler),
                    Arc::clone(&counters),
                    tx.clone(),
                )
            });
            // Without a `Date` header: Cachet computes apparent age from it, against a manual
            // clock the origin does not share. Tests that want `Date` script it.
            let _ = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn respond(
    request: Request<Incoming>,
    handler: Arc<Handler>,
    counters: Arc<Counters>,
    tx: mpsc::UnboundedSender<Seen>,
) -> Result<Response<BoxBody<Bytes, BoxError>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let seen = Seen {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    };
    counters.total.fetch_add(1, Ordering::SeqCst);
    *counters
        .per_path
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(seen.path().to_owned())
        .or_default() += 1;
    let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&seen))) {
        Ok(reply) => reply,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            counters
                .panics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(message);
            Reply::ok("origin handler panicked").status(599)
        }
    };
    // The test may have stopped listening; the origin still answers.
    let _ = tx.send(seen);
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(gate) = &reply.gate {
        gate.passed().await;
    }
    let body = match (reply.body, reply.end_gate) {
        (ReplyBody::Full(bytes), None) => Full::new(bytes).map_err(|never| match never {}).boxed(),
        (ReplyBody::Full(bytes), end_gate) => held_body(vec![bytes], end_gate, None),
        (ReplyBody::Chunks { chunks, fail }, end_gate) => held_body(chunks, end_gate, fail),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// `chunks`, then a wait for `end_gate` (if any), then the end of the body or `fail`.
fn held_body(
    chunks: Vec<Bytes>,
    end_gate: Option<Gate>,
    fail: Option<Fail>,
) -> BoxBody<Bytes, BoxError> {
    let frames = stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
    let held = stream::iter(end_gate)
        .then(|gate| async move { gate.passed().await })
        .filter_map(|()| async { None::<Result<Frame<Bytes>, BoxError>> });
    let failure = stream::iter(fail).then(|fail| async move {
        if let Fail::When(trigger) = fail {
            trigger.notified().await;
        }
        Err(BoxError::from("scripted failure mid-body"))
    });
    BodyExt::boxed(StreamBody::new(frames.chain(held).chain(failure)))
}
