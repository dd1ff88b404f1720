//! Open files: opening, creating, reading, writing, closing. A file open for writing has
//! one writer for all its descriptors ([`super::writers`]); readers follow the versions
//! this mount stores.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;
use tracing::debug;

use super::attr::{self, Attr, Kind, ObjectStat, PosixMeta};
use super::buckets::bucket_of;
use super::error::FsError;
use super::inode::Inode;
use super::writers::Attach;
use super::xos::{when, Kept};
use super::{content_type_for, rewrite_options, thread_group_of, unless_closed, Fs};
use super::{Changer, Opened, MAX_COPY_RANGE_REPLY};
use crate::read::Prefetcher;
use crate::store::{ErrorKind, ObjectInfo, Precondition};
use crate::times::format_time;
use crate::write::{expecting, BaseObject, WriteError, WriterHandle};

/// An open file: the object version seen at open is the one read (close-to-open), until
/// this mount stores another; a file open for writing has its writer.
pub(super) struct OpenFile {
    pub(super) ino: u64,
    /// How a descriptor not open for writing reads the stored object; made when first
    /// needed, and again after this mount stored a new version (a writer's close, a
    /// rename, a metadata change), so a reader sees the file's local changes.
    pub(super) reader: parking_lot::Mutex<Option<Arc<Prefetcher>>>,
    pub(super) writer: Option<WriterHandle>,
    /// Data or attributes were changed through this descriptor (write, ftruncate,
    /// fchmod, futimens): until then its close is not the end of any change, and stores
    /// nothing.
    pub(super) changed: std::sync::atomic::AtomicBool,
    /// The process that opened the file.
    pub(super) opener: Opener,
    /// Opened with O_APPEND: every write goes to the end of the file as this mount knows
    /// it (the kernel's idea of the size may predate another client's append).
    pub(super) append: bool,
}

/// The process that opened a file, known by the opening thread's id and looked up in
/// /proc only when another thread asks: most closes come from the thread that opened.
pub(super) struct Opener {
    thread: u32,
    process: OnceLock<Option<u32>>,
}

impl Opener {
    pub(super) fn new(thread: u32) -> Opener {
        Opener { thread, process: OnceLock::new() }
    }

    /// The opener's thread group id; `None` once its opening thread is gone.
    pub(super) fn process(&self) -> Option<u32> {
        *self.process.get_or_init(|| thread_group_of(self.thread))
    }

    /// Whether `thread` belongs to the opener's process; `None` when that cannot be told.
    pub(super) fn is(&self, thread: u32) -> Option<bool> {
        if thread == self.thread {
            return Some(true);
        }
        let process = self.process()?;
        Some(thread_group_of(thread) == Some(process))
    }
}

