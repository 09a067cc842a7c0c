//! The watermark map: per [`Selector`], the highest hard and soft purge sequence, and the
//! check every serve runs against it ([`Watermarks::verdict`]).
//!
//! An entry is stamped with the sequence its instance had seen when the entry's origin fetch
//! started ([`Watermarks::current_seq`]). A purge takes the next sequence
//! ([`Watermarks::purge`]) or arrives with one from the shared tier ([`Watermarks::raise`]);
//! an entry below a covering hard mark is invalid, below a covering soft one stale. Marks only
//! ever go up (raises and merges take the maximum), so a later soft purge never weakens an
//! earlier hard one and a reload never resurrects anything.
//!
//! Lookup cost, paid on every cache hit:
//! - entries stamped at or above the highest mark recorded are valid after one comparison
//!   (this covers the empty map and everything filled since the last purge);
//! - otherwise one hash lookup per entry tag, one for `all`, and one per *distinct length*
//!   among the recorded prefixes that is not longer than the path. Prefixes are plain string
//!   prefixes (an operator may purge `/api/prod`), so the candidates are the path's own
//!   prefixes; keeping the set of lengths in use means a thousand prefix purges under
//!   `/api/products/` cost a few lookups, not a thousand comparisons, and never more than the
//!   path has characters. No lookup allocates.
//!
//! Expiry: each mark keeps the time of its latest raise, indexed by time, so
//! [`Watermarks::drop_older_than`] removes old marks in order without scanning the map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use super::{EntryRef, Selector};

/// One selector's watermarks. A sequence of 0 means "never purged this way".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Entries stamped below this are invalid.
    pub hard: u64,
    /// Entries stamped below this are stale (served only under stale-while-revalidate, or
    /// revalidated first).
    pub soft: u64,
    /// When the mark was last raised (the latest of its raises).
    pub raised_at: SystemTime,
}

impl Mark {
    /// A mark for one purge with sequence `seq`.
    pub fn new(seq: u64, soft: bool, raised_at: SystemTime) -> Self {
        let (hard, soft) = if soft { (0, seq) } else { (seq, 0) };
        Self {
            hard,
            soft,
            raised_at,
        }
    }

    fn raise(&mut self, other: Mark) {
        self.hard = self.hard.max(other.hard);
        self.soft = self.soft.max(other.soft);
        self.raised_at = self.raised_at.max(other.raised_at);
    }

    fn highest(&self) -> u64 {
        self.hard.max(self.soft)
    }
}

/// Whether an entry survived every purge covering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No purge covers it.
    Valid,
    /// A soft purge covers it: usable only as a stale entry.
    Stale,
    /// A hard purge covers it: never serve it.
    Invalid,
}

/// The in-process watermark map and purge sequence. Not synchronized: share it through
/// [`SharedWatermarks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks {
    tags: HashMap<String, Mark>,
    prefixes: HashMap<String, Mark>,
    /// Byte length → how many recorded prefixes have it: the only lengths worth looking up.
    prefix_lengths: BTreeMap<usize, usize>,
    all: Option<Mark>,
    /// Every recorded selector by the time of its mark's latest raise.
    by_time: BTreeSet<(SystemTime, Selector)>,
    /// The highest sequence of any mark: entries stamped at or above it need no lookup.
    highest_mark: u64,
    /// The highest sequence issued or seen.
    seq: u64,
}

