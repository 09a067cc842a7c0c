//! The `cachet` binary (DESIGN.md "Command line"): `check` prints a summary or every problem
//! with its field path (exit 0 / 2), `serve` proxies and drains on SIGTERM (exit 0), `demo`
//! prints what to try and serves the demo API. Readiness is read from the process's output.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{Client, Origin, Reply};

/// How long the binary may take to start, answer or exit.
const PROCESS_WAIT: Duration = Duration::from_secs(20);

fn cachet() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachet"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    // The binary applies CACHET__ overrides from its environment: none may leak in.
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CACHET__")) {
        command.env_remove(name);
    }
    command
}

fn run(args: &[&str]) -> Output {
    cachet().args(args).output().expect("run cachet")
}

/// A config file in the temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("cachet-cli-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).expect("write temp config");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `cachet` whose output lines arrive on channels; killed on drop if still running.
struct Running {
    child: Option<Child>,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn spawn(args: &[&str]) -> Self {
        let mut child = cachet()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cachet");
        let stdout = lines(child.stdout.take().expect("piped stdout"));
        let stderr = lines(child.stderr.take().expect("piped stderr"));
        Self {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// Lines from `rx` up to and including the first that contains `needle`.
    fn until(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(PROCESS_WAIT) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => panic!("no line containing {needle:?}; got {seen:#?}"),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status; returns it with the time the
    /// process took to exit.
    fn terminate(mut self) -> (ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        if rx.recv_timeout(PROCESS_WAIT).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("cachet did not exit within {PROCESS_WAIT:?} of SIGTERM");
        }
        let elapsed = sent.elapsed();
        let (_child, status) = waiter.join().expect("waiter thread");
        (status.expect("wait for cachet"), elapsed)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago (the binary binds it itself).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("bound address").port()
}

#[test]
fn check_prints_a_one_line_summary_and_exits_0() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cachet.toml");
    let output = run(&["check", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("config ok: 2 routes (products, me)"),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("config ok"))
            .count(),
        1,
        "{stdout}"
    );
}

#[test]
fn check_lists_every_problem_with_its_field_path_and_exits_2() {
    let config = TempConfig::new(
        "three-typos",
        r#"
[server]
listne = "127.0.0.1:8080"

[cache]
memory_max_byts = "64MiB"

[[routes]]
name = "api"
path_prefix = "/"
upstream = "http://127.0.0.1:9000"
defualt_ttl = "60s"
"#,
    );
    let output = run(&["check", "--config", config.path()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for path in [
        "server.listne",
        "cache.memory_max_byts",
        "routes[0].defualt_ttl",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(path)).count(),
            1,
            "{path} in {stderr}"
        );
    }
    let problems = stderr
        .lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .count();
    assert_eq!(problems, 3, "{stderr}");
}

/// SIGTERM stops accepting and drains in-flight requests within `drain_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_proxies_and_drains_then_exits_0_after_sigterm() {
    serve_and_drain("serve-default", "").await;
}

/// The same on a single-threaded runtime (`worker_threads = 1` selects tokio's current-thread
/// scheduler).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_one_worker_thread_proxies_and_drains_then_exits_0_after_sigterm() {
    serve_and_drain("serve-one-thread", "worker_threads = 1\n").await;
}

/// Serves with `server_extra` lines in `[server]` (config file `name`): a miss, a hit, then
/// SIGTERM with a request in flight that still completes.
async fn serve_and_drain(name: &str, server_extra: &str) {
    let origin = Origin::start(|seen| match seen.path() {
        "/cli/in-flight" => Reply::ok("finished").delay(Duration::from_millis(500)),
        _ => Reply::ok("from the origin").cache_control("max-age=60"),
    })
    .await;
    let (port, admin) = (free_port(), free_port());
    let config = TempConfig::new(
        name,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ndrain_timeout = \"2s\"\n{server_extra}\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"{}\"\n",
            origin.url()
        ),
    );
    let cachet = Running::spawn(&["serve", "--config", config.path()]);
    Running::until(&cachet.stderr, "listening");

    let client = Client::new(([127, 0, 0, 1], port).into());
    let first = client.get("/cli/serve", &[]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.text(), "from the origin");
    assert_eq!(first.cache_status(), "cachet; fwd=miss; stored");
    let second = client.get("/cli/serve", &[]).await;
    assert!(
        second.cache_status().starts_with("cachet; hit;"),
        "{}",
        second.cache_status()
    );
    assert_eq!(origin.next_request().await.path(), "/cli/serve");

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.get("/cli/in-flight", &[]).await }
    });
    assert_eq!(origin.next_request().await.path(), "/cli/in-flight");
    let (status, took) = tokio::task::spawn_blocking(move || cachet.terminate())
        .await
        .expect("terminate task");
    let drained = in_flight.await.expect("in-flight request task");
    assert_eq!(
        (drained.status.as_u16(), drained.text().as_str()),
        (200, "finished")
    );
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(
        took < Duration::from_secs(3),
        "exit took {took:?}, drain_timeout is 2s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_what_to_try_serves_the_demo_api_and_exits_0_after_sigterm() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let demo = Running::spawn(&["demo", "--listen", &listen]);
    let printed = Running::until(&demo.stdout, "Ctrl-C");
    let printed = printed.join("\n");
    assert!(printed.contains(&format!("http://{listen}")), "{printed}");
    assert!(
        printed.contains(&format!("curl -si http://{listen}/api/products/42")),
        "{printed}"
    );

    let client = Client::new(([127, 0, 0, 1], port).into());
    let miss = client.get("/api/products/42", &[]).await;
    assert_eq!(miss.status, 200);
    assert_eq!(miss.cache_status(), "cachet; fwd=miss; stored");
    let hit = client.get("/api/products/42", &[]).await;
    assert!(
        hit.cache_status().starts_with("cachet; hit;"),
        "{}",
        hit.cache_status()
    );
    assert_eq!(hit.body, miss.body);
    drop(client);

    let (status, _took) = tokio::task::spawn_blocking(move || demo.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
}
