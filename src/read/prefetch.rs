//! Prefetcher: the reads of one open file, over the mount's [`BlockCache`].
//!
//! Reads form *streams*. A read that follows on from the stream's furthest read (a
//! little before it too: the kernel sends its read-ahead requests concurrently, so they
//! arrive out of order) continues it; any other read is a seek and starts a new stream
//! there, whose fetches still in flight are aborted.
//!
//! A stream may fetch ahead of its furthest read as much as it has consumed so far, plus
//! one *first window* (one block) for a stream from offset 0, up to `max_window`: the
//! window grows with what the reader consumed, never with the number of its requests, so
//! a reader that stops has fetched at most twice what it read plus one first window
//! (`head`, `file`, thumbnailers probing a file cost about what they read), and a
//! streaming reader doubles its window each time it consumes what is ahead of it. The
//! first read of a stream from offset 0 is one block (time to first byte).
//!
//! Bytes come in whole cache blocks only where the window covers the whole block; other
//! reads (a stream just after a seek, a random reader) get exactly their range in one GET,
//! or blocks already cached, and a block part of which a stream read exactly is not
//! fetched whole again. Fetching a whole block for a 4 KiB probe costs more than it saves.
//! The window is topped up in runs of at least half of it (up to a part), so a streaming
//! reader costs a GET per part rather than one per block it consumes.
//!
//! When the mount's budget has no room, the window is capped at half its size, and the cap
//! doubles back with each top-up that fits. Dropping the prefetcher (the handle was
//! released) aborts its fetches in flight.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::task::AbortHandle;

use super::cache::{BlockCache, ObjectVersion};
use crate::store::{ErrorKind, ObjectError};

/// The largest GET of a read-ahead: the part size S3 clients read fastest with.
pub const PART: u64 = 8 << 20;
/// How far before a stream's furthest read a read may start and still continue it: the
/// kernel's concurrent read-ahead requests arrive slightly out of order.
const NEAR: u64 = 2 << 20;
/// How far beyond a stream's furthest read (or what it fetched) a read may start and
/// still continue it: a reader skipping a little is still streaming.
const GAP: u64 = 256 << 10;

/// The reads since the last seek.
struct Stream {
    /// Where the stream began.
    start: u64,
    /// The end of its furthest read: `end - start` is what the reader consumed (requests
    /// that arrive late from before `start` add nothing, nor do random reads near each
    /// other that step back).
    end: u64,
    /// Bytes it may fetch ahead without having consumed them: one block from offset 0.
    first: u64,
    /// The end of its exact-range reads: a block before it is not fetched whole.
    exact_end: u64,
    /// Blocks before this index were fetched for the stream (or are being fetched).
    frontier: u64,
    /// The largest window the budget lets it have now.
    cap: u64,
}

impl Stream {
    fn window(&self) -> u64 {
        (self.end - self.start + self.first).min(self.cap)
    }
}

#[derive(Default)]
struct State {
    stream: Option<Stream>,
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

    /// How far beyond its furthest read the current stream may fetch, in bytes (0 before
    /// the first read).
    pub fn window(&self) -> u64 {
        self.state.lock().stream.as_ref().map_or(0, Stream::window)
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

    /// Adds the read at `offset..end` to its stream (or starts one), starts the fetches
    /// its window now covers, and returns whether the read is served in whole blocks
    /// (else: cached blocks, or exactly its range). The lock covers bookkeeping only;
    /// fetches run on their own tasks.
    fn plan(&self, object: &ObjectVersion, offset: u64, end: u64) -> bool {
        let bs = self.cache.block_size();
        let blocks_in_file = self.cache.blocks_in(self.size);
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let continues = st
            .stream
            .as_ref()
            .is_some_and(|s| offset + NEAR >= s.end && offset <= s.end.max(s.frontier * bs).saturating_add(GAP));
        let max_window = self.max_window.max(bs);
        if !continues {
            for fetch in st.fetches.drain(..) {
                fetch.abort();
            }
            st.stream = None;
        }
        let stream = st.stream.get_or_insert_with(|| Stream {
            start: offset,
            end,
            first: if offset == 0 { bs } else { 0 },
            exact_end: offset,
            frontier: offset / bs,
            cap: max_window,
        });
        stream.end = stream.end.max(end);
        let ahead_to = stream.end + stream.window();
        // Blocks the window covers whole, and not read exactly in part before.
        let eligible =
            stream.exact_end.div_ceil(bs)..if ahead_to >= self.size { blocks_in_file } else { ahead_to / bs };
        let whole =
            (offset / bs..=(end - 1) / bs).all(|i| i >= eligible.start && (i < eligible.end || i < stream.frontier));
        if whole {
            stream.frontier = stream.frontier.max(end.div_ceil(bs));
        } else {
            stream.exact_end = stream.exact_end.max(end);
        }
        st.fetches.retain(|f| !f.is_finished());
        let mut from = stream.frontier.max(stream.exact_end.div_ceil(bs)).max(end.div_ceil(bs));
        let to = eligible.end;
        let run = (PART / bs).max(1);
        let window = stream.window();
        // Runs of at least half the window, up to a part (or what is left of the object):
        // topping the window up as each block is consumed would be a GET per block.
        let least = run.min(window / bs / 2).max(1);
        let mut fitted = true;
        while from < to {
            let run_end = (from + run).min(to);
            if run_end - from < least && run_end < blocks_in_file {
                break;
            }
            let prefetch = self.cache.prefetch(object, from..run_end);
            st.fetches.extend(prefetch.fetches);
            if !prefetch.complete {
                fitted = false;
                break;
            }
            from = run_end;
        }
        stream.frontier = stream.frontier.max(from);
        stream.cap = match fitted {
            true => (stream.cap * 2).min(max_window),
            false => (window / 2).max(bs),
        };
        whole
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
