//! Purges against replicated Redis deployments (DESIGN.md "Never backwards, never
//! resurrected"): the purge script is followed by a `WAIT` for the control node's replicas, so
//! a failover to a replica does not lose a purge that was answered 200; and a subscription is
//! only called up once a message arrives on it, since `SUBSCRIBE` takes an error reply (an ACL
//! `NOPERM`) for success.

mod support;

use std::time::Duration;

use cachet::tiers::{PubSub, PubSubEvent};
use redis::Commands;
use support::admin::{Admin, body_json};
use support::proxy::{one_route_shared, redis_cluster, redis_url};
use support::redis::{RedisCluster, RedisServer};
use support::shared::eventually;
use support::{Origin, Proxy, Reply};

const WITHIN: Duration = Duration::from_secs(10);
const MARKS_KEY: &str = "{cachet:ctl}:marks";
const CHANNEL: &str = "cachet:purges";

/// `WAIT` calls a node has served, from `INFO commandstats`.
fn wait_calls(node: &RedisServer) -> u64 {
    let stats = node.cli(&["INFO", "commandstats"], None);
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_wait:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

async fn await_synced(proxy: &Proxy) {
    let admin = Admin::new(proxy.admin);
    let synced = eventually(WITHIN, async || {
        body_json(&admin.get("/readyz").await)["shared_tier"] == "up"
    })
    .await;
    assert!(synced, "the instance never synced with the shared tier");
}

async fn purge_once(proxy: &Proxy) {
    Admin::new(proxy.admin)
        .purge_ok(r#"{"tags": ["item:1"]}"#)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_waits_until_the_replica_holds_it() {
    let master = RedisServer::start();
    let port = master.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port], false);
    let linked = eventually(WITHIN, async || {
        replica
            .info(&["INFO", "replication"])
            .is_some_and(|info| info.contains("master_link_status:up"))
    })
    .await;
    assert!(linked, "the replica never linked to its master");
    let origin = Origin::fixed(Reply::ok("x").cache_control("max-age=60")).await;
    let config = one_route_shared(&origin.url(), &redis_url(&master.url()), "");
    let proxy = Proxy::start(&config).await;
    await_synced(&proxy).await;

    purge_once(&proxy).await;

    // The 200 came after the replica acknowledged: it holds the watermark already.
    assert_eq!(wait_calls(&master), 1, "one WAIT after the purge script");
    let on_replica: usize = replica
        .client()
        .hlen(MARKS_KEY)
        .expect("HLEN on the replica");
    assert_eq!(on_replica, 1, "the replica holds the purge's watermark");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_a_purge_does_not_wait() {
    let redis = RedisServer::start();
    let origin = Origin::fixed(Reply::ok("x").cache_control("max-age=60")).await;
    let config = one_route_shared(&origin.url(), &redis_url(&redis.url()), "");
    let proxy = Proxy::start(&config).await;
    await_synced(&proxy).await;

    purge_once(&proxy).await;

    assert_eq!(wait_calls(&redis), 0);
    proxy.shutdown().await;
}

/// A Cluster routes a keyless `WAIT` to every primary; it must go to the control slot's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_purge_waits_on_the_control_slots_primary_only() {
    let mut cluster = RedisCluster::start();
    let origin = Origin::fixed(Reply::ok("x").cache_control("max-age=60")).await;
    let config = one_route_shared(&origin.url(), &redis_cluster(&cluster.urls()), "");
    let proxy = Proxy::start(&config).await;
    await_synced(&proxy).await;

    purge_once(&proxy).await;

    let calls: Vec<u64> = cluster.masters().iter().map(|m| wait_calls(m)).collect();
    assert_eq!(
        calls.iter().sum::<u64>(),
        1,
        "WAIT calls per primary: {calls:?}"
    );
    proxy.shutdown().await;
}

/// The first event of a subscription attempt: `Subscribed` or `Failed`.
async fn first_outcome(pubsub: &PubSub) -> PubSubEvent {
    let mut events = pubsub.events();
    tokio::time::timeout(WITHIN, async {
        loop {
            match events.recv().await.expect("the subscription task runs") {
                PubSubEvent::Message { .. } | PubSubEvent::Lost => {}
                outcome => return outcome,
            }
        }
    })
    .await
    .expect("an outcome within the bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_refused_by_an_acl_is_not_reported_up() {
    let redis = RedisServer::start();
    // Every key and command, but no pub/sub channel.
    redis.cli(
        &[
            "ACL",
            "SETUSER",
            "cachet",
            "on",
            ">pw",
            "~*",
            "+@all",
            "resetchannels",
        ],
        None,
    );
    let url = format!("redis://cachet:pw@127.0.0.1:{}/0", redis.port());
    let pubsub = PubSub::start(vec![url], vec![CHANNEL.to_owned()], Duration::from_secs(2));

    match first_outcome(&pubsub).await {
        PubSubEvent::Failed { error } => {
            assert!(error.to_lowercase().contains("noperm"), "{error}");
        }
        other => panic!("expected a failed subscription, got {other:?}"),
    }
    assert!(!pubsub.is_subscribed());

    // Granted the channel, the retry succeeds.
    redis.cli(&["ACL", "SETUSER", "cachet", "&cachet:*"], None);
    let subscribed = eventually(WITHIN, async || pubsub.is_subscribed()).await;
    assert!(subscribed, "the subscription never came up once allowed");
}
