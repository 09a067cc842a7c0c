//! The shared tier: Redis, a single node or a Cluster. This is the only module that opens Redis
//! connections; leases and purge sync get a [`RedisConnection`] handle from [`RedisTier`].
//!
//! Entries live under `<key_prefix><hex cache key>` as [`codec`] blobs with a Redis expiry of
//! their keep time. Control keys share one hash slot, `{<key_prefix>ctl}:...`, so scripts over
//! them run on one node of a Cluster. Every call has a deadline of `op_timeout`.
//!
//! The epoch key (`{<key_prefix>ctl}:epoch`, a random id set with `NX`, no TTL) tells whether
//! Redis kept its data: a background task re-reads it about once a second, and when it changes
//! (restart without persistence, flush, failover to an empty replica) the tier publishes the new
//! epoch on a `watch` channel so the memory tier can be cleared. Blobs of another epoch are
//! misses.
//!
//! Redis being down never fails construction: a node connection manager reconnects by itself,
//! and the first Cluster connection is retried by the background task.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

mod connection;
mod pubsub;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use tokio::sync::watch;

pub use connection::RedisConnection;
use connection::{query, unavailable};
pub use pubsub::{PubSub, PubSubEvent};

use super::{Tier, TierError};
use crate::cache::codec::{self, Epoch};
use crate::cache::{CacheKey, Entry};
use crate::config::{RedisConfig, RedisTarget};

/// How often the epoch is re-read: a lost data set is noticed within about a second.
const EPOCH_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Deadline of one connection attempt: longer than `op_timeout`, since a TLS or Cluster
/// handshake does more than one round trip, but short enough that a retry comes soon.
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest decompressed payload accepted, as a multiple of `max_object_bytes` (headers and tags
/// come on top of the body), plus a fixed allowance.
const PAYLOAD_LIMIT_FACTOR: usize = 2;
const PAYLOAD_LIMIT_EXTRA: usize = 1 << 20;
/// Longest expiry sent (about 100 years): Redis refuses one that overflows its clock.
const MAX_EXPIRY_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

enum Backend {
    /// `pool_size` multiplexed connections, used round-robin so one slow reply does not hold
    /// up every other command behind it.
    Node {
        pool: Box<[ConnectionManager]>,
        next: AtomicUsize,
    },
    /// Connected by the background task; `None` until the first connection succeeds. A std
    /// lock: held for a clone, never across an await.
    Cluster {
        client: Box<ClusterClient>,
        conn: RwLock<Option<ClusterConnection>>,
    },
}

struct Inner {
    backend: Backend,
    /// The node URLs, for the dedicated subscription connection.
    urls: Vec<String>,
    key_prefix: String,
    epoch_key: String,
    op_timeout: Duration,
    connect_timeout: Duration,
    compress_min_bytes: usize,
    max_payload_bytes: usize,
    epoch: watch::Sender<Option<Epoch>>,
    up: AtomicBool,
}

/// The Redis tier. Cloning shares the connections; the background task stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct RedisTier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("RedisTier")
            .field("key_prefix", &self.inner.key_prefix)
            .field("up", &self.is_up())
            .field("epoch", &self.epoch())
            .finish()
    }
}

