//! A one-shot burst client: the stampede that wrk cannot express.
//!
//! 1. Optionally primes the key with one request (`--prime`), for the just-expired case.
//! 2. Opens `--clients` keep-alive HTTP/1.1 connections, spread round-robin over the
//!    `--target`s, and warms each with one request to its own warm-up path.
//! 3. When every connection is warm, waits (`--settle-ms`, or until `--release-after-prime-ms`
//!    after the prime), reads the origin's count for the key, then releases every connection
//!    together through a barrier; each sends one GET for the key.
//! 4. Waits `--settle-ms` so late origin requests are counted, reads the count again and
//!    prints the origin requests of the burst, the latency percentiles, the `Cache-Status`
//!    distribution and a final `RESULT key=value ...` line for scripts.
//!
//! Latency is per request: from just before the request is written to the last body byte.
//! Each connection is one task that drives hyper's connection future itself, so the client's
//! own work per request (the task hand-offs of a spawned connection task) stays small next to
//! the proxy's: on one core, that work is what the latency of a burst mostly measures.
//! Loopback targets only; the whole run is bounded by `--deadline-secs`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachet_load_tools::percent_encode;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Semaphore};

mod report;

use report::{Report, Sample, report};

#[derive(Debug, Parser)]
#[command(about = "Release N warm keep-alive connections together on one key")]
struct Args {
    /// Proxy address; repeat to spread the connections round-robin over several instances.
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    /// The origin's address, for `/__count`.
    #[arg(long)]
    origin: SocketAddr,
    /// The path and query every client requests in the burst, e.g.
    /// `/obj/k1?delay_ms=200&max_age=60`.
    #[arg(long)]
    path: String,
    /// The origin delay of `--path` in milliseconds, for the p50 ratio.
    #[arg(long)]
    origin_delay_ms: u64,
    /// Number of connections, each sending one request in the burst.
    #[arg(long, default_value_t = 500)]
    clients: usize,
    /// Host header sent to every target.
    #[arg(long, default_value = "cachet.test")]
    host: String,
    /// Warm-up path template; `{i}` is the connection number and `{run}` a per-run tag.
    #[arg(long, default_value = "/obj/warm-{run}-{i}?max_age=300")]
    warm_path: String,
    /// Connections being opened and warmed at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Request `--path` once before warming up (the burst then hits a stored entry).
    #[arg(long)]
    prime: bool,
    /// With `--prime`: release the burst this long after the prime completed.
    #[arg(long)]
    release_after_prime_ms: Option<u64>,
    /// Pause after warm-up before the release, and after the burst before the final count.
    #[arg(long, default_value_t = 300)]
    settle_ms: u64,
    /// Abort the run (exit 1) after this long.
    #[arg(long, default_value_t = 60)]
    deadline_secs: u64,
    /// Runtime worker threads (0 = one per available core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// A proxy process id (repeatable): report the CPU time its threads use from just before
    /// the release to the final count (Linux `/proc/<pid>/task/*/schedstat`), and up to the
    /// last answer (before the connections close).
    #[arg(long)]
    cpu_pid: Vec<u32>,
    /// Write each response's send offset and latency (ms) to this CSV file, in send order.
    #[arg(long)]
    samples_csv: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(addr) = args
        .target
        .iter()
        .chain([&args.origin])
        .find(|a| !a.ip().is_loopback())
    {
        eprintln!("burst: refusing a non-loopback address {addr}");
        return ExitCode::from(2);
    }
    if args.clients == 0 || args.connect_concurrency == 0 {
        eprintln!("burst: --clients and --connect-concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("burst: runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let deadline = Duration::from_secs(args.deadline_secs);
    match runtime.block_on(async { tokio::time::timeout(deadline, run(args)).await }) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("burst: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("burst: deadline of {deadline:?} exceeded");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let args = Arc::new(args);
    let key_path = args.path.split('?').next().unwrap_or_default().to_owned();
    let count_uri = format!("/__count?path={}", percent_encode(&key_path));
    let mut origin = connect(args.origin).await?;

    let primed_at = if args.prime {
        let mut conn = connect(args.target[0]).await?;
        let prime = get(&mut conn, &args.path, &args.host).await?;
        println!("prime: {} {}", prime.status, prime.cache_status);
        Some(Instant::now())
    } else {
        None
    };

    let run_tag = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let ready = Arc::new(Barrier::new(args.clients + 1));
    let go = Arc::new(Barrier::new(args.clients + 1));
    let released = Arc::new(OnceLock::<Instant>::new());
    let opening = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let target = args.target[i % args.target.len()];
        let warm = args
            .warm_path
            .replace("{run}", &run_tag)
            .replace("{i}", &i.to_string());
        let (args, ready, go, released, opening) = (
            Arc::clone(&args),
            Arc::clone(&ready),
            Arc::clone(&go),
            Arc::clone(&released),
            Arc::clone(&opening),
        );
        tasks.push(tokio::spawn(async move {
            // Every task reaches both barriers, even after a failed warm-up: one broken
            // connection must not hang the others.
            let warmed = async {
                let _permit = opening.acquire().await.map_err(|e| e.to_string())?;
                let mut conn = connect(target).await?;
                let answer = get(&mut conn, &warm, &args.host).await?;
                if !answer.status.is_success() {
                    return Err(format!("warm-up {warm}: status {}", answer.status));
                }
                Ok(conn)
            }
            .await;
            ready.wait().await;
            go.wait().await;
            let mut conn = warmed?;
            let start = Instant::now();
            let mut sample = get(&mut conn, &args.path, &args.host).await?;
            sample.target = target;
            sample.latency = start.elapsed();
            sample.sent_after = start.saturating_duration_since(*released.get().unwrap_or(&start));
            // The connection stays open until every answer is in: closes are not part of
            // the burst, and on one core they would slow the clients still waiting.
            Ok::<_, String>((sample, conn))
        }));
    }

    let warm_started = Instant::now();
    ready.wait().await;
    let warm_took = warm_started.elapsed();
    match (primed_at, args.release_after_prime_ms) {
        (Some(at), Some(ms)) => {
            let release_at = at + Duration::from_millis(ms);
            if Instant::now() > release_at {
                eprintln!(
                    "burst: warm-up took {warm_took:?}; releasing {:?} late",
                    Instant::now() - release_at
                );
            }
            tokio::time::sleep_until(release_at.into()).await;
        }
        _ => tokio::time::sleep(Duration::from_millis(args.settle_ms)).await,
    }
    let before = origin_count(&mut origin, &count_uri).await?;
    let cpu_before = cpu_time(&args.cpu_pid);
    let since_prime = primed_at.map(|at| at.elapsed());
    let _ = released.set(Instant::now());
    go.wait().await;

    let mut samples = Vec::with_capacity(args.clients);
    let mut open = Vec::with_capacity(args.clients);
    let mut errors = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok((sample, conn))) => {
                samples.push(sample);
                open.push(conn);
            }
            Ok(Err(error)) => errors.push(error),
            Err(join) => errors.push(format!("client task: {join}")),
        }
    }
    let burst_took = released.get().map_or(Duration::ZERO, |r| r.elapsed());
    let answer_cpu = cpu_time(&args.cpu_pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    drop(open);
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let after = origin_count(&mut origin, &count_uri).await?;
    let target_cpu = cpu_time(&args.cpu_pid)
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));

    if let Some(path) = &args.samples_csv {
        let mut ordered: Vec<&Sample> = samples.iter().collect();
        ordered.sort_by_key(|s| s.sent_after);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut csv = String::from("sent_after_ms,latency_ms\n");
        for s in ordered {
            csv.push_str(&format!("{:.3},{:.3}\n", ms(s.sent_after), ms(s.latency)));
        }
        std::fs::write(path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    report(&Report {
        args: &args,
        samples: &samples,
        errors: &errors,
        origin_requests: after.saturating_sub(before),
        origin_total: after,
        warm_took,
        burst_took,
        since_prime,
        target_cpu,
        answer_cpu,
    });
    Ok(())
}

/// Total CPU time of every thread of `pids`, or `None` when there are none or one is gone.
fn cpu_time(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    let mut total = 0u64;
    for pid in pids {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
        for task in tasks.flatten() {
            // First field: time spent on the CPU, in nanoseconds.
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Some(Duration::from_nanos(total))
}

/// hyper's side of a client connection: the future that does its I/O.
type Driver = Pin<Box<Connection<TokioIo<TcpStream>, Empty<Bytes>>>>;

/// A keep-alive HTTP/1.1 connection whose I/O is driven by the task that sends on it.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    /// `None` once it has finished: the connection is closed and must not be polled again.
    driver: Option<Driver>,
}

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let (sender, driver) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    Ok(Conn {
        sender,
        driver: Some(Box::pin(driver)),
    })
}

/// One GET on `conn`, body read to the end, with its connection polled alongside;
/// `latency` and `sent_after` are left zero.
async fn get(conn: &mut Conn, path: &str, host: &str) -> Result<Sample, String> {
    let Some(driver) = conn.driver.as_mut() else {
        return Err(format!("GET {path}: the connection is closed"));
    };
    let exchange = exchange(&mut conn.sender, path, host);
    tokio::pin!(exchange);
    tokio::select! {
        biased;
        sample = &mut exchange => sample,
        ended = driver.as_mut() => {
            conn.driver = None;
            match ended {
                // The server closed after its answer: what was read is already in the
                // exchange's channels.
                Ok(()) => exchange.await,
                Err(error) => Err(format!("GET {path}: {error}")),
            }
        }
    }
}

/// The request and response of [`get`], without the connection's I/O.
async fn exchange(
    conn: &mut SendRequest<Empty<Bytes>>,
    path: &str,
    host: &str,
) -> Result<Sample, String> {
    let request = Request::get(path)
        .header(
            HOST,
            HeaderValue::from_str(host).map_err(|e| e.to_string())?,
        )
        .body(Empty::new())
        .map_err(|e| format!("request {path}: {e}"))?;
    conn.ready()
        .await
        .map_err(|e| format!("connection closed: {e}"))?;
    let response = conn
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let status = response.status();
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("(none)")
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {path}: body: {e}"))?
        .to_bytes();
    let fill = body.split(|b| *b == b'\n').next().unwrap_or_default();
    Ok(Sample {
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        sent_after: Duration::ZERO,
        latency: Duration::ZERO,
        status,
        cache_status,
        fill: String::from_utf8_lossy(fill).into_owned(),
    })
}

async fn origin_count(origin: &mut Conn, uri: &str) -> Result<u64, String> {
    let answer = get(origin, uri, "origin").await?;
    if answer.status != StatusCode::OK {
        return Err(format!("origin {uri}: status {}", answer.status));
    }
    answer
        .fill
        .trim()
        .parse()
        .map_err(|_| format!("origin {uri}: not a count: {:?}", answer.fill))
}
