//! Storage tiers behind one seam, the [`Tier`] trait: the in-process memory tier (L1), the
//! shared Redis tier (L2), and [`Tiered`], which puts them together with promotion and a
//! circuit breaker so that tier errors stop there.

pub mod breaker;
mod memory;
pub mod redis;
pub mod tiered;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use self::redis::{PubSub, PubSubEvent, RedisConnection, RedisTier};
pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use memory::MemoryTier;
pub use tiered::{Source, TierStats, Tiered, TieredOptions};

/// The tiers the proxy runs on: memory in front of Redis (when configured).
pub type Tiers = Tiered<MemoryTier, RedisTier>;

use crate::cache::{CacheKey, CodecError, Entry};

/// A failure of a storage tier. It never reaches a client: the caller counts it and answers
/// a miss.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The call did not finish within its deadline.
    #[error("tier operation timed out")]
    Timeout,
    /// The tier could not be reached (refused, dropped, not connected yet, cluster down).
    #[error("tier unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The tier answered with an error: it is reachable, the command failed.
    #[error("tier command failed")]
    Command(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The stored blob could not be decoded; it has been scheduled for deletion.
    #[error("stored entry is corrupt")]
    Corrupt(#[source] CodecError),
}

impl TierError {
    /// Whether this is a connection fault (timeout or unreachable), the only kind a circuit
    /// breaker counts.
    pub fn is_connection_fault(&self) -> bool {
        matches!(self, Self::Timeout | Self::Unavailable(_))
    }
}

/// Where entries live.
pub trait Tier: Send + Sync + 'static {
    /// The entry stored under `key`, if any.
    fn get(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<Arc<Entry>>, TierError>> + Send;
    /// Stores `entry` under `key` for at most `ttl`.
    fn put(
        &self,
        key: &CacheKey,
        entry: Arc<Entry>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), TierError>> + Send;
    /// Forgets `key`.
    fn remove(&self, key: &CacheKey) -> impl Future<Output = Result<(), TierError>> + Send;
    /// Forgets every entry this process holds in the tier, when the shared tier lost its data.
    /// A tier shared with other instances keeps the default, which does nothing: its
    /// entries of an old epoch are misses already.
    fn clear(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
