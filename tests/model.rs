//! The reference model: random sequences of what programs do through a mount (open with
//! O_TRUNC/O_APPEND/O_RDWR, write, read, truncate, fsync, close and a dup'd close, unlink
//! and rename while open, chmod, setxattr, the kernel forgetting names, other clients'
//! PUT and DELETE, failed and throttled requests), driven against the filesystem core over
//! the in-memory store, the way the FUSE adapter drives it. After every step the model
//! says what a program must see (names, sizes, bytes, modes, xattrs) and what the store
//! must hold, and both are checked.
//!
//! `XOSFS_MODEL_CASES=N` runs N sequences per configuration (default 300 each, so 900 in
//! CI); failing sequences proptest finds are kept in `tests/model.proptest-regressions`
//! and replayed first on every run.
//!
//! Where xosfs differs from a local disk on purpose, the model says so:
//! - the store changes only when a writer publishes (close after data, fsync, rename);
//! - descriptors writing one file share its content, as on a disk; the file is stored
//!   when one that wrote data is closed, and at the last close;
//! - a reader opened before the file changed may keep reading the version it opened,
//!   see the new one, or get EIO, never a mix;
//! - with `--write-back`, what a program sees is the same, and the store reaches what the
//!   model says once the uploads and deletes queued have been sent. A close after data
//!   makes the file durable in the journal; the store gets it at the file's last close,
//!   at fsync, or before the next change through another descriptor. An upload the store
//!   refuses is not reported to the close (it returned already), and the name then shows
//!   what the store has.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

use xosfs::config::{FsConfig, ReadSettings};
use xosfs::fs::{AttrChange, Changer, Fs, UploadDefaults, ROOT_INO};
use xosfs::store::{
    DeleteQueue, ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore, ObjectStore, RetryPolicy, RetryingStore,
};
use xosfs::write::WriteConfig;
use xosfs_testserver::pseudo_random_bytes;

const NAMES: [&str; 3] = ["a.txt", "b.jpg", "c"];
const PART: u64 = 16 << 10;
const XATTR: &str = "user.note";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        proc: usize,
        name: usize,
        access: Access,
        truncate: bool,
        append: bool,
        create: bool,
    },
    Write {
        h: usize,
        at: u16,
        len: u32,
        seed: u64,
    },
    Read {
        h: usize,
        at: u16,
        len: u16,
    },
    Truncate {
        h: usize,
        size: u32,
    },
    TruncatePath {
        name: usize,
        size: u32,
    },
    Fsync {
        h: usize,
    },
    /// close(2) of a duplicate: a FLUSH without a release, from the opener or another process.
    FlushDup {
        h: usize,
        other_process: bool,
    },
    Close {
        h: usize,
    },
    /// close(2) whose upload the store refuses (403 on every write request for the key).
    CloseRefused {
        h: usize,
    },
    Unlink {
        name: usize,
    },
    Rename {
        from: usize,
        to: usize,
    },
    Chmod {
        name: usize,
        mode: u16,
    },
    SetXattr {
        name: usize,
        value: u8,
    },
    /// The kernel drops its dentry and inode (memory pressure).
    Forget {
        name: usize,
    },
    /// The next few requests are answered 503 SlowDown, then pass: retried, invisible.
    Throttle {
        requests: u32,
    },
    ExternalPut {
        name: usize,
        len: u32,
        seed: u64,
    },
    ExternalDelete {
        name: usize,
    },
}

