//! DiskCache: blocks of object versions kept in a local directory (`--disk-cache`), so a
//! re-read after a remount comes from the disk, not the store.
//!
//! A block is a file named by a digest of bucket, key, ETag, block size and index; the
//! file repeats that identity and carries a CRC32C of the data, so a block that does not
//! read back exactly (torn write, bit rot, a digest collision) is deleted and fetched
//! again. Files are written whole under a temporary name and renamed into place.
//!
//! The directory's size is kept within `capacity` by evicting least recently used blocks;
//! the order survives remounts as the files' modification times (touched on every hit).
//! One daemon per directory: a lock file is held (flock) while the cache is open.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use lru::LruCache;
use md5::{Digest, Md5};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::warn;

use super::buffers::BlockBuffers;
use super::cache::{block_len, ObjectVersion};

const MAGIC: &[u8; 8] = b"XOSFSB1\n";
/// Blocks being written at once: each holds its block in memory until it is on disk, so
/// a reader faster than the disk waits rather than memory growing.
const WRITERS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DiskCacheError {
    #[error("disk cache {0} is in use by another xosfs")]
    Busy(PathBuf),
    #[error("disk cache {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
}

struct Index {
    /// File name -> size on disk, least recently used first.
    files: LruCache<String, u64>,
    bytes: u64,
}

pub struct DiskCache {
    blocks: PathBuf,
    bucket: String,
    capacity: u64,
    index: Mutex<Index>,
    writers: Arc<Semaphore>,
    /// Held (flock'ed) for as long as the cache is open.
    _lock: File,
}

