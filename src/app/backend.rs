//! The admin API's backend: purges resolved by the proxy and recorded through the shared tier
//! (or on this instance alone without one), and readiness from the tiers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::admin::{AdminBackend, PurgeRejected, Readiness};
use crate::clock::Clock;
use crate::proxy::ProxyService;
use crate::purge::{PurgeRequest, SharedPurges};
use crate::tiers::{RedisTier, TierStats};

/// What `/purge` and `/readyz` act on.
pub(super) struct Backend {
    pub(super) proxy: ProxyService,
    pub(super) purges: Option<Arc<SharedPurges>>,
    pub(super) redis: Option<RedisTier>,
    pub(super) stats: Arc<TierStats>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) draining: Arc<AtomicBool>,
}

impl AdminBackend for Backend {
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
            let now = self.clock.now();
            let Some(purges) = &self.purges else {
                return Ok(self.proxy.purge_locally(&selectors, request.soft, now));
            };
            match purges.purge(&selectors, request.soft, now).await {
                Ok(seq) => Ok(seq),
                Err(error) => {
                    tracing::warn!(%error, kind = request.target.kind(), "purge not recorded in the shared tier; applied here only");
                    self.proxy.purge_local_only(&selectors, request.soft, now);
                    Err(PurgeRejected::SharedUnavailable)
                }
            }
        })
    }

    fn readiness(&self) -> Readiness {
        let (shared_tier, breaker) = match &self.redis {
            None => ("none", "none"),
            Some(redis) => {
                let up = redis.is_up() && self.purges.as_ref().is_none_or(|p| p.is_synced());
                (
                    if up { "up" } else { "down" },
                    self.stats.breaker_state().as_str(),
                )
            }
        };
        Readiness {
            ready: !self.draining.load(Ordering::Acquire),
            shared_tier,
            breaker,
        }
    }
}
