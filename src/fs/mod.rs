//! POSIX semantics over objects, with no FUSE types: this is what the adapter calls and
//! what tests can drive without a mount.
//!
//! The namespace contract (see ARCHITECTURE.md): a directory is a `dir/` marker or any
//! key below `dir/`; when `x` and `x/` both exist the directory wins; keys that cannot be
//! a path component are skipped with a warning.

mod attr;
mod error;
mod inode;
mod listing;
mod xattr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Mutex as AsyncMutex;

pub use attr::{Attr, Kind, ObjectStat, PosixMeta};
pub use error::FsError;
pub use inode::ROOT_INO;
pub use listing::{invalid_name_reason, EntryMerger, ListedEntry, ListedKind, NAME_MAX};

use crate::config::{FsConfig, ReadSettings};
use crate::read::{BlockCache, Prefetcher};
use crate::s3::{ObjectClient, ObjectError, ObjectInfo, PutOptions};
use crate::write::{
    multipart_copy, BaseObject, MetaChange, Uploaded, WriteConfig, WriteError, WriterHandle, MAX_SINGLE_COPY,
};

/// Objects copied at once when a directory is renamed.
const RENAME_CONCURRENCY: usize = 16;

use inode::{Inode, InodeTable};

/// HEADs in flight when a listing fetches POSIX attributes.
const LISTING_HEADS: usize = 32;

/// The most one copy_file_range reply can report (a 32-bit count, page aligned); larger
/// files are copied by the caller.
pub const MAX_COPY_RANGE_REPLY: u64 = (u32::MAX - 0xfff) as u64;

/// The longest key S3 (and XOS) stores, in bytes; one byte is kept for a directory's `/`.
const MAX_KEY_LEN: usize = 1024;

/// Keys per listing request: the most S3 and XOS return in one page.
const LIST_PAGE_KEYS: i32 = 1000;

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

/// An open file: the object version seen at open is the one read (close-to-open); a file
/// open for writing has its writer.
struct OpenFile {
    ino: u64,
    /// Reads of a file not open for writing.
    reader: Option<Prefetcher>,
    writer: Option<WriterHandle>,
    /// The process that opened the file (its thread group id).
    opener: Option<u32>,
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
}

impl AttrChange {
    fn is_empty(&self) -> bool {
        self.mode.is_none() && self.uid.is_none() && self.gid.is_none() && self.mtime.is_none()
    }
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
        PutOptions { content_type, metadata, acl: self.acl.clone(), storage_class: self.storage_class.clone() }
    }
}

/// Content-Type from a file name's extension, so images and videos preview in consoles.
fn content_type_for(name: &str) -> Option<String> {
    Some(mime_guess::from_path(name).first_or_octet_stream().essence_str().to_string())
}

/// The s3fs-compatible user metadata of these attributes.
fn posix_metadata(posix: &PosixMeta) -> HashMap<String, String> {
    let numbers = [("mode", posix.mode), ("uid", posix.uid), ("gid", posix.gid)];
    let mut meta: HashMap<String, String> =
        numbers.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string()))).collect();
    if let Some(mtime) = posix.mtime {
        meta.insert("mtime".into(), unix_secs(mtime));
    }
    meta
}

/// Seconds since the epoch, as s3fs writes `x-amz-meta-mtime`.
fn unix_secs(t: SystemTime) -> String {
    t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs().to_string()
}

/// An open directory: its listing, loaded page by page as readdir asks for more.
struct DirHandle {
    ino: u64,
    /// When the listing began: a complete listing shows the directory as of then.
    began: Instant,
    entries: Vec<DirEntry>,
    merger: EntryMerger,
    next: Option<String>,
    started: bool,
    done: bool,
}

impl DirHandle {
    fn new(ino: u64, prefix: &str) -> DirHandle {
        DirHandle {
            ino,
            began: Instant::now(),
            entries: Vec::new(),
            merger: EntryMerger::new(prefix),
            next: None,
            started: false,
            done: false,
        }
    }
}

pub struct Fs {
    client: Arc<ObjectClient>,
    cfg: FsConfig,
    inodes: InodeTable,
    files: DashMap<u64, Arc<OpenFile>>,
    dirs: DashMap<u64, Arc<AsyncMutex<DirHandle>>>,
    /// The latest writer of each file open for writing: stat and reads see its data.
    writers: DashMap<u64, WriterHandle>,
    write_cfg: Arc<WriteConfig>,
    upload_defaults: UploadDefaults,
    blocks: Arc<BlockCache>,
    max_prefetch: u64,
    /// Names found missing, and when: answered "no such file" for the negative TTL.
    missing: DashMap<(u64, String), Instant>,
    next_handle: AtomicU64,
    mounted_at: SystemTime,
}

impl Fs {
    pub fn new(
        client: Arc<ObjectClient>,
        cfg: FsConfig,
        write_cfg: Arc<WriteConfig>,
        upload_defaults: UploadDefaults,
        read: ReadSettings,
    ) -> Fs {
        Fs {
            blocks: BlockCache::new(client.clone(), read.block_size, read.cache_size),
            max_prefetch: read.max_prefetch,
            missing: DashMap::new(),
            inodes: InodeTable::new(&cfg.prefix),
            client,
            cfg,
            files: DashMap::new(),
            dirs: DashMap::new(),
            writers: DashMap::new(),
            write_cfg,
            upload_defaults,
            next_handle: AtomicU64::new(1),
            mounted_at: SystemTime::now(),
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.cfg
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
            Kind::File | Kind::Symlink => {
                let mut attr = attr::file_attr(inode.ino, &inode.stat(), &self.cfg, self.mounted_at);
                attr.kind = inode.kind;
                if let Some(writer) = self.writer_of(inode.ino) {
                    attr.size = writer.size();
                }
                attr
            }
        }
    }