impl DiskCache {
    /// Opens (creating) the cache in `dir` for blocks of `bucket`, within `capacity`
    /// bytes; blocking (reads the directory).
    pub fn open(dir: &Path, capacity: u64, bucket: &str) -> Result<Arc<DiskCache>, DiskCacheError> {
        let io = |source| DiskCacheError::Io { dir: dir.to_path_buf(), source };
        let blocks = dir.join("blocks");
        std::fs::create_dir_all(&blocks).map_err(io)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock")).map_err(io)?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(DiskCacheError::Busy(dir.to_path_buf()));
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&blocks).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(io)?;
            if name.ends_with(".tmp") {
                // A write the previous daemon did not finish.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name, meta.len()));
        }
        found.sort();
        let mut index = Index { files: LruCache::unbounded(), bytes: 0 };
        for (_, name, len) in found {
            index.bytes += len;
            index.files.put(name, len);
        }
        let cache = DiskCache {
            blocks,
            bucket: bucket.to_string(),
            capacity,
            index: Mutex::new(index),
            writers: Arc::new(Semaphore::new(WRITERS)),
            _lock: lock,
        };
        cache.evict();
        Ok(Arc::new(cache))
    }

    /// Bytes the cached blocks take on disk.
    pub fn bytes(&self) -> u64 {
        self.index.lock().bytes
    }

    /// Block `index` of `object` (blocks of `block_size`), if it is on disk and intact.
    pub async fn get(
        self: &Arc<Self>,
        object: &ObjectVersion,
        block_size: u64,
        index: u64,
        buffers: &Arc<BlockBuffers>,
    ) -> Option<Bytes> {
        let identity = self.identity(object, block_size, index);
        let name = file_name(&identity);
        self.index.lock().files.get(&name)?;
        let (cache, buffers, expected) = (self.clone(), buffers.clone(), block_len(object.size, block_size, index));
        let read = tokio::task::spawn_blocking(move || {
            let path = cache.blocks.join(&name);
            let data = read_block(&path, &identity, expected, buffers.take());
            match data {
                Some(data) => {
                    // The order of use, kept across remounts.
                    let _ = File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                    Some(buffers.freeze(data))
                }
                None => {
                    warn!(file = %path.display(), "disk cache block unreadable or corrupt; fetching it again");
                    cache.remove(&name);
                    None
                }
            }
        });
        read.await.ok().flatten()
    }

    /// Starts writing block `index` of `object` to disk, once fewer than [`WRITERS`]
    /// blocks are being written; the handle ends when the block is on disk.
    pub async fn put(
        self: &Arc<Self>,
        object: &ObjectVersion,
        block_size: u64,
        index: u64,
        data: Bytes,
    ) -> Option<JoinHandle<()>> {
        let permit = self.writers.clone().acquire_owned().await.ok()?;
        let identity = self.identity(object, block_size, index);
        let cache = self.clone();
        let write = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let name = file_name(&identity);
            match cache.write(&name, &identity, &data) {
                Ok(len) => {
                    let mut index = cache.index.lock();
                    index.bytes += len;
                    if let Some(old) = index.files.put(name, len) {
                        index.bytes -= old;
                    }
                    drop(index);
                    cache.evict();
                }
                Err(e) => warn!(error = %e, "cannot write a block to the disk cache"),
            }
        });
        Some(write)
    }

    fn identity(&self, object: &ObjectVersion, block_size: u64, index: u64) -> Vec<u8> {
        [self.bucket.as_bytes(), object.key.as_bytes(), object.etag.as_bytes()]
            .join(&0u8)
            .into_iter()
            .chain(block_size.to_le_bytes())
            .chain(index.to_le_bytes())
            .collect()
    }

    /// Writes the block file; returns its size.
    fn write(&self, name: &str, identity: &[u8], data: &[u8]) -> std::io::Result<u64> {
        let tmp = self.blocks.join(format!("{name}.tmp"));
        let mut file = File::create(&tmp)?;
        let mut header = Vec::with_capacity(24 + identity.len());
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
        header.extend_from_slice(&(data.len() as u64).to_le_bytes());
        header.extend_from_slice(&(identity.len() as u32).to_le_bytes());
        header.extend_from_slice(identity);
        file.write_all(&header)?;
        file.write_all(data)?;
        std::fs::rename(&tmp, self.blocks.join(name))?;
        Ok((header.len() + data.len()) as u64)
    }

    fn remove(&self, name: &str) {
        let mut index = self.index.lock();
        if let Some(len) = index.files.pop(name) {
            index.bytes -= len;
        }
        drop(index);
        let _ = std::fs::remove_file(self.blocks.join(name));
    }

    /// Deletes least recently used blocks until the rest fit the capacity.
    fn evict(&self) {
        loop {
            let mut index = self.index.lock();
            if index.bytes <= self.capacity {
                return;
            }
            let Some((name, len)) = index.files.pop_lru() else { return };
            index.bytes -= len;
            drop(index);
            let _ = std::fs::remove_file(self.blocks.join(name));
        }
    }
}

fn file_name(identity: &[u8]) -> String {
    Md5::digest(identity).iter().map(|b| format!("{b:02x}")).collect()
}

