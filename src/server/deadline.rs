//! A connection's two timeouts, kept by one timer per connection instead of hyper's per-request
//! header timer: `header_read_timeout` bounds how long a request head may take to arrive once
//! its first byte has (and, for the connection's first request, from accept), `idle_timeout`
//! how long a keep-alive connection may wait between requests. [`Watched`] wraps the socket
//! so that the first byte of a new request head is seen; the request counters come from the
//! service wrapper. Nothing here arms or cancels a timer per request: the connection's timer
//! wakes at the earliest deadline, asks [`Activity::timeout`] and re-arms.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Version;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// `Activity::head_since` when no request head is on its way.
const NO_HEAD: u64 = u64::MAX;

/// What the connection's timer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timeout {
    /// Nothing has expired; wake again at this instant.
    At(Instant),
    /// No request for `idle_timeout`: close, letting HTTP/2 say GOAWAY.
    Idle,
    /// A request head did not arrive within `header_read_timeout`: drop the connection, there
    /// is nothing to finish.
    HeadRead,
}

/// What the timer of one connection needs to know. Times are nanoseconds after `opened`, in
/// atomics because HTTP/2 runs each request in its own task.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    in_flight: AtomicUsize,
    /// When the last request's response was handed to hyper.
    last_done: AtomicU64,
    /// When the first byte of a request head not yet parsed arrived, or [`NO_HEAD`].
    head_since: AtomicU64,
    /// Set by the first HTTP/2 request: bytes between HTTP/2 requests are frames such as
    /// pings and window updates, not the start of a request head.
    http2: AtomicBool,
}

impl Activity {
    /// A connection accepted `now`: its first request head is due within
    /// `header_read_timeout`, as if its first byte had come with the connection.
    pub(super) fn new(now: Instant, header_read_timeout: Duration, idle_timeout: Duration) -> Self {
        Self {
            opened: now,
            header_read_timeout,
            idle_timeout,
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            http2: AtomicBool::new(false),
        }
    }

    /// The first deadline of a new connection.
    pub(super) fn first_deadline(&self) -> Instant {
        self.opened + self.header_read_timeout
    }

    /// A parsed request enters the service.
    pub(super) fn request_started(&self, version: Version) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NO_HEAD, Ordering::Release);
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
    }

    /// The service answered a request.
    pub(super) fn request_done(&self) {
        self.last_done
            .store(self.since_opened(Instant::now()), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Bytes came in. Between HTTP/1 requests, they are the start of the next request head.
    /// A head pipelined behind a request in flight is not seen here; it is bounded by
    /// `idle_timeout` instead.
    fn bytes_read(&self) {
        if self.head_since.load(Ordering::Acquire) == NO_HEAD
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            self.head_since
                .store(self.since_opened(Instant::now()), Ordering::Release);
        }
    }

    /// Whether a timeout has passed at `now`, and if not, when to look again.
    pub(super) fn timeout(&self, now: Instant) -> Timeout {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Requests in flight are bounded by the route timeouts, not by these.
            return Timeout::At(now + self.idle_timeout);
        }
        let head_since = self.head_since.load(Ordering::Acquire);
        let (since, limit, expired) = if head_since == NO_HEAD {
            let done = self.last_done.load(Ordering::Acquire);
            (done, self.idle_timeout, Timeout::Idle)
        } else {
            (head_since, self.header_read_timeout, Timeout::HeadRead)
        };
        let deadline = self.opened + Duration::from_nanos(since) + limit;
        if now >= deadline {
            expired
        } else {
            Timeout::At(deadline)
        }
    }

    fn since_opened(&self, now: Instant) -> u64 {
        // Saturates after 584 years of one connection.
        u64::try_from(now.saturating_duration_since(self.opened).as_nanos()).unwrap_or(NO_HEAD - 1)
    }
}

/// The client's socket, telling the connection's [`Activity`] when bytes arrive.
#[derive(Debug)]
pub(super) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Self { stream, activity }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    fn activity() -> (Activity, Instant) {
        let now = Instant::now();
        (Activity::new(now, HEAD, IDLE), now)
    }

    #[test]
    fn a_new_connection_owes_its_first_head_within_the_header_read_timeout() {
        let (activity, opened) = activity();
        assert_eq!(activity.first_deadline(), opened + HEAD);
        assert_eq!(activity.timeout(opened), Timeout::At(opened + HEAD));
        assert_eq!(activity.timeout(opened + HEAD), Timeout::HeadRead);
    }

    #[test]
    fn between_requests_the_idle_timeout_runs_from_the_last_answer() {
        let (activity, opened) = activity();
        activity.request_started(Version::HTTP_11);
        assert_eq!(
            activity.timeout(opened + IDLE * 2),
            Timeout::At(opened + IDLE * 3),
            "a request in flight never times out here"
        );
        activity.request_done();
        let Timeout::At(deadline) = activity.timeout(opened + HEAD) else {
            panic!("an idle keep-alive connection outlives the header read timeout");
        };
        assert!(deadline >= opened + IDLE, "{deadline:?}");
        assert_eq!(activity.timeout(deadline), Timeout::Idle);
    }

    #[test]
    fn the_first_byte_of_a_head_starts_the_header_read_timeout() {
        let (activity, opened) = activity();
        activity.request_started(Version::HTTP_11);
        activity.request_done();
        activity.bytes_read();
        let Timeout::At(deadline) = activity.timeout(opened) else {
            panic!("nothing has expired yet");
        };
        assert!(deadline < opened + IDLE, "{deadline:?}");
        // Later bytes of the same head do not move the deadline (slowloris).
        activity.bytes_read();
        assert_eq!(activity.timeout(opened), Timeout::At(deadline));
        assert_eq!(activity.timeout(deadline), Timeout::HeadRead);
        activity.request_started(Version::HTTP_11);
        activity.request_done();
        assert!(matches!(activity.timeout(deadline), Timeout::At(_)));
    }

    #[test]
    fn bytes_between_http2_requests_are_frames_not_heads() {
        let (activity, opened) = activity();
        activity.request_started(Version::HTTP_2);
        activity.request_done();
        activity.bytes_read();
        let Timeout::At(deadline) = activity.timeout(opened + HEAD) else {
            panic!("a ping must not start the header read timeout");
        };
        assert!(deadline >= opened + IDLE, "{deadline:?}");
    }

    #[test]
    fn bytes_read_while_a_request_is_in_flight_are_its_body() {
        let (activity, opened) = activity();
        activity.request_started(Version::HTTP_11);
        activity.bytes_read();
        activity.request_done();
        assert!(matches!(activity.timeout(opened + HEAD), Timeout::At(_)));
    }
}
