//! [`SharedPurges`]: purges across every instance sharing Redis.
//!
//! A purge is one Lua script on the control slot: `INCR` the counter (raised above the highest
//! sequence the caller knows, so it never goes backwards), raise each selector's watermark in
//! a hash, index it by time, and `PUBLISH` it. Every instance's one subscription applies what
//! is published. An instance is *synced* once it is subscribed and has loaded the counter and
//! every watermark in one call; only then does it read the shared tier. A lost subscription, a
//! counter that moved without a message, or a counter that went backwards (Redis lost its
//! data) puts it back to unsynced until it reloads.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use super::{Selector, SharedWatermarks, unix_ms};
use crate::clock::Clock;
use crate::tiers::{PubSub, PubSubEvent, RedisTier, TierError};

/// `KEYS`: counter, marks hash, time index. `ARGV`: highest known seq, now (ms), channel, then
/// `kind|selector` fields. Returns the purge's sequence and the node's connected replicas, which
/// the caller then `WAIT`s for (`WAIT` cannot run inside a script).
const PURGE: &str = r"
local seq = redis.call('INCR', KEYS[1])
local known = tonumber(ARGV[1])
if seq <= known then
  seq = known + 1
  redis.call('SET', KEYS[1], seq)
end
for i = 4, #ARGV do
  local field = ARGV[i]
  local current = tonumber(redis.call('HGET', KEYS[2], field) or '0')
  if seq > current then redis.call('HSET', KEYS[2], field, seq) end
  redis.call('ZADD', KEYS[3], ARGV[2], field)
  redis.call('PUBLISH', ARGV[3], seq .. ' ' .. field)
end
local info = redis.call('INFO', 'replication')
return {seq, tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0}
";

/// `KEYS`: counter, marks hash. Returns `{counter, {field, seq, ...}}` in one round trip.
const LOAD: &str = r"
return {redis.call('GET', KEYS[1]) or '0', redis.call('HGETALL', KEYS[2])}
";

/// `KEYS`: counter. `ARGV`: highest known seq. Raises a counter that went backwards.
const RAISE_COUNTER: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
if seq < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return seq
";

/// `KEYS`: marks hash, time index. `ARGV`: cutoff (ms), batch size. Forgets watermarks last
/// raised before the cutoff, oldest first, at most a batch per call; returns how many.
const SWEEP: &str = r"
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
for _, field in ipairs(old) do
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], field)
end
return #old
";

/// Watermarks one sweep call forgets at most: a backlog is worked off over several sweeps
/// instead of blocking Redis.
const SWEEP_BATCH: u64 = 1000;

/// How often the counter is polled to notice a silently stalled subscription.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Purges shared through Redis. Cheap to share as `Arc`.
#[derive(Debug)]
pub struct SharedPurges {
    redis: RedisTier,
    pubsub: PubSub,
    watermarks: SharedWatermarks,
    synced: Arc<AtomicBool>,
    channel: String,
    counter_key: String,
    marks_key: String,
    times_key: String,
    purge_script: redis::Script,
    sweep_script: redis::Script,
    load_script: redis::Script,
    raise_script: redis::Script,
    /// Times marks are raised at, for their expiry.
    clock: Arc<dyn Clock>,
}

impl SharedPurges {
    /// The purge channel's name, under the deployment's key prefix.
    pub fn channel_name(redis: &RedisTier) -> String {
        redis.channel("purges")
    }

    /// Starts syncing `watermarks` with Redis through `pubsub` (subscribed to
    /// [`SharedPurges::channel_name`]); `synced` is raised while shared-tier reads are safe.
    /// Marks are timed by `clock`.
    pub fn start(
        redis: RedisTier,
        pubsub: PubSub,
        watermarks: SharedWatermarks,
        synced: Arc<AtomicBool>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        synced.store(false, Ordering::Release);
        let events = pubsub.events();
        let this = Arc::new(Self {
            channel: Self::channel_name(&redis),
            counter_key: redis.control_key("purge-seq"),
            marks_key: redis.control_key("marks"),
            times_key: redis.control_key("marks-by-time"),
            redis,
            pubsub,
            watermarks,
            synced,
            clock,
            purge_script: redis::Script::new(PURGE),
            sweep_script: redis::Script::new(SWEEP),
            load_script: redis::Script::new(LOAD),
            raise_script: redis::Script::new(RAISE_COUNTER),
        });
        tokio::spawn(sync(Arc::downgrade(&this), events));
        this
    }

    /// Whether this instance has every purge the shared tier holds.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Records a purge of `selectors` in Redis (and so on every instance), waits (bounded) for
    /// the control node's replicas to acknowledge it, so a failover does not lose it, and
    /// applies it here.
    ///
    /// # Errors
    /// The shared tier's failure; nothing was recorded there.
    pub async fn purge(
        &self,
        selectors: &[Selector],
        soft: bool,
        now: SystemTime,
    ) -> Result<u64, TierError> {
        let fields: Vec<String> = selectors.iter().map(|s| field(s, soft)).collect();
        let known = self.watermarks.current_seq().to_string();
        let now_ms = unix_ms(now).to_string();
        let mut args: Vec<&str> = vec![&known, &now_ms, &self.channel];
        args.extend(fields.iter().map(String::as_str));
        let keys = [self.counter_key.as_str(), &self.marks_key, &self.times_key];
        let seq = self
            .redis
            .eval_replicated(&self.purge_script, &keys, &args)
            .await?;
        for selector in selectors {
            self.watermarks.raise(selector.clone(), seq, soft, now);
        }
        Ok(seq)
    }

