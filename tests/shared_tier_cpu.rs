//! A measurement, not a test (ignored by default): the CPU one request costs Cachet when it is
//! a shared-tier (L2) hit against a memory (L1) hit of the same entry, side by side in one run.
//!
//! Instance A stores `N` distinct entries of one size in a real `redis-server`. Then, five
//! times, a fresh instance B answers the `N` paths once (each an L2 hit, promoted into memory)
//! and once more (each an L1 hit), chunk by chunk (500 paths as L2 hits, the same 500 as L1
//! hits, then the next chunk), so both kinds run under the same machine load. Cachet runs
//! in-process, the client on a thread of its own that measures itself. Cachet's CPU is the
//! process's minus the client thread's, read two ways: the live threads' `schedstat` run time
//! (nanoseconds), and `/proc/self/stat` utime + stime (10ms ticks, a coarse cross-check).
//! redis-server's CPU is read from its `schedstat`. The ratio reported is the median of the
//! five runs' L2/L1 ratios. Cachet runs on one Tokio worker, so that work stealing between
//! workers adds no wake-ups of its own. Figures are noisy on a loaded machine (wake-ups and
//! context switches then add a cost to both kinds, which pulls the ratio towards 1): compare
//! runs whose L1 figure is lowest, and look at the spread.
//!
//! ```text
//! cargo test --release --test shared_tier_cpu -- --ignored --nocapture
//! ```
//! `CACHET_CPU_N` sets `N` (default 5000). Bodies of 1 KiB (stored as is) and 16 KiB (zstd in
//! Redis, above the default `compress_min_bytes`).

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cachet::clock::ManualClock;
use support::origin::pattern;
use support::proxy::{Options, one_route_shared, redis_url};
use support::redis::RedisServer;
use support::shared::{HOST, await_entry_keys, await_shared_tier_up};
use support::{Client, Origin, Proxy, Reply};
use tokio::sync::oneshot;

const RUNS: usize = 5;
/// Paths per L2 batch, each followed by the same paths as L1 hits.
const CHUNK: usize = 500;

/// CPU time (utime + stime, in clock ticks) from a `/proc/.../stat` file.
fn cpu_ticks(stat_file: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_file).expect("read /proc stat");
    // Fields after the command name, which is parenthesized and may contain spaces: the first
    // is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = &stat[stat.rfind(')').expect("command name") + 2..];
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().expect("a tick count"))
        .sum()
}

/// Nanoseconds on CPU from a `schedstat` file (its first field).
fn schedstat_ns(file: &std::path::Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds on CPU of every live thread of process `proc_dir` (e.g. `/proc/self`).
fn process_ns(proc_dir: &str) -> u64 {
    std::fs::read_dir(format!("{proc_dir}/task"))
        .expect("list threads")
        .filter_map(Result::ok)
        .map(|task| schedstat_ns(&task.path().join("schedstat")))
        .sum()
}

/// The CPU a process (or thread) used so far: nanoseconds (`schedstat`, precise) and clock
/// ticks (`stat`, a 10ms resolution cross-check that also counts exited threads).
#[derive(Debug, Clone, Copy)]
struct Cpu {
    ns: u64,
    ticks: u64,
}

impl Cpu {
    fn process(proc_dir: &str) -> Self {
        Self {
            ns: process_ns(proc_dir),
            ticks: cpu_ticks(&format!("{proc_dir}/stat")),
        }
    }

    fn this_thread() -> Self {
        Self {
            ns: schedstat_ns("/proc/thread-self/schedstat".as_ref()),
            ticks: cpu_ticks("/proc/thread-self/stat"),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            ns: self.ns - before.ns,
            ticks: self.ticks - before.ticks,
        }
    }
}

fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Paths to request, the `Cache-Status` expected, and where to send (matches, client CPU).
type Job = (Vec<String>, String, oneshot::Sender<(usize, Cpu)>);

/// A client on a thread of its own (a current-thread runtime), so that its CPU can be told
/// apart from Cachet's: it runs batches of requests and measures its own CPU for each.
struct ClientThread {
    jobs: std::sync::mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
}

impl ClientThread {
    fn start(client: Client) -> Self {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("client runtime");
            while let Ok((paths, expect, done)) = queue.recv() {
                let answer = runtime.block_on(async {
                    let before = Cpu::this_thread();
                    let mut matched = 0;
                    for path in &paths {
                        let status = client.get(path, &[HOST]).await;
                        if status.cache_status() == expect {
                            matched += 1;
                        } else {
                            eprintln!("{path}: {}", status.cache_status());
                        }
                    }
                    (matched, Cpu::this_thread().since(before))
                });
                let _ = done.send(answer);
            }
        });
        Self { jobs, thread }
    }

    /// Requests `paths` one after another; how many answers had `Cache-Status: expect`, and
    /// the client thread's CPU meanwhile.
    async fn run(&self, paths: &[String], expect: &str) -> (usize, Cpu) {
        let (done, answer) = oneshot::channel();
        self.jobs
            .send((paths.to_vec(), expect.to_owned(), done))
            .expect("client thread alive");
        answer.await.expect("client thread answered")
    }

    fn stop(self) {
        drop(self.jobs);
        self.thread.join().expect("client thread");
    }
}

