//! [`Leases`]: one fill per key across instances sharing Redis.
//!
//! The instance that wins `SET <key>:lease <token> NX PX <ttl>` fills; it writes the entry to
//! Redis *before* it publishes the outcome on the fills channel, then releases the lease with a
//! compare-and-delete script (a lease that outlived its holder expires by itself). An instance
//! that lost the race registers for the key's outcome first and only then re-reads the shared
//! tier, so a publish in between cannot be missed. One subscription per instance carries every
//! outcome; none of this costs a memory hit anything.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::cache::CacheKey;
use crate::tiers::{PubSub, PubSubEvent, RedisTier, TierError};

/// How a fill ended, as published to other instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// Stored in the shared tier: read it from there.
    Stored,
    /// Not storable: fill yourself.
    NotStorable,
    /// The origin failed.
    Failed,
}

impl LeaseOutcome {
    fn code(self) -> char {
        match self {
            Self::Stored => 'S',
            Self::NotStorable => 'N',
            Self::Failed => 'F',
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        match code {
            "S" => Some(Self::Stored),
            "N" => Some(Self::NotStorable),
            "F" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A held lease: released (or left to expire) by [`Leases::complete`].
#[derive(Debug)]
pub struct Lease {
    key: CacheKey,
    token: String,
}

/// Waiting for another instance's fill of one key.
#[derive(Debug)]
pub struct Registration {
    receiver: watch::Receiver<Option<LeaseOutcome>>,
}

impl Registration {
    /// The outcome, or `None` when `patience` ran out first.
    pub async fn wait(mut self, patience: Duration) -> Option<LeaseOutcome> {
        let done = self.receiver.wait_for(Option::is_some);
        match tokio::time::timeout(patience, done).await {
            Ok(Ok(outcome)) => *outcome,
            Ok(Err(_)) | Err(_) => None,
        }
    }
}

/// Compare-and-delete: only the holder's token releases the lease.
const RELEASE: &str =
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// A test seam: runs between losing the lease race and registering for its outcome, so tests
/// can force a completion into exactly that window.
#[derive(Clone)]
pub struct LeaseHook(pub Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for LeaseHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeaseHook(..)")
    }
}

/// Cross-instance leases over the shared tier.
pub struct Leases {
    hook: Option<LeaseHook>,
    redis: RedisTier,
    /// Kept so that the subscription lives as long as the leases.
    _pubsub: PubSub,
    channel: String,
    release: redis::Script,
    // A std mutex: held for a map operation, never across an await.
    waiting: Mutex<HashMap<CacheKey, watch::Sender<Option<LeaseOutcome>>>>,
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// The fills channel's name, under the deployment's key prefix.
    pub fn channel_name(redis: &RedisTier) -> String {
        redis.channel("fills")
    }

    /// Leases over `redis`, hearing outcomes through `pubsub` (subscribed to
    /// [`Leases::channel_name`]).
    pub fn new(redis: RedisTier, pubsub: PubSub, hook: Option<LeaseHook>) -> Arc<Self> {
        let events = pubsub.events();
        let leases = Arc::new(Self {
            hook,
            _pubsub: pubsub,
            channel: Self::channel_name(&redis),
            redis,
            release: redis::Script::new(RELEASE),
            waiting: Mutex::new(HashMap::new()),
        });
        tokio::spawn(dispatch(Arc::downgrade(&leases), events));
        leases
    }

    fn lease_key(&self, key: &CacheKey) -> String {
        format!("{}:lease", self.redis.entry_key(key))
    }

    /// Takes the lease on `key` for `ttl`; `None` when another instance holds it.
    ///
    /// # Errors
    /// The shared tier's failure: fill without a lease.
    pub async fn acquire(&self, key: &CacheKey, ttl: Duration) -> Result<Option<Lease>, TierError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.lease_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let set: Option<String> = self.redis.call(&cmd).await?;
        Ok(set.map(|_| Lease { key: *key, token }))
    }

    /// Registers for the outcome of `key`'s fill elsewhere. Register *before* re-reading the
    /// shared tier.
    pub fn register(&self, key: &CacheKey) -> Registration {
        if let Some(hook) = &self.hook {
            (hook.0)();
        }
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let sender = waiting
            .entry(*key)
            .or_insert_with(|| watch::Sender::new(None));
        Registration {
            receiver: sender.subscribe(),
        }
    }

    /// Releases the lease of a fill and publishes its outcome. Call after a stored entry was
    /// written to the shared tier. Released first: a waiter that registers and then finds the
    /// lease gone knows the outcome may have been published before it listened.
    pub async fn complete(&self, lease: Lease, outcome: LeaseOutcome) {
        let lease_key = self.lease_key(&lease.key);
        let released: Result<i64, _> = self
            .redis
            .eval(&self.release, &[&lease_key], &[&lease.token])
            .await;
        if let Err(error) = released {
            tracing::debug!(key = %lease.key, %error, "lease not released; it expires by itself");
        }
        let message = format!("{} {}", lease.key, outcome.code());
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.channel).arg(message);
        if let Err(error) = self.redis.call::<i64>(&publish).await {
            tracing::debug!(key = %lease.key, %error, "fill outcome not published; waiters time out");
        }
    }

    fn deliver(&self, key: CacheKey, outcome: LeaseOutcome) {
        let sender = self
            .waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        if let Some(sender) = sender {
            sender.send_replace(Some(outcome));
        }
    }

    /// Drops registrations nobody waits on any more (their waiters timed out).
    fn sweep(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, sender| sender.receiver_count() > 0);
    }
}

/// Routes fill outcomes from the subscription to registered waiters.
async fn dispatch(leases: std::sync::Weak<Leases>, mut events: broadcast::Receiver<PubSubEvent>) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(leases) = leases.upgrade() else {
            return;
        };
        match event {
            PubSubEvent::Message { channel, payload } if channel == leases.channel => {
                if let Some((key, outcome)) = parse(&payload) {
                    leases.deliver(key, outcome);
                }
            }
            PubSubEvent::Subscribed | PubSubEvent::Lost => leases.sweep(),
            PubSubEvent::Message { .. } | PubSubEvent::Failed { .. } => {}
        }
    }
}

/// `<hex key> <outcome code>`; anything else is ignored.
fn parse(payload: &[u8]) -> Option<(CacheKey, LeaseOutcome)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (hex, code) = text.split_once(' ')?;
    let key = CacheKey::from_hex(hex)?;
    Some((key, LeaseOutcome::from_code(code)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::Fingerprint;

    #[test]
    fn messages_round_trip_and_garbage_is_ignored() {
        let key = CacheKey(Fingerprint([7; 32]));
        let message = format!("{key} {}", LeaseOutcome::Stored.code());
        assert_eq!(parse(message.as_bytes()), Some((key, LeaseOutcome::Stored)));
        assert_eq!(parse(b"zz S"), None);
        assert_eq!(parse(format!("{key} X").as_bytes()), None);
        assert_eq!(parse(b""), None);
    }
}
