//! The FUSE adapter: decode a request, hand it to the core on the tokio runtime, reply.
//! Every request runs as its own task, so a slow GET never holds up another request;
//! the session threads only dispatch.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Waker};
use std::time::Duration;

use fuser::{
    CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, Notifier, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle;
use tracing::{debug, warn, Instrument};

use crate::fs::{Attr, AttrChange, Changer, Fs, FsError, Kind};

/// Largest write the kernel sends at once (needs FUSE_MAX_PAGES).
const MAX_WRITE: u32 = 1 << 20;

pub struct FuseAdapter {
    fs: Arc<Fs>,
    rt: Handle,
    ttl: Ttls,
    /// Tells the kernel what it caches is out of date; set once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
}

/// How long the kernel may trust what we tell it.
#[derive(Debug, Clone, Copy)]
struct Ttls {
    attr: Duration,
    entry: Duration,
    negative: Duration,
}

impl Ttls {
    /// A lookup's answer: the entry, or "no such name" remembered by the kernel for the
    /// negative TTL (an entry with inode 0), so repeated probes do not even reach us.
    fn reply_lookup(&self, reply: ReplyEntry, result: Result<Attr, FsError>) {
        match result {
            Ok(attr) => reply.entry_with_ttls(&self.attr, &self.entry, &file_attr(&attr), Generation(0)),
            Err(FsError::NotFound) if !self.negative.is_zero() => {
                let none = Attr {
                    ino: 0,
                    kind: Kind::File,
                    size: 0,
                    mtime: std::time::UNIX_EPOCH,
                    atime: std::time::UNIX_EPOCH,
                    ctime: std::time::UNIX_EPOCH,
                    rdev: 0,
                    perm: 0,
                    uid: 0,
                    gid: 0,
                    nlink: 0,
                };
                reply.entry_with_ttls(&Duration::ZERO, &self.negative, &file_attr(&none), Generation(0))
            }
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl FuseAdapter {
    pub fn new(fs: Arc<Fs>, rt: Handle) -> FuseAdapter {
        let cfg = fs.config();
        let ttl = Ttls { attr: cfg.metadata_ttl, entry: cfg.entry_ttl, negative: cfg.negative_ttl };
        FuseAdapter { fs, rt, ttl, notifier: Arc::default() }
    }

    /// Where the session's notifier goes once the session is made (it owns the adapter).
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Runs one request's work as a task, in a span naming the operation and inode: one
    /// that waits at once on the store or the staging file (reads, writes, flushes, and
    /// changes the store makes), whose first steps (signing a request, laying out
    /// read-ahead) would only keep a session thread from the next request (an `rm -rf`
    /// sending its deletes was a fifth slower polled there first).
    fn spawn<F, Fut>(&self, op: &'static str, ino: INodeNo, work: F)
    where
        F: FnOnce(Arc<Fs>, Ttls) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::debug_span!("fuse", op, ino = ino.0);
        self.rt.spawn(work(self.fs.clone(), self.ttl).instrument(span));
    }

    /// Serves one request, in a span naming the operation and inode: up to its first wait
    /// here on the session thread, so what memory can answer (a delete queued under
    /// --write-back, a listing or attribute still fresh) is answered without a trip through
    /// the runtime (two thread wake-ups, each a tenth of a millisecond or more on a loaded
    /// machine: `rm -rf` of 1,000 files under --write-back took a third of the time); the
    /// rest goes on as a task, which polls it again at once.
    fn serve<F, Fut>(&self, op: &'static str, ino: INodeNo, work: F)
    where
        F: FnOnce(Arc<Fs>, Ttls) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let span = tracing::debug_span!("fuse", op, ino = ino.0);
        let _runtime = self.rt.enter();
        let mut task = Box::pin(work(self.fs.clone(), self.ttl).instrument(span));
        let mut first = Context::from_waker(Waker::noop());
        if task.as_mut().poll(&mut first).is_pending() {
            self.rt.spawn(task);
        }
    }

    /// [`Self::serve`] when memory may answer, else [`Self::spawn`].
    fn serve_if<F, Fut>(&self, memory_may_answer: bool, op: &'static str, ino: INodeNo, work: F)
    where
        F: FnOnce(Arc<Fs>, Ttls) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        match memory_may_answer {
            true => self.serve(op, ino, work),
            false => self.spawn(op, ino, work),
        }
    }
}

/// Clears the set-ID bits of `ino` for a writer without CAP_FSETID and, when there were
/// any, makes the kernel drop the mode it caches (else it would run the file set-ID until
/// the attribute TTL ends).
async fn clear_set_id(fs: &Fs, notifier: &OnceLock<Notifier>, ino: INodeNo, by: Changer) -> Result<(), FsError> {
    if fs.drop_set_id(ino.0, by).await? {
        if let Some(notifier) = notifier.get() {
            let _ = notifier.inval_inode(ino, -1, 0);
        }
    }
    Ok(())
}

/// Logs an error worth a line (not a plain ENOENT) and turns it into an errno.
fn errno(err: FsError) -> Errno {
    if err.is_routine() {
        debug!("{err}");
    } else {
        warn!("{err}");
    }
    Errno::from_i32(err.errno())
}

/// getxattr/listxattr's protocol: size 0 asks for the length, else the value if it fits.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() <= size as usize {
        reply.data(value);
    } else {
        reply.error(Errno::ERANGE);
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let kind = match a.kind {
        Kind::File => FileType::RegularFile,
        Kind::Directory => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::Special(libc::S_IFIFO) => FileType::NamedPipe,
        Kind::Special(libc::S_IFSOCK) => FileType::Socket,
        Kind::Special(libc::S_IFCHR) => FileType::CharDevice,
        Kind::Special(_) => FileType::BlockDevice,
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind,
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: MAX_WRITE,
        flags: 0,
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_MAX_PAGES
            // O_TRUNC arrives with open, not as a separate truncate that would replace
            // the object before the new data is written.
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            // We clear set-user/group-ID bits (clear_set_id, AttrChange::drop_set_id), so the kernel does
            // not ask for security.capability before every write.
            | InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        // Ask only for what this kernel offers; the rest is an optimisation, not a need.
        let _ = config.add_capabilities(wanted & config.capabilities());
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str().map(str::to_string) else {
            // Keys are UTF-8: a name that is not cannot exist in the bucket.
            return reply.error(Errno::ENOENT);
        };
        self.serve("lookup", parent, move |fs, ttl| async move {
            ttl.reply_lookup(reply, fs.lookup(parent.0, &name).await);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.serve("getattr", ino, move |fs, ttl| async move {
            match fs.getattr(ino.0).await {
                Ok(attr) => reply.attr(&ttl.attr, &file_attr(&attr)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write = !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY);
        let truncate = write && flags.0 & libc::O_TRUNC != 0;
        let append = flags.0 & libc::O_APPEND != 0;
        let pid = req.pid();
        // As a truncate (see setattr): fuser does not pass the kernel's FUSE_OPEN_KILL_SUIDGID.
        let drop_set_id = truncate && req.uid() != 0;
        let notifier = self.notifier.clone();
        // Opening for writing asks the store for the version it replaces.
        self.serve_if(!write, "open", ino, move |fs, _| async move {
            let result = async {
                let opened = fs.open(ino.0, write, truncate, append, pid).await?;
                if drop_set_id {
                    let by = Changer { fh: Some(opened.fh), pid };
                    if let Err(e) = clear_set_id(&fs, &notifier, ino, by).await {
                        let _ = fs.release(opened.fh).await;
                        return Err(e);
                    }
                }
                Ok::<_, FsError>(opened)
            };
            match result.await {
                Ok(opened) => {
                    let flags = if opened.keep_cache { FopenFlags::FOPEN_KEEP_CACHE } else { FopenFlags::empty() };
                    reply.opened(FileHandle(opened.fh), flags)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::EINVAL);
        };
        let perm = (mode & !umask & 0o7777) as u16;
        let (uid, gid, pid) = (req.uid(), req.gid(), req.pid());
        self.serve("create", parent, move |fs, ttl| async move {
            match fs.create(parent.0, &name, perm, uid, gid, pid).await {
                Ok((attr, fh)) => {
                    reply.created(&ttl.attr, &file_attr(&attr), Generation(0), FileHandle(fh), FopenFlags::empty())
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.spawn("read", ino, move |fs, _| async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        // The writer lacks CAP_FSETID: its write clears the file's set-ID bits.
        let drop_set_id = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let by = Changer { fh: Some(fh.0), pid: req.pid() };
        let notifier = self.notifier.clone();
        self.spawn("write", ino, move |fs, _| async move {
            let result = async {
                if drop_set_id {
                    clear_set_id(&fs, &notifier, ino, by).await?;
                }
                fs.write(fh.0, offset, data).await
            };
            match result.await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn flush(&self, req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // close(2): a writer's data goes to the store now, so close can report failure.
        let pid = req.pid();
        self.spawn("flush", ino, move |fs, _| async move {
            match fs.flush(fh.0, pid).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.spawn("fsync", ino, move |fs, _| async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.serve("release", ino, move |fs, _| async move {
            match fs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let by = Changer { fh: fh.map(|f| f.0), pid: req.pid() };
        let at = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => std::time::SystemTime::now(),
        };
        let change = AttrChange {
            mode: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            mtime: mtime.map(at),
            atime: atime.map(at),
            // Linux's rules; fuser does not pass the kernel's FATTR_KILL_SUIDGID, so a
            // truncate by anyone but root stands for "without CAP_FSETID".
            drop_set_id: uid.is_some() || gid.is_some() || (size.is_some() && req.uid() != 0),
        };
        self.spawn("setattr", ino, move |fs, ttl| async move {
            let result = async {
                if let Some(size) = size {
                    fs.set_size(ino.0, by, size).await?;
                }
                fs.set_attributes(ino.0, by, change).await
            };
            match result.await {
                Ok(attr) => reply.attr(&ttl.attr, &file_attr(&attr)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::EINVAL);
        };
        let perm = (mode & !umask & 0o7777) as u16;
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn("mkdir", parent, move |fs, ttl| async move {
            match fs.mkdir(parent.0, &name, perm, uid, gid).await {
                Ok(attr) => reply.entry_with_ttls(&ttl.attr, &ttl.entry, &file_attr(&attr), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::EINVAL);
        };
        let mode = (mode & libc::S_IFMT) | (mode & !umask & 0o7777);
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn("mknod", parent, move |fs, ttl| async move {
            match fs.mknod(parent.0, &name, mode, rdev, uid, gid).await {
                Ok(attr) => reply.entry_with_ttls(&ttl.attr, &ttl.entry, &file_attr(&attr), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let (Some(name), Some(target)) = (link_name.to_str().map(str::to_string), target.to_str().map(str::to_string))
        else {
            return reply.error(Errno::EINVAL);
        };
        let (uid, gid) = (req.uid(), req.gid());
        self.spawn("symlink", parent, move |fs, ttl| async move {
            match fs.symlink(parent.0, &name, &target, uid, gid).await {
                Ok(attr) => reply.entry_with_ttls(&ttl.attr, &ttl.entry, &file_attr(&attr), Generation(0)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.serve("readlink", ino, move |fs, _| async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENODATA);
        };
        self.serve("getxattr", ino, move |fs, _| async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(value) => reply_xattr(reply, size, &value),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.serve("listxattr", ino, move |fs, _| async move {
            match fs.listxattr(ino.0).await {
                Ok(names) => {
                    let list: Vec<u8> = names.iter().flat_map(|n| n.bytes().chain([0])).collect();
                    reply_xattr(reply, size, &list)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENOTSUP);
        };
        let value = value.to_vec();
        let (create, replace) = (flags & libc::XATTR_CREATE != 0, flags & libc::XATTR_REPLACE != 0);
        self.spawn("setxattr", ino, move |fs, _| async move {
            match fs.change_xattr(ino.0, &name, Some(&value), create, replace).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENODATA);
        };
        self.spawn("removexattr", ino, move |fs, _| async move {
            match fs.change_xattr(ino.0, &name, None, false, false).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        self.spawn("copy_file_range", ino_in, move |fs, _| async move {
            match fs.copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len).await {
                // The core copies no more than a reply can count.
                Ok(copied) => reply.written(copied as u32),
                // Not a copy the store makes: the kernel copies the bytes instead, which is
                // no error worth a line.
                Err(e @ FsError::NotSupported) => reply.error(Errno::from_i32(e.errno())),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Punching, zeroing or shifting ranges would rewrite the object: not offered, so
        // programs fall back to writing (posix_fallocate never asks for them).
        let keep_size = match mode {
            0 => false,
            libc::FALLOC_FL_KEEP_SIZE => true,
            _ => return reply.error(Errno::EOPNOTSUPP),
        };
        self.spawn("fallocate", ino, move |fs, _| async move {
            match fs.allocate(fh.0, offset, length, keep_size).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENOENT);
        };
        let work = move |fs: Arc<Fs>, _| async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        };
        // Queued, the delete is memory's to answer; sent, it is the network's.
        self.serve_if(self.fs.queues_deletes(), "unlink", parent, work);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENOENT);
        };
        self.spawn("rmdir", parent, move |fs, _| async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (Some(name), Some(newname)) = (name.to_str().map(str::to_string), newname.to_str().map(str::to_string))
        else {
            return reply.error(Errno::EINVAL);
        };
        if flags.contains(RenameFlags::RENAME_EXCHANGE) || flags.contains(RenameFlags::RENAME_WHITEOUT) {
            // Two objects cannot trade names atomically.
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.spawn("rename", parent, move |fs, _| async move {
            match fs.rename(parent.0, &name, newparent.0, &newname, no_replace).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn link(&self, _req: &Request, _ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        // An object has one key: there is no second name to give it.
        reply.error(Errno::EPERM);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.serve("opendir", ino, move |fs, _| async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.serve("readdir", ino, move |fs, _| async move {
            // A reply page holds about 4 KiB of names: list a page's worth ahead.
            match fs.readdir(fh.0, offset, 256).await {
                Ok(entries) => {
                    for (next_offset, e) in entries {
                        let kind = file_attr(&e.attr).kind;
                        if reply.add(INodeNo(e.attr.ino), next_offset, kind, &e.name) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.serve("readdirplus", ino, move |fs, ttl| async move {
            match fs.readdir(fh.0, offset, 64).await {
                Ok(entries) => {
                    for (next_offset, e) in entries {
                        if reply.add(
                            INodeNo(e.attr.ino),
                            next_offset,
                            &e.name,
                            &ttl.attr,
                            &file_attr(&e.attr),
                            Generation(0),
                        ) {
                            break;
                        }
                        // The kernel takes a reference on every entry but . and .. it accepts.
                        if e.name != "." && e.name != ".." {
                            fs.remember(e.attr.ino);
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // A directory holds nothing of its own to flush: a file's name reaches the store
        // (with --write-back, the journal) with its data, at its close or fsync.
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // What a local disk's file says to a terminal's or a filesystem's ioctl it does
        // not know (isatty on every open by Python and others, lsattr's flags).
        reply.error(Errno::ENOTTY);
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _offset: i64, _whence: i32, reply: ReplyLseek) {
        // Only SEEK_DATA and SEEK_HOLE come here. Without an answer the kernel uses the
        // size it knows, which is right: a file here has no holes, all of it is data.
        reply.error(Errno::ENOSYS);
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(s.blocks, s.bfree, s.bfree, s.files, s.ffree, s.block_size, s.name_max, s.block_size);
    }
}
