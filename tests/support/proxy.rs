//! Cachet in-process: a config from a TOML template, both listeners pre-bound on
//! `127.0.0.1:0`, `run_with` in a spawned task with a [`ManualClock`] tests drive, and a
//! shutdown handle that joins the task (re-raising its panic).
//!
//! The clock also tells which tasks have read it ([`Proxy::await_clock_readers`]): every
//! request reads the time before it looks up its key, so a test can wait until N concurrent
//! requests are inside Cachet instead of sleeping.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cachet::clock::{Clock, ManualClock};
use cachet::config::{Config, ConfigError};
use cachet::{Listeners, RunError, RunOptions};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Sections every test config starts with; the listen addresses are placeholders (the
/// listeners are bound by [`Proxy::start`]).
pub(crate) const SERVER: &str = r#"
[server]
listen = "127.0.0.1:0"
drain_timeout = "2s"

[admin]
listen = "127.0.0.1:0"

[cache]
memory_max_bytes = "64MiB"
"#;

/// A route table body with deterministic freshness: no jitter, no early refresh.
pub(crate) const DETERMINISTIC: &str = "ttl_jitter = 0.0\nearly_refresh_beta = 0.0\n";

/// How long [`Proxy::shutdown`] waits for Cachet to stop before failing the test.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The config of one route `test` on `/` to `origin`, with `extra` lines in its table
/// (deterministic freshness unless `extra` says otherwise).
pub(crate) fn one_route(origin: &str, extra: &str) -> String {
    format!(
        "{SERVER}\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{origin}\"\n{}{extra}\n",
        deterministic_unless(extra)
    )
}

/// `op_timeout` of the `[cache.redis]` sections below: generous, since tests run in parallel on
/// two cores.
pub(crate) const REDIS_OP_TIMEOUT: Duration = Duration::from_millis(200);

/// The `[cache.redis]` target line of a single node.
pub(crate) fn redis_url(url: &str) -> String {
    format!("url = \"{url}\"")
}

/// The `[cache.redis]` target line of a Redis Cluster with seed `urls`.
pub(crate) fn redis_cluster(urls: &[String]) -> String {
    let seeds: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
    format!("cluster = [{}]", seeds.join(", "))
}

/// The config of [`one_route`] with a `[cache.redis]` section: `target` is a line from
/// [`redis_url`] or [`redis_cluster`], `op_timeout` is [`REDIS_OP_TIMEOUT`], the rest defaults.
pub(crate) fn one_route_shared(origin: &str, target: &str, extra: &str) -> String {
    let op_timeout = REDIS_OP_TIMEOUT.as_millis();
    format!(
        "{SERVER}\n[cache.redis]\n{target}\nop_timeout = \"{op_timeout}ms\"\n\n[[routes]]\nname = \"test\"\npath_prefix = \"/\"\nupstream = \"{origin}\"\n{}{extra}\n",
        deterministic_unless(extra)
    )
}

fn deterministic_unless(extra: &str) -> &'static str {
    if extra.contains("ttl_jitter") || extra.contains("early_refresh_beta") {
        ""
    } else {
        DETERMINISTIC
    }
}

/// Parses a config, failing the test with every problem listed.
pub(crate) fn parse(toml: &str) -> Config {
    match cachet::config::from_toml_str(toml, Vec::<(String, String)>::new()) {
        Ok(config) => config,
        Err(ConfigError::Invalid(problems)) => {
            panic!("test config rejected: {problems:#?}\n---\n{toml}")
        }
        Err(other) => panic!("test config rejected: {other}"),
    }
}

/// How long [`Proxy::await_clock_readers`] waits before failing the test.
const READERS_WAIT: Duration = Duration::from_secs(15);

/// What a test may choose about a Cachet beyond its config.
#[derive(Debug, Default, Clone)]
pub(crate) struct Options {
    /// Seed of Cachet's random draws (jitter, early refresh); random when `None`.
    pub(crate) seed: Option<u64>,
    /// The clock to run on, e.g. one an origin handler also moves; a new one when `None`.
    pub(crate) clock: Option<Arc<ManualClock>>,
    /// Runs when the instance lost a fill lease, before it registers for the outcome.
    pub(crate) lease_hook: Option<cachet::coalesce::lease::LeaseHook>,
    /// The file `/reload` and SIGHUP re-read.
    pub(crate) config_path: Option<std::path::PathBuf>,
}

