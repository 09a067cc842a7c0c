//! A scriptable origin for load tests, on loopback.
//!
//! - `GET /obj/{id}?size=&delay_ms=&max_age=&swr=&status=&tags=` answers after `delay_ms`
//!   (default 0) with `size` bytes (default 64; at least the first line), `Cache-Control: max-age=<max_age>` (plus
//!   `, stale-while-revalidate=<swr>` when given; `no-store` when `max_age` is absent), status
//!   `status` (default 200) and `Surrogate-Key: <tags>` when given. Any method is accepted.
//!   The body starts with `<path> #<n>\n`, `n` being this path's request count, so a client
//!   can tell which fill it was served; `X-Origin-Seq` carries the same `n`.
//! - `GET /__count?path=/obj/{id}` answers that path's request count (the query is not part
//!   of the path); without `path`, the total of all `/obj/` requests. Plain text, one number.
//! - `POST /__reset` zeroes every counter (204).
//!
//! A request is counted when it arrives, before its delay, so in-flight fills are counted.
//! The bound address is printed on stdout (`listening <addr>`) and written to `--addr-file`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cachet_load_tools::query_param;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Bodies larger than this are refused (400): a typo must not exhaust memory.
const MAX_SIZE: usize = 64 * 1024 * 1024;
/// Longest accepted delay: runs stay bounded.
const MAX_DELAY_MS: u64 = 60_000;
/// Padding copied into bodies, chunk by chunk.
const FILLER_BYTES: usize = 64 * 1024;
/// Body size when `size` is absent.
const DEFAULT_SIZE: usize = 64;

#[derive(Debug, Parser)]
#[command(about = "A scriptable origin for Cachet load tests")]
struct Args {
    /// Address to listen on (loopback; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// Runtime worker threads (0 = one per available core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

#[derive(Debug, Default)]
struct Counters {
    per_path: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

impl Counters {
    /// Counts one request for `path` and returns its number (1-based).
    fn hit(&self, path: &str) -> u64 {
        self.total.fetch_add(1, Ordering::Relaxed);
        let mut map = self.per_path.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(path.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn get(&self, path: Option<&str>) -> u64 {
        match path {
            None => self.total.load(Ordering::Relaxed),
            Some(path) => {
                let map = self.per_path.lock().unwrap_or_else(|e| e.into_inner());
                map.get(path).copied().unwrap_or(0)
            }
        }
    }

    fn reset(&self) {
        let mut map = self.per_path.lock().unwrap_or_else(|e| e.into_inner());
        map.clear();
        self.total.store(0, Ordering::Relaxed);
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "origin: refusing to listen on a non-loopback address {}",
            args.listen
        );
        std::process::exit(2);
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        runtime.worker_threads(args.threads);
    }
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    if let Some(file) = &args.addr_file {
        std::fs::write(file, addr.to_string())?;
    }
    println!("listening {addr}");
    let counters = Arc::new(Counters::default());
    let filler = Bytes::from(vec![b'x'; FILLER_BYTES]);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off instead of spinning.
                eprintln!("origin: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let counters = Arc::clone(&counters);
        let filler = filler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let counters = Arc::clone(&counters);
                let filler = filler.clone();
                async move { Ok::<_, Infallible>(handle(req, &counters, &filler).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    counters: &Counters,
    filler: &Bytes,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let query = req.uri().query();
    match (req.method(), path) {
        (&Method::GET, "/__count") => {
            let path = query_param(query, "path");
            text(
                StatusCode::OK,
                format!("{}\n", counters.get(path.as_deref())),
            )
        }
        (&Method::POST, "/__reset") => {
            counters.reset();
            text(StatusCode::NO_CONTENT, String::new())
        }
        (_, p) if p.starts_with("/obj/") && p.len() > "/obj/".len() => {
            let n = counters.hit(p);
            match object(p, query, n, filler).await {
                Ok(response) => response,
                Err(message) => text(StatusCode::BAD_REQUEST, format!("{message}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// The `/obj/{id}` answer for request number `n` of `path`.
async fn object(
    path: &str,
    query: Option<&str>,
    n: u64,
    filler: &Bytes,
) -> Result<Response<Full<Bytes>>, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        query_param(query, name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name}: not a number: {v}"))
            })
            .transpose()
    };
    let size = number("size")?.map_or(DEFAULT_SIZE, |s| s as usize);
    if size > MAX_SIZE {
        return Err(format!("size: at most {MAX_SIZE}"));
    }
    let delay = number("delay_ms")?.unwrap_or(0);
    if delay > MAX_DELAY_MS {
        return Err(format!("delay_ms: at most {MAX_DELAY_MS}"));
    }
    let status = match number("status")? {
        None => StatusCode::OK,
        Some(code) => u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| format!("status: not a status code: {code}"))?,
    };
    let cache_control = match (number("max_age")?, number("swr")?) {
        (None, _) => "no-store".to_owned(),
        (Some(age), None) => format!("max-age={age}"),
        (Some(age), Some(swr)) => format!("max-age={age}, stale-while-revalidate={swr}"),
    };
    let tags = query_param(query, "tags");

    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let head = format!("{path} #{n}\n");
    let mut body = Vec::with_capacity(size.max(head.len()));
    body.extend_from_slice(head.as_bytes());
    while body.len() < size {
        let take = (size - body.len()).min(filler.len());
        body.extend_from_slice(&filler[..take]);
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CACHE_CONTROL, header(&cache_control)?);
    headers.insert("x-origin-seq", HeaderValue::from(n));
    if let Some(tags) = tags {
        headers.insert("surrogate-key", header(&tags)?);
    }
    Ok(response)
}

fn header(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value).map_err(|_| format!("not a header value: {value:?}"))
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