    fn writer_of(&self, ino: u64) -> Option<WriterHandle> {
        self.writers.get(&ino).map(|w| w.value().clone())
    }

    /// The writer of handle `fh` if it has one, else the file's latest writer.
    fn open_writer(&self, ino: u64, fh: Option<u64>) -> Option<WriterHandle> {
        fh.and_then(|fh| self.files.get(&fh).and_then(|f| f.writer.clone())).or_else(|| self.writer_of(ino))
    }

    /// Whether the store's view of this file may be used: not while it is being written,
    /// when the local data is the truth.
    fn needs_revalidation(&self, inode: &Inode) -> bool {
        inode.ino != ROOT_INO
            && !self.writers.contains_key(&inode.ino)
            && inode.fresh_stat(self.cfg.metadata_ttl).is_none()
    }

    /// Finds `name` in `parent`; on success the kernel holds one more reference to it.
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        let dir = self.inode(parent)?;
        if dir.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        if invalid_name_reason(name).is_some() {
            return Err(FsError::NotFound);
        }
        let inode = match self.inodes.child(parent, name) {
            Some(known) if !self.needs_revalidation(&known) => known,
            Some(_) => self.resolve_child(&dir, name).await?,
            None if self.known_missing(&dir, name) => return Err(FsError::NotFound),
            None => match self.resolve_child(&dir, name).await {
                Err(FsError::NotFound) => {
                    if !self.cfg.negative_ttl.is_zero() {
                        self.missing.insert((parent, name.to_string()), Instant::now());
                    }
                    return Err(FsError::NotFound);
                }
                other => other?,
            },
        };
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// Whether `name` (not in the inode table) is known not to exist without asking the
    /// store: it was found missing within the negative TTL, or the directory was listed
    /// completely within the attribute TTL without it. Names created through this mount
    /// enter the inode table at once, so they never meet this.
    fn known_missing(&self, dir: &Inode, name: &str) -> bool {
        let key = (dir.ino, name.to_string());
        if let Some(at) = self.missing.get(&key).map(|t| *t) {
            if at.elapsed() < self.cfg.negative_ttl {
                return true;
            }
            self.missing.remove_if(&key, |_, t| *t == at);
        }
        dir.listed_within(self.cfg.metadata_ttl)
    }

