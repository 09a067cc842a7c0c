//! `cachet demo`: an in-process demo API (tagged JSON resources, a per-tenant endpoint, one
//! slow endpoint) with Cachet in front of it, on loopback only; or, with `--origin-only`
//! ([`run_origin`]), the demo API alone, for several Cachet instances to share.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::config::{self, ConfigError};
use crate::server::{self, ServerLimits};
use crate::{Listeners, RunError};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("demo config rejected")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("demo origin stopped")]
    Serve(#[source] std::io::Error),
}

/// How long the slow endpoint takes: long enough to see a miss, short enough to wait for.
const SLOW_DELAY: Duration = Duration::from_secs(2);

/// Starts the demo origin on a free loopback port and Cachet on `listen`, prints what to try,
/// and serves until `shutdown` completes.
///
/// # Errors
/// [`DemoError`] when a port cannot be bound.
pub async fn run(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| DemoError::Bind { addr, source })
    };
    let origin = bind(loopback).await?;
    let origin_addr = origin.local_addr().map_err(|source| DemoError::Bind {
        addr: loopback,
        source,
    })?;
    let config = config::from_toml_str(&demo_config(listen, origin_addr), std::iter::empty())?;
    let listeners = Listeners {
        proxy: bind(listen).await?,
        admin: bind(loopback).await?,
    };
    let proxy_addr = listeners
        .proxy
        .local_addr()
        .map_err(|source| DemoError::Bind {
            addr: listen,
            source,
        })?;
    let admin_addr = listeners
        .admin
        .local_addr()
        .map_err(|source| DemoError::Bind {
            addr: loopback,
            source,
        })?;
    println!("{}", instructions(proxy_addr, admin_addr, origin_addr));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let origin_limits = ServerLimits::from(&config.server);
    let origin_service = tower::service_fn(demo_api);
    let mut origin_stop = stop_rx.clone();
    let origin_task = tokio::spawn(server::serve(
        origin,
        move |_| origin_service,
        origin_limits,
        async move {
            let _ = origin_stop.wait_for(|s| *s).await;
        },
    ));
    let result = crate::run(listeners, config, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = origin_task.await;
    Ok(result?)
}

/// Serves the demo API alone on `listen` (no proxy), prints its URL, and serves until
/// `shutdown` completes: the shared origin of `docker/compose.yaml` and
/// `scripts/local-cluster.sh`.
///
/// # Errors
/// [`DemoError::Bind`] when `listen` cannot be bound.
pub async fn run_origin(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), DemoError> {
    let bind_error = |source| DemoError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    println!("Cachet demo origin (the demo API, no proxy)\n  origin  http://{addr}");
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 10_000,
        max_header_bytes: 64 * 1024,
        max_headers: 100,
        drain_timeout: Duration::from_secs(2),
    };
    server::serve(listener, |_| tower::service_fn(demo_api), limits, shutdown)
        .await
        .map_err(DemoError::Serve)
}

fn demo_config(listen: SocketAddr, origin: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "{listen}"
drain_timeout = "2s"

[admin]
listen = "127.0.0.1:0"

[cache]
memory_max_bytes = "64MiB"
max_object_bytes = "1MiB"

[[routes]]
name = "products"
path_prefix = "/api/products"
upstream = "http://{origin}"
default_ttl = "30s"
tags = ["catalog"]

[[routes]]
name = "tenant"
path_prefix = "/api/tenant"
upstream = "http://{origin}"
key_headers = ["x-tenant-id"]

[[routes]]
name = "slow"
path_prefix = "/api/slow"
upstream = "http://{origin}"
timeout = "5s"
"#
    )
}

fn instructions(proxy: SocketAddr, admin: SocketAddr, origin: SocketAddr) -> String {
    format!(
        "Cachet demo
  proxy   http://{proxy}
  admin   http://{admin}/healthz
  origin  http://{origin}   (the demo API, direct)

Try (watch the cache-status and age headers):
  curl -si http://{proxy}/api/products/42 | grep -iE 'cache-status|age|generated'   # fwd=miss; stored
  curl -si http://{proxy}/api/products/42 | grep -iE 'cache-status|age|generated'   # hit, same body
  curl -si -H 'x-tenant-id: acme'   http://{proxy}/api/tenant/profile              # acme's copy
  curl -si -H 'x-tenant-id: globex' http://{proxy}/api/tenant/profile              # globex's, never acme's
  time curl -s http://{proxy}/api/slow    # about 2s: the origin is slow
  time curl -s http://{proxy}/api/slow    # instant: served from cache
  curl -si -X POST http://{proxy}/api/products/42   # fwd=method: writes pass through

Ctrl-C drains and exits."
    )
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// The demo origin's handler.
async fn demo_api(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let generated_at = unix_millis();
    let (status, cache_control, tags, body) = if let Some(id) = path.strip_prefix("/api/products/")
    {
        let body = serde_json::json!({ "id": id, "name": format!("product {id}"), "generated_at": generated_at });
        (
            StatusCode::OK,
            "max-age=30",
            format!("product:{id} products"),
            body,
        )
    } else if path == "/api/products" {
        let body =
            serde_json::json!({ "products": ["1", "2", "42"], "generated_at": generated_at });
        (StatusCode::OK, "max-age=30", "products".to_owned(), body)
    } else if path == "/api/tenant/profile" {
        let tenant = request
            .headers()
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        let body =
            serde_json::json!({ "tenant": tenant, "plan": "demo", "generated_at": generated_at });
        (StatusCode::OK, "max-age=60", "profile".to_owned(), body)
    } else if path == "/api/slow" {
        tokio::time::sleep(SLOW_DELAY).await;
        let body = serde_json::json!({ "slow": true, "generated_at": generated_at });
        (StatusCode::OK, "max-age=60", "slow".to_owned(), body)
    } else {
        (
            StatusCode::NOT_FOUND,
            "no-store",
            String::new(),
            serde_json::json!({ "error": "not found" }),
        )
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Ok(tags) = HeaderValue::from_str(&tags) {
        if !tags.is_empty() {
            headers.insert("surrogate-key", tags);
        }
    }
    Ok(response)
}