impl Watermarks {
    /// An empty map at sequence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequence to stamp an entry with when its origin fetch *starts*: a purge issued or
    /// seen after this call has a higher sequence, so it covers the entry.
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    /// Raises the sequence to at least `seq` (e.g. the shared counter loaded from Redis).
    pub fn advance_seq(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// A local purge (no shared tier): takes the next sequence, raises `selector` to it and
    /// returns it.
    pub fn purge(&mut self, selector: Selector, soft: bool, now: SystemTime) -> u64 {
        let seq = self.seq.saturating_add(1);
        self.raise(selector, seq, soft, now);
        seq
    }

    /// Records a purge numbered elsewhere (the shared counter). Never lowers anything; raises
    /// [`Self::current_seq`] to `seq` so later fills are not mistaken for older ones.
    pub fn raise(&mut self, selector: Selector, seq: u64, soft: bool, now: SystemTime) {
        self.raise_mark(selector, Mark::new(seq, soft, now));
    }

    /// [`Self::raise`] unless `selector` already holds `seq`: a purge seen again (an
    /// instance's own purge echoed by pub/sub) keeps the time it was first applied at, so its
    /// mark is forgotten on time.
    pub fn raise_unless_held(&mut self, selector: Selector, seq: u64, soft: bool, now: SystemTime) {
        let held = self
            .mark(&selector)
            .is_some_and(|mark| if soft { mark.soft } else { mark.hard } >= seq);
        if !held {
            self.raise(selector, seq, soft, now);
        }
    }

    /// Raises `selector`'s mark to at least `mark`, field by field.
    pub fn raise_mark(&mut self, selector: Selector, mark: Mark) {
        let highest = mark.highest();
        if highest == 0 {
            return;
        }
        self.seq = self.seq.max(highest);
        self.highest_mark = self.highest_mark.max(highest);
        let (previous, current) = match &selector {
            Selector::Tag(tag) => upsert(&mut self.tags, tag, mark),
            Selector::Prefix(prefix) => {
                if !self.prefixes.contains_key(prefix) {
                    *self.prefix_lengths.entry(prefix.len()).or_default() += 1;
                }
                upsert(&mut self.prefixes, prefix, mark)
            }
            Selector::All => {
                let previous = self.all.map(|all| all.raised_at);
                let all = self.all.get_or_insert(mark);
                all.raise(mark);
                (previous, all.raised_at)
            }
        };
        if previous == Some(current) {
            return;
        }
        let mut key = (current, selector);
        if let Some(previous) = previous {
            key.0 = previous;
            self.by_time.remove(&key);
            key.0 = current;
        }
        self.by_time.insert(key);
    }

    /// Raises every mark to at least `other`'s, and the sequence to at least `other`'s:
    /// reloads and resyncs merge by maximum and never lower a mark.
    pub fn merge(&mut self, other: &Watermarks) {
        for (selector, mark) in other.marks() {
            self.raise_mark(selector, mark);
        }
        self.advance_seq(other.seq);
    }

    /// Whether `entry` survived every purge covering it: [`Verdict::Invalid`] when a covering
    /// hard mark is above its sequence, else [`Verdict::Stale`] when a soft one is.
    pub fn verdict(&self, entry: EntryRef<'_>) -> Verdict {
        if entry.seq >= self.highest_mark {
            return Verdict::Valid;
        }
        let mut stale = false;
        let mut invalid = |mark: &Mark| {
            stale |= mark.soft > entry.seq;
            mark.hard > entry.seq
        };
        if self.all.as_ref().is_some_and(&mut invalid) {
            return Verdict::Invalid;
        }
        for tag in entry.tags {
            if self.tags.get(tag.as_str()).is_some_and(&mut invalid) {
                return Verdict::Invalid;
            }
        }
        for &length in self.prefix_lengths.keys() {
            // Not a char boundary: no recorded prefix (valid UTF-8) can end there.
            let Some(prefix) = entry.path.get(..length) else {
                if length > entry.path.len() {
                    break;
                }
                continue;
            };
            if self.prefixes.get(prefix).is_some_and(&mut invalid) {
                return Verdict::Invalid;
            }
        }
        if stale {
            Verdict::Stale
        } else {
            Verdict::Valid
        }
    }

    /// Drops every mark last raised more than `max_age` before `now`, and returns how many.
    ///
    /// Sound when `max_age` is at least the longest an entry stamped before a purge can still
    /// be in a tier after it: the longest fill (route `timeout`) plus the longest entry
    /// lifetime (`max_ttl` and the stale and keep windows), plus the clock skew and pub/sub
    /// lag between instances sharing a tier. Every entry such a mark covered is gone by then.
    pub fn drop_older_than(&mut self, now: SystemTime, max_age: Duration) -> usize {
        let Some(cutoff) = now.checked_sub(max_age) else {
            return 0;
        };
        let mut dropped = 0;
        while self.by_time.first().is_some_and(|(time, _)| *time < cutoff) {
            let Some((_, selector)) = self.by_time.pop_first() else {
                break;
            };
            self.forget(&selector);
            dropped += 1;
        }
        if self.by_time.is_empty() {
            // Nothing left to cover anything: restore the one-comparison path for all entries.
            self.highest_mark = 0;
        }
        dropped
    }

    /// Every recorded selector with its mark (clones the selectors).
    pub fn marks(&self) -> impl Iterator<Item = (Selector, Mark)> + '_ {
        let tags = self
            .tags
            .iter()
            .map(|(tag, mark)| (Selector::Tag(tag.clone()), *mark));
        let prefixes = self
            .prefixes
            .iter()
            .map(|(prefix, mark)| (Selector::Prefix(prefix.clone()), *mark));
        let all = self.all.map(|mark| (Selector::All, mark));
        tags.chain(prefixes).chain(all)
    }