    /// Asks the store what `name` is: a directory if anything lies below `name/` (which
    /// wins over an object of the same name), else a file if the object exists.
    async fn resolve_child(&self, dir: &Inode, name: &str) -> Result<Arc<Inode>, FsError> {
        let file_key = format!("{}{name}", self.key(dir)?);
        let dir_prefix = format!("{file_key}/");
        let (listed, head) =
            tokio::join!(self.client.list_page(&dir_prefix, None, 1), self.client.head_object(&file_key));
        let listed = listed?;
        if !listed.objects.is_empty() || !listed.common_prefixes.is_empty() {
            let inode = self.inodes.upsert_child(dir, name, Kind::Directory);
            // A marker (listed first, as the shortest key) carries the directory's attributes.
            let stat = match listed.objects.first().filter(|o| o.key == dir_prefix) {
                Some(_) => match self.client.head_object(&dir_prefix).await {
                    Ok(info) => stat_from_head(info),
                    Err(ObjectError::NotFound) => ObjectStat::default(),
                    Err(e) => return Err(e.into()),
                },
                None => ObjectStat::default(),
            };
            // A marker with POSIX attributes was made by s3fs or xosfs: so were its files.
            if stat.posix != PosixMeta::default() {
                inode.mark_posix_below();
            }
            inode.set_stat(stat);
            return Ok(inode);
        }
        match head {
            Ok(info) => Ok(self.found_object(dir, name, stat_from_head(info))),
            Err(ObjectError::NotFound) => {
                if let Some(stale) = self.inodes.child(dir.ino, name) {
                    self.inodes.unlink_child(dir.ino, name, stale.ino);
                }
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Records what a HEAD said of object `name` in `dir` (a symlink or a file). POSIX
    /// attributes other than the mount's defaults mark the directory as one whose
    /// listings need them.
    fn found_object(&self, dir: &Inode, name: &str, stat: ObjectStat) -> Arc<Inode> {
        let inode = self.inodes.upsert_child(dir, name, stat.posix.object_kind());
        let shown = attr::file_attr(inode.ino, &stat, &self.cfg, self.mounted_at);
        let defaults = attr::file_attr(inode.ino, &ObjectStat::default(), &self.cfg, self.mounted_at);
        if (shown.kind, shown.perm, shown.uid, shown.gid) != (defaults.kind, defaults.perm, defaults.uid, defaults.gid)
        {
            dir.mark_posix_below();
        }
        inode.set_stat(stat);
        inode
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    /// Attributes of `ino`. A file that lost its name (unlinked, deleted in the store or
    /// replaced) while open keeps answering for its descriptors with no links, as on a
    /// local disk; with none open it is gone.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Directory {
            return Ok(self.attr_of(&inode));
        }
        let mut linked = self.inodes.is_linked(&inode);
        if linked && self.needs_revalidation(&inode) {
            match self.revalidate(&inode).await {
                Ok(_) => {}
                // The store lost it: revalidate took the name away.
                Err(FsError::NotFound) => linked = false,
                Err(e) => return Err(e),
            }
        }
        if linked {
            return Ok(self.attr_of(&inode));
        }
        let open = self.files.iter().find(|f| f.ino == ino).map(|f| f.value().clone()).ok_or(FsError::NotFound)?;
        let mut attr = self.attr_of(&inode);
        attr.nlink = 0;
        // Its writer is no longer the file's latest (unlink let go of it), but still this
        // descriptor's.
        if let Some(writer) = &open.writer {
            attr.size = writer.size();
        }
        Ok(attr)
    }

    async fn revalidate(&self, inode: &Inode) -> Result<ObjectStat, FsError> {
        match self.client.head_object(&self.key(inode)?).await {
            Ok(info) => {
                let stat = stat_from_head(info);
                inode.set_stat(stat.clone());
                Ok(stat)
            }
            Err(ObjectError::NotFound) => {
                self.inodes.unlink_child(inode.parent(), &inode.name(), inode.ino);
                Err(FsError::NotFound)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a file. Writing needs a fresh HEAD (the ETag of the base); `truncate` drops
    /// the old content, which then is replaced at close even if nothing is written. The
    /// reply says whether the kernel may keep its cached pages (the store still has the
    /// version they came from).
    pub async fn open(&self, ino: u64, write: bool, truncate: bool, pid: u32) -> Result<Opened, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        if write && self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let being_written = self.writers.contains_key(&ino);
        let stat = if being_written {
            inode.stat()
        } else if write || self.needs_revalidation(&inode) {
            self.revalidate(&inode).await?
        } else {
            inode.stat()
        };
        let cached_version = (!write && !being_written).then_some(stat.etag.as_deref()).flatten();
        let keep_cache = inode.keep_page_cache(cached_version);
        let (reader, writer) = if write {
            let base = (!truncate).then(|| BaseObject { etag: stat.etag.clone(), size: stat.size });
            let writer = self.spawn_writer(&inode, base)?;
            self.writers.insert(ino, writer.clone());
            (None, Some(writer))
        } else {
            let key = self.key(&inode)?;
            let reader = Prefetcher::new(self.blocks.clone(), &key, stat.size, stat.etag.as_deref(), self.max_prefetch);
            (Some(reader), None)
        };
        let fh = self.add_handle(OpenFile { ino, reader, writer, opener: thread_group_of(pid) });
        Ok(Opened { fh, keep_cache })
    }

    fn add_handle(&self, file: OpenFile) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.insert(fh, Arc::new(file));
        fh
    }

    fn spawn_writer(&self, inode: &Inode, base: Option<BaseObject>) -> Result<WriterHandle, FsError> {
        let posix = attr::file_attr(inode.ino, &inode.stat(), &self.cfg, self.mounted_at);
        let metadata: HashMap<String, String> = [
            ("mode".to_string(), (libc::S_IFREG | u32::from(posix.perm)).to_string()),
            ("uid".to_string(), posix.uid.to_string()),
            ("gid".to_string(), posix.gid.to_string()),
        ]
        .into();
        let opts = self.upload_defaults.options(content_type_for(&inode.name()), metadata);
        Ok(WriterHandle::spawn(self.client.clone(), self.write_cfg.clone(), self.key(inode)?, opts, base))
    }

    /// Makes `name` in `parent` as an empty file open for writing; it is stored at close.
    pub async fn create(
        &self,
        parent: u64,
        name: &str,
        perm: u16,
        uid: u32,
        gid: u32,
        pid: u32,
    ) -> Result<(Attr, u64), FsError> {
        let dir = self.writable_dir(parent, name)?;
        let now = SystemTime::now();
        let inode = self.inodes.upsert_child(&dir, name, Kind::File);
        inode.set_stat(ObjectStat {
            size: 0,
            last_modified: Some(now),
            etag: None,
            posix: PosixMeta {
                mode: Some(libc::S_IFREG | u32::from(perm)),
                uid: Some(uid),
                gid: Some(gid),
                mtime: Some(now),
            },
        });
        let writer = self.spawn_writer(&inode, None)?;
        self.writers.insert(inode.ino, writer.clone());
        self.inodes.remember(&inode);
        let opener = thread_group_of(pid);
        let fh = self.add_handle(OpenFile { ino: inode.ino, reader: None, writer: Some(writer), opener });
        Ok((self.attr_of(&inode), fh))
    }

    fn handle(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        self.files.get(&fh).map(|f| f.value().clone()).ok_or(FsError::BadHandle)
    }

    /// Up to `size` bytes at `offset`; fewer only at the end of the file. A file being
    /// written reads through its writer, so readers see the written data.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Bytes, FsError> {
        let file = self.handle(fh)?;
        if let Some(writer) = file.writer.clone().or_else(|| self.writer_of(file.ino)) {
            match writer.read(offset, size).await {
                // Another handle's writer finished (its close uploaded the data, which
                // this read handle's version then names): read from the store.
                Err(WriteError::Gone) if file.writer.is_none() => {}
                other => return Ok(other?),
            }
        }
        let reader = file.reader.as_ref().ok_or(FsError::BadHandle)?;
        reader.read(offset, size).await.map_err(|e| match e {
            ObjectError::NotFound => FsError::Vanished,
            other => other.into(),
        })
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Vec<u8>) -> Result<u32, FsError> {
        let writer = self.handle(fh)?.writer.clone().ok_or(FsError::BadHandle)?;
        Ok(writer.write(offset, data).await?)
    }

    /// copy_file_range(2) of a whole file into a new, empty one: one server-side copy
    /// (the destination keeps its own name's metadata), so `cp` copies without moving the
    /// data through this machine. Anything else is `NotSupported` and the caller copies the
    /// bytes itself.
    pub async fn copy_file_range(
        &self,
        fh_in: u64,
        offset_in: u64,
        fh_out: u64,
        offset_out: u64,
        len: u64,
    ) -> Result<u64, FsError> {
        let (source, dest) = (self.handle(fh_in)?, self.handle(fh_out)?);
        let version = match (&source.reader, self.writer_of(source.ino)) {
            (Some(reader), None) => reader.version().cloned().ok_or(FsError::NotSupported)?,
            _ => return Err(FsError::NotSupported),
        };
        let writer = dest.writer.clone().ok_or(FsError::BadHandle)?;
        if offset_in >= version.size && offset_out == writer.size() {
            return Ok(0); // the end of a copy done before
        }
        if offset_in != 0 || offset_out != 0 || len < version.size || version.size > MAX_COPY_RANGE_REPLY {
            return Err(FsError::NotSupported);
        }
        match writer.copy_from(version.key.to_string(), version.etag.to_string(), version.size).await? {
            Some(uploaded) => {
                self.record_upload(dest.ino, uploaded);
                Ok(version.size)
            }
            None => Err(FsError::NotSupported),
        }
    }

    /// close(2): the file's data is durable in the store when this returns Ok. A close by
    /// another process (a child that inherited the descriptor and exec'd or exited) does
    /// not upload a file its opener is still writing.
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        let file = self.handle(fh)?;
        if file.writer.is_some() && file.opener.is_some() && thread_group_of(pid) != file.opener {
            return Ok(());
        }
        self.fsync(fh).await
    }

    /// fsync(2): uploads what is written so far.
    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let file = self.handle(fh)?;
        if let Some(writer) = &file.writer {
            if let Some(uploaded) = writer.flush().await? {
                self.record_upload(file.ino, uploaded);
            }
        }
        Ok(())
    }