fn op_strategy(external: bool) -> BoxedStrategy<Op> {
    let name = 0..NAMES.len();
    let h = 0usize..8;
    let access = prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::ReadWrite)];
    let local = prop_oneof![
        6 => (0usize..3, name.clone(), access, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(proc, name, access, truncate, append, create)| Op::Open { proc, name, access, truncate, append, create }
        ),
        8 => (h.clone(), any::<u16>(), prop_oneof![1u32..64, 1u32..(3 * PART as u32)], any::<u64>())
            .prop_map(|(h, at, len, seed)| Op::Write { h, at, len, seed }),
        4 => (h.clone(), any::<u16>(), 1u16..4096).prop_map(|(h, at, len)| Op::Read { h, at, len }),
        2 => (h.clone(), 0u32..(2 * PART as u32)).prop_map(|(h, size)| Op::Truncate { h, size }),
        1 => (name.clone(), 0u32..64).prop_map(|(name, size)| Op::TruncatePath { name, size }),
        2 => h.clone().prop_map(|h| Op::Fsync { h }),
        2 => (h.clone(), any::<bool>()).prop_map(|(h, other_process)| Op::FlushDup { h, other_process }),
        5 => h.clone().prop_map(|h| Op::Close { h }),
        1 => h.clone().prop_map(|h| Op::CloseRefused { h }),
        2 => name.clone().prop_map(|name| Op::Unlink { name }),
        2 => (name.clone(), name.clone()).prop_map(|(from, to)| Op::Rename { from, to }),
        1 => (name.clone(), 0u16..0o777).prop_map(|(name, mode)| Op::Chmod { name, mode }),
        1 => (name.clone(), any::<u8>()).prop_map(|(name, value)| Op::SetXattr { name, value }),
        2 => name.clone().prop_map(|name| Op::Forget { name }),
        1 => (1u32..4).prop_map(|requests| Op::Throttle { requests }),
    ];
    if !external {
        return local.boxed();
    }
    prop_oneof![
        10 => local,
        1 => (name.clone(), 0u32..20_000, any::<u64>()).prop_map(|(name, len, seed)| Op::ExternalPut { name, len, seed }),
        1 => name.prop_map(|name| Op::ExternalDelete { name }),
    ]
    .boxed()
}

/// One file as this mount shows it, across renames (a model inode).
#[derive(Debug, Clone)]
struct MFile {
    content: Vec<u8>,
    mode: u16,
    xattr: Option<Vec<u8>>,
    /// Still has a name (not unlinked, replaced or deleted in the store).
    linked: bool,
    /// Its writer holds changes the store does not have (a new or truncated file counts).
    dirty: bool,
    /// A write-back close made these changes durable in the journal: they are stored
    /// before any further change.
    committed: bool,
}

/// What the store must hold for a key.
#[derive(Debug, Clone, PartialEq)]
struct MStored {
    content: Vec<u8>,
    /// `None` for an object written by another client without POSIX metadata.
    mode: Option<u16>,
    xattr: Option<Vec<u8>>,
}

#[derive(Debug)]
struct MHandle {
    fh: u64,
    ino: u64,
    file: usize,
    proc: usize,
    access: Access,
    append: bool,
    /// Data or size changed through it (until then a FLUSH stores nothing).
    changed: bool,
    /// The content when opened, and whether the file changed under it since (then reads
    /// may show the old version, the new one, or fail).
    snapshot: Vec<u8>,
    changed_under: bool,
}

impl MHandle {
    fn writes(&self) -> bool {
        self.access != Access::Read
    }
}

#[derive(Default)]
struct Model {
    names: BTreeMap<String, usize>,
    files: Vec<MFile>,
    stored: BTreeMap<String, MStored>,
    handles: Vec<MHandle>,
}

impl Model {
    fn name_of(&self, file: usize) -> Option<String> {
        self.names.iter().find(|(_, &f)| f == file).map(|(n, _)| n.clone())
    }

    fn writer_of(&self, file: usize) -> Option<usize> {
        self.handles.iter().position(|h| h.file == file && h.writes())
    }

    fn writers_of(&self, file: usize) -> usize {
        self.handles.iter().filter(|h| h.file == file && h.writes()).count()
    }

    fn new_file(&mut self, content: Vec<u8>, mode: u16, xattr: Option<Vec<u8>>) -> usize {
        self.files.push(MFile { content, mode, xattr, linked: true, dirty: false, committed: false });
        self.files.len() - 1
    }

    /// Another client changed the file: readers that opened an earlier version may read
    /// that one, the new one, or fail (this mount's own changes they follow).
    fn changed_elsewhere(&mut self, file: usize) {
        for h in self.handles.iter_mut().filter(|h| h.file == file && h.access == Access::Read) {
            h.changed_under = true;
        }
    }

    /// This mount stored a new version of the file: its readers read that one now.
    fn readers_follow(&mut self, file: usize) {
        let content = self.files[file].content.clone();
        for h in self.handles.iter_mut().filter(|h| h.file == file && h.access == Access::Read) {
            h.snapshot = content.clone();
            h.changed_under = false;
        }
    }

    /// A change through the file's writer: what a write-back close promised is stored first.
    fn settle_commit(&mut self, file: usize) {
        if self.files[file].committed {
            self.publish(file);
        }
    }

    /// A close after data through a descriptor of a file still open for writing: with
    /// write-back the file is durable in the journal until a later store, else stored.
    fn close_after_data(&mut self, file: usize, write_back: bool) {
        match write_back {
            true => self.files[file].committed = true,
            false => self.publish(file),
        }
    }

