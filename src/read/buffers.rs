//! BlockBuffers: block-sized allocations handed from the blocks the cache lets go to the
//! blocks it fetches next.
//!
//! Once the cache is full, a streaming reader evicts one block for every block it
//! fetches. A fresh allocation of a block is fresh memory from the kernel: a page fault
//! and a zeroed page per 4 KiB, a quarter of the daemon's CPU time while streaming. A
//! buffer given back when the last reference to an evicted block drops costs nothing to
//! reuse. It also keeps resident memory to what the cache holds: a block freed to the
//! allocator can stay in the freeing thread's heap while another thread's heap grows for
//! the next one. Only a few free buffers are kept: they are memory the cache's budget
//! does not count.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

pub struct BlockBuffers {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BlockBuffers {
    /// Buffers of `size` bytes; at most `keep` free ones are held for reuse.
    pub fn new(size: usize, keep: usize) -> Arc<BlockBuffers> {
        Arc::new(BlockBuffers { size, keep, free: Mutex::new(Vec::new()) })
    }

    /// An empty buffer with room for one block: a recycled one if any is free.
    pub fn take(&self) -> Vec<u8> {
        self.free.lock().pop().unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// `buf` as shared bytes; its allocation comes back here when the last reference
    /// (a cache entry or a reply being sent) drops.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Recycled { buf, home: Arc::downgrade(self) })
    }

    /// Free buffers held for reuse.
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.free.lock().len()
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() != self.size {
            return;
        }
        buf.clear();
        let mut free = self.free.lock();
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

struct Recycled {
    buf: Vec<u8>,
    /// Weak: blocks may outlive the cache (a reply still being sent at unmount).
    home: Weak<BlockBuffers>,
}

impl AsRef<[u8]> for Recycled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Recycled {
    fn drop(&mut self) {
        if let Some(home) = self.home.upgrade() {
            home.give_back(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_block_gives_its_allocation_to_the_next_take() {
        let buffers = BlockBuffers::new(4096, 2);
        let mut buf = buffers.take();
        buf.extend_from_slice(&[7; 4096]);
        let at = buf.as_ptr();
        let block = buffers.freeze(buf);
        let slice = block.slice(10..20);
        drop(block);
        assert_eq!(buffers.free(), 0, "a slice still refers to the allocation");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(buffers.free(), 1);
        let again = buffers.take();
        assert_eq!(again.as_ptr(), at);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), 4096);
    }

    #[test]
    fn only_keep_free_buffers_are_held() {
        let buffers = BlockBuffers::new(1024, 2);
        let blocks: Vec<Bytes> = (0..5).map(|_| buffers.freeze(buffers.take())).collect();
        drop(blocks);
        assert_eq!(buffers.free(), 2);
    }

    #[test]
    fn a_buffer_of_another_size_is_not_kept() {
        let buffers = BlockBuffers::new(1024, 2);
        drop(buffers.freeze(Vec::with_capacity(512)));
        assert_eq!(buffers.free(), 0);
    }

    #[test]
    fn blocks_outlive_their_buffers() {
        let buffers = BlockBuffers::new(1024, 2);
        let mut buf = buffers.take();
        buf.push(1);
        let block = buffers.freeze(buf);
        drop(buffers);
        assert_eq!(&block[..], &[1]);
    }
}
