//! WriteBuffer: the state of one file open for writing, owned by one task (an actor), so
//! that writes, reads, truncates and flushes of that file are ordered without a lock.
//!
//! Written bytes go to a sparse staging file; bytes never written come from the object as
//! it was at open (the base), or are zeros past its end. A new or truncated file written
//! from the start streams: each ladder part is sent as soon as the writer has moved past
//! it, while the writer keeps writing. A part written again later is sent again at flush.
//! At flush the remaining parts go up (unchanged ranges of the base are copied on the
//! server with UploadPartCopy), or, below one part, the whole file in one PUT.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tracing::{error, info};

use super::parts::{ladder_part_count, ladder_part_range, MIN_PART};
use super::ranges::RangeSet;
use super::staging::StagingFile;
use super::upload::{multipart_copy, UploadQueue, MAX_SINGLE_COPY};
use super::{WriteConfig, WriteError};
use crate::s3::{ObjectClient, ObjectError, PutOptions};

/// The stored object that unwritten bytes come from.
#[derive(Debug, Clone)]
pub struct BaseObject {
    /// Guards reads and server-side copies of the base; without one neither is checked.
    pub etag: Option<String>,
    pub size: u64,
}

/// POSIX attributes changed while the file is open; stored with its next upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetaChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<SystemTime>,
}

/// What a successful upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub size: u64,
    pub etag: Option<String>,
    pub at: SystemTime,
}

pub struct WriteBuffer {
    client: Arc<ObjectClient>,
    cfg: Arc<WriteConfig>,
    key: String,
    opts: PutOptions,
    staging: Option<StagingFile>,
    size: u64,
    shared_size: Arc<AtomicU64>,
    base: Option<BaseObject>,
    /// Bytes at or past this offset never come from the base (truncated away).
    base_limit: u64,
    /// Bytes held in the staging file.
    present: RangeSet,
    /// Bytes changed since the last successful upload.
    dirty: RangeSet,
    /// Upload even with nothing dirty: the file is new, or its size changed.
    must_upload: bool,
    stream: Option<UploadQueue>,
    /// Parts sent by the stream and not written since.
    streamed: BTreeSet<u32>,
    /// The first failure; every later write, flush and close reports EIO.
    failed: Option<String>,
    /// An mtime set explicitly (utimens) since the last write; else uploads stamp "now".
    mtime: Option<SystemTime>,
    /// The mtime written into the metadata of the upload in progress.
    stamped: SystemTime,
    /// Unlinked while open: nothing is uploaded any more.
    discarded: bool,
}

impl WriteBuffer {
    pub fn new(
        client: Arc<ObjectClient>,
        cfg: Arc<WriteConfig>,
        key: String,
        opts: PutOptions,
        base: Option<BaseObject>,
        shared_size: Arc<AtomicU64>,
    ) -> WriteBuffer {
        let size = base.as_ref().map_or(0, |b| b.size);
        shared_size.store(size, Ordering::Release);
        WriteBuffer {
            client,
            cfg,
            key,
            opts,
            staging: None,
            size,
            shared_size,
            base_limit: size,
            must_upload: base.is_none(),
            base,
            present: RangeSet::default(),
            dirty: RangeSet::default(),
            stream: None,
            streamed: BTreeSet::new(),
            failed: None,
            mtime: None,
            stamped: SystemTime::now(),
            discarded: false,
        }
    }

