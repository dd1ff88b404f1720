//! POSIX semantics over objects, with no FUSE types: this is what the adapter calls and
//! what tests can drive without a mount.
//!
//! The namespace contract (see ARCHITECTURE.md): a directory is a `dir/` marker or any
//! key below `dir/`; when `x` and `x/` both exist the directory wins; keys that cannot be
//! a path component are skipped with a warning.

mod attr;
mod buckets;
mod error;
mod inode;
mod listing;
mod metadata;
mod miss_bursts;
mod names;
mod namespace;
mod open_files;
mod prune;
mod readdir;
mod rename;
#[cfg(test)]
mod tests;
mod writers;
mod xattr;
mod xos;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use dashmap::DashMap;
use tokio::sync::Mutex as AsyncMutex;

pub use attr::{Attr, Kind, ObjectStat, PosixMeta};
pub use error::FsError;
pub use inode::ROOT_INO;
pub use listing::{invalid_name_reason, EntryMerger, ListedEntry, ListedKind, NAME_MAX};

use crate::config::{FsConfig, ReadSettings};
use crate::read::BlockCache;
use crate::store::{ObjectInfo, ObjectStore, PutOptions};
use crate::times::format_time;
use crate::write::{Uploaded, WriteConfig, WriteError, WriterHandle};

use inode::{Inode, InodeTable};
use open_files::OpenFile;
use readdir::DirHandle;
use writers::Writers;

/// The most one copy_file_range reply can report (a 32-bit count, page aligned); larger
/// files are copied by the caller.
pub const MAX_COPY_RANGE_REPLY: u64 = (u32::MAX - 0xfff) as u64;

/// The longest key S3 (and XOS) stores, in bytes; one byte is kept for a directory's `/`.
const MAX_KEY_LEN: usize = 1024;

/// One directory entry as readdir reports it.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub attr: Attr,
}

/// Totals reported by statfs: an object store has no fixed size, so say "plenty".
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub block_size: u32,
    pub name_max: u32,
}

/// An open file handle, and whether the kernel may keep the file's cached pages.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
}

/// A chmod/chown/utimens request; `None` fields stay as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttrChange {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
    pub atime: Option<SystemTime>,
    /// Clear the set-user-ID bit (and set-group-ID, with group execute) of anything but a
    /// directory, as Linux does on chown and on a write or truncate by a process without
    /// CAP_FSETID: the kernel leaves that to us (FUSE_HANDLE_KILLPRIV_V2), which spares
    /// every write a getxattr of security.capability.
    pub drop_set_id: bool,
}

impl AttrChange {
    fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.mtime.is_none()
            && self.atime.is_none()
            && !self.drop_set_id
    }
}

/// Who asks for a change of attributes: the descriptor, when the kernel names one, and
/// the process.
#[derive(Debug, Clone, Copy)]
pub struct Changer {
    pub fh: Option<u64>,
    pub pid: u32,
}

/// What new objects carry besides their POSIX attributes.
#[derive(Debug, Clone, Default)]
pub struct UploadDefaults {
    pub acl: Option<String>,
    pub storage_class: Option<String>,
}

impl UploadDefaults {
    /// The options of an upload or copy with this content type and user metadata.
    fn options(&self, content_type: Option<String>, metadata: HashMap<String, String>) -> PutOptions {
        PutOptions {
            content_type,
            metadata,
            acl: self.acl.clone(),
            storage_class: self.storage_class.clone(),
            tags: None,
        }
    }
}

/// Content-Type from a file name's extension, so images and videos preview in consoles.
fn content_type_for(name: &str) -> Option<String> {
    Some(mime_guess::from_path(name).first_or_octet_stream().essence_str().to_string())
}

/// The options of an upload that replaces (or copies) the object `stored` under `name`:
/// everything the object carried is kept (other tools' user metadata, xattrs, a
/// Content-Type someone chose, a storage class other than the default), so rewriting a
/// file changes its data and nothing else. A generic Content-Type is replaced by the
/// name's. The ACL is the mount's and no tags are set: the callers add the object's own
/// (xos.rs `Kept`), which S3 drops on a PUT and a copy.
fn rewrite_options(defaults: &UploadDefaults, name: &str, stored: &ObjectInfo) -> PutOptions {
    const GENERIC_TYPES: [&str; 3] = ["", "application/octet-stream", "binary/octet-stream"];
    let content_type =
        stored.content_type.clone().filter(|t| !GENERIC_TYPES.contains(&t.as_str())).or_else(|| content_type_for(name));
    let storage_class =
        stored.storage_class.clone().filter(|c| c != "STANDARD").or_else(|| defaults.storage_class.clone());
    // No tags: a copy keeps its source's, an upload stores none (S3 drops them on PUT).
    PutOptions { content_type, metadata: stored.metadata.clone(), acl: defaults.acl.clone(), storage_class, tags: None }
}

