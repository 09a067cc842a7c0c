//! Serves any tower service on a bound listener: HTTP/1.1 and h2c (told apart by `preface`,
//! then hyper's connection for that protocol), header-size limits, the header-read and idle
//! timeouts (`deadline`), a connection cap, and a graceful drain bounded by `drain_timeout`
//! when the shutdown future completes.
//!
//! Each connection gets its own service, made from the peer's address: the address reaches
//! the request path without a per-request extension (three allocations per request).

mod deadline;
mod preface;
mod tracking;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::future::Either;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;
use tower::util::Oneshot;

use crate::config::ServerConfig;
use deadline::{Activity, Deadline, Expired};
use preface::Protocol;
use tracking::{InFlight, Tracked, Watched};

/// Connection-level limits, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// Most header field lines in an HTTP/1 request head; more get 431 from hyper.
    pub max_headers: usize,
    pub drain_timeout: Duration,
}

impl From<&ServerConfig> for ServerLimits {
    fn from(config: &ServerConfig) -> Self {
        Self {
            header_read_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            max_connections: config.max_connections,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
            drain_timeout: config.drain_timeout,
        }
    }
}

/// hyper's smallest allowed read buffer.
const MIN_BUF_SIZE: usize = 8192;
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long an idle connection told to close may take to do so (HTTP/2: GOAWAY sent and
/// read) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` completes, then stops accepting and drains in-flight
/// connections for at most `drain_timeout`. `for_peer` makes the service of each connection
/// from its peer's address.
///
/// # Errors
/// None today; the `Result` leaves room for listener failures that should stop the process.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    for_peer: M,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    M: Fn(SocketAddr) -> S,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builders = Arc::new(Builders::new(&limits));
    // Each connection holds a permit until it ends: the semaphore caps them and, at the end,
    // tells when they have all ended (no task set to join, which cost a lock and a scan per
    // accepted connection).
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            peer,
            for_peer(peer),
            Arc::clone(&builders),
            limits,
            phase_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = phase_tx.send(Phase::Draining);
    let open = limits.max_connections - permits.available_permits();
    if open > 0 {
        tracing::info!(connections = open, "draining");
    }
    let drained = tokio::time::timeout(
        limits.drain_timeout,
        all_ended(&permits, limits.max_connections),
    )
    .await;
    if drained.is_err() {
        // The wait that timed out gave back the permits it had gathered.
        tracing::warn!(
            connections = limits.max_connections - permits.available_permits(),
            "drain timeout passed; closing remaining connections"
        );
        let _ = phase_tx.send(Phase::Closing);
        all_ended(&permits, limits.max_connections).await;
    }
    Ok(())
}

/// What the server asks of its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the requests in flight, then close.
    Draining,
    /// Close now: the drain timeout has passed.
    Closing,
}

/// Waits until every connection has given its permit back.
async fn all_ended(permits: &Semaphore, max_connections: usize) {
    let mut held = Vec::new();
    let mut left = max_connections;
    while left > 0 {
        let chunk = u32::try_from(left).unwrap_or(u32::MAX);
        match permits.acquire_many(chunk).await {
            Ok(permit) => held.push(permit),
            Err(_) => return,
        }
        left -= chunk as usize;
    }
}

/// hyper's connection builders, one per protocol.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ServerLimits) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            // `deadline` keeps this timeout with one timer per connection; hyper's own arms a
            // timer per request and also cuts keep-alive connections idle for that long.
            .header_read_timeout(None)
            // Larger request heads are refused with 431 by hyper.
            .max_buf_size(limits.max_header_bytes.max(MIN_BUF_SIZE))
            // More header lines are refused with 431 by hyper too.
            .max_headers(limits.max_headers)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
        Self { http1, http2 }
    }
}

/// A connection hyper serves, in the protocol `preface` found.
type Served<S> = Either<
    http1::Connection<TokioIo<Watched>, S>,
    http2::Connection<TokioIo<Watched>, S, TokioExecutor>,
>;

