//! Storage tiers behind one seam, the [`Tier`] trait. The memory tier is the first; the shared
//! Redis tier comes behind the same trait, so the proxy flow does not change.

mod memory;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use memory::MemoryTier;

use crate::cache::{CacheKey, Entry};

/// A failure of a storage tier. It never reaches a client: the caller counts it and answers
/// a miss.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("tier operation timed out")]
    Timeout,
    #[error("tier unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
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
}
