//! BlockCache: fixed-size blocks of object versions, shared by every open file of the
//! mount, with one memory budget for blocks held and blocks being fetched ahead.
//!
//! A block is named by key, ETag and index, so a changed object (new ETag) never gets
//! an old block, and its old blocks simply age out. Every block's GET carries If-Match
//! with that ETag, so bytes of two versions are never mixed either.
//!
//! Fetches are runs of consecutive blocks in one ranged GET, received as a stream and
//! cut into blocks as the bytes arrive, each block its own buffer (so evicting one
//! frees it, for the next block fetched to reuse: [`BlockBuffers`]). While a block is
//! being fetched it is *pending*: other readers of the same block wait for that GET
//! instead of sending their own.
//!
//! Memory: blocks held (`cached`) plus bytes reserved by fetches ahead of readers
//! (`reserved`) stay within the capacity; inserting evicts least recently used blocks.
//! Reservations may take at most half of it, so read-ahead cannot starve the cache of
//! the blocks readers are consuming. Blocks fetched because a reader is waiting for them
//! are not reserved: a read in progress must finish.
//!
//! The LRU is one mutex rather than shards: eviction needs one order over all blocks,
//! and every critical section is O(1) per block (about 1 MiB of data).

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use lru::LruCache;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::buffers::BlockBuffers;
use super::disk_cache::DiskCache;
use crate::store::{ErrorKind, ObjectError, ObjectStore};

/// Attempts at one run of blocks when the connection breaks while the body arrives
/// (the SDK retries failed requests, not bodies cut short).
const BODY_ATTEMPTS: u32 = 2;
/// Free block buffers kept for reuse, in bytes: a part's worth of blocks evicted at once
/// to make room for the part's fetch.
const FREE_BUFFERS: u64 = 16 << 20;

/// One version of one object: what a reader reads, fixed at open.
#[derive(Debug, Clone)]
pub struct ObjectVersion {
    pub key: Arc<str>,
    pub etag: Arc<str>,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockId {
    key: Arc<str>,
    etag: Arc<str>,
    index: u64,
}

impl BlockId {
    fn new(object: &ObjectVersion, index: u64) -> BlockId {
        BlockId { key: object.key.clone(), etag: object.etag.clone(), index }
    }
}

/// Why a pending block did not arrive.
#[derive(Debug, Clone)]
enum FetchError {
    Object(ObjectError),
    /// The fetch was cancelled (its reader went away): fetch it again if still needed.
    Cancelled,
}

type BlockFuture = Shared<BoxFuture<'static, Result<Bytes, FetchError>>>;
type BlockSender = oneshot::Sender<Result<Bytes, FetchError>>;

struct Pending {
    fetch: u64,
    data: BlockFuture,
}

struct Lru {
    blocks: LruCache<BlockId, Cached>,
    bytes: u64,
}

struct Cached {
    data: Bytes,
    /// Fetched ahead of the reader and not read since: counted as wasted read-ahead if
    /// evicted so.
    unread_ahead: bool,
}

/// The fetches [`BlockCache::prefetch`] started; `complete` is false when the budget
/// had no room for some of the blocks asked for.
pub struct Prefetch {
    pub fetches: Vec<AbortHandle>,
    pub complete: bool,
}

/// What the cache holds and has in flight, for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheUsage {
    pub cached: u64,
    pub reserved: u64,
    pub blocks: usize,
    /// Blocks being fetched.
    pub pending: usize,
    /// Read-ahead bytes evicted without having been read.
    pub unread_ahead: u64,
}

pub struct BlockCache {
    client: Arc<dyn ObjectStore>,
    /// Blocks kept on local disk across mounts (`--disk-cache`): looked for before a GET,
    /// written after one.
    disk: Option<Arc<DiskCache>>,
    block_size: u64,
    capacity: u64,
    buffers: Arc<BlockBuffers>,
    lru: Mutex<Lru>,
    reserved: AtomicU64,
    pending: DashMap<BlockId, Pending>,
    next_fetch: AtomicU64,
    unread_ahead: AtomicU64,
}

impl BlockCache {
    pub fn new(client: Arc<dyn ObjectStore>, block_size: u64, capacity: u64) -> Arc<BlockCache> {
        BlockCache::with_disk(client, block_size, capacity, None)
    }