    /// The file's writer stored it (when it still has a name).
    fn publish(&mut self, file: usize) {
        self.files[file].dirty = false;
        self.files[file].committed = false;
        if self.files[file].linked {
            self.readers_follow(file);
        }
        if let Some(name) = self.name_of(file) {
            let f = &self.files[file];
            self.stored
                .insert(name, MStored { content: f.content.clone(), mode: Some(f.mode), xattr: f.xattr.clone() });
        }
    }

    /// The name leaves the namespace; its open handles keep the file.
    fn unlink(&mut self, name: &str) {
        if let Some(file) = self.names.remove(name) {
            self.files[file].linked = false;
            self.files[file].committed = false;
            for h in self.handles.iter_mut().filter(|h| h.file == file) {
                h.changed_under = true;
            }
        }
    }
}

struct World {
    fs: Arc<Fs>,
    memory: MemoryStore,
    faulty: Arc<FaultyStore>,
    write: Arc<WriteConfig>,
    write_back: bool,
    _cache: tempfile::TempDir,
    /// Kernel references per inode, as lookup and create hand them out.
    lookups: HashMap<u64, u64>,
}

/// Real processes, so the core's "which process closed" check sees real thread groups.
/// They are started from a thread that lives as long as the test process and die with it
/// (PR_SET_PDEATHSIG), and hold none of its output pipes, which would keep a reader of the
/// test output waiting for them.
fn processes() -> &'static [u32; 3] {
    static PROCS: OnceLock<[u32; 3]> = OnceLock::new();
    PROCS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let spawn = || -> Child {
                let mut cmd = Command::new("sleep");
                cmd.arg("3600").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
                unsafe {
                    cmd.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                            Ok(())
                        } else {
                            Err(std::io::Error::last_os_error())
                        }
                    });
                }
                cmd.spawn().expect("sleep runs")
            };
            let children: Vec<Child> = (0..3).map(|_| spawn()).collect();
            tx.send([children[0].id(), children[1].id(), children[2].id()]).unwrap();
            // The children's parent thread: it must outlive every case.
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap()
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
}

/// The core over the in-memory store, as a mount with `--write-back` (deletes queued in
/// batches too) or without; called on the runtime, which the delete queue's task runs on.
fn world(ttl: Duration, write_back: bool) -> World {
    let memory = MemoryStore::with_min_part_size(1024);
    let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 1));
    let policy = RetryPolicy { retries: 5, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2) };
    let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(faulty.clone(), policy));
    let store: Arc<dyn ObjectStore> = match write_back {
        true => Arc::new(DeleteQueue::new(store)),
        false => store,
    };
    let cache = tempfile::tempdir().unwrap();
    let cfg = FsConfig {
        prefix: String::new(),
        read_only: false,
        uid: 0,
        gid: 0,
        file_mode: 0o644,
        dir_mode: 0o755,
        metadata_ttl: ttl,
        entry_ttl: ttl,
        negative_ttl: ttl,
        umask: 0,
        root_mode: None,
        presign_expiry: Duration::from_secs(3600),
    };
    let write =
        Arc::new(WriteConfig::new(PART, 4, 8 << 20, cache.path().to_path_buf(), 64 << 20).with_write_back(write_back));
    let read = ReadSettings { block_size: 4096, cache_size: 1 << 20, max_prefetch: 64 << 10 };
    let fs = Arc::new(Fs::new(store, cfg, write.clone(), UploadDefaults::default(), read));
    World { fs, memory, faulty, write, write_back, _cache: cache, lookups: HashMap::new() }
}

