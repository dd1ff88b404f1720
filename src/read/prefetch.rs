//! Prefetcher: the reads of one open file, over the mount's [`BlockCache`].
//!
//! A reader that follows on from its previous read (or starts at offset 0) streams:
//! its reads are served from cache blocks, and blocks ahead of it are fetched before it
//! asks, in a window that starts at one block (a small first GET, for time to first
//! byte) and doubles with every sequential read up to `max_window`, as GETs of up to
//! [`PART`] each, several in flight at once. The window is topped up in runs of at
//! least half of it (up to a part), so a streaming reader costs a GET per part rather
//! than one per block it consumes. A reader that jumps elsewhere gets exactly
//! the bytes it asked for in one GET (or from blocks already cached) and no read-ahead:
//! fetching a whole block for a 4 KiB probe costs more than it saves. Forward seeks that
//! land within the window stay sequential.
//!
//! When the mount's budget has no room, a window is halved instead of memory growing.
//! Dropping the prefetcher (the handle was released) aborts its fetches in flight.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::task::AbortHandle;

use super::cache::{BlockCache, ObjectVersion};
use crate::store::{ErrorKind, ObjectError};

/// The largest GET of a read-ahead: the part size S3 clients read fastest with.
pub const PART: u64 = 8 << 20;
/// How far before the previous read's end a streaming reader's read may start and still
/// count as sequential: the kernel sends its read-ahead requests concurrently, slightly
/// out of order.
const NEAR: u64 = 2 << 20;
/// How far after the previous read's end a reader that is not streaming may start and
/// begin to stream (strictly forward: random readers land near each other by chance).
const START_GAP: u64 = 256 << 10;

#[derive(Default)]
struct State {
    /// End of the previous read.
    last_end: Option<u64>,
    /// Bytes to have fetched ahead of the reader; 0 while it is not streaming.
    window: u64,
    /// Blocks before this index have been fetched or are being fetched.
    frontier: u64,
    fetches: Vec<AbortHandle>,
}

pub struct Prefetcher {
    cache: Arc<BlockCache>,
    key: Arc<str>,
    size: u64,
    /// `None` when the store gave no ETag: such an object cannot be cached safely, so
    /// every read goes to the store.
    object: Option<ObjectVersion>,
    max_window: u64,
    state: Mutex<State>,
}

impl Prefetcher {
    pub fn new(cache: Arc<BlockCache>, key: &str, size: u64, etag: Option<&str>, max_window: u64) -> Prefetcher {
        let key: Arc<str> = key.into();
        let object = etag.map(|etag| ObjectVersion { key: key.clone(), etag: etag.into(), size });
        Prefetcher { cache, key, size, object, max_window, state: Mutex::new(State::default()) }
    }

    /// The object version this reader reads (`None` when the store gave no ETag).
    pub fn version(&self) -> Option<&ObjectVersion> {
        self.object.as_ref()
    }

    /// The current read-ahead window in bytes (0 when the reader is not streaming).
    pub fn window(&self) -> u64 {
        self.state.lock().window
    }

    /// Up to `len` bytes at `offset`; fewer only at the end of the object.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Bytes, ObjectError> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let Some(object) = &self.object else { return self.fetch(offset, end).await };
        let bs = self.cache.block_size();
        let blocks = offset / bs..=(end - 1) / bs;
        let data = if self.plan(object, offset, end) {
            let mut data = Vec::with_capacity(blocks.clone().count());
            for index in blocks.clone() {
                data.push(self.cache.block(object, index).await?);
            }
            data
        } else {
            match blocks.clone().map(|i| self.cache.get_cached(object, i)).collect::<Option<Vec<_>>>() {
                Some(cached) => cached,
                None => return self.fetch(offset, end).await,
            }
        };
        let first_start = blocks.start() * bs;
        if data.len() == 1 {
            let from = (offset - first_start) as usize;
            let to = ((end - first_start) as usize).min(data[0].len());
            return Ok(data[0].slice(from.min(to)..to));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (n, block) in data.iter().enumerate() {
            let block_start = first_start + n as u64 * bs;
            let from = offset.saturating_sub(block_start).min(block.len() as u64) as usize;
            let to = (end - block_start).min(block.len() as u64) as usize;
            out.extend_from_slice(&block[from..to]);
        }
        Ok(out.freeze())
    }

    /// Classifies the read at `offset..end` and, for a streaming reader, widens its
    /// window and starts the fetches ahead of it. Returns whether it is streaming. The
    /// lock covers bookkeeping only; fetches run on their own tasks.
    fn plan(&self, object: &ObjectVersion, offset: u64, end: u64) -> bool {
        let bs = self.cache.block_size();
        let mut st = self.state.lock();
        let sequential = match st.last_end {
            None => offset == 0,
            Some(last) if st.window == 0 => offset >= last && offset <= last + START_GAP,
            Some(last) => offset + NEAR >= last && offset <= last.max(st.frontier * bs) + NEAR,
        };
        st.last_end = Some(end);
        if !sequential {
            st.window = 0;
            st.frontier = 0;
            for fetch in st.fetches.drain(..) {
                fetch.abort();
            }
            return false;
        }
        let previous = st.window;
        st.window = if previous == 0 { bs } else { (previous * 2).min(self.max_window.max(bs)) };
        st.fetches.retain(|f| !f.is_finished());
        let blocks_in_file = self.cache.blocks_in(self.size);
        let mut from = st.frontier.max(end.div_ceil(bs));
        let to = (end + st.window).div_ceil(bs).min(blocks_in_file);
        let run = (PART / bs).max(1);
        // Runs of at least half the window, up to a part (or what is left of the object):
        // topping the window up as each block is consumed would be a GET per block.
        let least = run.min(st.window / bs / 2).max(1);
        while from < to {
            let run_end = (from + run).min(to);
            if run_end - from < least && run_end < blocks_in_file {
                break;
            }
            let prefetch = self.cache.prefetch(object, from..run_end);
            st.fetches.extend(prefetch.fetches);
            if !prefetch.complete {
                st.window = (previous / 2).max(bs);
                break;
            }
            from = run_end;
        }
        st.frontier = from;
        true
    }

    /// Exactly `offset..end`, straight from the store, from the version read at open.
    async fn fetch(&self, offset: u64, end: u64) -> Result<Bytes, ObjectError> {
        let etag = self.object.as_ref().map(|o| &*o.etag);
        match self.cache.client().get_range_if(&self.key, offset..end, etag).await {
            // Without an ETag to pin the version, the object may have shrunk since open:
            // what was there is gone, so this is its end.
            Err(e) if e.is(ErrorKind::InvalidRange) => Ok(Bytes::new()),
            other => other,
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        for fetch in self.state.get_mut().fetches.drain(..) {
            fetch.abort();
        }
    }
}
