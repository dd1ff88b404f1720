//! Prefetcher: reads of one open file. A reader that jumps around gets exactly what it asks
//! for, one ranged GET per read. Once reads follow each other, the file is fetched in 8 MiB
//! chunks, and the window of chunks fetched ahead of the reader doubles with every
//! sequential read, from one chunk up to 16 (128 MiB). Chunks behind the reader are
//! dropped; chunks ahead are only fetched while the mount-wide budget has room, so when it
//! is spent windows shrink instead of memory growing. Dropping the prefetcher (the handle
//! was released) aborts its GETs in flight.
//!
//! The kernel sends read-ahead requests concurrently and slightly out of order, so a read
//! counts as sequential when it starts near where the previous one ended.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::s3::{ObjectClient, ObjectError};

/// Size of a prefetched chunk: the part size S3 clients read fastest with.
pub const CHUNK: u64 = 8 << 20;
/// Most chunks fetched ahead of one reader (128 MiB).
const MAX_WINDOW: u64 = 16;
/// How far from the previous read's end a read may start and still count as sequential.
const NEAR: u64 = 2 << 20;

/// Memory all prefetchers of the mount may hold, in MiB permits.
#[derive(Clone)]
pub struct PrefetchBudget(Arc<Semaphore>);

impl PrefetchBudget {
    pub fn new(bytes: u64) -> PrefetchBudget {
        PrefetchBudget(Arc::new(Semaphore::new((bytes >> 20).max(1) as usize)))
    }

    fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_many_owned(bytes.div_ceil(1 << 20) as u32).ok()
    }
}

type ChunkFuture = Shared<BoxFuture<'static, Result<Bytes, ObjectError>>>;

struct Chunk {
    data: ChunkFuture,
    abort: AbortHandle,
    _memory: Option<OwnedSemaphorePermit>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

#[derive(Default)]
struct State {
    chunks: BTreeMap<u64, Chunk>,
    last_end: Option<u64>,
    streak: u32,
}

pub struct Prefetcher {
    client: Arc<ObjectClient>,
    key: String,
    size: u64,
    etag: Option<String>,
    budget: PrefetchBudget,
    state: Mutex<State>,
}

impl Prefetcher {
    pub fn new(
        client: Arc<ObjectClient>,
        key: String,
        size: u64,
        etag: Option<String>,
        budget: PrefetchBudget,
    ) -> Prefetcher {
        Prefetcher { client, key, size, etag, budget, state: Mutex::new(State::default()) }
    }

    /// Up to `len` bytes at `offset`; fewer only at the end of the object.
    pub async fn read(&self, offset: u64, len: u32) -> Result<Bytes, ObjectError> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let needed = match self.plan(offset..end) {
            Some(chunks) => chunks,
            None => return self.fetch(offset..end).await,
        };
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (index, data) in needed {
            let bytes = data.await?;
            let chunk_start = index * CHUNK;
            let from = offset.max(chunk_start) - chunk_start;
            let to = (end.min(chunk_start + bytes.len() as u64)).saturating_sub(chunk_start);
            if from >= to {
                break; // the object ended early (it shrank since open)
            }
            out.extend_from_slice(&bytes[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }

    /// Decides how `r` is served: `None` for a direct GET (random access), else the chunks
    /// covering it, with the window ahead of it started. The lock covers bookkeeping only.
    fn plan(&self, r: Range<u64>) -> Option<Vec<(u64, ChunkFuture)>> {
        let mut st = self.state.lock();
        let sequential = st.last_end.is_some_and(|last| r.start + NEAR >= last && r.start <= last + NEAR);
        st.streak = if sequential { st.streak + 1 } else { 0 };
        st.last_end = Some(st.last_end.map_or(r.end, |last| last.max(r.end)));
        let first = r.start / CHUNK;
        let last = (r.end - 1) / CHUNK;
        let covered = (first..=last).all(|i| st.chunks.contains_key(&i));
        if st.streak == 0 && !covered {
            st.chunks.clear();
            return None;
        }
        // Behind the reader (allowing for reads arriving slightly out of order).
        let keep_from = first.saturating_sub(1);
        st.chunks.retain(|&i, _| i >= keep_from);
        for i in first..=last {
            st.chunks.entry(i).or_insert_with(|| self.spawn(i, None));
        }
        let window = (1u64 << st.streak.saturating_sub(1).min(4)).min(MAX_WINDOW);
        let chunks_in_file = self.size.div_ceil(CHUNK);
        for i in last + 1..(last + 1 + window).min(chunks_in_file) {
            if st.chunks.contains_key(&i) {
                continue;
            }
            match self.budget.try_take(CHUNK) {
                Some(permit) => {
                    let chunk = self.spawn(i, Some(permit));
                    st.chunks.insert(i, chunk);
                }
                None => break, // budget spent: a smaller window, not more memory
            }
        }
        Some((first..=last).map(|i| (i, st.chunks[&i].data.clone())).collect())
    }

    fn spawn(&self, index: u64, memory: Option<OwnedSemaphorePermit>) -> Chunk {
        let range = index * CHUNK..((index + 1) * CHUNK).min(self.size);
        let (client, key, etag) = (self.client.clone(), self.key.clone(), self.etag.clone());
        let task = tokio::spawn(async move { client.get_range_if(&key, range, etag.as_deref()).await });
        let abort = task.abort_handle();
        let data = async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(ObjectError::Protocol(format!("prefetch task ended: {e}"))),
            }
        }
        .boxed()
        .shared();
        Chunk { data, abort, _memory: memory }
    }

    async fn fetch(&self, r: Range<u64>) -> Result<Bytes, ObjectError> {
        match self.client.get_range_if(&self.key, r, self.etag.as_deref()).await {
            // The object shrank since open: what was there is gone, so this is its end.
            Err(ObjectError::InvalidRange) => Ok(Bytes::new()),
            other => other,
        }
    }
}
