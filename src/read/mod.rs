//! The read path. [`BlockCache`]: blocks of object versions shared by the whole mount
//! under one memory budget, one GET per block however many readers wait for it.
//! [`Prefetcher`]: per open file, sequential detection and a read-ahead window that
//! grows with what the reader consumed, fetched into the cache. [`DiskCache`]: blocks
//! kept on local disk across mounts (`--disk-cache`).

mod buffers;
mod cache;
mod disk_cache;
mod prefetch;
#[cfg(test)]
mod tests;

pub use cache::{BlockCache, CacheUsage, ObjectVersion, Prefetch};
pub use disk_cache::{DiskCache, DiskCacheError};
pub use prefetch::{Prefetcher, PART};
