//! The cache model and its decisions: keys, entries, storage policy, freshness and
//! `Cache-Status`. Nothing here awaits or touches a socket; every time-dependent function
//! takes `now`.

pub mod entry;
pub mod freshness;
pub mod key;
pub mod policy;
pub mod status;

pub use entry::{Entry, EntryTimes};
pub use freshness::{Usability, assess, ttl_secs};
pub use key::{
    CacheKey, Fingerprint, Partition, PartitionHasher, Target, TargetError, url_fingerprint,
};
pub use policy::{Decision, NotStorable, decide, sanitized_request};
pub use status::CacheStatus;