impl Fs {
    /// Opens a file. Writing needs a fresh HEAD (the ETag of the base); `truncate` drops
    /// the old content, which then is replaced at close even if nothing is written. The
    /// reply says whether the kernel may keep its cached pages (the store still has the
    /// version they came from).
    pub async fn open(&self, ino: u64, write: bool, truncate: bool, append: bool, pid: u32) -> Result<Opened, FsError> {
        let inode = self.inode(ino)?;
        if inode.kind == Kind::Directory {
            return Err(FsError::IsDirectory);
        }
        if write && self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        let being_written = self.writers.is_written(ino);
        // A new writer needs what the object carries now, to store it again with the data.
        let new_writer = write && !being_written;
        let stored = if new_writer || self.needs_revalidation(&inode) {
            // A new writer stores the object's tags and ACL again with the data (S3 drops
            // them on a PUT): they are asked for together with the HEAD.
            let key = self.key(&inode)?;
            let (info, kept) = tokio::join!(self.revalidate(&inode), when(new_writer, self.kept(&key, true)));
            match info {
                Ok(info) => Some((info, kept.unwrap_or_default())),
                // Created here and not stored yet: nothing to carry over.
                Err(FsError::NotFound) if being_written => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let stat = inode.stat();
        let cached_version = (!write && !being_written).then_some(stat.etag.as_deref()).flatten();
        let keep_cache = inode.keep_page_cache(cached_version);
        let (reader, writer) = if write {
            let base = (!truncate).then(|| BaseObject { etag: stat.etag.clone(), size: stat.size });
            // A writer found at first may have ended since (a release right before this
            // open): a new one needs the object's version now, so the open starts over.
            let spawn = || match &stored {
                Some((info, kept)) => self.spawn_writer(&inode, base, Some(info), kept.clone()).map_err(Some),
                None => Err(None),
            };
            let attached = match self.writers.attach(ino, spawn) {
                Ok(attached) => attached,
                Err(None) => return Box::pin(self.open(ino, true, truncate, append, pid)).await,
                Err(Some(e)) => return Err(e),
            };
            let writer = match attached {
                Attach::Spawned(writer) => writer,
                // The descriptors still open on it saw its upload fail (a close just now,
                // whose release is on its way): this open gets a writer of its own.
                Attach::Joined(writer) if writer.has_failed() => {
                    if self.writers.release(ino, &writer) {
                        let _ = writer.close().await;
                    }
                    self.writers.ended(ino, &writer).await;
                    return Box::pin(self.open(ino, true, truncate, append, pid)).await;
                }
                Attach::Joined(writer) => {
                    if truncate {
                        unless_closed(writer.truncate(0).await)?;
                    }
                    writer
                }
                // Opened as the last descriptor closes: the file is what that close stores.
                Attach::Closing(writer) => {
                    self.writers.ended(ino, &writer).await;
                    return Box::pin(self.open(ino, true, truncate, append, pid)).await;
                }
            };
            (None, Some(writer))
        } else if being_written {
            // Reads go through the writer; the version to read after it is not stored yet.
            (None, None)
        } else {
            (Some(self.reader_for(&inode)?), None)
        };
        let file = OpenFile {
            ino,
            reader: parking_lot::Mutex::new(reader),
            writer,
            changed: Default::default(),
            opener: Opener::new(pid),
            append: append && write,
        };
        let fh = self.add_handle(file);
        Ok(Opened { fh, keep_cache })
    }

    pub(super) fn add_handle(&self, file: OpenFile) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.insert(fh, Arc::new(file));
        fh
    }

    /// A writer for `inode` over `base`; its uploads carry what the `stored` object
    /// carries, with the file's current POSIX attributes.
    pub(super) fn spawn_writer(
        &self,
        inode: &Inode,
        base: Option<BaseObject>,
        stored: Option<&ObjectInfo>,
        kept: Kept,
    ) -> Result<WriterHandle, FsError> {
        let name = inode.name();
        let mut opts = match stored {
            Some(info) => {
                let mut opts = rewrite_options(&self.upload_defaults, &name, info);
                // The time shown came from Last-Modified, which the upload replaces.
                if let (false, Some(t)) = (opts.metadata.contains_key("mtime"), info.last_modified) {
                    opts.metadata.insert("mtime".into(), format_time(t));
                }
                opts
            }
            None => self.upload_defaults.options(content_type_for(&name), HashMap::new()),
        };
        let posix = attr::file_attr(inode.ino, &inode.stat(), &self.cfg, self.mounted_at);
        opts.metadata.insert("mode".into(), (libc::S_IFREG | u32::from(posix.perm)).to_string());
        opts.metadata.insert("uid".into(), posix.uid.to_string());
        opts.metadata.insert("gid".into(), posix.gid.to_string());
        kept.apply(&mut opts);
        // The upload replaces the version read now, or makes the file where none was.
        let expect = stored.map_or(Precondition::Absent, |info| expecting(info.etag.as_deref()));
        Ok(WriterHandle::spawn(self.client.clone(), self.write_cfg.clone(), self.key(inode)?, opts, base, expect))
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
        self.refuse_at_top(parent)?;
        let now = SystemTime::now();
        let inode = self.made_here(&dir, name, Kind::File);
        inode.set_stat(ObjectStat {
            size: 0,
            last_modified: Some(now),
            etag: None,
            posix: PosixMeta::made(libc::S_IFREG | u32::from(perm), uid, gid, now),
        });
        let writer = loop {
            match self.writers.attach(inode.ino, || self.spawn_writer(&inode, None, None, Kept::default()))? {
                Attach::Spawned(writer) => break writer,
                // The name was known as a file being written (another client deleted it in
                // the store, so the kernel asked to create it): the file is that one.
                Attach::Joined(writer) => break writer,
                Attach::Closing(writer) => self.writers.ended(inode.ino, &writer).await,
            }
        };
        self.inodes.remember(&inode);
        let file = OpenFile {
            ino: inode.ino,
            reader: Default::default(),
            writer: Some(writer),
            changed: Default::default(),
            opener: Opener::new(pid),
            append: false,
        };
        let fh = self.add_handle(file);
        Ok((self.attr_of(&inode), fh))
    }

    /// The file's object is about to go (unlink, a rename over it) while descriptors
    /// that only read it are open: as on a local disk they keep reading its bytes, held
    /// by a writer of their own (`Writers::hold`); the caller discards it once the
    /// object is gone, so that it stores nothing. Only a file of one part
    /// (`--part-size`) is held, not a larger one downloaded first: its readers read what
    /// the block cache has, and get EIO for the rest.
    pub(super) async fn keep_for_readers(&self, inode: &Inode) -> Option<WriterHandle> {
        let stat = inode.stat();
        let small_file = inode.kind == Kind::File && stat.etag.is_some() && stat.size <= self.write_cfg.part_size;
        if !small_file || self.writer_of(inode.ino).is_some() || !self.files.iter().any(|f| f.ino == inode.ino) {
            return None;
        }
        let base = BaseObject { etag: stat.etag.clone(), size: stat.size };
        let writer = match self.spawn_writer(inode, Some(base), None, Kept::default()) {
            Ok(writer) => writer,
            Err(e) => {
                debug!(ino = inode.ino, "the bytes of a file open for reading cannot be kept: {e}");
                return None;
            }
        };
        if !self.writers.hold(inode.ino, writer.clone()) {
            let _ = writer.close().await;
            return None;
        }
        let _ = writer.keep_base().await;
        Some(writer)
    }

    /// A reader of the object version the inode names now.
    pub(super) fn reader_for(&self, inode: &Inode) -> Result<Arc<Prefetcher>, FsError> {
        let stat = inode.stat();
        if stat.etag.is_none() && !self.inodes.is_linked(inode) {
            // It lost its name before it was ever stored.
            return Err(FsError::Vanished);
        }
        // A file that lost its name is read under the key it had, for as long as the
        // store keeps it.
        let key = self.inodes.key_of(inode).ok_or(FsError::Vanished)?;
        Ok(Arc::new(Prefetcher::new(self.blocks.clone(), &key, stat.size, stat.etag.as_deref(), self.max_prefetch)))
    }

    pub(super) fn handle(&self, fh: u64) -> Result<Arc<OpenFile>, FsError> {
        self.files.get(&fh).map(|f| f.value().clone()).ok_or(FsError::BadHandle)
    }

    /// A change of `ino` came from `by`: through its descriptor when the kernel names one
    /// (ftruncate), else through the descriptors its process has open on the file (the
    /// kernel names none for futimens or fchmod). Their close is then the end of a change,
    /// and stores the file.
    pub(super) fn changed_by(&self, ino: u64, by: Changer) {
        if let Some(fh) = by.fh {
            if let Some(file) = self.files.get(&fh) {
                file.changed.store(true, Ordering::Release);
            }
            return;
        }
        let Some(process) = thread_group_of(by.pid) else { return };
        for file in self.files.iter() {
            if file.ino == ino && file.writer.is_some() && file.opener.process() == Some(process) {
                file.changed.store(true, Ordering::Release);
            }
        }
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
        let reader = file.reader.lock().clone();
        let reader = match reader {
            Some(reader) => reader,
            None => {
                let reader = self.reader_for(&*self.inode(file.ino)?)?;
                *file.reader.lock() = Some(reader.clone());
                reader
            }
        };
        reader.read(offset, size).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => FsError::Vanished,
            _ => e.into(),
        })
    }

    pub async fn write(&self, fh: u64, offset: u64, data: Vec<u8>) -> Result<u32, FsError> {
        let file = self.handle(fh)?;
        let writer = file.writer.clone().ok_or(FsError::BadHandle)?;
        file.changed.store(true, Ordering::Release);
        match file.append {
            true => Ok(writer.append(data).await?),
            false => Ok(writer.write(offset, data).await?),
        }
    }

    /// fallocate(2) through a descriptor open for writing. A store has no space to
    /// reserve ahead, so allocating only makes the file at least `offset + len` long (as
    /// posix_fallocate must), and `keep_size` (FALLOC_FL_KEEP_SIZE) changes nothing.
    pub async fn allocate(&self, fh: u64, offset: u64, len: u64, keep_size: bool) -> Result<(), FsError> {
        let file = self.handle(fh)?;
        let writer = file.writer.clone().ok_or(FsError::BadHandle)?;
        if keep_size {
            return Ok(());
        }
        file.changed.store(true, Ordering::Release);
        // The kernel refused a range past the largest file already.
        Ok(writer.extend(offset.saturating_add(len)).await?)
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
        let reader = source.reader.lock().clone();
        let version = match (reader, self.writer_of(source.ino)) {
            (Some(reader), None) => reader.version().cloned().ok_or(FsError::NotSupported)?,
            _ => return Err(FsError::NotSupported),
        };
        let writer = dest.writer.clone().ok_or(FsError::BadHandle)?;
        // A server-side copy stays within one bucket of an account mount.
        let same_bucket = self.account.is_none()
            || self
                .inode(dest.ino)
                .and_then(|dest| self.key(&dest))
                .is_ok_and(|key| bucket_of(&key) == bucket_of(&version.key));
        if !same_bucket {
            return Err(FsError::NotSupported);
        }
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

    /// close(2): the file's data is durable in the store when this returns Ok (with
    /// write-back, durable in the journal, and uploaded after the last release). Two closes
    /// come before the data and store nothing, so the object stays as it was until its
    /// writer is done: one of a descriptor nothing was written through yet (a shell
    /// redirect opens with O_TRUNC, dup2s and closes the original before the command
    /// writes; release then stores an empty or truncated file), and one by another process
    /// (a child that inherited the descriptor and exec'd or exited) while the opener still
    /// writes.
    pub async fn flush(&self, fh: u64, pid: u32) -> Result<(), FsError> {
        let file = self.handle(fh)?;
        let changed = file.changed.load(Ordering::Acquire);
        if !changed || file.opener.is(pid) == Some(false) {
            return Ok(());
        }
        match &file.writer {
            // Durable in the journal now; the writer's release uploads it.
            Some(writer) if self.write_cfg.write_back => Ok(writer.commit().await?),
            _ => self.fsync(fh).await,
        }
    }

    /// fsync(2): uploads what is written so far.
    /// fsync(2): the file is in the store when it returns, through whichever descriptor
    /// it is asked (a reader's fsync after a write-back close waits for that upload).
    pub async fn fsync(&self, fh: u64) -> Result<(), FsError> {
        let file = self.handle(fh)?;
        let uploaded = match (&file.writer, self.writer_of(file.ino)) {
            (Some(own), _) => own.flush().await?,
            // A writer that ended meanwhile has stored the file.
            (None, Some(shared)) => unless_closed(shared.flush().await)?.flatten(),
            (None, None) => None,
        };
        if let Some(uploaded) = uploaded {
            self.record_upload(file.ino, uploaded);
        }
        Ok(())
    }

    pub async fn release(&self, fh: u64) -> Result<(), FsError> {
        let Some((_, file)) = self.files.remove(&fh) else { return Ok(()) };
        // Only asked about an unlinked file: it scans every open file.
        let still_open = || self.files.iter().any(|f| f.ino == file.ino);
        let Some(writer) = &file.writer else {
            // The last descriptor of an unlinked file ends the writer that held its data.
            if let Some(writer) = self.writers.idle_orphan(file.ino).filter(|_| !still_open()) {
                unless_closed(writer.close().await)?;
                self.writers.closed(file.ino, &writer);
            }
            return Ok(());
        };
        if !self.writers.release(file.ino, writer) {
            // Other descriptors still write the file; the last one's release stores it.
            return Ok(());
        }
        if self.writers.is_orphan(file.ino) && still_open() {
            // Unlinked, and still read through other descriptors: its data stays theirs.
            return Ok(());
        }
        let result = writer.close().await;
        self.writers.closed(file.ino, writer);
        match result {
            Ok(Some(uploaded)) => self.record_upload(file.ino, uploaded),
            Ok(None) => {}
            Err(e) => {
                // The file is what the store has, not what failed to upload; a new file
                // that never reached the store does not exist.
                if let Some(inode) = self.inodes.get(file.ino) {
                    inode.invalidate();
                    if inode.stat().etag.is_none() && !self.writers.is_written(file.ino) {
                        self.inodes.unlink_child(inode.parent(), &inode.name(), inode.ino);
                    }
                }
                return Err(e.into());
            }
        }
        Ok(())
    }
}
