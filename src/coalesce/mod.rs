//! [`Coalescer`]: one fill per key at a time in the process.
//!
//! `join(key)` makes the caller the leader of a fill or a follower of the one in flight. The
//! leader finishes with an outcome that every follower receives (a failure is shared, not
//! retried by each follower). A leader dropped unfinished wakes its followers, and one of them
//! takes over; at a follower's deadline one follower becomes the new leader while the others
//! keep waiting. Followers are woken by the outcome, never by polling.

pub mod lease;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// What a follower sees of a flight.
#[derive(Debug, Clone)]
enum State<V> {
    Pending,
    Done(V),
    Abandoned,
}

/// One fill in flight.
struct Slot<V> {
    state: watch::Sender<State<V>>,
}

/// Fills in flight, by key.
pub struct Coalescer<K, V> {
    // A std mutex: held for a map operation, never across an await.
    flights: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K, V> fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.flights.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Coalescer")
            .field("in_flight", &len)
            .finish()
    }
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

/// The caller's role for a key.
#[derive(Debug)]
pub enum Flight<K: Hash + Eq + Clone, V: Clone> {
    /// Fill it, then [`LeaderGuard::finish`].
    Leader(LeaderGuard<K, V>),
    /// Wait for the leader's outcome with [`Waiter::wait`].
    Follower(Waiter<K, V>),
}

/// How a follower's wait ended.
#[derive(Debug)]
pub enum Waited<K: Hash + Eq + Clone, V: Clone> {
    /// The leader's outcome.
    Done(V),
    /// The caller now leads the fill: the leader went away or its deadline passed.
    Lead(LeaderGuard<K, V>),
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// A coalescer with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys with a fill in flight.
    pub fn in_flight(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<Slot<V>>>> {
        self.flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leads the fill of `key`, or follows the one in flight.
    pub fn join(self: &Arc<Self>, key: K) -> Flight<K, V> {
        let mut flights = self.lock();
        if let Some(slot) = flights.get(&key) {
            let receiver = slot.state.subscribe();
            return Flight::Follower(Waiter {
                coalescer: Arc::clone(self),
                key,
                slot: Arc::clone(slot),
                receiver,
            });
        }
        let slot = Arc::new(Slot {
            state: watch::Sender::new(State::Pending),
        });
        flights.insert(key.clone(), Arc::clone(&slot));
        Flight::Leader(LeaderGuard {
            coalescer: Arc::clone(self),
            key,
            slot,
            finished: false,
        })
    }

    /// Replaces `expected` with a new flight led by the caller, if it is still the current one.
    fn take_over(self: &Arc<Self>, key: &K, expected: &Arc<Slot<V>>) -> Option<LeaderGuard<K, V>> {
        let mut flights = self.lock();
        match flights.get(key) {
            Some(current) if Arc::ptr_eq(current, expected) => {
                let slot = Arc::new(Slot {
                    state: watch::Sender::new(State::Pending),
                });
                flights.insert(key.clone(), Arc::clone(&slot));
                // The old flight's other followers move to the new one and keep waiting there.
                expected.state.send_replace(State::Abandoned);
                Some(LeaderGuard {
                    coalescer: Arc::clone(self),
                    key: key.clone(),
                    slot,
                    finished: false,
                })
            }
            // Someone already took over or the flight ended: the caller joins what is there now.
            _ => None,
        }
    }

    fn remove_if_current(&self, key: &K, slot: &Arc<Slot<V>>) {
        let mut flights = self.lock();
        if flights
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            flights.remove(key);
        }
    }
}

/// The leader's obligation: finish with an outcome. Dropping it unfinished wakes followers
/// with "abandoned", and one of them takes over.
pub struct LeaderGuard<K: Hash + Eq + Clone, V: Clone> {
    coalescer: Arc<Coalescer<K, V>>,
    key: K,
    slot: Arc<Slot<V>>,
    finished: bool,
}

impl<K: Hash + Eq + Clone, V: Clone> fmt::Debug for LeaderGuard<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderGuard")
            .field("finished", &self.finished)
            .finish()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> LeaderGuard<K, V> {
    /// Ends the flight and hands `outcome` to every follower.
    pub fn finish(mut self, outcome: V) {
        self.finished = true;
        // Published before removal: a request joining in between gets the outcome at once,
        // and a follower whose deadline passes in between cannot start a second fill.
        self.slot.state.send_replace(State::Done(outcome));
        self.coalescer.remove_if_current(&self.key, &self.slot);
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for LeaderGuard<K, V> {
    fn drop(&mut self) {
        if !self.finished {
            self.coalescer.remove_if_current(&self.key, &self.slot);
            self.slot.state.send_replace(State::Abandoned);
        }
    }
}

/// A follower's place in a flight.
pub struct Waiter<K: Hash + Eq + Clone, V: Clone> {
    coalescer: Arc<Coalescer<K, V>>,
    key: K,
    slot: Arc<Slot<V>>,
    receiver: watch::Receiver<State<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> fmt::Debug for Waiter<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Waiter<K, V> {
    /// Waits for the outcome. After `patience` without one (or when the leader goes away) the
    /// follower tries to take over; if another follower already did, it waits on that flight.
    pub async fn wait(mut self, patience: Duration) -> Waited<K, V> {
        loop {
            let ended = self.receiver.wait_for(|s| !matches!(s, State::Pending));
            let state = match tokio::time::timeout(patience, ended).await {
                Ok(Ok(state)) => state.clone(),
                // The sender lives in the slot we hold, so this cannot close; treat it as gone.
                Ok(Err(_)) => State::Abandoned,
                Err(_elapsed) => State::Pending,
            };
            match state {
                State::Done(outcome) => return Waited::Done(outcome),
                State::Pending => {
                    if let Some(guard) = self.coalescer.take_over(&self.key, &self.slot) {
                        return Waited::Lead(guard);
                    }
                }
                State::Abandoned => {}
            }
            match self.coalescer.join(self.key.clone()) {
                Flight::Leader(guard) => return Waited::Lead(guard),
                Flight::Follower(next) => self = next,
            }
        }
    }
}

#[cfg(test)]
mod tests;