    pub fn with_disk(
        client: Arc<dyn ObjectStore>,
        block_size: u64,
        capacity: u64,
        disk: Option<Arc<DiskCache>>,
    ) -> Arc<BlockCache> {
        Arc::new(BlockCache {
            client,
            disk,
            block_size,
            capacity,
            buffers: BlockBuffers::new(block_size as usize, (FREE_BUFFERS / block_size).max(2) as usize),
            lru: Mutex::new(Lru { blocks: LruCache::unbounded(), bytes: 0 }),
            reserved: AtomicU64::new(0),
            pending: DashMap::new(),
            next_fetch: AtomicU64::new(1),
            unread_ahead: AtomicU64::new(0),
        })
    }

    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// The memory budget of blocks held and fetched ahead.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn client(&self) -> &Arc<dyn ObjectStore> {
        &self.client
    }

    pub fn usage(&self) -> CacheUsage {
        let lru = self.lru.lock();
        CacheUsage {
            cached: lru.bytes,
            reserved: self.reserved.load(Ordering::Relaxed),
            blocks: lru.blocks.len(),
            pending: self.pending.len(),
            unread_ahead: self.unread_ahead.load(Ordering::Relaxed),
        }
    }

    /// Number of blocks of an object of `size` bytes.
    pub fn blocks_in(&self, size: u64) -> u64 {
        size.div_ceil(self.block_size)
    }

    /// Block `index` of `object`: from memory, from a GET already under way, or from a
    /// GET of this block alone.
    pub async fn block(self: &Arc<Self>, object: &ObjectVersion, index: u64) -> Result<Bytes, ObjectError> {
        let id = BlockId::new(object, index);
        let metrics = crate::metrics::global();
        loop {
            if let Some(data) = self.cached(&id) {
                metrics.cache_hits.inc();
                return Ok(data);
            }
            let (fetch, data) = match self.pending.entry(id.clone()) {
                Entry::Occupied(e) => {
                    metrics.cache_hits.inc();
                    (e.get().fetch, e.get().data.clone())
                }
                Entry::Vacant(slot) => {
                    // Checked again under the entry's lock: a fetch inserts the block
                    // before it stops being pending, so one of the two is seen.
                    if let Some(data) = self.cached(&id) {
                        metrics.cache_hits.inc();
                        return Ok(data);
                    }
                    metrics.cache_misses.inc();
                    let fetch = self.next_fetch.fetch_add(1, Ordering::Relaxed);
                    let (sender, data) = pending_block();
                    slot.insert(Pending { fetch, data: data.clone() });
                    self.spawn_run(object.clone(), index, fetch, vec![sender], None);
                    (fetch, data)
                }
            };
            match data.await {
                Ok(data) => {
                    self.mark_read(&id);
                    return Ok(data);
                }
                Err(FetchError::Object(e)) => return Err(e),
                Err(FetchError::Cancelled) => {
                    self.pending.remove_if(&id, |_, p| p.fetch == fetch);
                }
            }
        }
    }

    /// Starts fetching the blocks of `blocks` that are neither cached nor pending, one
    /// GET per run of consecutive such blocks, each with its memory reserved. A run the
    /// budget has no room for is not started, and `Prefetch::complete` is false.
    pub fn prefetch(self: &Arc<Self>, object: &ObjectVersion, blocks: Range<u64>) -> Prefetch {
        let mut runs: Vec<(u64, u64, Vec<BlockSender>)> = Vec::new();
        for index in blocks {
            let id = BlockId::new(object, index);
            if self.contains(&id) {
                continue;
            }
            let Entry::Vacant(slot) = self.pending.entry(id) else { continue };
            let (sender, data) = pending_block();
            match runs.last_mut() {
                Some((first, fetch, senders)) if *first + senders.len() as u64 == index => {
                    slot.insert(Pending { fetch: *fetch, data });
                    senders.push(sender);
                }
                _ => {
                    let fetch = self.next_fetch.fetch_add(1, Ordering::Relaxed);
                    slot.insert(Pending { fetch, data });
                    runs.push((index, fetch, vec![sender]));
                }
            }
        }
        let mut prefetch = Prefetch { fetches: Vec::with_capacity(runs.len()), complete: true };
        for (first, fetch, senders) in runs {
            let blocks = first..first + senders.len() as u64;
            let bytes = blocks.clone().map(|i| block_len(object.size, self.block_size, i)).sum();
            match self.reserve(bytes) {
                Some(reservation) => {
                    prefetch.fetches.push(self.spawn_run(object.clone(), first, fetch, senders, Some(reservation)));
                }
                None => {
                    for index in blocks {
                        self.pending.remove_if(&BlockId::new(object, index), |_, p| p.fetch == fetch);
                    }
                    prefetch.complete = false;
                }
            }
        }
        prefetch
    }

    /// Block `index` of `object` if it is in memory now.
    pub fn get_cached(&self, object: &ObjectVersion, index: u64) -> Option<Bytes> {
        let found = self.cached(&BlockId::new(object, index));
        let metrics = crate::metrics::global();
        match found {
            Some(_) => metrics.cache_hits.inc(),
            None => metrics.cache_misses.inc(),
        };
        found
    }

    fn cached(&self, id: &BlockId) -> Option<Bytes> {
        self.lru.lock().blocks.get_mut(id).map(|block| {
            block.unread_ahead = false;
            block.data.clone()
        })
    }

    /// A reader got the block from its fetch: it was not fetched in vain.
    fn mark_read(&self, id: &BlockId) {
        if let Some(block) = self.lru.lock().blocks.peek_mut(id) {
            block.unread_ahead = false;
        }
    }

    fn contains(&self, id: &BlockId) -> bool {
        self.lru.lock().blocks.contains(id)
    }

    fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let limit = self.capacity / 2;
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| (r + bytes <= limit).then_some(r + bytes))
            .ok()?;
        self.evict(&mut self.lru.lock());
        Some(Reservation { cache: self.clone(), bytes })
    }

    /// Drops least recently used blocks until the blocks held and the bytes reserved fit
    /// the capacity (keeping the newest block even when it alone does not fit).
    fn evict(&self, lru: &mut Lru) {
        let reserved = self.reserved.load(Ordering::Acquire);
        while lru.bytes + reserved > self.capacity && lru.blocks.len() > 1 {
            if let Some((_, evicted)) = lru.blocks.pop_lru() {
                let len = evicted.data.len() as u64;
                lru.bytes -= len;
                let metrics = crate::metrics::global();
                metrics.cache_evictions.inc();
                if evicted.unread_ahead {
                    self.unread_ahead.fetch_add(len, Ordering::Relaxed);
                    metrics.prefetch_unread_bytes.inc_by(len);
                }
            }
        }
    }

    fn release(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Adds a fetched block (`ahead`: by read-ahead), evicting the least recently used
    /// ones until the blocks held and the bytes reserved fit the capacity again.
    fn insert(&self, id: BlockId, data: Bytes, ahead: bool) {
        let mut lru = self.lru.lock();
        lru.bytes += data.len() as u64;
        if let Some(old) = lru.blocks.put(id, Cached { data, unread_ahead: ahead }) {
            lru.bytes -= old.data.len() as u64;
        }
        self.evict(&mut lru);
    }

    fn spawn_run(
        self: &Arc<Self>,
        object: ObjectVersion,
        first: u64,
        fetch: u64,
        senders: Vec<BlockSender>,
        reservation: Option<Reservation>,
    ) -> AbortHandle {
        let run = Run { cache: self.clone(), object, next: first, fetch, senders: senders.into(), reservation };
        tokio::spawn(run.fetch()).abort_handle()
    }
}

