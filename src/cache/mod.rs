//! The cache model and its decisions: keys, entries, storage policy, freshness and
//! `Cache-Status`. Nothing here awaits or touches a socket; every time-dependent function
//! takes `now`.

pub mod codec;
pub mod conditional;
pub mod entry;
pub mod freshness;
pub mod key;
pub mod policy;
pub mod request;
pub mod revalidation;
pub mod status;
pub mod vary;

pub use codec::{CodecError, Epoch, FORMAT_VERSION};
pub use conditional::{
    Boundary, ByteRange, PartialContent, RangeError, Served, evaluate, not_modified_headers,
    partial_content, unsatisfiable_content_range,
};
pub use entry::{Entry, EntryMeta, EntryTimes, body_weight, packed_headers};
pub use freshness::{
    Usability, assess, assess_soft_purged, early_refresh_possible, refresh_early, ttl_secs,
};
pub use key::{
    CacheKey, Fingerprint, Partition, PartitionHasher, PrefixError, Target, TargetError,
    normalize_path_prefix, url_fingerprint,
};
pub use policy::{Decision, NotStorable, Timing, decide, sanitized_request};
pub use status::CacheStatus;
