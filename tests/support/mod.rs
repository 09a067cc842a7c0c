//! Shared harness for the integration tests: a scripted origin, Cachet in-process, clients.
//!
//! Each test binary includes this module and uses a different part of it.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different subset of the harness"
)]

pub(crate) mod admin;
pub(crate) mod client;
pub(crate) mod logs;
pub(crate) mod origin;
pub(crate) mod proxy;

pub(crate) use client::{Client, Raw, Resp, burst, join_all, raw, raw_get};
pub(crate) use origin::{Origin, Reply, Seen};
pub(crate) use proxy::Proxy;

/// The `ttl=` parameter of a `Cache-Status` value, if present.
pub(crate) fn ttl(cache_status: &str) -> Option<i64> {
    cache_status
        .split(';')
        .map(str::trim)
        .find_map(|param| param.strip_prefix("ttl="))
        .and_then(|v| v.parse().ok())
}
pub(crate) mod redis;
pub(crate) mod shared;