impl RedisTier {
    /// Builds the tier and makes one connection attempt; Redis being unreachable is not an
    /// error (the tier starts down and connects by itself). `max_object_bytes` bounds the size
    /// of a decoded blob. Must be called within a Tokio runtime.
    ///
    /// # Errors
    /// [`TierError::Unavailable`] when a configured URL is not a valid Redis URL.
    pub async fn connect(config: &RedisConfig, max_object_bytes: u64) -> Result<Self, TierError> {
        let connect_timeout = config.op_timeout.max(MIN_CONNECT_TIMEOUT);
        let backend = match &config.target {
            RedisTarget::Node(url) => {
                let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    // Our own deadline bounds every call; the connection needs none.
                    .set_response_timeout(None)
                    // Give up a reconnection quickly: the next call starts another one.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_secs(1));
                let pool = (0..config.pool_size.max(1))
                    .map(|_| {
                        ConnectionManager::new_lazy_with_config(
                            client.clone(),
                            manager_config.clone(),
                        )
                    })
                    .collect::<Result<Box<[_]>, _>>()
                    .map_err(unavailable)?;
                Backend::Node {
                    pool,
                    next: AtomicUsize::new(0),
                }
            }
            RedisTarget::Cluster(urls) => {
                let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                    .connection_timeout(connect_timeout)
                    .build()
                    .map_err(unavailable)?;
                Backend::Cluster {
                    client: Box::new(client),
                    conn: RwLock::new(None),
                }
            }
        };
        let max_object = usize::try_from(max_object_bytes).unwrap_or(usize::MAX);
        let urls = match &config.target {
            RedisTarget::Node(url) => vec![url.clone()],
            RedisTarget::Cluster(urls) => urls.clone(),
        };
        let inner = Arc::new(Inner {
            backend,
            urls,
            epoch_key: format!("{{{}ctl}}:epoch", config.key_prefix),
            key_prefix: config.key_prefix.clone(),
            op_timeout: config.op_timeout,
            connect_timeout,
            compress_min_bytes: config.compress_min_bytes,
            max_payload_bytes: max_object
                .saturating_mul(PAYLOAD_LIMIT_FACTOR)
                .saturating_add(PAYLOAD_LIMIT_EXTRA),
            epoch: watch::Sender::new(None),
            up: AtomicBool::new(false),
        });
        inner.maintain_once().await;
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    /// Whether the last call reached Redis and the epoch is known.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Relaxed) && self.epoch().is_some()
    }

    /// The epoch entries are read and written under; `None` until Redis was first reached.
    pub fn epoch(&self) -> Option<Epoch> {
        *self.inner.epoch.borrow()
    }

    /// Notified on every epoch change. A change from one `Some` to another means Redis lost its
    /// data: clear what was cached from it.
    pub fn epoch_changes(&self) -> watch::Receiver<Option<Epoch>> {
        self.inner.epoch.subscribe()
    }

    /// The Redis key of a cache entry.
    pub fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}{key}", self.inner.key_prefix)
    }

    /// A control key (`{<key_prefix>ctl}:<name>`): all of them live in one hash slot.
    pub fn control_key(&self, name: &str) -> String {
        format!("{{{}ctl}}:{name}", self.inner.key_prefix)
    }

    /// The deadline every call to Redis gets.
    pub fn op_timeout(&self) -> Duration {
        self.inner.op_timeout
    }

    /// Starts this instance's subscription to `channels` (see [`PubSub`]). Call once.
    pub fn subscribe(&self, channels: Vec<String>) -> PubSub {
        PubSub::start(
            self.inner.urls.clone(),
            channels,
            self.inner.connect_timeout,
        )
    }

    /// The name of a pub/sub channel of this deployment (`<key_prefix><name>`).
    pub fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.inner.key_prefix)
    }

    /// Runs one command with the call deadline.
    ///
    /// # Errors
    /// The [`TierError`] of the call: a connection fault or a command error.
    pub async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, TierError> {
        let inner = &self.inner;
        inner
            .run(async {
                let mut conn = inner.connection()?;
                query(cmd, &mut conn).await
            })
            .await
    }

    /// Runs a Lua script with the call deadline (`EVALSHA`, loading it when Redis lacks it).
    ///
    /// # Errors
    /// The [`TierError`] of the call.
    pub async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, TierError> {
        let inner = &self.inner;
        inner
            .run(async {
                let mut conn = inner.connection()?;
                connection::invoke(script, keys, args, &mut conn).await
            })
            .await
    }

    /// Runs a write script that answers `{value, replicas}` (`replicas`: the node's
    /// `connected_slaves`), then, when the node has replicas, `WAIT`s on the same connection for
    /// them to acknowledge it, each step with the call deadline (the wait itself is bounded by
    /// half of it). `keys[0]` names the node. A failed or short wait is logged, not an error:
    /// the primary holds the write and has published it.
    ///
    /// # Errors
    /// The [`TierError`] of the script call.
    pub async fn eval_replicated(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<u64, TierError> {
        let inner = &self.inner;
        let mut conn = inner.connection()?;
        let (value, replicas): (u64, u64) = inner
            .run(connection::invoke(script, keys, args, &mut conn))
            .await?;
        if replicas == 0 {
            return Ok(value);
        }
        let key = keys.first().copied().unwrap_or_default();
        let wait = connection::wait_for_replicas(&mut conn, key, replicas, inner.op_timeout / 2);
        match inner.run(wait).await {
            Ok(acked) if acked >= replicas => {}
            Ok(acked) => tracing::warn!(replicas, acked, "not every replica acknowledged a write"),
            Err(error) => tracing::warn!(%error, replicas, "waiting for replicas failed"),
        }
        Ok(value)
    }

    /// A connection handle, for leases and purge sync.
    ///
    /// # Errors
    /// [`TierError::Unavailable`] while a Cluster was never reached.
    pub(crate) fn connection(&self) -> Result<RedisConnection, TierError> {
        self.inner.connection()
    }
}