impl World {
    /// Waits until no writer is left but those of files open for writing (write-back
    /// closes have uploaded, or failed to) and those holding the bytes of files that lost
    /// their name while open only for reading.
    async fn settle_writers(&self, m: &Model) -> Result<(), String> {
        let distinct = |mut files: Vec<usize>| {
            files.sort_unstable();
            files.dedup();
            files.len()
        };
        let open = distinct(m.handles.iter().filter(|h| h.writes()).map(|h| h.file).collect());
        let held = distinct(m.handles.iter().filter(|h| !m.files[h.file].linked).map(|h| h.file).collect());
        for _ in 0..1000 {
            if self.write.active_writers() <= open + held {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(format!(
            "{} writers still running, {open} files open for writing, {held} without a name held open",
            self.write.active_writers()
        ))
    }

    async fn lookup(&mut self, name: &str) -> Result<xosfs::fs::Attr, i32> {
        match self.fs.lookup(ROOT_INO, name).await {
            Ok(attr) => {
                *self.lookups.entry(attr.ino).or_default() += 1;
                Ok(attr)
            }
            Err(e) => Err(e.errno()),
        }
    }
}

/// A change by path, from a process with no descriptor of the file open.
fn by_path() -> Changer {
    Changer { fh: None, pid: std::process::id() }
}

/// Applies `op` to the core and the model, checking what the core answers.
async fn step(w: &mut World, m: &mut Model, op: &Op) -> Result<(), String> {
    let procs = processes();
    let nh = m.handles.len();
    match *op {
        Op::Open { proc, name, access, truncate, append, create } => {
            let name = NAMES[name];
            let writes = access != Access::Read;
            let existing = m.names.get(name).copied();
            let pid = procs[proc];
            let handle = |fh, ino, file, snapshot| MHandle {
                fh,
                ino,
                file,
                proc,
                access,
                append,
                changed: false,
                snapshot,
                changed_under: false,
            };
            match (existing, w.lookup(name).await) {
                (Some(file), Ok(attr)) => {
                    let truncate = truncate && writes;
                    let opened =
                        w.fs.open(attr.ino, writes, truncate, false, pid).await.map_err(|e| format!("open: {e}"))?;
                    let joined = m.writer_of(file).is_some();
                    if truncate && !m.files[file].content.is_empty() {
                        m.settle_commit(file);
                    }
                    let f = &mut m.files[file];
                    // A new writer over O_TRUNC starts empty; a joined one is truncated
                    // like a file (a change only when there was content).
                    if truncate && (!joined || !f.content.is_empty()) {
                        f.dirty = true;
                    }
                    if truncate {
                        f.content.clear();
                    }
                    let snapshot = f.content.clone();
                    m.handles.push(handle(opened.fh, attr.ino, file, snapshot));
                }
                (None, Err(libc::ENOENT)) if create && writes => {
                    let (attr, fh) =
                        w.fs.create(ROOT_INO, name, 0o640, 0, 0, pid).await.map_err(|e| format!("create: {e}"))?;
                    *w.lookups.entry(attr.ino).or_default() += 1;
                    let file = m.new_file(Vec::new(), 0o640, None);
                    m.files[file].dirty = true;
                    m.names.insert(name.to_string(), file);
                    m.handles.push(handle(fh, attr.ino, file, Vec::new()));
                }
                (None, Err(libc::ENOENT)) => {}
                (expected, got) => return Err(format!("lookup {name}: model has {expected:?}, core says {got:?}")),
            }
        }
        Op::Write { h, at, len, seed } if nh > 0 => {
            let h = h % nh;
            if !m.handles[h].writes() {
                return Ok(());
            }
            let file = m.handles[h].file;
            let size = m.files[file].content.len();
            // O_APPEND writes at the end, as the kernel computes it; others anywhere up to
            // a little past the end (a hole).
            let offset = if m.handles[h].append { size } else { usize::from(at) % (size + 2 * 1024 + 1) };
            let data = pseudo_random_bytes(len as usize, seed);
            let written =
                w.fs.write(m.handles[h].fh, offset as u64, data.clone()).await.map_err(|e| format!("write: {e}"))?;
            m.settle_commit(file);
            if written as usize != data.len() {
                return Err(format!("short write {written} of {}", data.len()));
            }
            let content = &mut m.files[file].content;
            if content.len() < offset + data.len() {
                content.resize(offset + data.len(), 0);
            }
            content[offset..offset + data.len()].copy_from_slice(&data);
            m.files[file].dirty = true;
            m.handles[h].changed = true;
        }
        Op::Read { h, at, len } if nh > 0 => {
            let h = h % nh;
            if m.handles[h].access == Access::Write {
                return Ok(());
            }
            let handle = &m.handles[h];
            let current = &m.files[handle.file].content;
            let offset = u64::from(at) % (current.len() as u64 + 64);
            let result = w.fs.read(handle.fh, offset, u32::from(len)).await;
            let slice = |c: &[u8]| {
                let start = (offset as usize).min(c.len());
                c[start..(start + len as usize).min(c.len())].to_vec()
            };
            match result {
                Ok(got) if got.as_ref() == slice(current).as_slice() => {}
                Ok(got) if handle.changed_under && got.as_ref() == slice(&handle.snapshot).as_slice() => {}
                Err(e) if handle.changed_under && e.errno() == libc::EIO => {}
                other => {
                    return Err(format!(
                        "read {len} at {offset}: got {:?}, model has {} bytes",
                        other.map(|b| b.len()),
                        current.len()
                    ))
                }
            }
        }
        Op::Truncate { h, size } if nh > 0 => {
            let h = h % nh;
            if !m.handles[h].writes() {
                return Ok(());
            }
            let file = m.handles[h].file;
            let by = Changer { fh: Some(m.handles[h].fh), pid: procs[m.handles[h].proc] };
            w.fs.set_size(m.handles[h].ino, by, u64::from(size)).await.map_err(|e| format!("ftruncate: {e}"))?;
            m.handles[h].changed = true;
            if m.files[file].content.len() != size as usize {
                m.settle_commit(file);
                m.files[file].content.resize(size as usize, 0);
                m.files[file].dirty = true;
            }
        }
        Op::TruncatePath { name, size } => {
            let name = NAMES[name];
            let Some(&file) = m.names.get(name) else { return Ok(()) };
            let attr = w.lookup(name).await.map_err(|e| format!("lookup {name}: errno {e}"))?;
            w.fs.set_size(attr.ino, by_path(), u64::from(size)).await.map_err(|e| format!("truncate: {e}"))?;
            let changed = m.files[file].content.len() != size as usize;
            if changed {
                m.settle_commit(file);
            }
            m.files[file].content.resize(size as usize, 0);
            match m.writer_of(file) {
                // Through the open writer: stored when it publishes.
                Some(_) => m.files[file].dirty |= changed,
                None => {
                    let f = &m.files[file];
                    // A truncate to the same size stores nothing.
                    if changed {
                        let stored = MStored { content: f.content.clone(), mode: Some(f.mode), xattr: f.xattr.clone() };
                        m.stored.insert(name.to_string(), stored);
                        m.readers_follow(file);
                    }
                }
            }
        }
        Op::Fsync { h } if nh > 0 => {
            let h = h % nh;
            w.fs.fsync(m.handles[h].fh).await.map_err(|e| format!("fsync: {e}"))?;
            // fsync through any descriptor (a reader's too) stores what the file's
            // writers wrote.
            let file = m.handles[h].file;
            if m.writer_of(file).is_some() && m.files[file].dirty {
                m.publish(file);
            }
        }
        Op::FlushDup { h, other_process } if nh > 0 => {
            let h = h % nh;
            let pid = if other_process { procs[(m.handles[h].proc + 1) % 3] } else { procs[m.handles[h].proc] };
            w.fs.flush(m.handles[h].fh, pid).await.map_err(|e| format!("flush: {e}"))?;
            let file = m.handles[h].file;
            if m.handles[h].writes() && !other_process && m.handles[h].changed && m.files[file].dirty {
                m.close_after_data(file, w.write_back);
            }
        }
        Op::Close { h } if nh > 0 => close(w, m, h % nh).await?,
        Op::CloseRefused { h } if nh > 0 => {
            let h = h % nh;
            let handle = &m.handles[h];
            let Some(name) = m.name_of(handle.file) else { return Ok(()) };
            // The sole writer of a file with changes to store: its close is the upload.
            if !handle.writes() || !m.files[handle.file].dirty || m.writers_of(handle.file) > 1 {
                return Ok(());
            }
            for op in ["PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"] {
                w.faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op(op).key_prefix(name.clone()));
            }
            let pid = procs[handle.proc];
            let fh = handle.fh;
            let flushed = w.fs.flush(fh, pid).await;
            let released = w.fs.release(fh).await;
            let handle = m.handles.remove(h);
            if w.write_back {
                // close(2) returned once the journal had the file; the upload after it is
                // refused, and the file kept for `xosfs recover`. (No program sees what
                // release answers: a file that got no data until its last close is stored
                // by the release itself.)
                flushed.map_err(|e| format!("write-back close: {e}"))?;
                drop(released);
                let settled = w.settle_writers(m).await;
                w.faulty.clear();
                settled?;
                revert_to_store(m, handle.file, &name);
                return Ok(());
            }
            w.faulty.clear();
            // The close reports the failure (at flush when data was written, else at release).
            if flushed.is_ok() && released.is_ok() {
                return Err("a refused upload was reported as a successful close".into());
            }
            if let Some(e) = flushed.err().or(released.err()) {
                if e.errno() != libc::EACCES && e.errno() != libc::EIO {
                    return Err(format!("a refused upload gave errno {}", e.errno()));
                }
            }
            // The name shows what the store has again.
            revert_to_store(m, handle.file, &name);
        }
        Op::Unlink { name } => {
            let name = NAMES[name];
            let Some(_) = m.names.get(name) else { return Ok(()) };
            w.lookup(name).await.map_err(|e| format!("lookup {name}: errno {e}"))?;
            w.fs.unlink(ROOT_INO, name).await.map_err(|e| format!("unlink: {e}"))?;
            m.unlink(name);
            m.stored.remove(name);
        }
        Op::Rename { from, to } => {
            let (from, to) = (NAMES[from], NAMES[to]);
            let Some(&file) = m.names.get(from) else { return Ok(()) };
            w.lookup(from).await.map_err(|e| format!("lookup {from}: errno {e}"))?;
            if m.names.contains_key(to) {
                w.lookup(to).await.map_err(|e| format!("lookup {to}: errno {e}"))?;
            }
            w.fs.rename(ROOT_INO, from, ROOT_INO, to, false).await.map_err(|e| format!("rename {from} {to}: {e}"))?;
            if from == to {
                return Ok(());
            }
            // A writer's changes are stored first, then the object is moved.
            if m.writer_of(file).is_some() && m.files[file].dirty {
                m.publish(file);
            }
            m.unlink(to);
            m.names.remove(from);
            m.names.insert(to.to_string(), file);
            m.readers_follow(file);
            let stored = m.stored.remove(from).expect("a renamed file is stored");
            m.stored.insert(to.to_string(), stored);
        }
        Op::Chmod { name, mode } => {
            let name = NAMES[name];
            let Some(&file) = m.names.get(name) else { return Ok(()) };
            let attr = w.lookup(name).await.map_err(|e| format!("lookup {name}: errno {e}"))?;
            let change = AttrChange { mode: Some(mode), ..AttrChange::default() };
            w.fs.set_attributes(attr.ino, by_path(), change).await.map_err(|e| format!("chmod: {e}"))?;
            if m.writer_of(file).is_some() {
                m.settle_commit(file);
            }
            m.files[file].mode = mode;
            match m.writer_of(file) {
                Some(_) => m.files[file].dirty = true,
                None => {
                    if let Some(stored) = m.stored.get_mut(name) {
                        stored.mode = Some(mode);
                    }
                    m.readers_follow(file);
                }
            }
        }
        Op::SetXattr { name, value } => {
            let name = NAMES[name];
            let Some(&file) = m.names.get(name) else { return Ok(()) };
            let attr = w.lookup(name).await.map_err(|e| format!("lookup {name}: errno {e}"))?;
            w.fs.change_xattr(attr.ino, XATTR, Some(&[value]), false, false)
                .await
                .map_err(|e| format!("setxattr: {e}"))?;
            if m.writer_of(file).is_some() {
                m.settle_commit(file);
            }
            m.files[file].xattr = Some(vec![value]);
            match m.writer_of(file) {
                // Stored with the writer's upload.
                Some(_) => m.files[file].dirty = true,
                None => {
                    if let Some(stored) = m.stored.get_mut(name) {
                        stored.xattr = Some(vec![value]);
                    }
                    m.readers_follow(file);
                }
            }
        }
        Op::Forget { name } => {
            let name = NAMES[name];
            let Ok(attr) = w.lookup(name).await else { return Ok(()) };
            // The kernel keeps an inode while files on it are open.
            if m.names.get(name).is_some_and(|&f| m.handles.iter().any(|h| h.file == f)) {
                return Ok(());
            }
            let n = w.lookups.remove(&attr.ino).unwrap_or(0);
            w.fs.forget(attr.ino, n);
        }
        Op::Throttle { requests } => {
            // Fewer in a row than the retries allow.
            w.faulty.clear();
            w.faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).times(requests));
        }
        // Another client changing a file open for writing here is a conflict, which the
        // write-back issue settles; these model the changes this mount must simply see.
        Op::ExternalPut { name, .. } | Op::ExternalDelete { name }
            if m.names.get(NAMES[name]).is_some_and(|&f| m.writer_of(f).is_some()) => {}
        Op::ExternalPut { name, len, seed } => {
            let name = NAMES[name];
            let data = pseudo_random_bytes(len as usize, seed);
            w.memory
                .put_object(name, data.clone().into(), &Default::default())
                .await
                .map_err(|e| format!("external put: {e}"))?;
            m.stored.insert(name.to_string(), MStored { content: data.clone(), mode: None, xattr: None });
            match m.names.get(name).copied() {
                Some(file) => {
                    m.files[file] =
                        MFile { content: data, mode: 0o644, xattr: None, linked: true, dirty: false, committed: false };
                    m.changed_elsewhere(file);
                }
                None => {
                    let file = m.new_file(data, 0o644, None);
                    m.names.insert(name.to_string(), file);
                }
            }
        }
        Op::ExternalDelete { name } => {
            let name = NAMES[name];
            w.memory.delete_object(name).await.map_err(|e| format!("external delete: {e}"))?;
            m.stored.remove(name);
            m.unlink(name);
        }
        _ => {}
    }
    Ok(())
}