    /// Forgets shared watermarks last raised before `cutoff` (see
    /// [`crate::config::Config::watermark_retention`]). Any instance may run it: the result is
    /// the same whoever does.
    ///
    /// # Errors
    /// The shared tier's failure.
    pub async fn sweep(&self, cutoff: SystemTime) -> Result<u64, TierError> {
        let keys = [self.marks_key.as_str(), &self.times_key];
        let (cutoff, batch) = (unix_ms(cutoff).to_string(), SWEEP_BATCH.to_string());
        self.redis
            .eval(&self.sweep_script, &keys, &[&cutoff, &batch])
            .await
    }

    fn set_synced(&self, synced: bool) {
        if self.synced.swap(synced, Ordering::AcqRel) != synced {
            if synced {
                tracing::info!("purges in sync with the shared tier");
            } else {
                tracing::warn!(
                    "purges out of sync with the shared tier; not reading it until reloaded"
                );
            }
        }
    }

    /// Loads the counter and every watermark in one call; synced when subscribed throughout.
    async fn reload(&self) {
        if !self.pubsub.is_subscribed() {
            self.set_synced(false);
            return;
        }
        let keys = [self.counter_key.as_str(), &self.marks_key];
        let loaded: Result<(String, HashMap<String, u64>), _> =
            self.redis.eval(&self.load_script, &keys, &[]).await;
        let (counter, marks) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::debug!(%error, "purge reload failed");
                self.set_synced(false);
                return;
            }
        };
        let now = self.clock.now();
        for (field, seq) in marks {
            if let Some((selector, soft)) = parse_field(&field) {
                self.watermarks.raise(selector, seq, soft, now);
            }
        }
        let counter: u64 = counter.parse().unwrap_or(0);
        if !self.repair_counter(counter).await {
            self.set_synced(false);
            return;
        }
        self.watermarks.advance_seq(counter);
        self.set_synced(self.pubsub.is_subscribed());
    }

    /// A counter below what this instance has seen means Redis lost its data: raise it back,
    /// so sequences never repeat. Returns whether the counter is sound now.
    async fn repair_counter(&self, counter: u64) -> bool {
        let known = self.watermarks.current_seq();
        if counter >= known {
            return true;
        }
        tracing::warn!(counter, known, "purge counter went backwards; raising it");
        let raised: Result<u64, _> = self
            .redis
            .eval(
                &self.raise_script,
                &[&self.counter_key],
                &[&known.to_string()],
            )
            .await;
        raised.is_ok()
    }

    /// A purge published by any instance.
    fn apply(&self, payload: &[u8]) {
        let Some((seq, selector, soft)) = parse_message(payload) else {
            return;
        };
        self.watermarks
            .raise_unless_held(selector, seq, soft, self.clock.now());
    }

    /// Notices a stalled subscription or lost data between messages.
    async fn poll(&self) {
        let counter: Result<Option<u64>, _> = self
            .redis
            .call(redis::cmd("GET").arg(&self.counter_key))
            .await;
        let Ok(counter) = counter else { return };
        let counter = counter.unwrap_or(0);
        let known = self.watermarks.current_seq();
        if !self.is_synced() || counter != known {
            // Missed messages (counter ahead) or lost data (behind): reload either way.
            self.set_synced(false);
            self.reload().await;
        }
    }
}

async fn sync(this: Weak<SharedPurges>, mut events: broadcast::Receiver<PubSubEvent>) {
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(this) = this.upgrade() else { return };
                match event {
                    Ok(PubSubEvent::Subscribed) => this.reload().await,
                    Ok(PubSubEvent::Lost | PubSubEvent::Failed { .. }) => this.set_synced(false),
                    Ok(PubSubEvent::Message { channel, payload }) if channel == this.channel => {
                        this.apply(&payload);
                    }
                    Ok(PubSubEvent::Message { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        this.set_synced(false);
                        this.reload().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
            _ = poll.tick() => {
                let Some(this) = this.upgrade() else { return };
                this.poll().await;
            }
        }
    }
}

/// `h|<selector>` or `s|<selector>`: one watermark field of the marks hash.
fn field(selector: &Selector, soft: bool) -> String {
    format!("{}|{selector}", if soft { 's' } else { 'h' })
}

fn parse_field(field: &str) -> Option<(Selector, bool)> {
    let (kind, selector) = field.split_once('|')?;
    let soft = match kind {
        "h" => false,
        "s" => true,
        _ => return None,
    };
    Some((Selector::from_str(selector).ok()?, soft))
}

/// `<seq> <field>`, as the purge script publishes.
fn parse_message(payload: &[u8]) -> Option<(u64, Selector, bool)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (seq, field) = text.split_once(' ')?;
    let (selector, soft) = parse_field(field)?;
    Some((seq.parse().ok()?, selector, soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_messages_round_trip() {
        for (selector, soft) in [
            (Selector::tag("product:42"), false),
            (Selector::tag("a|b c"), true),
            (Selector::prefix("/api/"), false),
            (Selector::All, true),
        ] {
            let f = field(&selector, soft);
            assert_eq!(parse_field(&f), Some((selector.clone(), soft)));
            let message = format!("17 {f}");
            assert_eq!(
                parse_message(message.as_bytes()),
                Some((17, selector, soft))
            );
        }
        assert_eq!(parse_message(b"x h|*"), None);
        assert_eq!(parse_field("q|*"), None);
    }
}
