//! Cache warming: the `[[warm]]` URLs fetched after start-up through the normal request path,
//! at most `warm_settings.rate` per second so warming never stampedes the origin. Progress is
//! logged; failures are counted, never fatal.

use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;

use crate::config::{WarmSettings, WarmTarget};
use crate::proxy::ProxyService;

/// Starts warming in the background; `host` is the `Host` a warm request carries unless its
/// own headers name one (the cache key includes it).
pub(super) fn spawn(
    proxy: ProxyService,
    targets: Vec<WarmTarget>,
    settings: &WarmSettings,
    host: String,
) -> Option<tokio::task::JoinHandle<()>> {
    if targets.is_empty() {
        return None;
    }
    let interval = Duration::from_secs(1) / settings.rate.max(1);
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        let (mut ok, mut failed) = (0usize, 0usize);
        for target in &targets {
            ticks.tick().await;
            match warm_one(&proxy, target, &host).await {
                Ok(status) if status < 500 => ok += 1,
                Ok(status) => {
                    failed += 1;
                    tracing::warn!(url = %target.url, status, "warm-up request failed");
                }
                Err(error) => {
                    failed += 1;
                    tracing::warn!(url = %target.url, %error, "warm-up request failed");
                }
            }
        }
        tracing::info!(ok, failed, "cache warm-up done");
    }))
}

async fn warm_one(
    proxy: &ProxyService,
    target: &WarmTarget,
    host: &str,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let mut request = Request::get(target.url.as_str()).body(Empty::<Bytes>::new())?;
    let headers = request.headers_mut();
    for (name, value) in &target.headers {
        headers.append(name.clone(), value.clone());
    }
    if !headers.contains_key(HOST) {
        headers.insert(HOST, HeaderValue::from_str(host)?);
    }
    let response = proxy.clone().oneshot(request).await?;
    let status = response.status().as_u16();
    // Read to the end: a fill streams into the cache only as its body is consumed.
    response.into_body().collect().await?;
    Ok(status)
}
