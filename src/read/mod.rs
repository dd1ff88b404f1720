//! The read path. [`Prefetcher`]: per open file, sequential detection and a read-ahead
//! window of 8 MiB chunks fetched in parallel, bounded by one mount-wide memory budget.
//! (The block cache shared between handles is still to come.)

mod prefetch;

pub use prefetch::{PrefetchBudget, Prefetcher, CHUNK};
