//! [`RedisConnection`], the handle every Redis command goes through, and the sorting of Redis
//! errors into connection faults (which the breaker counts) and command errors.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind, Value};

use crate::tiers::TierError;

/// A connection handle to the shared tier, cheap to clone; commands sent through it are
/// routed to the right node. Wrap every use in a deadline.
#[derive(Clone)]
pub enum RedisConnection {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Node(_) => "RedisConnection::Node",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

pub(super) async fn query<T: redis::FromRedisValue>(
    cmd: &Cmd,
    conn: &mut RedisConnection,
) -> Result<T, TierError> {
    cmd.query_async(conn).await.map_err(classify)
}

/// Runs `script` (`EVALSHA`, loading it when Redis lacks it) with `keys` and `args` on `conn`.
pub(super) async fn invoke<T: redis::FromRedisValue>(
    script: &redis::Script,
    keys: &[&str],
    args: &[&str],
    conn: &mut RedisConnection,
) -> Result<T, TierError> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(*key);
    }
    for arg in args {
        invocation.arg(*arg);
    }
    invocation.invoke_async(conn).await.map_err(classify)
}

pub(super) fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TierError {
    TierError::Unavailable(error.into())
}

/// Sorts a Redis error into a connection fault (counted by the breaker) or a command error
/// (Redis answered).
pub(super) fn classify(error: RedisError) -> TierError {
    let connection_fault = match error.kind() {
        ErrorKind::Io
        | ErrorKind::Parse
        | ErrorKind::AuthenticationFailed
        | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        _ => error.is_connection_dropped() || error.is_connection_refusal() || error.is_timeout(),
    };
    if connection_fault {
        unavailable(error)
    } else {
        TierError::Command(error.into())
    }
}

/// `WAIT` for `replicas` replicas of the node holding `key` to acknowledge the writes made on
/// `conn` so far, for at most `timeout`. Returns how many did. It must go out on the connection
/// that wrote: a Cluster routes a keyless `WAIT` to every primary, so it is sent to `key`'s.
pub(super) async fn wait_for_replicas(
    conn: &mut RedisConnection,
    key: &str,
    replicas: u64,
    timeout: std::time::Duration,
) -> Result<u64, TierError> {
    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

    let millis = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(replicas).arg(millis);
    match conn {
        RedisConnection::Node(_) => query(&cmd, conn).await,
        RedisConnection::Cluster(cluster) => {
            let route = Route::with_key(key, SlotAddr::Master);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            let value = cluster
                .route_command(cmd, routing)
                .await
                .map_err(classify)?;
            redis::from_redis_value(value).map_err(|error| TierError::Command(error.into()))
        }
    }
}