async fn close(w: &mut World, m: &mut Model, h: usize) -> Result<(), String> {
    let handle = &m.handles[h];
    let pid = processes()[handle.proc];
    w.fs.flush(handle.fh, pid).await.map_err(|e| format!("close: {e}"))?;
    w.fs.release(handle.fh).await.map_err(|e| format!("release: {e}"))?;
    let handle = m.handles.remove(h);
    let file = handle.file;
    if !handle.writes() {
        return Ok(());
    }
    // A close after data stores the file (with write-back, makes it durable for a later
    // store); the last writer's release stores it.
    let last = m.writer_of(file).is_none();
    if m.files[file].dirty && last {
        m.publish(file);
    } else if m.files[file].dirty && handle.changed {
        m.close_after_data(file, w.write_back);
    }
    if let Some(name) = m.name_of(file).filter(|_| last) {
        // What another client did meanwhile shows from now on.
        revert_to_store(m, file, &name);
    }
    Ok(())
}

/// Once the file's writer is gone (closed, or failed), the name shows what the store
/// holds (or nothing).
fn revert_to_store(m: &mut Model, file: usize, name: &str) {
    m.files[file].dirty = false;
    match m.stored.get(name).cloned() {
        Some(stored) => {
            let f = &mut m.files[file];
            f.content = stored.content;
            f.mode = stored.mode.unwrap_or(0o644);
            f.xattr = stored.xattr;
        }
        None => m.unlink(name),
    }
}