/// The s3fs-compatible user metadata of these attributes.
fn posix_metadata(posix: &PosixMeta) -> HashMap<String, String> {
    let numbers = [("mode", posix.mode), ("uid", posix.uid), ("gid", posix.gid), ("rdev", posix.rdev)];
    let times = [("mtime", posix.mtime), ("atime", posix.atime), ("ctime", posix.ctime)];
    let numbers = numbers.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())));
    let times = times.into_iter().filter_map(|(k, t)| t.map(|t| (k.to_string(), format_time(t))));
    numbers.chain(times).collect()
}

pub struct Fs {
    client: Arc<dyn ObjectStore>,
    cfg: FsConfig,
    inodes: InodeTable,
    files: DashMap<u64, Arc<OpenFile>>,
    dirs: DashMap<u64, Arc<AsyncMutex<DirHandle>>>,
    /// Every writer of each file open for writing.
    writers: Writers,
    write_cfg: Arc<WriteConfig>,
    upload_defaults: UploadDefaults,
    blocks: Arc<BlockCache>,
    max_prefetch: u64,
    /// Names found missing, and when: answered "no such file" for the negative TTL.
    missing: DashMap<(u64, String), Instant>,
    miss_bursts: miss_bursts::MissBursts,
    prune_inodes_at: prune::SweepAt,
    sweep_missing_at: prune::SweepAt,
    next_handle: AtomicU64,
    mounted_at: SystemTime,
    /// What the store keeps beside recently asked-about objects (xos.rs).
    facts: xos::FactCache,
    /// An account mount's buckets, the top-level directories (buckets.rs).
    account: Option<Arc<crate::store::Account>>,
}

impl Fs {
    /// Reads also keep their blocks in `disk`, and look there before asking the store.
    /// Before the mount is used: the block cache starts over.
    pub fn with_disk_cache(mut self, disk: Arc<crate::read::DiskCache>) -> Fs {
        let (block_size, capacity) = (self.blocks.block_size(), self.blocks.capacity());
        self.blocks = BlockCache::with_disk(self.client.clone(), block_size, capacity, Some(disk));
        self
    }

    /// Mounts the account whose store `client` is (an [`crate::store::AccountStore`]):
    /// the top-level directories are its buckets.
    pub fn with_account(mut self, account: Arc<crate::store::Account>) -> Fs {
        self.account = Some(account);
        self
    }

