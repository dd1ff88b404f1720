//! The write-back path: a [`WriteBuffer`] per file open for writing, backed by a staging
//! file, flushing through [`UploadQueue`] multipart uploads (or one PUT for small files).
//! Each buffer is owned by its own task; [`WriterHandle`] sends it commands, so writes,
//! reads and flushes of one file are ordered without holding any lock across I/O.

mod buffer;
mod conflict;
mod contents;
pub mod journal;
mod parts;
mod ranges;
pub mod recovery;
mod space;
mod staging;
#[cfg(test)]
mod tests;
mod upload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

pub use buffer::{expecting, BaseObject, MetaChange, Uploaded};
pub use upload::{multipart_copy, MAX_SINGLE_COPY};

use crate::store::{ObjectError, ObjectStore, Precondition, PutOptions};
use buffer::WriteBuffer;
use journal::{Journal, StoreId};

/// Files left by write-back closes uploaded at once: enough to hide the store's round
/// trip behind a burst of small files, few enough for any store's connection limits.
const UPLOADS_AT_ONCE: usize = 16;

/// Settings shared by every writer of the mount, with the mount-wide memory budget.
pub struct WriteConfig {
    pub part_size: u64,
    pub concurrency: usize,
    /// Where every file being written has its staging file and record.
    pub journal: Arc<Journal>,
    /// Close returns once the file is durable in the journal; the upload follows
    /// (`--write-back`).
    pub write_back: bool,
    /// Uploads after write-back closes running at once.
    uploads: Arc<Semaphore>,
    /// The disk staging files may take (`--cache-limit`).
    pub space: Arc<space::StagingSpace>,
    /// A file streamed from the start keeps this much of its stored parts staged (for
    /// reads and rewrites near its end); the staging disk of the parts before is given
    /// back as they are stored.
    pub release_after: u64,
    /// Objects larger than this are copied (renamed) with UploadPartCopy, in parts of it.
    pub copy_threshold: u64,
    budget: Arc<Semaphore>,
    budget_mib: u32,
    /// Writer tasks still running (open, or finishing their upload).
    active: Arc<ActiveWriters>,
}

#[derive(Default)]
struct ActiveWriters {
    count: std::sync::atomic::AtomicUsize,
    ended: tokio::sync::Notify,
}

/// Counts one writer task as running until dropped.
struct ActiveGuard(Arc<ActiveWriters>);

impl ActiveGuard {
    fn new(active: &Arc<ActiveWriters>) -> ActiveGuard {
        active.count.fetch_add(1, Ordering::AcqRel);
        ActiveGuard(active.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_waiters();
    }
}

impl WriteConfig {
    pub fn new(
        part_size: u64,
        concurrency: usize,
        budget_bytes: u64,
        cache_dir: PathBuf,
        copy_threshold: u64,
    ) -> WriteConfig {
        let budget_mib = (budget_bytes >> 20).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        WriteConfig {
            part_size,
            concurrency,
            journal: Arc::new(Journal::new(&cache_dir, StoreId::default())),
            write_back: false,
            uploads: Arc::new(Semaphore::new(UPLOADS_AT_ONCE)),
            space: Arc::default(),
            release_after: budget_bytes,
            copy_threshold,
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            active: Arc::default(),
        }
    }

    /// Settings for `xosfs recover`, which uploads one file: a mount's default part size,
    /// concurrency, budget and copy threshold.
    pub fn for_recovery(cache_dir: PathBuf, store: StoreId) -> WriteConfig {
        WriteConfig::new(8 << 20, 8, 256 << 20, cache_dir, 5 << 30).with_store(store)
    }

    /// Records which store this mount's entries belong to.
    pub fn with_store(mut self, store: StoreId) -> WriteConfig {
        let dir = self.journal.dir().parent().map(PathBuf::from).unwrap_or_default();
        self.journal = Arc::new(Journal::new(&dir, store));
        self
    }

    /// Caps the staging disk at `limit` bytes; a stream then keeps at most a quarter of
    /// it staged.
    pub fn with_cache_limit(mut self, limit: Option<u64>) -> WriteConfig {
        self.space = Arc::new(space::StagingSpace::new(limit));
        if let Some(limit) = limit {
            self.release_after = self.release_after.min(limit / 4);
        }
        self
    }

    pub fn with_write_back(mut self, on: bool) -> WriteConfig {
        self.write_back = on;
        self
    }