async fn connection<S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    service: S,
    builders: Arc<Builders>,
    limits: ServerLimits,
    mut phase: watch::Receiver<Phase>,
    _permit: OwnedSemaphorePermit,
) where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Accepted just before a drain: nothing was sent on it yet.
    if *phase.borrow() != Phase::Serving {
        return;
    }
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new(
        Instant::now(),
        limits.header_read_timeout,
        limits.idle_timeout,
    ));
    let tracked = Arc::clone(&activity);
    let hyper_service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = InFlight::start(&tracked, request.version());
        let call = call_now(service.clone(), request);
        async move {
            let response = call.await?;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
        }
    });
    let mut io = Watched::new(stream, Arc::clone(&activity));
    let mut deadline = Deadline::new(Arc::clone(&activity));
    let sniffed = {
        // One future throughout: bytes it has read must not be dropped with it.
        let sniffing = preface::sniff(&mut io);
        tokio::pin!(sniffing);
        loop {
            tokio::select! {
                sniffed = &mut sniffing => break sniffed,
                changed = phase.changed() => if changed.is_err() || *phase.borrow() != Phase::Serving {
                    return;
                },
                _ = &mut deadline => {
                    tracing::debug!(%peer, "no request head within header_read_timeout; closing");
                    return;
                }
            }
        }
    };
    let protocol = match sniffed {
        Ok((protocol, first)) => {
            io.replay(first);
            protocol
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "connection ended before its first request");
            return;
        }
    };
    let io = TokioIo::new(io);
    let conn = match protocol {
        Protocol::Http1 => Either::Left(builders.http1.serve_connection(io, hyper_service)),
        Protocol::Http2 => Either::Right(builders.http2.serve_connection(io, hyper_service)),
    };
    tokio::pin!(conn);
    // Finishes the requests in flight, then closes (HTTP/2: GOAWAY).
    let graceful_shutdown = |conn: Pin<&mut Served<_>>| match conn.as_pin_mut() {
        Either::Left(http1) => http1.graceful_shutdown(),
        Either::Right(http2) => http2.graceful_shutdown(),
    };
    let mut closing = false;
    loop {
        tokio::select! {
            // The connection first: a deadline its poll begins is armed in the same pass.
            biased;
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            changed = phase.changed() => match changed.map(|()| *phase.borrow()) {
                Ok(Phase::Serving) => {}
                Ok(Phase::Draining) => if !closing {
                    closing = true;
                    graceful_shutdown(conn.as_mut());
                },
                Ok(Phase::Closing) | Err(_) => return,
            },
            expired = &mut deadline => match expired {
                Expired::HeadRead => {
                    tracing::debug!(%peer, "no request head within header_read_timeout; closing");
                    return;
                }
                Expired::WriteStalled => {
                    tracing::debug!(%peer, "the client read nothing for idle_timeout; closing");
                    return;
                }
                Expired::Idle if closing => return,
                Expired::Idle => {
                    closing = true;
                    graceful_shutdown(conn.as_mut());
                    deadline.wake_at(Instant::now() + CLOSE_GRACE);
                }
            },
        }
    }
}

/// Calls the service at once when it is ready, so that the request, and the slices of hyper's
/// read buffer its head holds, are gone before hyper reads the next request: with `oneshot`
/// the request waited inside the future until hyper polled it after that read, and hyper
/// allocated a fresh 8 KiB read buffer on every request of a keep-alive connection. A service
/// that is not ready is called through `oneshot`, which polls it again with the task's waker.
fn call_now<S, R>(mut service: S, request: R) -> Either<S::Future, Oneshot<S, R>>
where
    S: tower::Service<R>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => Either::Left(service.call(request)),
        // Pending, or an error `oneshot` reports when it polls again.
        _ => Either::Right(service.oneshot(request)),
    }
}

#[cfg(test)]
#[path = "../../tests/support/logs.rs"]
mod logs;

#[cfg(test)]
mod tests {
    use std::future::Ready;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::logs::Captured;
    use super::*;

    /// Answers how many holders its request had when called; not ready on its first poll when
    /// `busy` is set.
    #[derive(Clone)]
    struct Echo {
        busy: Arc<AtomicBool>,
        called: Arc<AtomicBool>,
    }

