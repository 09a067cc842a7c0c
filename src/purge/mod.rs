//! Purging without scanning (DESIGN.md "Purge without scanning: tag watermarks"): what a purge
//! names ([`Selector`]), what an entry offers to be checked ([`EntryRef`]), and the in-process
//! watermark map that decides whether an entry survived every purge ([`watermarks`]).
//!
//! Pure and synchronous: the admin API, the Redis script and the pub/sub sync sit on top of
//! these types.

pub mod sync;
pub mod watermarks;

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

pub use sync::SharedPurges;
pub use watermarks::{Mark, SharedWatermarks, Verdict, Watermarks};

/// What a purge covers. Every selector of the admin API maps onto one of these: `tags`,
/// `urls` (`url:<fingerprint>`), `route` (`route:<name>`) and `partition`
/// (`part:<header>:<fingerprint>`) are all [`Selector::Tag`]s, since the entry carries those
/// automatic tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Selector {
    /// Entries carrying this tag.
    Tag(String),
    /// Entries whose normalized path starts with this string (a plain string prefix, not a
    /// segment match: `/api/prod` covers `/api/products/1`). Host and route are not part of
    /// it, as in the admin API's `{"prefix": "/api/products/"}`.
    Prefix(String),
    /// Every entry.
    All,
}

const ROUTE_TAG: &str = "route:";
const URL_TAG: &str = "url:";
const PART_TAG: &str = "part:";

/// The prefixes of the tags Cachet gives every entry itself ([`route_tag`], [`url_tag`],
/// [`part_tag`]). An origin's or a route's own tag never starts with one, so that purging a
/// route, a URL or a partition covers exactly that.
pub const AUTOMATIC_TAG_PREFIXES: [&str; 3] = [ROUTE_TAG, URL_TAG, PART_TAG];

/// `route:<name>`: every entry of the route.
pub fn route_tag(name: &str) -> String {
    format!("{ROUTE_TAG}{name}")
}

/// `url:<fingerprint>`: every partition and variant of one URL.
pub fn url_tag(fingerprint: impl fmt::Display) -> String {
    format!("{URL_TAG}{fingerprint}")
}

/// `part:<header>:<fingerprint>`: every entry of one key-header value.
pub fn part_tag(header: impl fmt::Display, fingerprint: impl fmt::Display) -> String {
    format!("{PART_TAG}{header}:{fingerprint}")
}

/// Whether `tag` is spelled like one of Cachet's automatic tags.
pub fn is_automatic_tag(tag: &str) -> bool {
    AUTOMATIC_TAG_PREFIXES
        .iter()
        .any(|prefix| tag.starts_with(prefix))
}

impl Selector {
    /// A tag selector.
    pub fn tag(tag: impl Into<String>) -> Self {
        Self::Tag(tag.into())
    }

    /// A path-prefix selector.
    pub fn prefix(path_prefix: impl Into<String>) -> Self {
        Self::Prefix(path_prefix.into())
    }
}

/// Stable text form, e.g. for a Redis hash field: `t:<tag>`, `p:<prefix>`, `*`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => write!(f, "t:{tag}"),
            Self::Prefix(prefix) => write!(f, "p:{prefix}"),
            Self::All => f.write_str("*"),
        }
    }
}

/// Why a selector's text form could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a selector: {0:?} (expected `t:<tag>`, `p:<prefix>` or `*`)")]
pub struct SelectorParseError(pub String);

impl FromStr for Selector {
    type Err = SelectorParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            Ok(Self::All)
        } else if let Some(tag) = text.strip_prefix("t:") {
            Ok(Self::Tag(tag.to_owned()))
        } else if let Some(prefix) = text.strip_prefix("p:") {
            Ok(Self::Prefix(prefix.to_owned()))
        } else {
            Err(SelectorParseError(text.to_owned()))
        }
    }
}

/// What the watermark check needs from an entry, borrowed from it by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// All the entry's tags: origin, static and automatic (`route:`, `url:`, `part:`).
    pub tags: &'a [String],
    /// The normalized path the entry was filled for (`Target::path`), for prefix purges.
    pub path: &'a str,
    /// The purge sequence the instance had seen when the entry's origin fetch started
    /// ([`Watermarks::current_seq`]).
    pub seq: u64,
}

/// A purge as the admin API states it, before selectors are resolved (URLs routed and
/// normalized, partition values fingerprinted) by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRequest {
    /// What the purge covers.
    pub target: PurgeTarget,
    /// Mark covered entries stale (served under stale-while-revalidate while one request
    /// refreshes them) instead of invalid.
    pub soft: bool,
}

/// The one selector of an admin purge body, with raw values as the operator wrote them.
///
/// `Debug` prints partition values: never log a `PurgeTarget`, log [`PurgeTarget::kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeTarget {
    /// `{"tags": [...]}`: entries carrying any of these tags.
    Tags(Vec<String>),
    /// `{"urls": [...]}`: every variant and partition of each URL on its route.
    Urls(Vec<String>),
    /// `{"prefix": "/..."}`: entries whose normalized path starts with it.
    Prefix(String),
    /// `{"route": "name"}`: every entry of that route.
    Route(String),
    /// `{"partition": {"header": "raw value", ...}}`: lower-case header names with raw
    /// values, to be fingerprinted like key-header values.
    Partition(Vec<(String, String)>),
    /// `{"all": true}`: every entry.
    All,
}

impl PurgeTarget {
    /// The selector's name: the bounded `kind` label of `cachet_purges_total` and of logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Tags(_) => "tags",
            Self::Urls(_) => "urls",
            Self::Prefix(_) => "prefix",
            Self::Route(_) => "route",
            Self::Partition(_) => "partition",
            Self::All => "all",
        }
    }
}

/// Milliseconds since the Unix epoch: the time index of shared watermarks and the sequence of
/// local-only purges.
pub fn unix_ms(time: SystemTime) -> u64 {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_text_form_round_trips() {
        let cases = [
            (Selector::tag("product:42"), "t:product:42"),
            (Selector::tag(""), "t:"),
            (Selector::prefix("/api/products/"), "p:/api/products/"),
            (Selector::All, "*"),
        ];
        for (selector, text) in cases {
            assert_eq!(selector.to_string(), text);
            assert_eq!(text.parse::<Selector>(), Ok(selector));
        }
        for bad in ["", "x:1", "tag", "**"] {
            assert_eq!(
                bad.parse::<Selector>(),
                Err(SelectorParseError(bad.to_owned()))
            );
        }
    }
}