    fn check_failed(&self) -> Result<(), WriteError> {
        match &self.failed {
            Some(why) => Err(WriteError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    fn staging(&mut self) -> Result<&StagingFile, WriteError> {
        if self.staging.is_none() {
            self.staging = Some(StagingFile::create(&self.cfg.cache_dir, &self.key).map_err(WriteError::Staging)?);
        }
        Ok(self.staging.as_ref().expect("just made"))
    }

    fn set_size(&mut self, size: u64) {
        self.size = size;
        self.shared_size.store(size, Ordering::Release);
    }

    pub async fn write(&mut self, offset: u64, data: Vec<u8>) -> Result<u32, WriteError> {
        self.check_failed()?;
        let len = data.len() as u64;
        let end = offset + len;
        self.staging()?.write_at(offset, data).await.map_err(WriteError::Staging)?;
        if offset > self.size {
            // The gap is a hole: zeros, not the base's bytes.
            self.base_limit = self.base_limit.min(self.size);
            self.present.insert(self.size..offset);
            self.dirty.insert(self.size..offset);
        }
        self.present.insert(offset..end);
        self.dirty.insert(offset..end);
        self.mtime = None;
        if end > self.size {
            self.set_size(end);
        }
        self.forget_streamed_parts(offset..end);
        if let Err(e) = self.stream_ready_parts().await {
            return Err(self.fail(e).await);
        }
        Ok(len as u32)
    }

    /// Parts overlapping `r` must be sent again.
    fn forget_streamed_parts(&mut self, r: Range<u64>) {
        let part_size = self.cfg.part_size;
        self.streamed.retain(|&n| {
            let p = ladder_part_range(part_size, n);
            p.end <= r.start || p.start >= r.end
        });
    }

    /// While the file is written from the start with no base, sends every full part behind
    /// the writer. The budget wait here is the writer's backpressure.
    async fn stream_ready_parts(&mut self) -> Result<(), ObjectError> {
        if self.base_limit > 0 || self.discarded {
            return Ok(()); // bytes of the base are involved: everything goes at flush
        }
        let written_prefix = match self.present.pieces(0..self.size).first() {
            Some((r, true)) => r.end,
            _ => 0,
        };
        loop {
            // Stream only an unbroken run of parts from the first; a part written again
            // breaks it and the rest waits for the flush.
            let sent = self.streamed.len() as u32;
            if self.streamed.last().copied().unwrap_or(0) != sent {
                return Ok(());
            }
            let next = sent + 1;
            let range = ladder_part_range(self.cfg.part_size, next);
            // Only parts the writer has moved past: a file of exactly one part is a PUT.
            if range.end >= written_prefix {
                return Ok(());
            }
            if self.stream.is_none() {
                self.stamp_mtime();
                self.stream =
                    Some(UploadQueue::start(self.client.clone(), &self.key, &self.opts, self.cfg.concurrency).await?);
            }
            let permit = self.cfg.reserve(range.end - range.start).await;
            let body = self.assemble(range).await?;
            self.stream.as_mut().expect("started").submit_data(next as i32, body, permit).await?;
            self.streamed.insert(next);
        }
    }

    /// The file's bytes in `r`: staged bytes, else the base's, else zeros.
    async fn assemble(&self, r: Range<u64>) -> Result<Bytes, ObjectError> {
        let pieces = self.present.pieces(r.clone());
        if let [(piece, true)] = pieces.as_slice() {
            // All staged (a file written from the start): the staging read is the part.
            return self.read_staged(piece.clone()).await.map(Bytes::from);
        }
        let mut out = Vec::with_capacity((r.end - r.start) as usize);
        for (piece, held) in pieces {
            let len = (piece.end - piece.start) as usize;
            if held {
                out.extend_from_slice(&self.read_staged(piece).await?);
                continue;
            }
            let from_base = match &self.base {
                Some(base) => piece.start..piece.end.min(self.base_limit).min(base.size),
                None => 0..0,
            };
            if !from_base.is_empty() {
                let base = self.base.as_ref().expect("checked");
                let bytes = self.client.get_range_if(&self.key, from_base.clone(), base.etag.as_deref()).await?;
                if bytes.len() as u64 != from_base.end - from_base.start {
                    return Err(ObjectError::Protocol(format!("{} changed size while it was being edited", self.key)));
                }
                out.extend_from_slice(&bytes);
            }
            out.resize(out.len() + (len - (from_base.end.saturating_sub(from_base.start)) as usize), 0);
        }
        Ok(Bytes::from(out))
    }

    async fn read_staged(&self, r: Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let staging = self.staging.as_ref().expect("held bytes live in the staging file");
        staging
            .read_at(r.start, (r.end - r.start) as usize)
            .await
            .map_err(|e| ObjectError::Protocol(format!("reading staging file: {e}")))
    }

    pub async fn read(&mut self, offset: u64, size: u32) -> Result<Bytes, WriteError> {
        let end = offset.saturating_add(u64::from(size)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        self.assemble(offset..end).await.map_err(WriteError::Store)
    }

    pub async fn truncate(&mut self, size: u64) -> Result<(), WriteError> {
        self.check_failed()?;
        if size == self.size {
            return Ok(());
        }
        if self.staging.is_some() || size > 0 {
            self.staging()?.set_len(size).await.map_err(WriteError::Staging)?;
        }
        if size < self.size {
            self.present.truncate(size);
            self.dirty.truncate(size);
            self.base_limit = self.base_limit.min(size);
            let part_size = self.cfg.part_size;
            self.streamed.retain(|&n| ladder_part_range(part_size, n).end <= size);
        } else {
            self.present.insert(self.size..size);
            self.dirty.insert(self.size..size);
        }
        self.must_upload = true;
        self.set_size(size);
        Ok(())
    }

    /// Points the (flushed, clean) buffer at the object's new name.
    pub fn rekey(&mut self, key: String, base: BaseObject) {
        self.key = key;
        self.base_limit = base.size.min(self.size);
        self.base = Some(base);
    }

    pub async fn discard(&mut self) {
        self.discarded = true;
        if let Some(queue) = self.stream.take() {
            queue.abort().await;
        }
    }

    /// Writes the mtime (explicit, else now) into the metadata of the upload about to start.
    /// The time is kept in whole seconds, as stored, so a file's mtime does not change
    /// when it is next read from the store.
    fn stamp_mtime(&mut self) {
        let when = self.mtime.unwrap_or_else(SystemTime::now);
        let secs = when.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        self.stamped = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        self.opts.metadata.insert("mtime".into(), secs.to_string());
    }

    pub fn set_meta(&mut self, meta: MetaChange) {
        let fields = [("mode", meta.mode), ("uid", meta.uid), ("gid", meta.gid)];
        for (name, value) in fields {
            if let Some(v) = value {
                self.opts.metadata.insert(name.into(), v.to_string());
            }
        }
        if meta.mtime.is_some() {
            self.mtime = meta.mtime;
        }
        self.must_upload = true;
    }

    pub fn is_dirty(&self) -> bool {
        self.must_upload || !self.dirty.is_empty()
    }

    /// Stores the whole object `source` (version `etag`, `size` bytes) as this file with a
    /// server-side copy carrying this file's metadata, when nothing was written to it yet.
    /// `Ok(None)` when the file is not empty (the caller copies the bytes itself).
    pub async fn copy_from(&mut self, source: &str, etag: &str, size: u64) -> Result<Option<Uploaded>, WriteError> {
        self.check_failed()?;
        if self.size != 0 || !self.dirty.is_empty() || self.stream.is_some() || self.discarded {
            return Ok(None);
        }
        self.stamp_mtime();
        let result = if size > MAX_SINGLE_COPY {
            multipart_copy(self.client.clone(), &self.cfg, source, etag, &self.key, size, &self.opts).await
        } else {
            self.client.copy_object(source, Some(etag), &self.key, Some(&self.opts)).await
        };
        match result {
            Ok(etag) => {
                self.base = Some(BaseObject { etag: etag.clone(), size });
                self.base_limit = size;
                self.set_size(size);
                self.must_upload = false;
                Ok(Some(Uploaded { size, etag, at: self.stamped }))
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// Makes the file durable in the store; `Ok(None)` when there was nothing to upload.
    pub async fn flush(&mut self) -> Result<Option<Uploaded>, WriteError> {
        self.check_failed()?;
        if !self.is_dirty() || self.discarded {
            return Ok(None);
        }
        if self.stream.is_none() {
            self.stamp_mtime();
        }
        let result = if self.stream.is_none() && self.size <= self.cfg.part_size {
            self.put_whole().await
        } else {
            self.upload_parts().await
        };
        match result {
            Ok(etag) => {
                let uploaded = Uploaded { size: self.size, etag: etag.clone(), at: self.stamped };
                // The new object is now the base; staged bytes stay valid for later reads.
                self.base = Some(BaseObject { etag, size: self.size });
                self.base_limit = self.size;
                self.dirty.clear();
                self.must_upload = false;
                self.streamed.clear();
                Ok(Some(uploaded))
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    async fn put_whole(&mut self) -> Result<Option<String>, ObjectError> {
        let _permit = self.cfg.reserve(self.size).await;
        let body = self.assemble(0..self.size).await?;
        self.client.put_object(&self.key, body, &self.opts).await
    }

    async fn upload_parts(&mut self) -> Result<Option<String>, ObjectError> {
        let mut queue = match self.stream.take() {
            Some(q) => q,
            None => UploadQueue::start(self.client.clone(), &self.key, &self.opts, self.cfg.concurrency).await?,
        };
        match self.send_remaining_parts(&mut queue).await {
            Ok(()) => queue.complete(ladder_part_count(self.cfg.part_size, self.size) as i32).await,
            Err(e) => {
                queue.abort().await;
                Err(e)
            }
        }
    }

    async fn send_remaining_parts(&mut self, queue: &mut UploadQueue) -> Result<(), ObjectError> {
        // Parts sent again must not race their earlier copies.
        queue.drain().await?;
        let part_size = self.cfg.part_size;
        for n in 1..=ladder_part_count(part_size, self.size) {
            if self.streamed.contains(&n) {
                continue;
            }
            let full = ladder_part_range(part_size, n);
            let r = full.start.min(self.size)..full.end.min(self.size);
            let copyable = match &self.base {
                Some(base) if base.etag.is_some() => {
                    !self.dirty.intersects(&r)
                        && r.end <= self.base_limit.min(base.size)
                        && (r.end - r.start >= MIN_PART || r.end == self.size)
                        && !r.is_empty()
                }
                _ => false,
            };
            if copyable {
                let etag = self.base.as_ref().and_then(|b| b.etag.clone()).expect("checked");
                queue.submit_copy(n as i32, &self.key, &etag, r).await?;
            } else {
                let permit = self.cfg.reserve(r.end - r.start).await;
                let body = self.assemble(r).await?;
                queue.submit_data(n as i32, body, permit).await?;
            }
        }
        Ok(())
    }

    /// Records the first failure, aborts any upload, and says where the data is kept.
    async fn fail(&mut self, err: ObjectError) -> WriteError {
        if let Some(queue) = self.stream.take() {
            queue.abort().await;
        }
        let msg = err.to_string();
        match &mut self.staging {
            Some(staging) => {
                staging.keep();
                error!(key = %self.key, staging = %staging.path().display(), "upload failed: {msg}; the written data is kept in the staging file");
            }
            None => error!(key = %self.key, "upload failed: {msg}"),
        }
        self.failed = Some(msg.clone());
        WriteError::Failed(msg)
    }

    /// Ends the buffer: the last flush has been reported to the writer already.
    pub async fn close(mut self) -> Result<Option<Uploaded>, WriteError> {
        let result = self.flush().await;
        if result.is_ok() {
            info!(key = %self.key, size = self.size, "closed");
        }
        result
    }
}