/// Bytes of block `index` of an object of `size` bytes: the last one may be short.
pub(super) fn block_len(size: u64, block_size: u64, index: u64) -> u64 {
    size.saturating_sub(index * block_size).min(block_size)
}

fn pending_block() -> (BlockSender, BlockFuture) {
    let (sender, receiver) = oneshot::channel();
    let data = receiver.map(|r| r.unwrap_or(Err(FetchError::Cancelled))).boxed().shared();
    (sender, data)
}

/// Budget bytes held for blocks being fetched ahead; given back as they arrive and
/// become cached, or on drop.
struct Reservation {
    cache: Arc<BlockCache>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.cache.release(self.bytes);
    }
}

/// One GET of consecutive blocks, delivering each as soon as its bytes are in. When
/// dropped (aborted, or done) it withdraws the blocks it did not deliver from `pending`
/// before their waiters wake, so they fetch again instead of finding it there.
struct Run {
    cache: Arc<BlockCache>,
    object: ObjectVersion,
    /// The next block to deliver.
    next: u64,
    fetch: u64,
    senders: std::collections::VecDeque<BlockSender>,
    reservation: Option<Reservation>,
}

impl Run {
    async fn fetch(mut self) {
        let block_size = self.cache.block_size;
        let mut attempt = 1;
        while !self.senders.is_empty() {
            if self.read_from_disk().await {
                continue;
            }
            let start = self.next * block_size;
            let end = ((self.next + self.senders.len() as u64) * block_size).min(self.object.size);
            match self.receive(start..end).await {
                Ok(()) => {}
                Err(e) if e.is(ErrorKind::Interrupted) && attempt < BODY_ATTEMPTS && !self.senders.is_empty() => {
                    warn!(key = &*self.object.key, start, error = %e, "GET body cut short; fetching the rest again");
                    attempt += 1;
                }
                Err(e) => {
                    debug!(key = &*self.object.key, start, error = %e, "block fetch failed");
                    self.withdraw();
                    for sender in self.senders.drain(..) {
                        let _ = sender.send(Err(FetchError::Object(e.clone())));
                    }
                }
            }
        }
    }