    /// A turn to upload a file a write-back close left.
    async fn upload_slot(&self) -> OwnedSemaphorePermit {
        self.uploads.clone().acquire_owned().await.expect("the upload semaphore is never closed")
    }

    /// Writer tasks still running: files open for writing, and closes still uploading.
    pub fn active_writers(&self) -> usize {
        self.active.count.load(Ordering::Acquire)
    }

    /// Waits until every writer task has ended (at unmount: closes in flight finish their
    /// uploads), calling `progress` with the number left every few seconds.
    pub async fn wait_for_writers(&self, progress: impl Fn(usize)) {
        loop {
            let ended = self.active.ended.notified();
            let left = self.active_writers();
            if left == 0 {
                return;
            }
            if tokio::time::timeout(std::time::Duration::from_secs(5), ended).await.is_err() {
                progress(self.active_writers());
            }
        }
    }

    /// Memory for a part body of `bytes`, from the mount-wide budget: waits while other
    /// writers hold it all (backpressure instead of growth).
    pub async fn reserve(&self, bytes: u64) -> OwnedSemaphorePermit {
        let mib = bytes.div_ceil(1 << 20).clamp(1, u64::from(self.budget_mib)) as u32;
        self.budget.clone().acquire_many_owned(mib).await.expect("the budget semaphore is never closed")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("staging file: {0}")]
    Staging(std::io::Error),
    /// The file's upload failed; every later write, flush and close reports it.
    #[error("upload failed: {0}")]
    Failed(ObjectError),
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error("the file's writer has stopped")]
    Gone,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

/// A change of what an upload stores besides the bytes, made by the writer's task.
pub type OptionsEdit = Box<dyn FnOnce(&mut PutOptions) + Send>;

enum Command {
    /// At `offset`, or (`None`) at the end of the file.
    Write {
        offset: Option<u64>,
        data: Vec<u8>,
        reply: Reply<u32>,
    },
    Read {
        offset: u64,
        size: u32,
        reply: Reply<Bytes>,
    },
    Truncate {
        size: u64,
        reply: Reply<()>,
    },
    Extend {
        size: u64,
        reply: Reply<()>,
    },
    SetMeta {
        meta: MetaChange,
        reply: Reply<()>,
    },
    Options {
        reply: Reply<PutOptions>,
    },
    EditOptions {
        edit: OptionsEdit,
        reply: Reply<()>,
    },
    KeepBase {
        reply: Reply<()>,
    },
    Discard {
        reply: Reply<()>,
    },
    Rekey {
        key: String,
        base: BaseObject,
        reply: Reply<()>,
    },
    CopyFrom {
        source: String,
        etag: String,
        size: u64,
        reply: Reply<Option<Uploaded>>,
    },
    Flush {
        reply: Reply<Option<Uploaded>>,
    },
    Commit {
        reply: Reply<()>,
    },
    Close {
        reply: Reply<Option<Uploaded>>,
    },
}

/// The way to one file's [`WriteBuffer`] task. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
    shown: Arc<Shown>,
}

/// What stat shows of a file being written, kept current by its buffer.
#[derive(Default)]
pub struct Shown {
    size: AtomicU64,
    /// Nanoseconds since the epoch; 0 while the base's times stand.
    mtime: AtomicU64,
    ctime: AtomicU64,
    /// Set when a write-back close's upload starts: reads are served from it meanwhile.
    frozen: std::sync::OnceLock<contents::Frozen>,
    /// The upload failed: every later write, flush and close of this writer fails.
    failed: std::sync::atomic::AtomicBool,
}

impl Shown {
    fn freeze(&self, frozen: contents::Frozen) {
        let _ = self.frozen.set(frozen);
    }

    fn set_times(&self, mtime: Option<SystemTime>, ctime: SystemTime) {
        let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        self.mtime.store(mtime.map_or(0, nanos), Ordering::Release);
        self.ctime.store(nanos(ctime), Ordering::Release);
    }
}

impl WriterHandle {
    /// Starts the task owning a new buffer for `key`; `base` is the object its unwritten
    /// bytes come from (`None` for a new or truncated file), `expect` the version its
    /// upload may replace.
    pub fn spawn(
        client: Arc<dyn ObjectStore>,
        cfg: Arc<WriteConfig>,
        key: String,
        opts: PutOptions,
        base: Option<BaseObject>,
        expect: Precondition,
    ) -> WriterHandle {
        let shown = Arc::new(Shown::default());
        let buffer = WriteBuffer::new(client, cfg.clone(), key, opts, base, expect, shown.clone());
        WriterHandle::run(buffer, &cfg, shown)
    }

