//! What a connection tells its [`Activity`]: a guard per request in flight ([`InFlight`]), held
//! by its response body ([`Tracked`]) until hyper is done with it, and the socket wrapper
//! ([`Watched`]) that sees request bytes arrive and writes block, replays the first bytes
//! `preface` read, and puts the close of a finished connection behind the requests already
//! waiting.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Version;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::deadline::Activity;

/// One request from its parsed head until its response body is finished or dropped; dropped
/// with an abandoned request too (an HTTP/2 stream reset), so the count never leaks.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    pub(super) fn start(activity: &Arc<Activity>, version: Version) -> Self {
        activity.request_started(version);
        STARTED_HERE.with(|n| n.set(n.get().wrapping_add(1)));
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A response body that holds its request's [`InFlight`] until hyper is done with it: a body
/// still streaming keeps the connection from counting as idle.
#[derive(Debug)]
pub(super) struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub(super) fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The client's socket, telling the connection's [`Activity`] when bytes arrive and when
/// writes block.
///
/// Its close is cheap for the requests around it: hyper shuts a finished connection down
/// (the client closed it, or asked to), and the work of that close (the FIN, which on loopback
/// runs the peer's side too, the poller's deregistration, freeing the connection's state) is
/// of the order of answering a hit (in a profile of the SWR burst below, `close` alone is a
/// third of the samples). In a burst, where clients close as soon as they are answered,
/// those closes would delay the requests still waiting. So once the client has closed its
/// side, `poll_shutdown` yields (behind the tasks already ready and the I/O the runtime polls
/// next), and yields again while requests keep starting on this thread, up to
/// [`MAX_CLOSE_YIELDS`] times; and it makes no `shutdown(2)`: hyper drops the socket right
/// after it anyway, without reading on (it is not the staged close of RFC 9112 §9.6), and the
/// close sends the same FIN after the same data.
/// Side by side on the SWR burst of `load-tests/stampede.sh`: one yield and no system call took
/// the median p50 from 4.85 to 3.5 ms (nginx: 4.4 ms); yielding while requests start, from
/// 3.6 to 2.85 ms more.
///
/// A close the client has not made yet (it sent `Connection: close`, or the idle timeout or a
/// drain ended the connection) does not yield: RFC 9112 §9.6 has the server initiate it after
/// the response, and a client that closed first would keep the TIME-WAIT and its port.
#[derive(Debug)]
pub(super) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Bytes already read from the socket that hyper reads first (see `preface`), and how many
    /// of them it has.
    replay: Vec<u8>,
    replayed: usize,
    /// A read found the end of the client's stream: the client closed (or half-closed) first.
    peer_closed: bool,
    /// How often its close has yielded, and the thread's request count when it last did.
    close_yields: u8,
    started_at_yield: u64,
}

