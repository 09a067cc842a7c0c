//! A connection's timeouts, kept by one timer per connection instead of hyper's per-request
//! header timer: `header_read_timeout` bounds how long a request head may take to arrive once
//! its first byte has (and, for the connection's first request, from accept); `idle_timeout`
//! how long a keep-alive connection may wait between requests, and how long a write to a
//! client that reads nothing may stay blocked. `tracking` reports what happens on the
//! connection to its [`Activity`]. Nothing here arms or cancels a timer per request: the
//! connection's [`Deadline`] wakes at the earliest deadline, asks [`Activity::timeout`] and
//! re-arms, and is pulled closer only when a deadline begins that is nearer than the armed one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Version;
use tokio::time::{Instant, Sleep};

/// `Activity::head_since` and `Activity::write_blocked_since` when not set.
const UNSET: u64 = u64::MAX;

/// What the connection's timer should do: wake again at an instant, or act on a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timeout {
    At(Instant),
    Expired(Expired),
}

/// A timeout that has passed: what [`Deadline`] resolves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expired {
    /// No request for `idle_timeout`: close, letting HTTP/2 say GOAWAY.
    Idle,
    /// A request head did not arrive within `header_read_timeout`: drop the connection, there
    /// is nothing to finish.
    HeadRead,
    /// A write has been blocked for `idle_timeout`: the client reads nothing; drop it.
    WriteStalled,
}

/// What the timer of one connection needs to know. Times are nanoseconds after `opened`, in
/// atomics because HTTP/2 runs each request in its own task.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    /// Requests from their parsed head to the end of their response body.
    in_flight: AtomicUsize,
    /// When the last response body was finished.
    last_done: AtomicU64,
    /// When the first byte of a request head not yet parsed arrived, or [`UNSET`].
    head_since: AtomicU64,
    /// Since when a write has found the socket's buffer full, or [`UNSET`].
    write_blocked_since: AtomicU64,
    /// The nearest deadline begun since the timer last looked, or [`UNSET`]: the timer is
    /// pulled in to it when it is nearer than the one armed. Carrying the deadline itself
    /// spares the timer a clock read and a look at every stamp per request.
    pull_in: AtomicU64,
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
            write_blocked_since: AtomicU64::new(UNSET),
            pull_in: AtomicU64::new(UNSET),
            http2: AtomicBool::new(false),
        }
    }

    /// The first deadline of a new connection.
    pub(super) fn first_deadline(&self) -> Instant {
        self.opened + self.header_read_timeout
    }

    /// A parsed request enters the service (see `tracking::InFlight`).
    pub(super) fn request_started(&self, version: Version) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(UNSET, Ordering::Release);
        if version == Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
    }

    /// A request's response body is finished, or the request was abandoned.
    pub(super) fn request_done(&self) {
        let now = self.since_opened(Instant::now());
        self.last_done.store(now, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        // The timer is armed at most a header timeout or an idle timeout from before now, so
        // the idle deadline from now can only come first when it is the shorter of the two.
        if self.idle_timeout < self.header_read_timeout {
            self.pull_in_to(now, self.idle_timeout);
        }
    }

    /// Bytes came in. Between HTTP/1 requests, they are the start of the next request head.
    /// A head pipelined behind a request in flight is not seen here; it is bounded by
    /// `idle_timeout` instead.
    pub(super) fn bytes_read(&self) {
        if self.head_since.load(Ordering::Acquire) == UNSET
            && self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
        {
            let now = self.since_opened(Instant::now());
            self.head_since.store(now, Ordering::Release);
            self.pull_in_to(now, self.header_read_timeout);
        }
    }

    /// A write found the socket's buffer full (`blocked`), or wrote something.
    pub(super) fn write_blocked(&self, blocked: bool) {
        let since = self.write_blocked_since.load(Ordering::Acquire);
        if blocked && since == UNSET {
            let now = self.since_opened(Instant::now());
            self.write_blocked_since.store(now, Ordering::Release);
            self.pull_in_to(now, self.idle_timeout);
        } else if !blocked && since != UNSET {
            self.write_blocked_since.store(UNSET, Ordering::Release);
        }
    }

    /// Whether a timeout has passed at `now`, and if not, when to look again.
    fn timeout(&self, now: Instant) -> Timeout {
        let blocked = self.write_blocked_since.load(Ordering::Acquire);
        let stall_deadline = (blocked != UNSET).then(|| self.at(blocked) + self.idle_timeout);
        if stall_deadline.is_some_and(|deadline| now >= deadline) {
            return Timeout::Expired(Expired::WriteStalled);
        }
        let next = if self.in_flight.load(Ordering::Acquire) > 0 {
            // Requests in flight are bounded by the route timeouts and the write stall bound.
            now + self.idle_timeout
        } else {
            let head_since = self.head_since.load(Ordering::Acquire);
            let (since, limit, expired) = if head_since == UNSET {
                let done = self.last_done.load(Ordering::Acquire);
                (done, self.idle_timeout, Expired::Idle)
            } else {
                (head_since, self.header_read_timeout, Expired::HeadRead)
            };
            let deadline = self.at(since) + limit;
            if now >= deadline {
                return Timeout::Expired(expired);
            }
            deadline
        };
        Timeout::At(stall_deadline.map_or(next, |stall| stall.min(next)))
    }

    /// A deadline `limit` after `since` (nanoseconds after `opened`) has begun.
    fn pull_in_to(&self, since: u64, limit: Duration) {
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(UNSET);
        // Saturates to UNSET: a deadline centuries away needs no pulling in.
        self.pull_in
            .fetch_min(since.saturating_add(limit), Ordering::AcqRel);
    }

    fn at(&self, since_opened: u64) -> Instant {
        self.opened + Duration::from_nanos(since_opened)
    }

    fn since_opened(&self, now: Instant) -> u64 {
        // Saturates after 584 years of one connection.
        u64::try_from(now.saturating_duration_since(self.opened).as_nanos()).unwrap_or(UNSET - 1)
    }
}