impl Options {
    /// Random draws from `seed`, on a new clock.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..Self::default()
        }
    }
}

/// The manual clock, recording which tokio tasks have read it.
#[derive(Debug)]
struct ObservedClock {
    inner: Arc<ManualClock>,
    // A std mutex: held for a set insert, never across an await.
    readers: Mutex<HashSet<tokio::task::Id>>,
    count: watch::Sender<usize>,
}

impl Clock for ObservedClock {
    fn now(&self) -> SystemTime {
        if let Some(id) = tokio::task::try_id() {
            let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
            if readers.insert(id) {
                self.count.send_replace(readers.len());
            }
        }
        self.inner.now()
    }
}

/// A running Cachet.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// Client traffic.
    pub(crate) addr: SocketAddr,
    /// The admin listener.
    pub(crate) admin: SocketAddr,
    /// The clock every freshness decision reads; `advance` it instead of sleeping.
    pub(crate) clock: Arc<ManualClock>,
    observed: Arc<ObservedClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), RunError>>>,
}

impl Proxy {
    /// Starts Cachet with the config text `toml`.
    pub(crate) async fn start(toml: &str) -> Self {
        Self::start_with(toml, Options::default()).await
    }

    /// Starts Cachet with the config text `toml` and `options`.
    pub(crate) async fn start_with(toml: &str, options: Options) -> Self {
        let config = parse(toml);
        let listeners = Listeners {
            proxy: TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind proxy listener"),
            admin: TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind admin listener"),
        };
        let addr = listeners.proxy.local_addr().expect("proxy address");
        let admin = listeners.admin.local_addr().expect("admin address");
        let clock = options
            .clock
            .unwrap_or_else(|| Arc::new(ManualClock::new(SystemTime::now())));
        let observed = Arc::new(ObservedClock {
            inner: Arc::clone(&clock),
            readers: Mutex::new(HashSet::new()),
            count: watch::Sender::new(0),
        });
        let seed = options.seed;
        let options = RunOptions {
            clock: Arc::clone(&observed) as Arc<dyn Clock>,
            seed,
            lease_hook: options.lease_hook,
            config_path: options.config_path,
            env: Vec::new(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(cachet::run_with(listeners, config, options, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            admin,
            clock,
            observed,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts Cachet with one route (see [`one_route`]).
    pub(crate) async fn one_route(origin: &str, extra: &str) -> Self {
        Self::start(&one_route(origin, extra)).await
    }

    /// Starts Cachet from `template` with every `{origin}` replaced by `origin`.
    pub(crate) async fn from_template(template: &str, origin: &str) -> Self {
        Self::start(&template.replace("{origin}", origin)).await
    }

    /// `http://127.0.0.1:<port>` of the proxy listener.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Moves Cachet's clock forward.
    pub(crate) fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Number of distinct tokio tasks that have read Cachet's clock so far.
    pub(crate) fn clock_readers(&self) -> usize {
        *self.observed.count.borrow()
    }

    /// Waits until at least `n` distinct tokio tasks have read Cachet's clock; fails the test
    /// after a bound. Each client connection is served by its own task, and a request reads
    /// the clock right before it looks up its key and joins the key's fill; a fill task reads
    /// it before it sends its origin request.
    pub(crate) async fn await_clock_readers(&self, n: usize) {
        let mut count = self.observed.count.subscribe();
        let reached = tokio::time::timeout(READERS_WAIT, count.wait_for(|count| *count >= n)).await;
        match reached {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => unreachable!("the proxy holds the sender"),
            Err(_) => panic!(
                "only {} tasks read the clock within {READERS_WAIT:?}, expected {n}",
                self.clock_readers()
            ),
        }
    }

    /// Stops Cachet, waits for it to drain and return, and fails the test if it returned an
    /// error or panicked.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("shut down once");
        match tokio::time::timeout(SHUTDOWN_WAIT, task).await {
            Err(_) => panic!("cachet did not stop within {SHUTDOWN_WAIT:?}"),
            Ok(Err(join)) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            Ok(Err(join)) => panic!("cachet task failed: {join}"),
            Ok(Ok(Err(error))) => panic!("cachet stopped with an error: {error}"),
            Ok(Ok(Ok(()))) => {}
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Only reached without `shutdown()` (a failing test): stop it without waiting.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A loopback address nothing listens on: bound, then released.
pub(crate) async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port to release");
    listener.local_addr().expect("released address")
}