/// CPU totals of one kind of request over a run.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    requests: u64,
    /// Cachet's, from `schedstat` (ns).
    ns: u64,
    /// Cachet's, from `stat` (ticks).
    ticks: u64,
    /// redis-server's (ns).
    redis_ns: u64,
}

impl Totals {
    fn us(&self) -> f64 {
        self.ns as f64 / 1e3 / self.requests as f64
    }
}

/// Runs `paths` through `client`, all expected to be `expect`, adding Cachet's CPU to `totals`.
async fn measure(
    client: &ClientThread,
    paths: &[String],
    expect: &str,
    redis_proc: &str,
    totals: &mut Totals,
) {
    let (before, redis_before) = (Cpu::process("/proc/self"), Cpu::process(redis_proc));
    let (matched, client_cpu) = client.run(paths, expect).await;
    let process = Cpu::process("/proc/self").since(before);
    let redis = Cpu::process(redis_proc).since(redis_before);
    assert_eq!(matched, paths.len(), "every answer was {expect:?}");
    totals.requests += paths.len() as u64;
    totals.ns += process.ns.saturating_sub(client_cpu.ns);
    totals.ticks += process.ticks.saturating_sub(client_cpu.ticks);
    totals.redis_ns += redis.ns;
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
async fn cpu_per_request_of_an_l2_hit_against_an_l1_hit() {
    let n: usize = std::env::var("CACHET_CPU_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let tick_us = 1e6 / ticks_per_second();
    let redis = RedisServer::start();
    let redis_pid = redis
        .info(&["INFO", "server"])
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("process_id:").map(|p| p.trim().to_owned()))
        })
        .expect("redis-server pid");
    let redis_proc = format!("/proc/{redis_pid}");
    let origin = Origin::start(|seen| {
        let size = if seen.path().starts_with("/cpu/16k/") {
            16 << 10
        } else {
            1 << 10
        };
        Reply::ok(pattern(size)).cache_control("max-age=3600")
    })
    .await;
    // A memory budget far above what is stored, so the memory tier never declines a promotion.
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "").replace(
        "memory_max_bytes = \"64MiB\"",
        "memory_max_bytes = \"2GiB\"",
    );
    let options = Options {
        clock: Some(Arc::new(ManualClock::new(SystemTime::now()))),
        ..Options::default()
    };
    let a = Proxy::start_with(&config, options.clone()).await;
    await_shared_tier_up(&a, Duration::from_secs(10)).await;
    let to_a = Client::new(a.addr);

    println!(
        "\nCachet CPU per request (µs), {n} L2 hits and {n} L1 hits per run, median of {RUNS} \
         runs; ticks = the /proc/self/stat cross-check"
    );
    println!(
        "body | L1 hit | L2 hit | L2/L1 | ratio per run                      | ticks L1/L2 | redis µs/L2 hit"
    );
    let mut stored = 0;
    for size in ["1k", "16k"] {
        let paths: Vec<String> = (0..n).map(|i| format!("/cpu/{size}/{i}")).collect();
        for path in &paths {
            assert!(to_a.get(path, &[HOST]).await.status.is_success());
        }
        stored += n;
        await_entry_keys(&redis, stored, Duration::from_secs(120)).await;

        let mut runs: Vec<(Totals, Totals)> = Vec::new();
        for _ in 0..RUNS {
            let b = Proxy::start_with(&config, options.clone()).await;
            await_shared_tier_up(&b, Duration::from_secs(10)).await;
            let client = ClientThread::start(Client::new(b.addr));
            let (mut l1, mut l2) = (Totals::default(), Totals::default());
            for chunk in paths.chunks(CHUNK) {
                let shared = "cachet; hit; ttl=3600; detail=shared";
                measure(&client, chunk, shared, &redis_proc, &mut l2).await;
                measure(
                    &client,
                    chunk,
                    "cachet; hit; ttl=3600",
                    &redis_proc,
                    &mut l1,
                )
                .await;
            }
            client.stop();
            b.shutdown().await;
            runs.push((l1, l2));
        }
        let ratios: Vec<f64> = runs.iter().map(|(l1, l2)| l2.us() / l1.us()).collect();
        let per_request = |ticks: u64, requests: u64| ticks as f64 * tick_us / requests as f64;
        println!(
            "{size:>4} | {:6.1} | {:6.1} | {:5.2} | {ratios:5.2?} | {:4.1} / {:4.1} | {:.1}",
            median(runs.iter().map(|(l1, _)| l1.us()).collect()),
            median(runs.iter().map(|(_, l2)| l2.us()).collect()),
            median(ratios.clone()),
            median(
                runs.iter()
                    .map(|(l1, _)| per_request(l1.ticks, l1.requests))
                    .collect()
            ),
            median(
                runs.iter()
                    .map(|(_, l2)| per_request(l2.ticks, l2.requests))
                    .collect()
            ),
            median(
                runs.iter()
                    .map(|(_, l2)| l2.redis_ns as f64 / 1e3 / l2.requests as f64)
                    .collect()
            ),
        );
    }
    a.shutdown().await;
}