    impl tower::Service<Arc<()>> for Echo {
        type Response = usize;
        type Error = Infallible;
        type Future = Ready<Result<usize, Infallible>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            if self.busy.swap(false, Ordering::SeqCst) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Arc<()>) -> Self::Future {
            self.called.store(true, Ordering::SeqCst);
            std::future::ready(Ok(Arc::strong_count(&request)))
        }
    }

    fn echo(busy: bool) -> Echo {
        Echo {
            busy: Arc::new(AtomicBool::new(busy)),
            called: Arc::new(AtomicBool::new(false)),
        }
    }

    #[tokio::test]
    async fn a_ready_service_is_called_before_its_future_is_polled_and_lets_the_request_go() {
        let service = echo(false);
        let request = Arc::new(());
        let future = call_now(service.clone(), Arc::clone(&request));
        assert!(service.called.load(Ordering::SeqCst));
        assert_eq!(
            Arc::strong_count(&request),
            1,
            "the request is still held by the unpolled future"
        );
        assert_eq!(future.await, Ok(2));
    }

    #[tokio::test]
    async fn a_service_not_ready_yet_is_called_when_its_future_is_polled() {
        let service = echo(true);
        let future = call_now(service.clone(), Arc::new(()));
        assert!(!service.called.load(Ordering::SeqCst));
        assert_eq!(future.await, Ok(1));
        assert!(service.called.load(Ordering::SeqCst));
    }

    /// A server on a loopback port with `service` for every connection and `drain_timeout`;
    /// its address, its task, and what stops it.
    async fn start_server<S>(
        service: S,
        drain_timeout: Duration,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<std::io::Result<()>>,
        tokio::sync::oneshot::Sender<()>,
    )
    where
        S: tower::Service<
                Request<Incoming>,
                Response = Response<http_body_util::Empty<bytes::Bytes>>,
                Error = Infallible,
            > + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hour = Duration::from_secs(3600);
        let limits = ServerLimits {
            header_read_timeout: hour,
            idle_timeout: hour,
            max_connections: 8,
            max_header_bytes: MIN_BUF_SIZE,
            max_headers: 100,
            drain_timeout,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, move |_| service.clone(), limits, async {
            let _ = stopped.await;
        }));
        (addr, server, stop)
    }

    /// Reads `stream` to its end, for at most ten seconds.
    async fn read_to_end_within(stream: &mut TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut read = Vec::new();
        let within = Duration::from_secs(10);
        // A reset also ends it.
        let _ = tokio::time::timeout(within, stream.read_to_end(&mut read))
            .await
            .expect("the connection is still open");
        read
    }

    /// Waits for `server` to return, for at most ten seconds.
    async fn returned_within(server: tokio::task::JoinHandle<std::io::Result<()>>, what: &str) {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap_or_else(|_| panic!("{what}"))
            .expect("server task")
            .expect("serve");
    }

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    /// A drain does not wait for a connection that has not sent its first byte: it is closed
    /// at once, not at `header_read_timeout` or `drain_timeout`.
    #[tokio::test]
    async fn a_drain_closes_a_connection_that_has_sent_nothing_at_once() {
        use tokio::io::AsyncWriteExt;

        let answer = tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let (addr, server, stop) = start_server(answer, Duration::from_secs(3600)).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        // Accepted in order: once this one is answered, the silent one was accepted before it.
        let mut asking = TcpStream::connect(addr).await.expect("connect");
        asking.write_all(REQUEST).await.expect("write");
        let answered = read_to_end_within(&mut asking).await;
        assert!(answered.starts_with(b"HTTP/1.1 200"), "{answered:?}");

        stop.send(()).expect("server running");
        returned_within(server, "the drain waited for the silent connection").await;
        assert_eq!(read_to_end_within(&mut silent).await, b"");
    }

    /// A request still in flight when `drain_timeout` passes is cut off: its connection is
    /// closed without an answer and `serve` returns.
    #[tokio::test]
    async fn at_the_drain_timeout_a_request_still_in_flight_is_cut_off() {
        use tokio::io::AsyncWriteExt;

        let (called_tx, mut called) = tokio::sync::mpsc::unbounded_channel();
        let never = tower::service_fn(move |_: Request<Incoming>| {
            let _ = called_tx.send(());
            std::future::pending::<Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>>(
            )
        });
        let (addr, server, stop) = start_server(never, Duration::from_millis(100)).await;
        let mut stuck = TcpStream::connect(addr).await.expect("connect");
        stuck.write_all(REQUEST).await.expect("write");
        called
            .recv()
            .await
            .expect("the request reached the service");

        let logs = Captured::default();
        let _logging = logs.capture(true);
        stop.send(()).expect("server running");
        returned_within(server, "serve waited past the drain timeout").await;
        assert_eq!(read_to_end_within(&mut stuck).await, b"");
        let logged = logs.text();
        let warning = logged
            .lines()
            .find(|line| line.contains("drain timeout passed"))
            .unwrap_or_else(|| panic!("no drain-timeout warning in {logged}"));
        assert!(warning.contains(r#""connections":1"#), "{warning}");
    }
}
