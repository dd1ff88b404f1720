//! The write-back path: a [`WriteBuffer`] per file open for writing, backed by a staging
//! file, flushing through [`UploadQueue`] multipart uploads (or one PUT for small files).
//! Each buffer is owned by its own task; [`WriterHandle`] sends it commands, so writes,
//! reads and flushes of one file are ordered without holding any lock across I/O.

mod buffer;
mod parts;
mod ranges;
mod staging;
mod upload;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{error, Instrument};

pub use buffer::{BaseObject, MetaChange, Uploaded};
pub use upload::{multipart_copy, MAX_SINGLE_COPY};

use crate::s3::{ObjectClient, ObjectError, PutOptions};
use buffer::WriteBuffer;

/// Settings shared by every writer of the mount, with the mount-wide memory budget.
pub struct WriteConfig {
    pub part_size: u64,
    pub concurrency: usize,
    pub cache_dir: PathBuf,
    /// Objects larger than this are copied (renamed) with UploadPartCopy, in parts of it.
    pub copy_threshold: u64,
    budget: Arc<Semaphore>,
    budget_mib: u32,
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
            cache_dir,
            copy_threshold,
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
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
    #[error("upload failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] ObjectError),
    #[error("the file's writer has stopped")]
    Gone,
}

type Reply<T> = oneshot::Sender<Result<T, WriteError>>;

enum Command {
    Write { offset: u64, data: Vec<u8>, reply: Reply<u32> },
    Read { offset: u64, size: u32, reply: Reply<Bytes> },
    Truncate { size: u64, reply: Reply<()> },
    SetMeta { meta: MetaChange, reply: Reply<()> },
    Discard { reply: Reply<()> },
    Rekey { key: String, base: BaseObject, reply: Reply<()> },
    CopyFrom { source: String, etag: String, size: u64, reply: Reply<Option<Uploaded>> },
    Flush { reply: Reply<Option<Uploaded>> },
    Close { reply: Reply<Option<Uploaded>> },
}

/// The way to one file's [`WriteBuffer`] task. Cheap to clone.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Command>,
    size: Arc<AtomicU64>,
}

impl WriterHandle {
    /// Starts the task owning a new buffer for `key`; `base` is the object its unwritten
    /// bytes come from (`None` for a new or truncated file).
    pub fn spawn(
        client: Arc<ObjectClient>,
        cfg: Arc<WriteConfig>,
        key: String,
        opts: PutOptions,
        base: Option<BaseObject>,
    ) -> WriterHandle {
        let size = Arc::new(AtomicU64::new(0));
        let span = tracing::debug_span!("writer", key = %key);
        let mut buffer = WriteBuffer::new(client, cfg, key, opts, base, size.clone());
        let (tx, mut rx) = mpsc::channel::<Command>(16);
        tokio::spawn(
            async move {
                while let Some(cmd) = rx.recv().await {
                    match cmd {
                        Command::Write { offset, data, reply } => drop(reply.send(buffer.write(offset, data).await)),
                        Command::Read { offset, size, reply } => drop(reply.send(buffer.read(offset, size).await)),
                        Command::Truncate { size, reply } => drop(reply.send(buffer.truncate(size).await)),
                        Command::SetMeta { meta, reply } => {
                            buffer.set_meta(meta);
                            drop(reply.send(Ok(())))
                        }
                        Command::Discard { reply } => {
                            buffer.discard().await;
                            drop(reply.send(Ok(())))
                        }
                        Command::Rekey { key, base, reply } => {
                            buffer.rekey(key, base);
                            drop(reply.send(Ok(())))
                        }
                        Command::CopyFrom { source, etag, size, reply } => {
                            drop(reply.send(buffer.copy_from(&source, &etag, size).await))
                        }
                        Command::Flush { reply } => drop(reply.send(buffer.flush().await)),
                        Command::Close { reply } => {
                            let _ = reply.send(buffer.close().await);
                            return;
                        }
                    }
                }
                // Every handle is gone without a close (the kernel never released the
                // file): store what was written rather than drop it.
                if buffer.is_dirty() {
                    if let Err(e) = buffer.close().await {
                        error!("final upload of an abandoned writer failed: {e}");
                    }
                }
            }
            .instrument(span),
        );
        WriterHandle { tx, size }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| WriteError::Gone)?;
        answer.await.map_err(|_| WriteError::Gone)?
    }

    pub async fn write(&self, offset: u64, data: Vec<u8>) -> Result<u32, WriteError> {
        self.ask(|reply| Command::Write { offset, data, reply }).await
    }

    pub async fn read(&self, offset: u64, size: u32) -> Result<Bytes, WriteError> {
        self.ask(|reply| Command::Read { offset, size, reply }).await
    }

    pub async fn truncate(&self, size: u64) -> Result<(), WriteError> {
        self.ask(|reply| Command::Truncate { size, reply }).await
    }

    /// Attributes to store with the next upload (chmod, chown, utimens while open).
    pub async fn set_meta(&self, meta: MetaChange) -> Result<(), WriteError> {
        self.ask(|reply| Command::SetMeta { meta, reply }).await
    }

    /// Uploads what is dirty; `Some` describes the stored object when anything was sent.
    pub async fn flush(&self) -> Result<Option<Uploaded>, WriteError> {
        self.ask(|reply| Command::Flush { reply }).await
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

    /// Flushes and ends the task.
    pub async fn close(&self) -> Result<Option<Uploaded>, WriteError> {
        self.ask(|reply| Command::Close { reply }).await
    }

    /// The file's size as written so far (what stat must show while it is open).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn same(&self, other: &WriterHandle) -> bool {
        self.tx.same_channel(&other.tx)
    }
}