/// The block's data if the file holds exactly this block, intact.
fn read_block(path: &Path, identity: &[u8], expected: u64, mut buf: Vec<u8>) -> Option<Vec<u8>> {
    let mut file = File::open(path).ok()?;
    let mut header = [0u8; 24];
    file.read_exact(&mut header).ok()?;
    let crc = u32::from_le_bytes(header[8..12].try_into().ok()?);
    let len = u64::from_le_bytes(header[12..20].try_into().ok()?);
    let id_len = u32::from_le_bytes(header[20..24].try_into().ok()?) as usize;
    if &header[..8] != MAGIC || len != expected || id_len != identity.len() {
        return None;
    }
    let mut id = vec![0u8; id_len];
    file.read_exact(&mut id).ok()?;
    if id != identity {
        return None;
    }
    file.take(len + 1).read_to_end(&mut buf).ok()?;
    (buf.len() as u64 == len && crc32c::crc32c(&buf) == crc).then_some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 64 << 10;

    fn object(key: &str, etag: &str, size: u64) -> ObjectVersion {
        ObjectVersion { key: key.into(), etag: etag.into(), size }
    }

    fn buffers() -> Arc<BlockBuffers> {
        BlockBuffers::new(BLOCK as usize, 2)
    }

    /// A cache of bucket "bucket" in `dir`, with room for `capacity` bytes.
    fn open(dir: &tempfile::TempDir, capacity: u64) -> Arc<DiskCache> {
        DiskCache::open(dir.path(), capacity, "bucket").unwrap()
    }

    fn block(seed: u8) -> Bytes {
        (0..BLOCK).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
    }

    #[tokio::test]
    async fn blocks_outlive_the_daemon_and_name_their_version() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = object("clip.mp4", "\"v1\"", 3 * BLOCK);
        {
            let disk = open(&dir, 1 << 30);
            disk.put(&v1, BLOCK, 1, block(1)).await.unwrap().await.unwrap();
        }
        let disk = open(&dir, 1 << 30);
        assert_eq!(disk.get(&v1, BLOCK, 1, &buffers()).await, Some(block(1)));
        // Another index, version, block size or bucket is another block.
        assert_eq!(disk.get(&v1, BLOCK, 0, &buffers()).await, None);
        assert_eq!(disk.get(&object("clip.mp4", "\"v2\"", 3 * BLOCK), BLOCK, 1, &buffers()).await, None);
        assert_eq!(disk.get(&v1, 2 * BLOCK, 1, &buffers()).await, None);
        drop(disk);
        let other = DiskCache::open(dir.path(), 1 << 30, "other-bucket").unwrap();
        assert_eq!(other.get(&v1, BLOCK, 1, &buffers()).await, None);
    }

    #[tokio::test]
    async fn a_corrupt_block_is_dropped_so_it_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = object("a", "\"e\"", 2 * BLOCK);
        let disk = open(&dir, 1 << 30);
        disk.put(&v1, BLOCK, 0, block(7)).await.unwrap().await.unwrap();
        let path = std::fs::read_dir(dir.path().join("blocks")).unwrap().next().unwrap().unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(disk.get(&v1, BLOCK, 0, &buffers()).await, None);
        assert!(!path.exists(), "the corrupt block was kept");
        assert_eq!(disk.bytes(), 0);
        // Written again after the refetch, it reads back.
        disk.put(&v1, BLOCK, 0, block(7)).await.unwrap().await.unwrap();
        assert_eq!(disk.get(&v1, BLOCK, 0, &buffers()).await, Some(block(7)));
    }

    #[tokio::test]
    async fn least_recently_used_blocks_are_evicted_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = object("big", "\"e\"", 8 * BLOCK);
        // Room for three blocks and their headers, not four.
        let disk = open(&dir, 3 * BLOCK + 3 * 100);
        for i in 0..3 {
            disk.put(&v1, BLOCK, i, block(i as u8)).await.unwrap().await.unwrap();
        }
        // Block 0 is used, so block 1 is the least recently used when block 3 comes.
        assert!(disk.get(&v1, BLOCK, 0, &buffers()).await.is_some());
        disk.put(&v1, BLOCK, 3, block(3)).await.unwrap().await.unwrap();
        assert!(disk.bytes() <= 3 * BLOCK + 300, "{} bytes", disk.bytes());
        assert_eq!(std::fs::read_dir(dir.path().join("blocks")).unwrap().count(), 3);
        assert_eq!(disk.get(&v1, BLOCK, 1, &buffers()).await, None);
        for i in [0, 2, 3] {
            assert_eq!(disk.get(&v1, BLOCK, i, &buffers()).await, Some(block(i as u8)), "block {i}");
        }
        // A smaller capacity at the next open evicts down to it, oldest use first.
        drop(disk);
        let disk = open(&dir, BLOCK + 100);
        assert_eq!(std::fs::read_dir(dir.path().join("blocks")).unwrap().count(), 1);
        assert!(disk.bytes() <= BLOCK + 100);
    }

    #[test]
    fn one_daemon_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(&dir, 1 << 30);
        match DiskCache::open(dir.path(), 1 << 30, "bucket") {
            Err(e @ DiskCacheError::Busy(_)) => assert!(e.to_string().contains("in use by another xosfs"), "{e}"),
            other => panic!("a second open succeeded or failed otherwise: {:?}", other.err()),
        }
        drop(first);
        open(&dir, 1 << 30);
    }
}