/// The connection's timer as a future: resolves with the timeout that has passed. It must be
/// polled after the connection in each pass (`select!` with `biased;`), so that a deadline the
/// connection's poll brought closer (a head begun, a write blocked) is armed at once.
#[derive(Debug)]
pub(super) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    activity: Arc<Activity>,
}

impl Deadline {
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(activity.first_deadline())),
            activity,
        }
    }

    /// Wake at `at` whatever the activity says (the grace of a connection told to close).
    pub(super) fn wake_at(&mut self, at: Instant) {
        self.sleep.as_mut().reset(at);
    }
}

impl Future for Deadline {
    type Output = Expired;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Expired> {
        let this = self.get_mut();
        let pulled = this.activity.pull_in.swap(UNSET, Ordering::AcqRel);
        if pulled != UNSET {
            let at = this.activity.at(pulled);
            // A deadline already past fires at the next poll of the sleep, just below.
            if at < this.sleep.deadline() {
                this.sleep.as_mut().reset(at);
            }
        }
        loop {
            ready!(this.sleep.as_mut().poll(cx));
            match this.activity.timeout(Instant::now()) {
                Timeout::At(at) => this.sleep.as_mut().reset(at),
                Timeout::Expired(expired) => return Poll::Ready(expired),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body::Body;

    use super::super::tracking::{InFlight, Tracked};
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
        assert_eq!(
            activity.timeout(opened + HEAD),
            Timeout::Expired(Expired::HeadRead)
        );
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
        assert_eq!(activity.timeout(deadline), Timeout::Expired(Expired::Idle));
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
        assert_eq!(
            activity.timeout(deadline),
            Timeout::Expired(Expired::HeadRead)
        );
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

    #[test]
    fn a_write_blocked_for_the_idle_timeout_stalls_even_with_a_request_in_flight() {
        let (activity, opened) = activity();
        let activity = Arc::new(activity);
        let in_flight = InFlight::start(&activity, Version::HTTP_11);
        activity.write_blocked(true);
        let Timeout::At(deadline) = activity.timeout(opened + HEAD) else {
            panic!("nothing has expired yet");
        };
        assert!(deadline >= opened + IDLE && deadline < opened + HEAD + IDLE);
        // Blocking again does not move the start; a write that goes through clears it.
        activity.write_blocked(true);
        assert_eq!(
            activity.timeout(deadline),
            Timeout::Expired(Expired::WriteStalled)
        );
        activity.write_blocked(false);
        assert!(matches!(activity.timeout(deadline), Timeout::At(_)));
        drop(in_flight);
    }

    #[test]
    fn a_response_body_keeps_its_request_in_flight_until_it_is_dropped() {
        let (activity, opened) = activity();
        let activity = Arc::new(activity);
        let body = Tracked::new(
            http_body_util::Empty::<bytes::Bytes>::new(),
            InFlight::start(&activity, Version::HTTP_11),
        );
        assert!(body.is_end_stream());
        assert!(
            matches!(activity.timeout(opened + IDLE * 2), Timeout::At(_)),
            "a body still with hyper is not idle time"
        );
        drop(body);
        assert_eq!(activity.in_flight.load(Ordering::Acquire), 0);
        // Abandoned before any response (an HTTP/2 stream reset): the guard still counts down.
        drop(InFlight::start(&activity, Version::HTTP_2));
        assert_eq!(
            activity.timeout(opened + IDLE * 2),
            Timeout::Expired(Expired::Idle)
        );
    }

    /// The timer armed for a far deadline is pulled in when a nearer one begins: a head begun
    /// on a connection idle under a 60 s idle timeout is cut at 10 s, not at 60.
    #[tokio::test(start_paused = true)]
    async fn a_head_begun_while_idle_pulls_the_timer_in() {
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened, HEAD, IDLE));
        let mut deadline = Deadline::new(Arc::clone(&activity));
        drop(InFlight::start(&activity, Version::HTTP_11));
        // Armed for the idle timeout once the first deadline passes with nothing begun.
        tokio::time::advance(HEAD).await;
        let pending = tokio::time::timeout(HEAD, &mut deadline).await;
        assert!(pending.is_err(), "nothing has expired: {pending:?}");
        activity.bytes_read();
        let started = Instant::now();
        let expired = (&mut deadline).await;
        assert_eq!(expired, Expired::HeadRead);
        assert_eq!(Instant::now() - started, HEAD);
        assert!(Instant::now() < opened + IDLE);
    }

    /// With an idle timeout shorter than the header timeout, the end of a request brings the
    /// deadline in: the connection closes 10 s after its answer, not at the 60 s first deadline.
    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_header_timeout_pulls_the_timer_in() {
        let opened = Instant::now();
        let activity = Arc::new(Activity::new(opened, IDLE, HEAD));
        let mut deadline = Deadline::new(Arc::clone(&activity));
        let in_flight = InFlight::start(&activity, Version::HTTP_11);
        let pending = tokio::time::timeout(HEAD, &mut deadline).await;
        assert!(pending.is_err(), "a request in flight: {pending:?}");
        drop(in_flight);
        let answered = Instant::now();
        assert_eq!((&mut deadline).await, Expired::Idle);
        assert_eq!(Instant::now() - answered, HEAD);
    }
}