thread_local! {
    /// Requests started on this thread: a close yields again while this moves.
    static STARTED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The most times a close yields to requests; each yield lasts one pass of the runtime.
const MAX_CLOSE_YIELDS: u8 = 16;

impl Watched {
    pub(super) fn new(stream: TcpStream, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            activity,
            replay: Vec::new(),
            replayed: 0,
            peer_closed: false,
            close_yields: 0,
            started_at_yield: 0,
        }
    }

    /// Makes `bytes`, read from this socket already, what the next reads return.
    pub(super) fn replay(&mut self, bytes: Vec<u8>) {
        self.replay = bytes;
        self.replayed = 0;
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < this.replay.len() {
            let rest = &this.replay[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            if this.replayed == this.replay.len() {
                this.replay = Vec::new();
                this.replayed = 0;
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        } else if matches!(read, Poll::Ready(Ok(()))) && buf.remaining() > 0 {
            this.peer_closed = true;
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
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.activity.write_blocked(written.is_pending());
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.activity.write_blocked(written.is_pending());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let started = STARTED_HERE.with(std::cell::Cell::get);
        if this.peer_closed
            && (this.close_yields == 0
                || (this.close_yields < MAX_CLOSE_YIELDS && started != this.started_at_yield))
        {
            this.close_yields += 1;
            this.started_at_yield = started;
            // The runtime wakes a task that yields only after it has run the ready ones and
            // polled for I/O; one poll of the future is the whole yield.
            let yielded = std::pin::pin!(tokio::task::yield_now());
            if yielded.poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // No shutdown(2): dropping the connection, which hyper's end of it leads to at once,
        // closes the socket and sends the FIN.
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    use super::*;

    /// A connected pair on loopback: the server's side watched, and the client's.
    async fn pair() -> (Watched, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let second = Duration::from_secs(1);
        let activity = Arc::new(Activity::new(Instant::now(), second, second));
        (Watched::new(server, activity), client)
    }

    /// A pair whose client has closed its side, and whose server has read that end.
    async fn pair_closed_by_client() -> (Watched, TcpStream) {
        let (mut watched, mut client) = pair().await;
        client.shutdown().await.expect("client shutdown");
        let mut rest = Vec::new();
        watched.read_to_end(&mut rest).await.expect("read to end");
        assert!(watched.peer_closed);
        (watched, client)
    }

    /// Closes `watched` while a task is ready to run; which of the two came first.
    async fn close_beside_a_ready_task(mut watched: Watched) -> Vec<&'static str> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let ready = {
            let order = Arc::clone(&order);
            tokio::spawn(async move { order.lock().expect("lock").push("ready task") })
        };
        watched.shutdown().await.expect("shutdown");
        order.lock().expect("lock").push("close");
        ready.await.expect("ready task");
        order.lock().expect("lock").clone()
    }

    #[tokio::test]
    async fn a_close_after_the_clients_waits_behind_the_tasks_already_ready() {
        let (watched, _client) = pair_closed_by_client().await;
        assert_eq!(
            close_beside_a_ready_task(watched).await,
            ["ready task", "close"]
        );
    }

    /// RFC 9112 §9.6: after the response to `Connection: close`, the server closes, at once.
    #[tokio::test]
    async fn a_close_the_client_has_not_made_goes_before_the_tasks_ready() {
        let (watched, _client) = pair().await;
        assert_eq!(
            close_beside_a_ready_task(watched).await,
            ["close", "ready task"]
        );
    }

    /// Runs `close` beside a task that, once per pass of the runtime, starts a request when
    /// `requests` says so; how many passes that task made before the close was done.
    async fn passes_during_close(requests: bool) -> usize {
        let (mut watched, _client) = pair_closed_by_client().await;
        let activity = Arc::clone(&watched.activity);
        let passes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let busy = {
            let passes = Arc::clone(&passes);
            tokio::spawn(async move {
                loop {
                    if requests {
                        drop(InFlight::start(&activity, Version::HTTP_11));
                    }
                    passes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        watched.shutdown().await.expect("shutdown");
        busy.abort();
        passes.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_close_yields_while_requests_start_at_most_max_close_yields_times() {
        let passes = passes_during_close(true).await;
        let max = usize::from(MAX_CLOSE_YIELDS);
        assert!(
            (max - 1..=max + 1).contains(&passes),
            "{passes} passes of a busy thread before the close, not about {max}"
        );
    }

    #[tokio::test]
    async fn a_close_yields_once_when_no_request_starts() {
        let passes = passes_during_close(false).await;
        assert!(passes <= 2, "{passes} passes before the close");
    }

    /// What `preface` read comes first, in pieces as small as the reader asks for, then the
    /// socket's own bytes.
    #[tokio::test]
    async fn replayed_bytes_are_read_before_the_sockets_in_the_readers_sizes() {
        let (mut watched, mut client) = pair().await;
        watched.replay(b"GET / HTTP/1.1\r\n".to_vec());
        client.write_all(b"Host: x\r\n\r\n").await.expect("write");
        client.shutdown().await.expect("client shutdown");
        let mut pieces = Vec::new();
        loop {
            let mut piece = [0u8; 5];
            let n = watched.read(&mut piece).await.expect("read");
            if n == 0 {
                break;
            }
            pieces.push(piece[..n].to_vec());
        }
        assert_eq!(&pieces[..4], [&b"GET /"[..], b" HTTP", b"/1.1\r", b"\n"]);
        assert_eq!(pieces.concat(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(watched.peer_closed);
        assert!(
            watched.replay.is_empty(),
            "the replay's buffer is freed once read"
        );
    }

    #[tokio::test]
    async fn the_peer_reads_every_byte_then_a_clean_end_once_the_socket_is_dropped() {
        let (mut watched, mut client) = pair().await;
        let body = vec![7u8; 256 * 1024];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.map(|_| got)
        });
        watched.write_all(&body).await.expect("write");
        watched.shutdown().await.expect("shutdown");
        drop(watched);
        let got = reader
            .await
            .expect("reader")
            .expect("a clean end, not a reset");
        assert_eq!(got.len(), body.len());
    }
}