/// What a program sees through the mount, and what the store holds, against the model.
async fn check(w: &mut World, m: &Model) -> Result<(), String> {
    let pid = processes()[0];
    for name in NAMES {
        let expected = m.names.get(name).map(|&f| &m.files[f]);
        let got = w.lookup(name).await;
        let (file, attr) = match (expected, got) {
            (None, Err(libc::ENOENT)) => continue,
            (Some(file), Ok(attr)) => (file, attr),
            (expected, got) => {
                return Err(format!(
                    "{name}: model {} bytes, core {got:?}",
                    expected.map_or("no file".into(), |f| f.content.len().to_string())
                ))
            }
        };
        let xattr = match w.fs.getxattr(attr.ino, XATTR).await {
            Ok(v) => Some(v),
            Err(e) if e.errno() == libc::ENODATA => None,
            Err(e) => return Err(format!("{name}: getxattr: {e}")),
        };
        if xattr != file.xattr {
            return Err(format!("{name}: getxattr says {xattr:?}, model {:?}", file.xattr));
        }
        if attr.size != file.content.len() as u64 || attr.perm != file.mode {
            return Err(format!(
                "{name}: stat says size {} mode {:o}, model {} {:o}",
                attr.size,
                attr.perm,
                file.content.len(),
                file.mode
            ));
        }
        let opened =
            w.fs.open(attr.ino, false, false, false, pid).await.map_err(|e| format!("open {name} to check: {e}"))?;
        let got = w.fs.read(opened.fh, 0, file.content.len() as u32 + 1).await;
        w.fs.release(opened.fh).await.map_err(|e| format!("release: {e}"))?;
        let got = got.map_err(|e| format!("read {name} to check: {e}"))?;
        if got.as_ref() != file.content.as_slice() {
            return Err(format!(
                "{name}: read {} bytes differing from the model's {} from offset {}",
                got.len(),
                file.content.len(),
                first_difference(&got, &file.content)
            ));
        }
    }
    // With write-back the store gets there once what was queued has been sent.
    for _ in 0..400 {
        match check_store(w, m) {
            Err(_) if w.write_back => tokio::time::sleep(Duration::from_millis(5)).await,
            other => return other,
        }
    }
    check_store(w, m)
}