    pub fn new(
        client: Arc<dyn ObjectStore>,
        cfg: FsConfig,
        write_cfg: Arc<WriteConfig>,
        upload_defaults: UploadDefaults,
        read: ReadSettings,
    ) -> Fs {
        Fs {
            blocks: BlockCache::new(client.clone(), read.block_size, read.cache_size),
            max_prefetch: read.max_prefetch,
            missing: DashMap::new(),
            miss_bursts: Default::default(),
            prune_inodes_at: prune::SweepAt::new(),
            sweep_missing_at: prune::SweepAt::new(),
            inodes: InodeTable::new(&cfg.prefix),
            client,
            cfg,
            files: DashMap::new(),
            dirs: DashMap::new(),
            writers: Writers::default(),
            write_cfg,
            upload_defaults,
            next_handle: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
            facts: xos::FactCache::new(),
            account: None,
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
    }

    /// Whether deletes are queued (`--write-back`): unlink then answers without a wait.
    pub fn queues_deletes(&self) -> bool {
        self.write_cfg.write_back
    }

    /// Open file descriptors.
    pub fn open_handles(&self) -> usize {
        self.files.len()
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>, FsError> {
        self.inodes.get(ino).ok_or(FsError::NotFound)
    }

    /// The object key (file) or prefix (directory) of an inode, as it is named now.
    fn key(&self, inode: &Inode) -> Result<String, FsError> {
        self.inodes.key_of(inode).ok_or(FsError::NotFound)
    }

    fn attr_of(&self, inode: &Inode) -> Attr {
        match inode.kind {
            Kind::Directory => {
                let mut attr = attr::dir_attr(inode.ino, &inode.stat(), &self.cfg, self.mounted_at);
                if let (ROOT_INO, Some(mode)) = (inode.ino, self.cfg.root_mode) {
                    attr.perm = mode;
                }
                attr
            }
            Kind::File | Kind::Symlink | Kind::Special(_) => {
                let mut attr = attr::file_attr(inode.ino, &inode.stat(), &self.cfg, self.mounted_at);
                attr.kind = inode.kind;
                if let Some(writer) = self.writer_of(inode.ino) {
                    attr.size = writer.size();
                    // The times its upload will store.
                    if let Some((mtime, ctime)) = writer.times() {
                        attr.mtime = mtime;
                        attr.ctime = ctime;
                        if inode.stat().posix.atime.is_none() {
                            attr.atime = mtime;
                        }
                    }
                }
                attr
            }
        }
    }

    fn writer_of(&self, ino: u64) -> Option<WriterHandle> {
        self.writers.of(ino)
    }

    /// Whether the store's view of this file may be used: not while it is being written,
    /// when the local data is the truth.
    fn needs_revalidation(&self, inode: &Inode) -> bool {
        inode.ino != ROOT_INO
            && !self.writers.is_written(inode.ino)
            && inode.fresh_stat(self.cfg.metadata_ttl).is_none()
    }

    /// Enters a name this mount just made: it exists now, whatever a negative or listing
    /// cache said of it before.
    fn made_here(&self, dir: &Inode, name: &str, kind: Kind) -> Arc<Inode> {
        self.name_appeared(dir.ino, name);
        self.inodes.upsert_child(dir, name, kind)
    }

    /// `name` exists in `dir` now because this mount made or moved it there: what was
    /// known of it as missing no longer holds.
    fn name_appeared(&self, dir: u64, name: &str) {
        self.missing.remove(&(dir, name.to_string()));
        self.miss_bursts.appeared(dir, name);
    }

    /// This mount stored a new version of `ino` (or moved it): its readers read that one.
    fn readers_follow(&self, ino: u64) {
        for file in self.files.iter().filter(|f| f.ino == ino && f.writer.is_none()) {
            *file.reader.lock() = None;
        }
    }

    /// The directory `parent`, checked for a change of its entry `name`.
    fn writable_dir(&self, parent: u64, name: &str) -> Result<Arc<Inode>, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_name_reason(name).is_some() {
            return Err(FsError::InvalidName);
        }
        if self.key(&dir)?.len() + name.len() + 1 > MAX_KEY_LEN {
            return Err(FsError::NameTooLong);
        }
        Ok(dir)
    }

    fn record_upload(&self, ino: u64, uploaded: Uploaded) {
        if let Some(inode) = self.inodes.get(ino) {
            let mut stat = inode.stat();
            stat.size = uploaded.size;
            stat.etag = uploaded.etag;
            stat.last_modified = Some(uploaded.at);
            stat.posix.mtime = Some(uploaded.at);
            stat.posix.ctime = Some(uploaded.ctime);
            inode.set_stat(stat);
        }
        self.facts.forget(ino);
        self.readers_follow(ino);
    }

    /// The session ended: the kernel releases no more descriptors (one whose release was
    /// still queued when it ended is dropped with it). Their writers are let go: one
    /// whose last descriptor was released finishes its upload; one still held ends as
    /// its task does when every handle is gone (a write-back close's file stays in the
    /// journal for the next mount, other data is kept and logged, nothing is stored).
    pub fn end_session(&self) {
        self.files.clear();
        self.writers.clear();
    }

    /// The kernel kept a readdirplus entry: it now holds a reference, as after lookup.
    pub fn remember(&self, ino: u64) {
        if let Some(inode) = self.inodes.get(ino) {
            self.inodes.remember(&inode);
        }
    }

    pub fn statfs(&self) -> StatFs {
        const BLOCK: u32 = 4096;
        // 1 PiB and 2^32 inodes, free: enough that no tool refuses to copy in.
        let blocks = (1u64 << 50) / u64::from(BLOCK);
        StatFs { blocks, bfree: blocks, files: 1 << 32, ffree: 1 << 32, block_size: BLOCK, name_max: NAME_MAX as u32 }
    }
}

/// A writer's answer, or `None` when the writer had already been closed.
fn unless_closed<T>(answer: Result<T, WriteError>) -> Result<Option<T>, WriteError> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(WriteError::Gone) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The process (thread group) a FUSE request's thread id belongs to.
fn thread_group_of(tid: u32) -> Option<u32> {
    use std::io::Read;
    // Tgid is the fourth line, after the (at most 15-byte) name: one read of the head
    // instead of the whole file, on every open and close.
    let mut head = [0u8; 512];
    let n = std::fs::File::open(format!("/proc/{tid}/status")).ok()?.read(&mut head).ok()?;
    let status = String::from_utf8_lossy(&head[..n]);
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

fn stat_from_head(info: ObjectInfo) -> ObjectStat {
    ObjectStat {
        size: info.size,
        last_modified: info.last_modified,
        etag: info.etag,
        posix: PosixMeta::from_metadata(&info.metadata),
    }
}
