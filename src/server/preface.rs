//! Tells an HTTP/1 connection from HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) by its
//! first bytes, which hyper then reads again from [`super::tracking::Watched`].
//!
//! hyper-util's auto builder does the same with a 24-byte read, so the first request of every
//! connection cost two `recvfrom`s, plus a layer around every later read; here the first read
//! is as large as hyper's own, and what it took is replayed once.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

/// What opens every HTTP/2 connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much the first read may take: hyper's own first read buffer, so a request head that
/// fits hyper's first read fits this one.
const FIRST_READ: usize = 8192;

thread_local! {
    /// Where first reads land; what they read is then kept in a buffer of its own size. A
    /// buffer of [`FIRST_READ`] per connection took glibc's slow path (beyond its per-thread
    /// cache) on every connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; FIRST_READ].into_boxed_slice());
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Reads until the bytes either open the HTTP/2 preface in full or cannot; returns the
/// protocol and every byte read. A connection that ends first is HTTP/1 (hyper then sees the
/// end and closes it quietly).
///
/// # Errors
/// A read error from `io`.
pub(super) async fn sniff<R: AsyncRead + Unpin>(io: &mut R) -> io::Result<(Protocol, Vec<u8>)> {
    let mut first = Vec::new();
    loop {
        let read = std::future::poll_fn(|cx| read_more(io, cx, &mut first)).await?;
        let seen = first.len().min(H2_PREFACE.len());
        if read == 0 || first[..seen] != H2_PREFACE[..seen] {
            return Ok((Protocol::Http1, first));
        }
        if seen == H2_PREFACE.len() {
            return Ok((Protocol::Http2, first));
        }
    }
}

/// One read of up to [`FIRST_READ`] bytes in all, through [`SCRATCH`], appended to `first`.
fn read_more<R: AsyncRead + Unpin>(
    io: &mut R,
    cx: &mut Context<'_>,
    first: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    SCRATCH.with_borrow_mut(|scratch| {
        let room = FIRST_READ.saturating_sub(first.len());
        let mut buf = ReadBuf::new(&mut scratch[..room]);
        ready!(Pin::new(io).poll_read(cx, &mut buf))?;
        first.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    })
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::Poll;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx))).await
    }

    /// Sniffs `sent` from a client that stays open: the answer must come from what is there,
    /// on the first poll, since waiting for more would wait for ever.
    async fn sniff_at_once(sent: &[u8]) -> (Protocol, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(sent).await.expect("write");
        let mut sniffing = pin!(sniff(&mut server));
        match poll_once(&mut sniffing).await {
            Poll::Ready(sniffed) => sniffed.expect("sniff"),
            Poll::Pending => panic!("waited for more than {sent:?}"),
        }
    }

    #[tokio::test]
    async fn an_http1_request_is_http1_and_read_whole_in_one_read() {
        let request: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            sniff_at_once(request).await,
            (Protocol::Http1, request.to_vec())
        );
    }

    /// RFC 9113 §3.4: the preface, then the client's SETTINGS frame.
    #[tokio::test]
    async fn the_http2_preface_is_http2_and_kept_with_what_followed() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(sniff_at_once(&sent).await, (Protocol::Http2, sent));
    }

    /// `PRI` opens the preface, but a request line may begin with it too.
    #[tokio::test]
    async fn bytes_that_leave_the_preface_are_http1_without_waiting_for_more() {
        assert_eq!(
            sniff_at_once(b"PRIX").await,
            (Protocol::Http1, b"PRIX".to_vec())
        );
    }

    #[tokio::test]
    async fn a_preface_split_across_reads_is_read_until_whole() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        client.write_all(&H2_PREFACE[..3]).await.expect("write");
        let mut sniffing = pin!(sniff(&mut server));
        assert!(
            poll_once(&mut sniffing).await.is_pending(),
            "three bytes of the preface decide nothing"
        );
        client.write_all(&H2_PREFACE[3..]).await.expect("write");
        let (protocol, first) = sniffing.await.expect("sniff");
        assert_eq!(protocol, Protocol::Http2);
        assert_eq!(first, H2_PREFACE);
    }

    /// A client that closes: HTTP/1, whose connection then reads the end and closes quietly.
    #[tokio::test]
    async fn a_connection_that_ends_first_is_http1_with_what_it_sent() {
        for sent in [&b""[..], &H2_PREFACE[..10]] {
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            client.write_all(sent).await.expect("write");
            drop(client);
            let sniffed = sniff(&mut server).await.expect("sniff");
            assert_eq!(sniffed, (Protocol::Http1, sent.to_vec()));
        }
    }
}
