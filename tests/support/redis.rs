//! Real `redis-server` processes for the tests (never a mock): [`RedisServer`], one node on a
//! free loopback port, and [`RedisCluster`], three masters with one replica each. Both are
//! killed on `Drop`; every wait is a bounded retry loop, never a fixed sleep.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to answer its first PING.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long a Cluster may take to agree it is healthy.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);
/// Attempts at starting a server on a fresh port (another process may take the port between
/// our probe and Redis' bind).
const START_ATTEMPTS: usize = 5;
const POLL: Duration = Duration::from_millis(10);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A port nobody listens on now; with `with_bus`, port + 10000 (the Cluster bus) is free too.
pub(crate) fn free_port(with_bus: bool) -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("bound address").port();
        if !with_bus {
            return port;
        }
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
}

/// Sends one command as RESP and returns the raw reply (enough for `PING` and `INFO`-style
/// bulk strings); `None` when nothing answered within `timeout`.
fn raw_command(port: u16, args: &[&str], timeout: Duration) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the reply is complete: a simple line, or a bulk string of the stated length.
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        let Some(first_line_end) = text.find("\r\n") else {
            continue;
        };
        if let Some(len) = text.strip_prefix('$') {
            let len: usize = len[..first_line_end - 1].parse().ok()?;
            if reply.len() >= first_line_end + 2 + len + 2 {
                break;
            }
        } else {
            break;
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// One `redis-server` child process on a loopback port.
#[derive(Debug)]
pub(crate) struct RedisServer {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A fresh, empty server on a free port.
    pub(crate) fn start() -> Self {
        Self::start_with(&[], false)
    }

    /// A server on `port` (which must be free), e.g. after a test ran without Redis on it.
    pub(crate) fn start_on(port: u16) -> Self {
        let mut server = Self::new(port, &[]);
        server
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server on port {port}: {e}"));
        server
    }

    /// A server with extra `redis-server` arguments; `with_bus` also reserves the Cluster bus
    /// port.
    pub(crate) fn start_with(extra: &[&str], with_bus: bool) -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::new(free_port(with_bus), extra);
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start in {START_ATTEMPTS} attempts: {last_error}");
    }

    fn new(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cachet-redis-{}-{}-{port}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let args = extra
            .iter()
            .map(|a| a.replace("{dir}", &dir.display().to_string()))
            .collect();
        Self {
            port,
            dir,
            args,
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited at start: {status}"));
            }
            if raw_command(self.port, &["PING"], Duration::from_millis(200))
                .is_some_and(|reply| reply.starts_with("+PONG"))
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("redis-server did not answer PING".to_owned());
            }
            thread::sleep(POLL);
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether the process is running (killed or exited: false).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        let Some(child) = &self.child else { return };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing answers.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused process (SIGCONT).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the server and starts an empty one on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + START_WAIT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(error) if Instant::now() > deadline => panic!("restart: {error}"),
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    /// Runs `redis-cli -p <port> <args>`, with `stdin` as input (`-x` reads the last argument
    /// from it, binary-safe); returns stdout.
    pub(crate) fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn redis-cli");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).expect("write redis-cli input");
        }
        let output = child.wait_with_output().expect("run redis-cli");
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// A synchronous client connection, for assertions on what Redis holds.
    pub(crate) fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).expect("valid url");
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set read timeout");
        conn
    }

    /// One `CLUSTER INFO`/`INFO`-style command over a raw socket; `None` when no answer.
    pub(crate) fn info(&self, args: &[&str]) -> Option<String> {
        raw_command(self.port, args, Duration::from_millis(500))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters with one replica each, on free loopback ports.
#[derive(Debug)]
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts six nodes, joins them with `redis-cli --cluster create` and waits until every
    /// node reports `cluster_state:ok` and every replica is in sync.
    pub(crate) fn start() -> Self {
        let cluster_args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "{dir}/nodes.conf",
            // Fail over within a couple of seconds of a master dying.
            "--cluster-node-timeout",
            "1000",
        ];
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| RedisServer::start_with(&cluster_args, true))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(output.status.success(), "cluster create failed: {output:?}");
        let cluster = Self { nodes };
        assert!(
            cluster.wait_healthy(CLUSTER_WAIT),
            "the cluster never became healthy"
        );
        cluster
    }

    /// Seed URLs of every node.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port()))
            .collect()
    }

    /// Nodes whose process runs and that call themselves master.
    pub(crate) fn masters(&mut self) -> Vec<&mut RedisServer> {
        self.nodes
            .iter_mut()
            .filter_map(|node| {
                let replication = node.info(&["INFO", "replication"])?;
                (node.is_running() && replication.contains("role:master")).then_some(node)
            })
            .collect()
    }

    /// Waits (bounded) until every running node reports `cluster_state:ok`, sees three
    /// masters, and every running replica's link to its master is up.
    pub(crate) fn wait_healthy(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_healthy() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn is_healthy(&self) -> bool {
        let mut live = 0;
        for node in &self.nodes {
            let Some(info) = node.info(&["CLUSTER", "INFO"]) else {
                continue;
            };
            live += 1;
            if !info.contains("cluster_state:ok") || !info.contains("cluster_size:3") {
                return false;
            }
            let Some(replication) = node.info(&["INFO", "replication"]) else {
                return false;
            };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return false;
            }
        }
        live > 0
    }
}