    /// The mark recorded for `selector`, if any.
    pub fn mark(&self, selector: &Selector) -> Option<Mark> {
        match selector {
            Selector::Tag(tag) => self.tags.get(tag).copied(),
            Selector::Prefix(prefix) => self.prefixes.get(prefix).copied(),
            Selector::All => self.all,
        }
    }

    /// How many selectors have a mark.
    pub fn len(&self) -> usize {
        self.by_time.len()
    }

    /// No selector has a mark.
    pub fn is_empty(&self) -> bool {
        self.by_time.is_empty()
    }

    fn forget(&mut self, selector: &Selector) {
        match selector {
            Selector::Tag(tag) => {
                self.tags.remove(tag);
            }
            Selector::Prefix(prefix) => {
                if self.prefixes.remove(prefix).is_some() {
                    if let Some(count) = self.prefix_lengths.get_mut(&prefix.len()) {
                        *count -= 1;
                        if *count == 0 {
                            self.prefix_lengths.remove(&prefix.len());
                        }
                    }
                }
            }
            Selector::All => self.all = None,
        }
    }
}

/// Inserts or raises `key`'s mark; returns the previous and current `raised_at`.
fn upsert(
    map: &mut HashMap<String, Mark>,
    key: &str,
    mark: Mark,
) -> (Option<SystemTime>, SystemTime) {
    if let Some(existing) = map.get_mut(key) {
        let previous = existing.raised_at;
        existing.raise(mark);
        (Some(previous), existing.raised_at)
    } else {
        map.insert(key.to_owned(), mark);
        (None, mark.raised_at)
    }
}

/// A [`Watermarks`] shared by every task of the process: a cheap handle to clone.
///
/// A `std` lock, not a `tokio` one: it is held for a few hash lookups and never across an
/// `.await`. The highest mark is mirrored in an atomic so that hits on entries filled since the
/// last purge (the common case) take no lock at all. A poisoned lock is recovered: every
/// mutation only raises values, so a half-done one at worst keeps a mark longer.
#[derive(Debug, Clone, Default)]
pub struct SharedWatermarks {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    map: RwLock<Watermarks>,
    highest_mark: AtomicU64,
}

impl SharedWatermarks {
    /// An empty map at sequence 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// See [`Watermarks::verdict`].
    pub fn verdict(&self, entry: EntryRef<'_>) -> Verdict {
        if entry.seq >= self.inner.highest_mark.load(Ordering::Acquire) {
            return Verdict::Valid;
        }
        self.read().verdict(entry)
    }

    /// See [`Watermarks::current_seq`].
    pub fn current_seq(&self) -> u64 {
        self.read().current_seq()
    }

    /// See [`Watermarks::advance_seq`].
    pub fn advance_seq(&self, seq: u64) {
        self.write().advance_seq(seq);
    }

    /// See [`Watermarks::purge`].
    pub fn purge(&self, selector: Selector, soft: bool, now: SystemTime) -> u64 {
        self.update(|map| map.purge(selector, soft, now))
    }

    /// See [`Watermarks::raise`].
    pub fn raise(&self, selector: Selector, seq: u64, soft: bool, now: SystemTime) {
        self.update(|map| map.raise(selector, seq, soft, now));
    }

    /// See [`Watermarks::raise_unless_held`].
    pub fn raise_unless_held(&self, selector: Selector, seq: u64, soft: bool, now: SystemTime) {
        self.update(|map| map.raise_unless_held(selector, seq, soft, now));
    }

    /// See [`Watermarks::raise_mark`].
    pub fn raise_mark(&self, selector: Selector, mark: Mark) {
        self.update(|map| map.raise_mark(selector, mark));
    }

    /// See [`Watermarks::merge`].
    pub fn merge(&self, other: &Watermarks) {
        self.update(|map| map.merge(other));
    }

    /// See [`Watermarks::drop_older_than`].
    pub fn drop_older_than(&self, now: SystemTime, max_age: Duration) -> usize {
        self.update(|map| map.drop_older_than(now, max_age))
    }

    /// How many selectors have a mark (one read lock; for metrics).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// No selector has a mark.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// A copy of the current map (for diagnostics and tests).
    pub fn snapshot(&self) -> Watermarks {
        self.read().clone()
    }

    fn update<T>(&self, change: impl FnOnce(&mut Watermarks) -> T) -> T {
        let mut map = self.write();
        let result = change(&mut map);
        // Published under the write lock, after the map changed: a reader that sees the new
        // value and takes the lock finds the new marks.
        self.inner
            .highest_mark
            .store(map.highest_mark, Ordering::Release);
        result
    }

    fn read(&self) -> RwLockReadGuard<'_, Watermarks> {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Watermarks> {
        self.inner
            .map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