impl Inner {
    fn connection(&self) -> Result<RedisConnection, TierError> {
        match &self.backend {
            Backend::Node { pool, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % pool.len();
                Ok(RedisConnection::Node(pool[i].clone()))
            }
            Backend::Cluster { conn, .. } => conn
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .map(RedisConnection::Cluster)
                .ok_or_else(|| unavailable("redis cluster not connected yet")),
        }
    }

    /// Runs `op` with the call deadline and records whether Redis was reachable.
    async fn run<T>(&self, op: impl Future<Output = Result<T, TierError>>) -> Result<T, TierError> {
        let result = match tokio::time::timeout(self.op_timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(TierError::Timeout),
        };
        let reached = !matches!(&result, Err(error) if error.is_connection_fault());
        self.up.store(reached, Ordering::Relaxed);
        result
    }

    /// The current epoch, reading (or creating) it first when it is not known yet.
    async fn current_epoch(&self) -> Result<Epoch, TierError> {
        if let Some(epoch) = *self.epoch.borrow() {
            return Ok(epoch);
        }
        self.run(self.refresh_epoch()).await
    }

    /// Reads the epoch key, creating it with `NX` when Redis has none (first start, or it
    /// lost its data), and publishes a change.
    async fn refresh_epoch(&self) -> Result<Epoch, TierError> {
        let mut conn = self.connection()?;
        let key = self.epoch_key.as_str();
        let mut value: Option<String> = query(redis::cmd("GET").arg(key), &mut conn).await?;
        if value.is_none() {
            let fresh = Epoch(rand::random()).to_string();
            let _: Option<String> =
                query(redis::cmd("SET").arg(key).arg(&fresh).arg("NX"), &mut conn).await?;
            // Another instance may have won the race: everyone adopts what Redis holds.
            value = query(redis::cmd("GET").arg(key), &mut conn).await?;
        }
        let epoch = value
            .as_deref()
            .and_then(Epoch::from_hex)
            .ok_or_else(|| TierError::Command("epoch key holds no valid epoch".into()))?;
        self.epoch.send_if_modified(|current| match *current {
            Some(old) if old == epoch => false,
            Some(old) => {
                tracing::warn!(%old, new = %epoch, "shared tier epoch changed; it lost its data");
                *current = Some(epoch);
                true
            }
            None => {
                tracing::info!(%epoch, "shared tier reached");
                *current = Some(epoch);
                true
            }
        });
        Ok(epoch)
    }

