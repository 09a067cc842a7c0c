//! [`PubSub`]: the one pub/sub subscription of an instance. A background task keeps a
//! dedicated connection subscribed to Cachet's channels, reconnecting (to the next node of a
//! Cluster) whenever it drops, and fans every message out to in-process listeners.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

/// What the subscription reports.
#[derive(Debug, Clone)]
pub enum PubSubEvent {
    /// (Re)subscribed: messages published from now on arrive. Anything published while the
    /// subscription was down was missed: listeners resynchronise.
    Subscribed,
    /// The subscription dropped.
    Lost,
    /// An attempt to (re)subscribe failed; another follows after a backoff.
    Failed { error: String },
    /// A message on one of the channels.
    Message { channel: String, payload: Vec<u8> },
}

/// Messages buffered per listener; a listener that falls further behind sees `Lagged` and
/// must resynchronise, as after a lost subscription.
const EVENT_BUFFER: usize = 4096;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Handle to the subscription task; the task stops when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct PubSub {
    events: broadcast::Sender<PubSubEvent>,
    subscribed: watch::Receiver<bool>,
}

impl PubSub {
    /// Starts subscribing to `channels` through the nodes at `urls` (tried in turn).
    pub fn start(urls: Vec<String>, channels: Vec<String>, connect_timeout: Duration) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (state, subscribed) = watch::channel(false);
        tokio::spawn(run(urls, channels, connect_timeout, events.clone(), state));
        Self { events, subscribed }
    }

    /// A new listener: it receives events from now on.
    pub fn events(&self) -> broadcast::Receiver<PubSubEvent> {
        self.events.subscribe()
    }

    /// Whether the subscription is up now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }
}

async fn run(
    urls: Vec<String>,
    channels: Vec<String>,
    connect_timeout: Duration,
    events: broadcast::Sender<PubSubEvent>,
    state: watch::Sender<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    // Warn once per outage, not on every retry.
    let mut warned = false;
    for url in urls.iter().cycle() {
        // Every handle dropped: nobody listens any more.
        if state.is_closed() {
            return;
        }
        match subscribe(url, &channels, connect_timeout).await {
            Ok(pubsub) => {
                backoff = MIN_BACKOFF;
                warned = false;
                state.send_replace(true);
                let _ = events.send(PubSubEvent::Subscribed);
                tracing::debug!("shared tier subscription up");
                let mut messages = pubsub.into_on_message();
                loop {
                    tokio::select! {
                        message = messages.next() => match message {
                            Some(message) => {
                                let channel = message.get_channel_name().to_owned();
                                let payload = message.get_payload_bytes().to_vec();
                                let _ = events.send(PubSubEvent::Message { channel, payload });
                            }
                            None => break,
                        },
                        () = state.closed() => return,
                    }
                }
                state.send_replace(false);
                let _ = events.send(PubSubEvent::Lost);
                tracing::warn!("shared tier subscription lost; reconnecting");
            }
            Err(error) => {
                if warned {
                    tracing::debug!(%error, "shared tier subscription failed");
                } else {
                    tracing::warn!(%error, "shared tier subscription failed; retrying");
                    warned = true;
                }
                let _ = events.send(PubSubEvent::Failed {
                    error: error.to_string(),
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = state.closed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn subscribe(
    url: &str,
    channels: &[String],
    connect_timeout: Duration,
) -> Result<redis::aio::PubSub, redis::RedisError> {
    let attempt = async {
        let client = redis::Client::open(url)?;
        let mut pubsub = client.get_async_pubsub().await?;
        for channel in channels {
            pubsub.subscribe(channel).await?;
        }
        confirm(&client, &mut pubsub, channels).await?;
        Ok(pubsub)
    };
    match tokio::time::timeout(connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "subscription not confirmed in time",
        ))),
    }
}

/// Publishes a probe on every channel and waits for each to come back. `SUBSCRIBE` takes an
/// error reply (an ACL `NOPERM`, say) for success, so only a message that arrives proves the
/// subscription; other listeners of the channels ignore the probe.
async fn confirm(
    client: &redis::Client,
    pubsub: &mut redis::aio::PubSub,
    channels: &[String],
) -> Result<(), redis::RedisError> {
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let probe = format!("probe {:016x}", rand::random::<u64>());
    for channel in channels {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&probe)
            .query_async(&mut publisher)
            .await?;
    }
    let mut pending: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut messages = pubsub.on_message();
    while !pending.is_empty() {
        let Some(message) = messages.next().await else {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "subscription closed before it was confirmed",
            )));
        };
        if message.get_payload_bytes() == probe.as_bytes() {
            let channel = message.get_channel_name();
            pending.retain(|pending| *pending != channel);
        }
    }
    Ok(())
}