/// What the store holds, against the model.
fn check_store(w: &World, m: &Model) -> Result<(), String> {
    let keys = w.memory.keys();
    let expected: Vec<&String> = m.stored.keys().collect();
    if keys.iter().collect::<Vec<_>>() != expected {
        return Err(format!("store holds {keys:?}, model {expected:?}"));
    }
    for (key, want) in &m.stored {
        let got = w.memory.object(key).ok_or(format!("{key} vanished"))?;
        if got.data.as_ref() != want.content.as_slice() {
            return Err(format!(
                "store: {key} holds {} bytes differing from the model's {}",
                got.data.len(),
                want.content.len()
            ));
        }
        let mode = got.metadata.get("mode").and_then(|m| m.parse::<u32>().ok()).map(|m| (m & 0o7777) as u16);
        if mode != want.mode {
            return Err(format!("store: {key} has mode {mode:?}, model {:?}", want.mode));
        }
        let xattr = xosfs_xattr(&got.metadata);
        if xattr != want.xattr {
            return Err(format!("store: {key} has xattr {xattr:?}, model {:?}", want.xattr));
        }
    }
    if m.handles.is_empty() && !w.memory.unfinished_uploads().is_empty() {
        return Err(format!("unfinished uploads left: {:?}", w.memory.unfinished_uploads()));
    }
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()))
}

