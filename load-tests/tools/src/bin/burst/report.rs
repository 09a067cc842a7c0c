//! The burst's report: percentiles, distributions and the `RESULT` line scripts parse.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use cachet_load_tools::percentile;
use hyper::StatusCode;

use super::Args;

/// One burst response.
#[derive(Debug)]
pub(super) struct Sample {
    /// The proxy that answered.
    pub(super) target: SocketAddr,
    /// From the release to the moment this client wrote its request.
    pub(super) sent_after: Duration,
    pub(super) latency: Duration,
    pub(super) status: StatusCode,
    pub(super) cache_status: String,
    /// The body's first line: `<path> #<n>` names the origin fill that produced it.
    pub(super) fill: String,
}

/// What one burst measured.
pub(super) struct Report<'a> {
    pub(super) args: &'a Args,
    pub(super) samples: &'a [Sample],
    pub(super) errors: &'a [String],
    pub(super) origin_requests: u64,
    pub(super) origin_total: u64,
    pub(super) warm_took: Duration,
    pub(super) burst_took: Duration,
    pub(super) since_prime: Option<Duration>,
    pub(super) target_cpu: Option<Duration>,
    /// The same, from the release to the last answer: without the closes and the revalidation.
    pub(super) answer_cpu: Option<Duration>,
}

/// Prints the human report, then `RESULT key=value ...` and `CACHE_STATUS ...` lines.
pub(super) fn report(r: &Report<'_>) {
    let args = r.args;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut latencies: Vec<Duration> = r.samples.iter().map(|s| s.latency).collect();
    latencies.sort_unstable();
    let pct = |p| percentile(&latencies, p).map_or(f64::NAN, ms);
    let (p50, p90, p99, max) = (pct(50.0), pct(90.0), pct(99.0), pct(100.0));
    let min = latencies.first().copied().map_or(f64::NAN, ms);
    let delay = args.origin_delay_ms as f64;
    let ratio = if delay > 0.0 { p50 / delay } else { f64::NAN };
    let waited = latencies.iter().filter(|l| ms(**l) >= delay).count();
    let send_spread = r
        .samples
        .iter()
        .map(|s| s.sent_after)
        .max()
        .map_or(f64::NAN, ms);
    let ok = r.samples.iter().filter(|s| s.status.is_success()).count();

    println!(
        "burst: {} clients over {} target(s), key {}, origin delay {} ms",
        args.clients,
        args.target.len(),
        args.path,
        args.origin_delay_ms
    );
    println!(
        "  warm-up {:.0} ms; burst {:.1} ms; last request sent {send_spread:.1} ms after release",
        ms(r.warm_took),
        ms(r.burst_took)
    );
    if let Some(since) = r.since_prime {
        println!("  released {:.0} ms after the prime", ms(since));
    }
    println!(
        "  origin requests for the key during the burst: {} (total for the path: {})",
        r.origin_requests, r.origin_total
    );
    println!("  latency ms: min {min:.1}  p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  max {max:.1}");
    let target_cpu = r
        .target_cpu
        .map_or("n/a".to_owned(), |d| format!("{:.1}", ms(d)));
    let answer_cpu = r
        .answer_cpu
        .map_or("n/a".to_owned(), |d| format!("{:.1}", ms(d)));
    if r.target_cpu.is_some() {
        println!(
            "  proxy CPU time from release to final count: {target_cpu} ms \
             (to the last answer: {answer_cpu} ms)"
        );
    }
    println!("  p50 / origin delay: {ratio:.3}; responses at or above the origin delay: {waited}");
    let _ = print_distribution(
        "status",
        r.samples.iter().map(|s| s.status.as_u16().to_string()),
    );
    let cache_status = print_distribution(
        "cache-status",
        r.samples.iter().map(|s| s.cache_status.clone()),
    );
    if args.target.len() > 1 {
        print_distribution(
            "cache-status by target",
            r.samples
                .iter()
                .map(|s| format!("{}  {}", s.target, s.cache_status)),
        );
        println!("  latency ms by target:");
        for target in &args.target {
            let mut own: Vec<Duration> = r
                .samples
                .iter()
                .filter(|s| s.target == *target)
                .map(|s| s.latency)
                .collect();
            own.sort_unstable();
            let pct = |p| percentile(&own, p).map_or(f64::NAN, ms);
            println!(
                "    {target}  p50 {:.1}  p99 {:.1}  max {:.1}",
                pct(50.0),
                pct(99.0),
                pct(100.0)
            );
        }
    }
    let _ = print_distribution("origin fill", r.samples.iter().map(|s| s.fill.clone()));
    if !r.errors.is_empty() {
        println!("  errors: {}", r.errors.len());
        for error in r.errors.iter().take(5) {
            println!("    {error}");
        }
    }
    let fills = r
        .samples
        .iter()
        .map(|s| &s.fill)
        .collect::<BTreeSet<_>>()
        .len();
    println!(
        "RESULT clients={} ok={ok} errors={} origin_requests={} fills={fills} p50_ms={p50:.1} p90_ms={p90:.1} p99_ms={p99:.1} max_ms={max:.1} ratio_p50={ratio:.3} waited={waited} send_spread_ms={send_spread:.1} target_cpu_ms={target_cpu} answer_cpu_ms={answer_cpu}",
        args.clients,
        r.errors.len(),
        r.origin_requests,
    );
    let cache_status: Vec<String> = cache_status
        .iter()
        .map(|(v, n)| format!("{n}x {v}"))
        .collect();
    println!("CACHE_STATUS {}", cache_status.join(" | "));
}

/// Prints how often each value occurs, most frequent first, and returns the counts.
fn print_distribution(name: &str, values: impl Iterator<Item = String>) -> Vec<(String, usize)> {
    let mut counts = BTreeMap::<String, usize>::new();
    for value in values {
        *counts.entry(value).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("  {name}:");
    for (value, count) in &counts {
        println!("    {count:>5}  {value}");
    }
    counts
}
