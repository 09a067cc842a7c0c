//! The admin API's backend: purges resolved by the proxy and recorded through the shared tier
//! (or on this instance alone without one), readiness from the tiers, and the metrics scrape.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::path::PathBuf;

use crate::admin::{AdminBackend, PurgeRejected, Readiness, ReloadRejected};
use crate::clock::Clock;
use crate::config::{self, ConfigError};
use crate::proxy::ProxyService;
use crate::purge::{PurgeRequest, SharedPurges};
use crate::telemetry::metrics::{BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, SharedScrape};
use crate::tiers::{BreakerState, RedisTier, TierStats};

/// What `/purge` and `/readyz` act on.
pub(super) struct Backend {
    pub(super) proxy: ProxyService,
    pub(super) purges: Option<Arc<SharedPurges>>,
    pub(super) redis: Option<RedisTier>,
    pub(super) stats: Arc<TierStats>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) draining: Arc<AtomicBool>,
    /// The file `reload` re-reads, and the environment overrides it applies.
    pub(super) config_path: Option<PathBuf>,
    pub(super) env: Vec<(String, String)>,
}

impl Backend {
    /// Re-reads the config file: a valid one swaps routes, TTLs and key rules for new requests;
    /// an invalid one changes nothing and every problem is logged and returned.
    pub(super) fn reload_now(&self) -> Result<(), ReloadRejected> {
        let Some(path) = &self.config_path else {
            return Err(ReloadRejected::Unavailable);
        };
        match config::load(path, self.env.clone()) {
            Ok(config) => {
                self.proxy.reload(&config);
                tracing::info!(
                    routes = config.routes.len(),
                    "config reloaded; listener addresses, tiers and the memory budget change only on restart"
                );
                Ok(())
            }
            Err(ConfigError::Invalid(problems)) => {
                for problem in &problems {
                    tracing::warn!(%problem, "reload rejected; the running config stays");
                }
                Err(ReloadRejected::Invalid(
                    problems.iter().map(ToString::to_string).collect(),
                ))
            }
            Err(error @ ConfigError::Read { .. }) => {
                tracing::warn!(%error, "reload rejected; the running config stays");
                Err(ReloadRejected::Invalid(vec![error.to_string()]))
            }
        }
    }
}

impl Backend {
    /// Forgets purge watermarks past their retention here and, when there is one, in the
    /// shared tier. A failure there is retried by the next sweep.
    pub(super) async fn sweep(&self) {
        let Some(cutoff) = self.proxy.sweep_watermarks(self.clock.now()) else {
            return;
        };
        if let Some(purges) = &self.purges {
            match purges.sweep(cutoff).await {
                Ok(0) => {}
                Ok(dropped) => tracing::debug!(dropped, "old shared purge watermarks forgotten"),
                Err(error) => tracing::debug!(%error, "shared watermark sweep failed"),
            }
        }
    }
}

impl AdminBackend for Backend {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<(), ReloadRejected>> + Send + '_>> {
        Box::pin(async move { self.reload_now() })
    }

    fn purge(
        &self,
        request: PurgeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<u64, PurgeRejected>> + Send + '_>> {
        Box::pin(async move {
            let selectors = self.proxy.resolve_purge(&request.target).map_err(|error| {
                PurgeRejected::Invalid {
                    field: error.field,
                    message: error.message,
                }
            })?;
            // Purges are what make the maps grow: trim them first.
            self.sweep().await;
            let now = self.clock.now();
            let kind = request.target.kind();
            let Some(purges) = &self.purges else {
                self.proxy.metrics().purge(kind);
                return Ok(self.proxy.purge_locally(&selectors, request.soft, now));
            };
            // Counted once applied here, whether or not the shared tier recorded it.
            let result = purges.purge(&selectors, request.soft, now).await;
            self.proxy.metrics().purge(kind);
            match result {
                Ok(seq) => Ok(seq),
                Err(error) => {
                    tracing::warn!(%error, kind, "purge not recorded in the shared tier; applied here only");
                    self.proxy.purge_local_only(&selectors, request.soft, now);
                    Err(PurgeRejected::SharedUnavailable)
                }
            }
        })
    }

    fn readiness(&self) -> Readiness {
        let (shared_tier, breaker) = match &self.redis {
            None => ("none", "none"),
            Some(_) => (
                if self.shared_up() { "up" } else { "down" },
                self.stats.breaker_state().as_str(),
            ),
        };
        Readiness {
            ready: !self.draining.load(Ordering::Acquire),
            shared_tier,
            breaker,
        }
    }

    fn metrics(&self) -> Pin<Box<dyn Future<Output = String> + Send + '_>> {
        Box::pin(async move {
            let mut scrape = self.proxy.scrape().await;
            scrape.shared = self.redis.as_ref().map(|_| {
                let stats = &self.stats;
                let total =
                    |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
                SharedScrape {
                    up: self.shared_up(),
                    breaker: match stats.breaker_state() {
                        BreakerState::Closed => BREAKER_CLOSED,
                        BreakerState::HalfOpen => BREAKER_HALF_OPEN,
                        BreakerState::Open => BREAKER_OPEN,
                    },
                    get_hits: total(&stats.l2_hits),
                    get_misses: total(&stats.l2_misses),
                    errors: total(&stats.l2_errors),
                    skipped: total(&stats.l2_skipped),
                    writes_dropped: total(&stats.dropped_writes),
                    corrupt_blobs: total(&stats.corrupt_blobs),
                    epoch_clears: total(&stats.epoch_clears),
                    get_micros: total(&stats.l2_get_micros),
                    gets_timed: total(&stats.l2_gets_timed),
                }
            });
            self.proxy.metrics().render(&scrape)
        })
    }
}

impl Backend {
    /// Whether requests use the shared tier: reachable, its breaker closed, and this instance
    /// in sync with its purges (false without one).
    fn shared_up(&self) -> bool {
        self.redis.as_ref().is_some_and(|redis| {
            redis.is_up()
                && self.stats.breaker_state() == BreakerState::Closed
                && self.purges.as_ref().is_none_or(|p| p.is_synced())
        })
    }
}