/// The `user.note` attribute as stored in s3fs's `xattr` metadata.
fn xosfs_xattr(meta: &HashMap<String, String>) -> Option<Vec<u8>> {
    use base64::Engine;
    let stored = meta.get("xattr")?;
    let json = percent_encoding::percent_decode_str(stored).decode_utf8_lossy().into_owned();
    let map: BTreeMap<String, String> = serde_json::from_str(&json).ok()?;
    base64::engine::general_purpose::STANDARD.decode(map.get(XATTR)?).ok()
}

async fn run(ttl: Duration, write_back: bool, ops: &[Op]) -> Result<(), String> {
    let mut w = world(ttl, write_back);
    let mut m = Model::default();
    for (i, op) in ops.iter().enumerate() {
        step(&mut w, &mut m, op).await.map_err(|e| format!("step {i} {op:?}: {e}"))?;
        check(&mut w, &m).await.map_err(|e| format!("after step {i} {op:?}: {e}"))?;
    }
    while !m.handles.is_empty() {
        close(&mut w, &mut m, 0).await.map_err(|e| format!("closing at the end: {e}"))?;
        check(&mut w, &m).await.map_err(|e| format!("after the closes at the end: {e}"))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("XOSFS_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Caches trusted for a minute, nothing changes behind the mount's back.
    #[test]
    fn this_mount_alone_behaves_as_the_model_says(ops in prop::collection::vec(op_strategy(false), 1..40)) {
        let result = runtime().block_on(run(Duration::from_secs(60), false, &ops));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    /// The same with `--write-back`: closes return before the uploads, deletes are
    /// batched, and the store gets to the same place.
    #[test]
    fn with_write_back_it_behaves_as_the_model_says(ops in prop::collection::vec(op_strategy(false), 1..40)) {
        let result = runtime().block_on(run(Duration::from_secs(60), true, &ops));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }

    /// No caching, and another client puts and deletes objects in between.
    #[test]
    fn with_other_clients_it_behaves_as_the_model_says(ops in prop::collection::vec(op_strategy(true), 1..40)) {
        let result = runtime().block_on(run(Duration::ZERO, false, &ops));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Two descriptors writing one file each have a writer; unlink and rename reach both, so
/// neither stores its copy under a name the file no longer has.
#[test]
fn unlink_and_rename_reach_every_writer_of_a_file() {
    runtime().block_on(async {
        let w = world(Duration::from_secs(60), false);
        let pid = processes()[0];
        for (victim, rename) in [("a.txt", false), ("b.jpg", true)] {
            let (attr, first) = w.fs.create(ROOT_INO, victim, 0o644, 0, 0, pid).await.unwrap();
            w.fs.write(first, 0, b"first".to_vec()).await.unwrap();
            w.fs.fsync(first).await.unwrap();
            let second = w.fs.open(attr.ino, true, false, false, pid).await.unwrap().fh;
            w.fs.write(second, 0, b"second".to_vec()).await.unwrap();
            if rename {
                w.fs.rename(ROOT_INO, victim, ROOT_INO, "c", false).await.unwrap();
            } else {
                w.fs.unlink(ROOT_INO, victim).await.unwrap();
            }
            for fh in [first, second] {
                w.fs.write(fh, 0, b"later".to_vec()).await.unwrap();
                w.fs.flush(fh, pid).await.unwrap();
                w.fs.release(fh).await.unwrap();
            }
            assert!(w.memory.object(victim).is_none(), "{victim} came back after its writers closed");
        }
        assert_eq!(w.memory.keys(), vec!["c".to_string()]);
    });
}