    /// Starts the task of a writer rebuilt from the journal (its daemon died).
    pub fn spawn_recovered(
        client: Arc<dyn ObjectStore>,
        cfg: Arc<WriteConfig>,
        claimed: journal::Claimed,
    ) -> std::io::Result<WriterHandle> {
        let shown = Arc::new(Shown::default());
        let buffer = WriteBuffer::recovered(client, cfg.clone(), claimed, shown.clone())?;
        Ok(WriterHandle::run(buffer, &cfg, shown))
    }

    fn run(mut buffer: WriteBuffer, cfg: &WriteConfig, shown: Arc<Shown>) -> WriterHandle {
        let span = tracing::debug_span!("writer", key = %buffer.key());
        let active = ActiveGuard::new(&cfg.active);
        let (tx, mut rx) = mpsc::channel::<Command>(16);
        tokio::spawn(
            async move {
                let _active = active;
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Command::Write { offset, data, reply } => {
                            drop(reply.send(Box::pin(buffer.write(offset, data)).await))
                        }
                        Command::Read { offset, size, reply } => {
                            drop(reply.send(Box::pin(buffer.read(offset, size)).await))
                        }
                        Command::Truncate { size, reply } => drop(reply.send(Box::pin(buffer.truncate(size)).await)),
                        Command::Extend { size, reply } => drop(reply.send(Box::pin(buffer.extend(size)).await)),
                        Command::SetMeta { meta, reply } => drop(reply.send(Box::pin(buffer.set_meta(meta)).await)),
                        Command::Options { reply } => drop(reply.send(Ok(buffer.options().clone()))),
                        Command::EditOptions { edit, reply } => {
                            drop(reply.send(Box::pin(buffer.edit_options(edit)).await))
                        }
                        Command::KeepBase { reply } => {
                            Box::pin(buffer.keep_base()).await;
                            drop(reply.send(Ok(())))
                        }
                        Command::Discard { reply } => {
                            buffer.discard().await;
                            drop(reply.send(Ok(())))
                        }
                        Command::Rekey { key, base, reply } => {
                            buffer.rekey(key, base).await;
                            drop(reply.send(Ok(())))
                        }
                        Command::CopyFrom { source, etag, size, reply } => {
                            drop(reply.send(Box::pin(buffer.copy_from(&source, &etag, size)).await))
                        }
                        Command::Flush { reply } => drop(reply.send(Box::pin(buffer.flush()).await)),
                        Command::Commit { reply } => drop(reply.send(Box::pin(buffer.commit()).await)),
                        Command::Close { reply } => {
                            let _ = reply.send(Box::pin(buffer.close()).await);
                            return;
                        }
                    }
                }
                // (Each command's future is boxed: inline, the task would be as large as all
                // of them together, too large for a worker's stack in unoptimized builds.)
                // Every handle is gone without a close: the session ended (a forced
                // unmount) while the file was open. Its data may be incomplete, so it is
                // not stored over the object; the staging file keeps it. (A write-back
                // close's file is complete: its entry stays for the next mount to upload.)
                if buffer.is_dirty() {
                    buffer.abandon().await;
                }
            }
            .instrument(span),
        );
        WriterHandle { tx, shown }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, WriteError> {
        let (reply, mut answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| WriteError::Gone)?;
        // A command sent while the task ends (its close) can be accepted yet never
        // received: tokio's receiver drains what is queued when it drops, but not a send
        // that lands right after, and that one is dropped only with the last handle, which
        // this call holds. So the end of the task answers too, unless the task answered
        // before it ended (its close): that answer is looked for again once the end is
        // seen, as it may have come between the two branches being polled.
        tokio::select! {
            biased;
            answer = &mut answer => answer.map_err(|_| WriteError::Gone)?,
            () = self.tx.closed() => answer.try_recv().map_err(|_| WriteError::Gone)?,
        }
    }

    pub async fn write(&self, offset: u64, data: Vec<u8>) -> Result<u32, WriteError> {
        self.ask(|reply| Command::Write { offset: Some(offset), data, reply }).await
    }

    /// Writes `data` at the end of the file (O_APPEND), wherever that is when it lands.
    pub async fn append(&self, data: Vec<u8>) -> Result<u32, WriteError> {
        self.ask(|reply| Command::Write { offset: None, data, reply }).await
    }

    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, WriteError> {
        if let Some(frozen) = self.shown.frozen.get() {
            return Ok(frozen.read(offset, size).await?);
        }
        self.ask(|reply| Command::Read { offset, size, reply }).await
    }

    pub async fn truncate(&self, size: u64) -> Result<(), WriteError> {
        self.ask(|reply| Command::Truncate { size, reply }).await
    }

    /// Makes the file at least `size` long, whatever writes land meanwhile.
    pub async fn extend(&self, size: u64) -> Result<(), WriteError> {
        self.ask(|reply| Command::Extend { size, reply }).await
    }

    /// Attributes to store with the next upload (chmod, chown, utimens while open).
    pub async fn set_meta(&self, meta: MetaChange) -> Result<(), WriteError> {
        self.ask(|reply| Command::SetMeta { meta, reply }).await
    }

    /// What the next upload stores besides the bytes: user metadata, Content-Type, ACL,
    /// storage class, tags.
    pub async fn options(&self) -> Result<PutOptions, WriteError> {
        if let Some(frozen) = self.shown.frozen.get() {
            return Ok(frozen.options().clone());
        }
        self.ask(|reply| Command::Options { reply }).await
    }

    /// Changes what the next upload stores besides the bytes (an xattr change while the
    /// file is written).
    pub async fn edit_options(&self, edit: OptionsEdit) -> Result<(), WriteError> {
        self.ask(|reply| Command::EditOptions { edit, reply }).await
    }

    /// Uploads what is dirty; `Some` describes the stored object when anything was sent.
    pub async fn flush(&self) -> Result<Option<Uploaded>, WriteError> {
        self.ask(|reply| Command::Flush { reply }).await
    }

    /// The object is about to be replaced (a rename over the file): its bytes are kept for
    /// the descriptors open on it.
    pub async fn keep_base(&self) -> Result<(), WriteError> {
        self.ask(|reply| Command::KeepBase { reply }).await
    }

    /// The file was unlinked while open: keep serving the open descriptors, store nothing.
    pub async fn discard(&self) -> Result<(), WriteError> {
        self.ask(|reply| Command::Discard { reply }).await
    }

    /// The file was renamed (after a flush): later uploads go to `key`, over `base`.
    pub async fn rekey(&self, key: String, base: BaseObject) -> Result<(), WriteError> {
        self.ask(|reply| Command::Rekey { key, base, reply }).await
    }

    /// Stores the object `source` as this (still empty) file with a server-side copy;
    /// `Ok(None)` when the file already has data.
    pub async fn copy_from(&self, source: String, etag: String, size: u64) -> Result<Option<Uploaded>, WriteError> {
        self.ask(|reply| Command::CopyFrom { source, etag, size, reply }).await
    }

    /// A write-back close: durable in the journal now, uploaded at the writer's close.
    pub async fn commit(&self) -> Result<(), WriteError> {
        self.ask(|reply| Command::Commit { reply }).await
    }

    /// Flushes and ends the task.
    pub async fn close(&self) -> Result<Option<Uploaded>, WriteError> {
        self.ask(|reply| Command::Close { reply }).await
    }

    /// Waits until the writer's task has ended (its close has stored the file, or failed).
    pub async fn ended(&self) {
        self.tx.closed().await
    }

    /// The file's size as written so far (what stat must show while it is open).
    pub fn size(&self) -> u64 {
        self.shown.size.load(Ordering::Acquire)
    }

    /// The mtime and ctime the file has now, when they changed here (else the base's
    /// stand).
    pub fn times(&self) -> Option<(SystemTime, SystemTime)> {
        let at = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(nanos);
        match (self.shown.mtime.load(Ordering::Acquire), self.shown.ctime.load(Ordering::Acquire)) {
            (0, _) => None,
            (mtime, ctime) => Some((at(mtime), at(ctime))),
        }
    }

    /// Whether an upload of this writer failed (then a new open needs a new writer).
    pub fn has_failed(&self) -> bool {
        self.shown.failed.load(Ordering::Acquire)
    }

    pub fn same(&self, other: &WriterHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }
}
