//! Cachet: a caching HTTP reverse proxy for multi-tenant APIs.
//!
//! ```text
//! client ─► listener ─► router ─► cache layer ──hit──► response (+Age, Cache-Status)
//!                                    │ miss / stale
//!                                    ▼
//!                               origin client ─► upstream
//!                                    │
//!                                    ▼
//!                         storage decision (RFC 9111) ─► memory tier (quick_cache)
//! ```
//!
//! Module map (dependencies point right only):
//! `app → {server, proxy, admin} → tiers → cache`; `config`, `clock`, `telemetry` and
//! `answer` are leaves every module may use.
//!
//! - [`config`]: the TOML contract, validated into [`config::Config`].
//! - [`cache`]: keys, entries, storage policy, freshness and `Cache-Status`; pure, awaits nothing.
//! - [`tiers`]: the `Tier` storage seam and the in-process memory tier.
//! - [`purge`]: purge selectors and the watermark map every serve is checked against.
//! - [`proxy`]: the client-facing service: normalize, route, look up, fetch, store.
//! - [`server`]: serves a tower service on a bound listener with limits and graceful drain.
//! - [`admin`]: health, readiness, metrics and purges on the admin listener.
//! - [`telemetry`]: logging setup and the instance-owned Prometheus registry.
//! - [`app`]: wiring; [`run`] starts everything on pre-bound listeners.
//! - [`answer`]: the `no-store` answers Cachet writes itself (errors, admin replies).

pub mod admin;
pub mod answer;
pub mod app;
pub mod cache;
pub mod clock;
pub mod coalesce;
pub mod config;
pub mod demo;
pub mod proxy;
pub mod purge;
pub mod server;
pub mod telemetry;
pub mod tiers;

pub use app::{Listeners, RunError, RunOptions, run, run_with};