    /// Receives `range` (block-aligned at its start), delivering whole blocks as they
    /// fill; the last block of the object may be short.
    async fn receive(&mut self, range: Range<u64>) -> Result<(), ObjectError> {
        let cache = self.cache.clone();
        let mut body = cache.client.get_stream(&self.object.key, range.clone(), Some(&self.object.etag)).await?;
        let mut block = Vec::new();
        while let Some(mut chunk) = body.next_chunk().await? {
            while !chunk.is_empty() && !self.senders.is_empty() {
                if block.capacity() == 0 {
                    block = cache.buffers.take();
                }
                let take = (self.next_len() as usize - block.len()).min(chunk.len());
                block.extend_from_slice(&chunk.split_to(take));
                if block.len() as u64 == self.next_len() {
                    let full = cache.buffers.freeze(std::mem::take(&mut block));
                    let index = self.next;
                    self.deliver(full.clone());
                    if let Some(disk) = &cache.disk {
                        // Written in the background: the permit it waits for bounds the
                        // blocks held for the disk, not how fast each one lands.
                        disk.put(&self.object, cache.block_size, index, full).await;
                    }
                }
            }
        }
        if self.senders.is_empty() {
            Ok(())
        } else {
            Err(ObjectError::new(ErrorKind::Interrupted, "GetObject", &*self.object.key)
                .with_message(format!("the body ended {} bytes early", range.end - self.position(&block))))
        }
    }

    /// Delivers the next block from the disk cache if it is there; false if not (or no
    /// block is left to deliver).
    async fn read_from_disk(&mut self) -> bool {
        let Some(disk) = &self.cache.disk else { return false };
        if self.senders.is_empty() {
            return false;
        }
        match disk.get(&self.object, self.cache.block_size, self.next, &self.cache.buffers).await {
            Some(data) => {
                self.deliver(data);
                true
            }
            None => false,
        }
    }

    fn position(&self, partial: &[u8]) -> u64 {
        self.next * self.cache.block_size + partial.len() as u64
    }

    fn next_len(&self) -> u64 {
        if self.senders.is_empty() {
            return 0;
        }
        block_len(self.object.size, self.cache.block_size, self.next)
    }

    fn deliver(&mut self, data: Bytes) {
        let id = BlockId::new(&self.object, self.next);
        if let Some(reservation) = &mut self.reservation {
            let len = (data.len() as u64).min(reservation.bytes);
            reservation.bytes -= len;
            self.cache.release(len);
        }
        // Read-ahead runs hold a reservation; a reader's own fetch does not.
        self.cache.insert(id.clone(), data.clone(), self.reservation.is_some());
        self.cache.pending.remove_if(&id, |_, p| p.fetch == self.fetch);
        if let Some(sender) = self.senders.pop_front() {
            let _ = sender.send(Ok(data));
        }
        self.next += 1;
    }

    fn withdraw(&mut self) {
        for i in 0..self.senders.len() as u64 {
            let id = BlockId::new(&self.object, self.next + i);
            self.cache.pending.remove_if(&id, |_, p| p.fetch == self.fetch);
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.withdraw();
        self.senders.clear();
    }
}