    pub async fn release(&self, fh: u64) -> Result<(), FsError> {
        let Some((_, file)) = self.files.remove(&fh) else { return Ok(()) };
        let Some(writer) = &file.writer else { return Ok(()) };
        let result = writer.close().await;
        self.writers.remove_if(&file.ino, |_, w| w.same(writer));
        if let Some(uploaded) = result? {
            self.record_upload(file.ino, uploaded);
        }
        Ok(())
    }

    /// Makes a directory: a `name/` marker object carrying its attributes.
    pub async fn mkdir(&self, parent: u64, name: &str, perm: u16, uid: u32, gid: u32) -> Result<Attr, FsError> {
        let dir = self.writable_dir(parent, name)?;
        if self.find_child(&dir, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        let key = format!("{}{name}/", self.key(&dir)?);
        let opts = self.marker_options(libc::S_IFDIR | u32::from(perm), uid, gid, SystemTime::now());
        self.client.put_object(&key, Bytes::new(), &opts).await?;
        let inode = self.inodes.upsert_child(&dir, name, Kind::Directory);
        inode.set_stat(ObjectStat { posix: PosixMeta::from_metadata(&opts.metadata), ..ObjectStat::default() });
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// How a `dir/` marker is stored: empty, with the directory's attributes.
    fn marker_options(&self, mode: u32, uid: u32, gid: u32, mtime: SystemTime) -> PutOptions {
        let posix = PosixMeta { mode: Some(mode), uid: Some(uid), gid: Some(gid), mtime: Some(mtime) };
        self.upload_defaults.options(Some("application/x-directory".into()), posix_metadata(&posix))
    }

    /// symlink(2), stored as s3fs does: an object whose body is the target and whose
    /// mode is S_IFLNK|0777.
    pub async fn symlink(&self, parent: u64, name: &str, target: &str, uid: u32, gid: u32) -> Result<Attr, FsError> {
        let dir = self.writable_dir(parent, name)?;
        if self.find_child(&dir, name).await?.is_some() {
            return Err(FsError::Exists);
        }
        let key = format!("{}{name}", self.key(&dir)?);
        let now = SystemTime::now();
        let posix = PosixMeta { mode: Some(libc::S_IFLNK | 0o777), uid: Some(uid), gid: Some(gid), mtime: Some(now) };
        let opts = self.upload_defaults.options(None, posix_metadata(&posix));
        let etag = self.client.put_object(&key, Bytes::copy_from_slice(target.as_bytes()), &opts).await?;
        let inode = self.inodes.upsert_child(&dir, name, Kind::Symlink);
        inode.set_stat(ObjectStat { size: target.len() as u64, last_modified: Some(now), etag, posix });
        self.inodes.remember(&inode);
        Ok(self.attr_of(&inode))
    }

    /// readlink(2): the body of the symlink's object.
    pub async fn readlink(&self, ino: u64) -> Result<Bytes, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Symlink {
            return Err(FsError::NotSymlink);
        }
        let size = inode.stat().size;
        if size == 0 {
            return Ok(Bytes::new());
        }
        Ok(self.client.get_range(&self.key(&inode)?, 0..size).await?)
    }

    /// Removes a file. One still open for writing keeps working for its descriptors but is
    /// not stored when closed.
    pub async fn unlink(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        // The kernel resolved the name just now: no need to ask the store again (deleting
        // a key someone else removed meanwhile is harmless).
        let child = match self.inodes.child(parent, name) {
            Some(known) => known,
            None => self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?,
        };
        if child.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        if let Some((_, writer)) = self.writers.remove(&child.ino) {
            writer.discard().await?;
        }
        self.client.delete_object(&self.key(&child)?).await?;
        self.inodes.unlink_child(parent, name, child.ino);
        Ok(())
    }

    /// Removes an empty directory (its marker, if it has one).
    pub async fn rmdir(&self, parent: u64, name: &str) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        let child = self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?;
        if child.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        let prefix = self.key(&child)?;
        if !self.stored_dir_is_empty(&prefix).await?
            || self.writers.iter().any(|w| self.inodes.get(*w.key()).is_some_and(|i| i.parent() == child.ino))
        {
            return Err(FsError::NotEmpty);
        }
        self.client.delete_object(&prefix).await?;
        self.inodes.unlink_child(parent, name, child.ino);
        Ok(())
    }