    /// One round of upkeep: connect a Cluster that was never reached, then re-read the epoch.
    async fn maintain_once(&self) {
        if let Backend::Cluster { client, conn } = &self.backend {
            let connected = conn
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some();
            if !connected {
                match tokio::time::timeout(self.connect_timeout, client.get_async_connection())
                    .await
                {
                    Ok(Ok(connection)) => {
                        *conn
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(connection);
                    }
                    Ok(Err(error)) => tracing::debug!(%error, "redis cluster not reachable yet"),
                    Err(_) => tracing::debug!("redis cluster connection attempt timed out"),
                }
            }
        }
        if let Err(error) = self.run(self.refresh_epoch()).await {
            tracing::debug!(%error, "shared tier epoch check failed");
        }
    }

    /// Deletes `blob` at `redis_key` unless it was replaced meanwhile: the fill that follows a
    /// corrupt read may already have written a good blob there.
    fn spawn_delete(self: &Arc<Self>, redis_key: String, blob: Vec<u8>) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let script = redis::Script::new(DELETE_IF_UNCHANGED);
            let deleted = inner
                .run(async {
                    let mut conn = inner.connection()?;
                    let mut invocation = script.key(&redis_key);
                    invocation.arg(blob.as_slice());
                    invocation
                        .invoke_async::<i64>(&mut conn)
                        .await
                        .map_err(connection::classify)
                })
                .await;
            if let Err(error) = deleted {
                tracing::debug!(%error, "deleting a corrupt blob failed");
            }
        });
    }
}

/// Compare-and-delete of a corrupt blob.
const DELETE_IF_UNCHANGED: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// The background task: upkeep about once a second, until the tier is dropped.
async fn maintain(inner: Weak<Inner>) {
    let mut ticks = tokio::time::interval(EPOCH_POLL_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // The first tick is immediate; `connect` just did a round.
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.maintain_once().await;
    }
}

impl Tier for RedisTier {
    async fn get(&self, key: &CacheKey) -> Result<Option<Arc<Entry>>, TierError> {
        let inner = &self.inner;
        let epoch = inner.current_epoch().await?;
        let redis_key = self.entry_key(key);
        let blob: Option<Vec<u8>> = inner
            .run(async {
                let mut conn = self.connection()?;
                query(redis::cmd("GET").arg(&redis_key), &mut conn).await
            })
            .await?;
        let Some(blob) = blob else { return Ok(None) };
        match codec::decode(&blob, inner.max_payload_bytes) {
            Ok((blob_epoch, entry)) if blob_epoch == epoch => Ok(Some(Arc::new(entry))),
            Ok((blob_epoch, _)) => {
                tracing::debug!(%key, %blob_epoch, "shared tier entry of another epoch; a miss");
                Ok(None)
            }
            Err(error) if !error.should_delete() => {
                tracing::debug!(%key, %error, "shared tier entry from a newer version; a miss");
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(%key, %error, bytes = blob.len(), "corrupt blob in the shared tier; deleting it");
                inner.spawn_delete(redis_key, blob);
                Err(TierError::Corrupt(error))
            }
        }
    }

    async fn put(&self, key: &CacheKey, entry: Arc<Entry>, ttl: Duration) -> Result<(), TierError> {
        let millis =
            u64::try_from(ttl.as_millis()).map_or(MAX_EXPIRY_MS, |ms| ms.min(MAX_EXPIRY_MS));
        if millis == 0 {
            return Ok(());
        }
        let inner = &self.inner;
        let epoch = inner.current_epoch().await?;
        // Encoded before the deadline starts: compression is CPU, not Redis latency.
        let blob = codec::encode(&entry, epoch, inner.compress_min_bytes);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.entry_key(key)).arg(blob).arg("PX").arg(millis);
        inner
            .run(async {
                let mut conn = self.connection()?;
                query::<()>(&cmd, &mut conn).await
            })
            .await
    }

    async fn remove(&self, key: &CacheKey) -> Result<(), TierError> {
        let inner = &self.inner;
        let redis_key = self.entry_key(key);
        inner
            .run(async {
                let mut conn = self.connection()?;
                query::<i64>(redis::cmd("DEL").arg(&redis_key), &mut conn).await
            })
            .await
            .map(drop)
    }
}