    /// rename(2). A file is copied on the server (keeping its metadata; Content-Type from
    /// the new name) and the old key deleted; a directory moves every key below it, the
    /// sources deleted only once all copies succeeded. Not atomic: a failure leaves every
    /// object reachable under its old or its new name, and reports EIO.
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        no_replace: bool,
    ) -> Result<(), FsError> {
        let dir = self.writable_dir(parent, name)?;
        let new_dir = self.writable_dir(new_parent, new_name)?;
        let src = self.find_child(&dir, name).await?.ok_or(FsError::NotFound)?;
        let dst = self.find_child(&new_dir, new_name).await?;
        if let Some(dst) = &dst {
            if dst.ino == src.ino {
                return Ok(());
            }
            if no_replace {
                return Err(FsError::Exists);
            }
            match (src.kind == Kind::Directory, dst.kind == Kind::Directory) {
                (false, true) => return Err(FsError::IsDirectory),
                (true, false) => return Err(FsError::NotDirectory),
                (true, true) => {
                    if !self.stored_dir_is_empty(&self.key(dst)?).await? {
                        return Err(FsError::NotEmpty);
                    }
                }
                (false, false) => {}
            }
        }
        let new_key = format!("{}{new_name}", self.key(&new_dir)?);
        match src.kind {
            Kind::Directory => self.rename_dir(&src, &format!("{new_key}/")).await?,
            Kind::File | Kind::Symlink => self.rename_file(&src, &new_key).await?,
        }
        if let Some((_, replaced)) = dst.and_then(|d| self.writers.remove(&d.ino)) {
            // A file replaced by the rename must not come back when its writer closes.
            replaced.discard().await?;
        }
        self.inodes.rename(&src, new_parent, new_name);
        Ok(())
    }

    async fn rename_file(&self, src: &Inode, new_key: &str) -> Result<(), FsError> {
        let old_key = self.key(src)?;
        // A writer released just before the rename (close, then rename, as rsync does) may
        // have ended meanwhile: its close already stored everything, so there is no writer.
        let writer = self.writer_of(src.ino);
        if let Some(writer) = &writer {
            // What is written so far is stored first, so the copy carries it.
            if let Some(uploaded) = unless_closed(writer.flush().await)?.flatten() {
                self.record_upload(src.ino, uploaded);
            }
        }
        let info = self.client.head_object(&old_key).await?;
        let opts = self.upload_defaults.options(content_type_for(new_key), info.metadata.clone());
        let etag = self.copy(&old_key, &info, new_key, Some(&opts)).await?;
        self.client.delete_object(&old_key).await?;
        if let Some(writer) = writer {
            unless_closed(writer.rekey(new_key.to_string(), BaseObject { etag: etag.clone(), size: info.size }).await)?;
        }
        let mut stat = src.stat();
        stat.etag = etag;
        src.set_stat(stat);
        Ok(())
    }

    /// One object to another name on the server: CopyObject, or part by part above the
    /// copy threshold. `opts` replaces the metadata; `None` keeps it.
    async fn copy(
        &self,
        from: &str,
        info: &ObjectInfo,
        to: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, FsError> {
        if info.size <= self.write_cfg.copy_threshold {
            return Ok(self.client.copy_object(from, info.etag.as_deref(), to, opts).await?);
        }
        let etag = info.etag.as_deref().ok_or(FsError::NotSupported)?;
        // A part copy starts a new upload, which must be given the metadata to keep.
        let kept = self.upload_defaults.options(info.content_type.clone(), info.metadata.clone());
        let opts = opts.unwrap_or(&kept);
        Ok(multipart_copy(self.client.clone(), &self.write_cfg, from, etag, to, info.size, opts).await?)
    }

    async fn rename_dir(&self, src: &Inode, new_prefix: &str) -> Result<(), FsError> {
        let old_prefix = self.key(src)?;
        let busy = self.writers.iter().any(|w| {
            self.inodes.get(*w.key()).and_then(|i| self.inodes.key_of(&i)).is_some_and(|k| k.starts_with(&old_prefix))
        });
        if busy {
            return Err(FsError::Busy);
        }
        let objects = self.client.list_all(&old_prefix).await?;
        if objects.is_empty() {
            // A directory that exists only here (made, nothing stored below): nothing to move.
            return Ok(());
        }
        let mut copies = tokio::task::JoinSet::new();
        let mut failed = None;
        for object in &objects {
            while copies.len() >= RENAME_CONCURRENCY {
                if let Some(Ok(Err(e))) = copies.join_next().await {
                    failed.get_or_insert(e);
                }
            }
            let to = format!("{new_prefix}{}", &object.key[old_prefix.len()..]);
            let (from, etag, client) = (object.key.clone(), object.etag.clone(), self.client.clone());
            if object.size > self.write_cfg.copy_threshold {
                // Part copies need the metadata up front: ask for it and copy inline.
                let info = self.client.head_object(&from).await?;
                if let Err(e) = self.copy(&from, &info, &to, None).await {
                    failed.get_or_insert(e);
                }
                continue;
            }
            copies.spawn(async move {
                client.copy_object(&from, etag.as_deref(), &to, None).await.map(drop).map_err(FsError::from)
            });
        }
        while let Some(done) = copies.join_next().await {
            if let Ok(Err(e)) = done {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            tracing::error!(from = %old_prefix, to = %new_prefix, "directory rename failed while copying; every object is still under the old name: {e}");
            return Err(e);
        }
        let keys: Vec<String> = objects.into_iter().map(|o| o.key).collect();
        for batch in keys.chunks(1000) {
            let failures = self.client.delete_objects(batch).await?;
            if let Some((key, why)) = failures.first() {
                tracing::error!(from = %old_prefix, to = %new_prefix, "directory rename copied everything but could not delete {} old key(s), e.g. {key}: {why}", failures.len());
                return Err(FsError::Store(ObjectError::Protocol(format!("could not delete {key}: {why}"))));
            }
        }
        Ok(())
    }

    /// Whether nothing but the directory's own marker is stored under `prefix`.
    async fn stored_dir_is_empty(&self, prefix: &str) -> Result<bool, FsError> {
        let page = self.client.list_page(prefix, None, 2).await?;
        Ok(page.common_prefixes.is_empty() && page.objects.iter().all(|o| o.key == prefix))
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

    /// The entry `name` of `dir`, from memory when fresh, else from the store.
    async fn find_child(&self, dir: &Inode, name: &str) -> Result<Option<Arc<Inode>>, FsError> {
        if let Some(known) = self.inodes.child(dir.ino, name) {
            if !self.needs_revalidation(&known) {
                return Ok(Some(known));
            }
        }
        match self.resolve_child(dir, name).await {
            Ok(inode) => Ok(Some(inode)),
            Err(FsError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// chmod, chown, utimens: kept in the s3fs-compatible metadata. A file being written
    /// stores them with its upload; any other file is copied onto itself with the new
    /// metadata (the object is otherwise unchanged).
    pub async fn set_attributes(&self, ino: u64, fh: Option<u64>, change: AttrChange) -> Result<Attr, FsError> {
        let inode = self.inode(ino)?;
        if change.is_empty() {
            return Ok(self.attr_of(&inode));
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let mut stat = inode.stat();
        let current = self.attr_of(&inode);
        let type_bits = match inode.kind {
            Kind::Directory => libc::S_IFDIR,
            Kind::Symlink => libc::S_IFLNK,
            Kind::File => libc::S_IFREG,
        };
        let mode = type_bits | u32::from(change.mode.unwrap_or(current.perm));
        let meta = MetaChange {
            mode: Some(mode),
            uid: change.uid.or(Some(current.uid)),
            gid: change.gid.or(Some(current.gid)),
            mtime: change.mtime,
        };
        // Stored with the upload of a file being written; a writer closed meanwhile has
        // uploaded already, so the attributes then go on the stored object.
        let by_writer = match self.open_writer(ino, fh) {
            Some(writer) => unless_closed(writer.set_meta(meta).await)?,
            None => None,
        };
        match by_writer {
            Some(()) => {}
            None => {
                let uid = meta.uid.unwrap_or(current.uid);
                let gid = meta.gid.unwrap_or(current.gid);
                self.rewrite_metadata(&inode, |info| {
                    let metadata = &mut info.metadata;
                    metadata.insert("mode".into(), mode.to_string());
                    metadata.insert("uid".into(), uid.to_string());
                    metadata.insert("gid".into(), gid.to_string());
                    // The copy changes Last-Modified: keep the time shown unless it changes.
                    let mtime = change.mtime.or(PosixMeta::from_metadata(metadata).mtime).or(info.last_modified);
                    if let Some(t) = mtime {
                        metadata.insert("mtime".into(), unix_secs(t));
                    }
                    Ok(())
                })
                .await?;
                return Ok(self.attr_of(&inode));
            }
        }
        stat.posix.mode = meta.mode;
        stat.posix.uid = meta.uid;
        stat.posix.gid = meta.gid;
        if let Some(t) = change.mtime {
            stat.posix.mtime = Some(t);
        }
        inode.set_stat(stat);
        Ok(self.attr_of(&inode))
    }

    fn record_upload(&self, ino: u64, uploaded: Uploaded) {
        if let Some(inode) = self.inodes.get(ino) {
            let mut stat = inode.stat();
            stat.size = uploaded.size;
            stat.etag = uploaded.etag;
            stat.last_modified = Some(uploaded.at);
            stat.posix.mtime = Some(uploaded.at);
            inode.set_stat(stat);
        }
    }

    /// truncate(2)/ftruncate(2): through the file's writer, or as a one-off rewrite.
    pub async fn set_size(&self, ino: u64, fh: Option<u64>, size: u64) -> Result<Attr, FsError> {
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        let by_writer = match self.open_writer(ino, fh) {
            Some(writer) => unless_closed(writer.truncate(size).await)?,
            None => None,
        };
        match by_writer {
            Some(()) => {}
            None => {
                let stat = self.revalidate(&inode).await?;
                let base = (size > 0).then(|| BaseObject { etag: stat.etag.clone(), size: stat.size });
                let writer = self.spawn_writer(&inode, base)?;
                writer.truncate(size).await?;
                if let Some(uploaded) = writer.close().await? {
                    self.record_upload(ino, uploaded);
                }
            }
        }
        Ok(self.attr_of(&inode))
    }

    /// Copies the object of `inode` onto itself with its metadata (and Content-Type)
    /// changed by `edit`, the data untouched. A directory without a marker gets one, with
    /// its current attributes, to hold the metadata.
    async fn rewrite_metadata(
        &self,
        inode: &Inode,
        edit: impl FnOnce(&mut ObjectInfo) -> Result<(), FsError>,
    ) -> Result<(), FsError> {
        let key = self.key(inode)?;
        let Some(mut info) = self.stored_info(inode).await? else {
            let current = self.attr_of(inode);
            let dir_mode = libc::S_IFDIR | u32::from(current.perm);
            let opts = self.marker_options(dir_mode, current.uid, current.gid, current.mtime);
            let mut info = ObjectInfo {
                size: 0,
                content_type: opts.content_type.clone(),
                last_modified: Some(current.mtime),
                etag: None,
                storage_class: None,
                metadata: opts.metadata.clone(),
            };
            edit(&mut info)?;
            let opts = PutOptions { metadata: info.metadata, ..opts };
            let etag = self.client.put_object(&key, Bytes::new(), &opts).await?;
            let posix = PosixMeta::from_metadata(&opts.metadata);
            inode.set_stat(ObjectStat { etag, posix, ..ObjectStat::default() });
            return Ok(());
        };
        if info.size > MAX_SINGLE_COPY {
            return Err(FsError::NotSupported);
        }
        let source_etag = info.etag.clone();
        edit(&mut info)?;
        if info.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > xattr::METADATA_LIMIT {
            return Err(FsError::AttributesTooBig);
        }
        let opts = self.upload_defaults.options(info.content_type.clone(), info.metadata.clone());
        let etag = self.client.copy_object(&key, source_etag.as_deref(), &key, Some(&opts)).await?;
        inode.set_stat(ObjectStat {
            size: info.size,
            last_modified: Some(SystemTime::now()),
            etag,
            posix: PosixMeta::from_metadata(&info.metadata),
        });
        Ok(())
    }

    /// The object's metadata as stored now; `None` for a directory without a marker.
    async fn stored_info(&self, inode: &Inode) -> Result<Option<ObjectInfo>, FsError> {
        match self.client.head_object(&self.key(inode)?).await {
            Ok(info) => Ok(Some(info)),
            Err(ObjectError::NotFound) if inode.kind == Kind::Directory => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// getxattr(2): a stored user attribute, or one of the `user.xos.*` views of the object.
    pub async fn getxattr(&self, ino: u64, name: &str) -> Result<Vec<u8>, FsError> {
        let inode = self.inode(ino)?;
        if !name.starts_with("user.") {
            // security.*, system.posix_acl_* and trusted.* are asked for by ls and cp on
            // every file: answer without a request.
            return Err(FsError::NoAttribute);
        }
        let info = self.stored_info(&inode).await?.ok_or(FsError::NoAttribute)?;
        let value = match name {
            xattr::ETAG => info.etag.map(|e| e.trim_matches('"').to_string()),
            xattr::STORAGE_CLASS => Some(info.storage_class.unwrap_or_else(|| "STANDARD".into())),
            xattr::CONTENT_TYPE => info.content_type,
            _ => {
                return xattr::decode(info.metadata.get(xattr::METADATA_KEY).map(String::as_str))
                    .remove(name)
                    .ok_or(FsError::NoAttribute)
            }
        };
        value.map(String::into_bytes).ok_or(FsError::NoAttribute)
    }

    /// listxattr(2): the stored user attributes and the `user.xos.*` views.
    pub async fn listxattr(&self, ino: u64) -> Result<Vec<String>, FsError> {
        let inode = self.inode(ino)?;
        let Some(info) = self.stored_info(&inode).await? else { return Ok(Vec::new()) };
        let mut names: Vec<String> = xattr::VIRTUAL.iter().map(|n| n.to_string()).collect();
        names.extend(xattr::decode(info.metadata.get(xattr::METADATA_KEY).map(String::as_str)).into_keys());
        Ok(names)
    }

    /// setxattr(2) (`create`: XATTR_CREATE, `replace`: XATTR_REPLACE) and removexattr(2)
    /// (`value` None). Only user attributes; `user.xos.content_type` sets the
    /// Content-Type. Stored by copying the object onto itself with the new metadata.
    pub async fn change_xattr(
        &self,
        ino: u64,
        name: &str,
        value: Option<&[u8]>,
        create: bool,
        replace: bool,
    ) -> Result<(), FsError> {
        let inode = self.inode(ino)?;
        if !name.starts_with("user.") {
            return Err(FsError::NotSupported);
        }
        if name == xattr::ETAG
            || name == xattr::STORAGE_CLASS
            || (name.starts_with("user.xos.") && name != xattr::CONTENT_TYPE)
        {
            return Err(FsError::PermissionDenied);
        }
        if self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if self.writer_of(ino).is_some() {
            // Its upload at close would carry the metadata of its open, losing this.
            return Err(FsError::Busy);
        }
        self.rewrite_metadata(&inode, |info| {
            if name == xattr::CONTENT_TYPE {
                let value = value.ok_or(FsError::PermissionDenied)?;
                info.content_type = Some(String::from_utf8(value.to_vec()).map_err(|_| FsError::InvalidName)?);
                return Ok(());
            }
            let mut attrs = xattr::decode(info.metadata.get(xattr::METADATA_KEY).map(String::as_str));
            match (value, attrs.contains_key(name)) {
                (Some(_), true) if create => return Err(FsError::AttributeExists),
                (Some(_), false) if replace => return Err(FsError::NoAttribute),
                (None, false) => return Err(FsError::NoAttribute),
                (Some(v), _) => {
                    attrs.insert(name.to_string(), v.to_vec());
                }
                (None, true) => {
                    attrs.remove(name);
                }
            }
            match xattr::encode(&attrs) {
                Some(stored) => info.metadata.insert(xattr::METADATA_KEY.into(), stored),
                None => info.metadata.remove(xattr::METADATA_KEY),
            };
            Ok(())
        })
        .await
    }

    pub async fn opendir(&self, ino: u64) -> Result<u64, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Directory {
            return Err(FsError::NotDirectory);
        }
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let handle = DirHandle::new(ino, &self.key(&inode)?);
        self.dirs.insert(fh, Arc::new(AsyncMutex::new(handle)));
        Ok(fh)
    }

    /// Entries from position `offset` on (0 is the start; `.` and `..` come first),
    /// listing further pages until at least `want` entries or the end are available.
    pub async fn readdir(&self, fh: u64, offset: u64, want: usize) -> Result<Vec<(u64, DirEntry)>, FsError> {
        let handle = self.dirs.get(&fh).map(|d| d.value().clone()).ok_or(FsError::BadHandle)?;
        // One reader per open directory at a time; the lock guards only this handle.
        let mut h = handle.lock().await;
        if offset == 0 && h.started {
            // rewinddir(3): start over, so the listing is current.
            let dir = self.inode(h.ino)?;
            *h = DirHandle::new(h.ino, &self.key(&dir)?);
        }
        if !h.started {
            let dir = self.inode(h.ino)?;
            let parent = self.inode(dir.parent())?;
            h.entries.push(DirEntry { name: ".".into(), attr: self.attr_of(&dir) });
            h.entries.push(DirEntry { name: "..".into(), attr: self.attr_of(&parent) });
            h.started = true;
            // A directory listed completely within the TTL is listed from memory: every
            // name it had is in the inode table, with this mount's changes since.
            if dir.listed_within(self.cfg.metadata_ttl) {
                for (name, inode) in self.inodes.children_of(h.ino) {
                    h.entries.push(DirEntry { name, attr: self.attr_of(&inode) });
                }
                h.done = true;
            }
        }
        let offset = offset as usize;
        while !h.done && h.entries.len() < offset.saturating_add(want) {
            self.list_more(&mut h).await?;
        }
        Ok(h.entries.iter().enumerate().skip(offset).map(|(i, e)| (i as u64 + 1, e.clone())).collect())
    }

    async fn list_more(&self, h: &mut DirHandle) -> Result<(), FsError> {
        let dir = self.inode(h.ino)?;
        let page = self.client.list_page(&self.key(&dir)?, h.next.take(), LIST_PAGE_KEYS).await?;
        h.next = page.next.clone();
        h.done = h.next.is_none();
        let mut page_entries = Vec::new();
        for entry in h.merger.push(page) {
            let inode = match entry.kind {
                ListedKind::Directory => {
                    let inode = self.inodes.upsert_child(&dir, &entry.name, Kind::Directory);
                    // The listing proves it exists; its attributes wait for a lookup.
                    inode.mark_fresh();
                    inode
                }
                ListedKind::File(o) => {
                    let listed = ObjectStat {
                        size: o.size,
                        last_modified: o.last_modified,
                        etag: o.etag,
                        posix: PosixMeta::default(),
                    };
                    // A listing cannot tell a symlink from a file; a symlink already looked
                    // at stays one while the object is the same version.
                    let kind = match self.inodes.child(dir.ino, &entry.name) {
                        Some(known) if known.kind == Kind::Symlink && known.stat().same_version(&listed) => {
                            Kind::Symlink
                        }
                        _ => Kind::File,
                    };
                    let inode = self.inodes.upsert_child(&dir, &entry.name, kind);
                    inode.set_listed_stat(listed);
                    inode
                }
            };
            page_entries.push((entry.name, inode));
        }
        if dir.posix_below() {
            self.fetch_posix(&dir, &mut page_entries).await;
        }
        for (name, inode) in page_entries {
            h.entries.push(DirEntry { name, attr: self.attr_of(&inode) });
        }
        if h.done {
            // Names the store no longer has (and this mount did not make since the listing
            // began) leave the table, which then holds exactly this directory's children.
            let listed: std::collections::HashSet<&str> = h.entries.iter().map(|e| e.name.as_str()).collect();
            for (name, child) in self.inodes.children_of(h.ino) {
                if !listed.contains(name.as_str())
                    && !self.writers.contains_key(&child.ino)
                    && child.confirmed_before(h.began)
                {
                    self.inodes.unlink_child(h.ino, &name, child.ino);
                }
            }
            dir.mark_listed(h.began);
            // Files created here and not yet stored exist only locally until closed.
            let local: Vec<Arc<Inode>> =
                self.writers.iter().filter_map(|w| self.inodes.get(*w.key())).filter(|i| i.parent() == h.ino).collect();
            for inode in local {
                let name = inode.name();
                if !h.entries.iter().any(|e| e.name == name) {
                    h.entries.push(DirEntry { name, attr: self.attr_of(&inode) });
                }
            }
        }
        Ok(())
    }

    /// Completes listed objects whose POSIX attributes (and symlink-ness) are unknown with
    /// HEADs, [`LISTING_HEADS`] at a time. Listings take size and time from the listing;
    /// only directories known to hold POSIX attributes pay for this. A failed HEAD leaves
    /// the listing's attributes.
    async fn fetch_posix(&self, dir: &Inode, entries: &mut [(String, Arc<Inode>)]) {
        use futures_util::stream::{self, StreamExt};
        let wanted: Vec<(usize, String)> = entries
            .iter()
            .enumerate()
            .filter(|(_, (_, i))| {
                i.kind != Kind::Directory && !i.metadata_known() && !self.writers.contains_key(&i.ino)
            })
            .filter_map(|(n, (_, i))| self.key(i).ok().map(|k| (n, k)))
            .collect();
        let found: Vec<(usize, ObjectInfo)> = stream::iter(wanted)
            .map(|(n, key)| async move { self.client.head_object(&key).await.ok().map(|info| (n, info)) })
            .buffer_unordered(LISTING_HEADS)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        for (n, info) in found {
            let name = entries[n].0.clone();
            entries[n].1 = self.found_object(dir, &name, stat_from_head(info));
        }
    }

    /// The kernel kept a readdirplus entry: it now holds a reference, as after lookup.
    pub fn remember(&self, ino: u64) {
        if let Some(inode) = self.inodes.get(ino) {
            self.inodes.remember(&inode);
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.remove(&fh);
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
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
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
