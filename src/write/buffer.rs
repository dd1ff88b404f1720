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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tracing::{error, info};

use super::parts::{ladder_part_count, ladder_part_range, MIN_PART};
use super::ranges::RangeSet;
use super::staging::StagingFile;
use super::upload::{multipart_copy, UploadQueue, MAX_SINGLE_COPY};
use super::{Shown, WriteConfig, WriteError};
use crate::store::{ErrorKind, ObjectError, ObjectStore, PutOptions};
use crate::times::{format_time, parse_time};

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
    pub atime: Option<SystemTime>,
}

/// What a successful upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub size: u64,
    pub etag: Option<String>,
    /// The mtime stored: of the last change of the data, or set explicitly.
    pub at: SystemTime,
    pub ctime: SystemTime,
}

pub struct WriteBuffer {
    client: Arc<dyn ObjectStore>,
    cfg: Arc<WriteConfig>,
    key: String,
    opts: PutOptions,
    staging: Option<StagingFile>,
    size: u64,
    shown: Arc<Shown>,
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
    /// The highest part the stream has sent. The stream only moves forward: a part sent
    /// before and written again goes at flush, after every part in flight has landed, so
    /// an older upload of the same number can never finish last and win.
    stream_front: u32,
    /// The first failure; every later write, flush and close reports EIO.
    failed: Option<ObjectError>,
    /// An mtime set explicitly (utimens) since the last write.
    mtime: Option<SystemTime>,
    /// When the data last changed here (created, written, truncated); `None` while the
    /// base is untouched.
    changed_at: Option<SystemTime>,
    /// When the data or attributes last changed here.
    ctime_at: Option<SystemTime>,
    /// The times written into the metadata of the upload in progress.
    stamped: SystemTime,
    stamped_ctime: SystemTime,
    /// Unlinked while open: nothing is uploaded any more.
    discarded: bool,
    /// Attributes changed after the streamed upload was started with the old ones.
    stream_meta_stale: bool,
}

impl WriteBuffer {
    pub fn new(
        client: Arc<dyn ObjectStore>,
        cfg: Arc<WriteConfig>,
        key: String,
        opts: PutOptions,
        base: Option<BaseObject>,
        shown: Arc<Shown>,
    ) -> WriteBuffer {
        let size = base.as_ref().map_or(0, |b| b.size);
        shown.size.store(size, Ordering::Release);
        let new_data = base.is_none();
        let mut buffer = WriteBuffer {
            client,
            cfg,
            key,
            opts,
            staging: None,
            size,
            shown,
            base_limit: size,
            must_upload: base.is_none(),
            base,
            present: RangeSet::default(),
            dirty: RangeSet::default(),
            stream: None,
            streamed: BTreeSet::new(),
            stream_front: 0,
            failed: None,
            mtime: None,
            changed_at: None,
            ctime_at: None,
            stamped: SystemTime::now(),
            stamped_ctime: SystemTime::now(),
            discarded: false,
            stream_meta_stale: false,
        };
        if new_data {
            // A new or truncated file: its data changed now.
            buffer.touch(true);
        }
        buffer
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
        self.shown.size.store(size, Ordering::Release);
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
        self.touch(true);
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
            let next = self.stream_front + 1;
            let range = ladder_part_range(self.cfg.part_size, next);
            // Only parts the writer has moved past: a file of exactly one part is a PUT.
            if range.end >= written_prefix {
                return Ok(());
            }
            if self.stream.is_none() {
                self.stamp_times();
                self.stream =
                    Some(UploadQueue::start(self.client.clone(), &self.key, &self.opts, self.cfg.concurrency).await?);
            }
            let permit = self.cfg.reserve(range.end - range.start).await;
            let body = self.assemble(range).await?;
            self.stream.as_mut().expect("started").submit_data(next as i32, body, permit).await?;
            self.streamed.insert(next);
            self.stream_front = next;
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
                    return Err(ObjectError::new(ErrorKind::PreconditionFailed, "GetObject", self.key.as_str())
                        .with_message("the object changed size while it was being edited"));
                }
                out.extend_from_slice(&bytes);
            }
            out.resize(out.len() + (len - (from_base.end.saturating_sub(from_base.start)) as usize), 0);
        }
        Ok(Bytes::from(out))
    }

    async fn read_staged(&self, r: Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let staging = self.staging.as_ref().expect("held bytes live in the staging file");
        staging.read_at(r.start, (r.end - r.start) as usize).await.map_err(|e| {
            ObjectError::new(ErrorKind::Malformed, "staging", self.key.as_str())
                .with_message(format!("reading the staging file: {e}"))
        })
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
        self.touch(true);
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

    /// Something changed now: the data (`data`: mtime and ctime), or only attributes
    /// (ctime). stat shows these times from now on, and the upload stores them.
    fn touch(&mut self, data: bool) {
        let now = SystemTime::now();
        if data {
            self.changed_at = Some(now);
            self.mtime = None;
        }
        self.ctime_at = Some(now);
        self.shown.set_times(self.mtime.or(self.changed_at), now);
    }

    /// Writes the times into the metadata of the upload about to start, exactly as stat
    /// showed them: mtime set explicitly, else of the last change here, else the one the
    /// object had (a chmod is not a write); ctime of the last change of anything.
    fn stamp_times(&mut self) {
        let kept = self.opts.metadata.get("mtime").and_then(|v| parse_time(v));
        let mtime = self.mtime.or(self.changed_at).or(kept).unwrap_or_else(SystemTime::now);
        let ctime = self.ctime_at.unwrap_or(mtime);
        self.stamped = mtime;
        self.stamped_ctime = ctime;
        self.opts.metadata.insert("mtime".into(), format_time(mtime));
        self.opts.metadata.insert("ctime".into(), format_time(ctime));
    }

    fn uploaded(&self, etag: Option<String>) -> Uploaded {
        Uploaded { size: self.size, etag, at: self.stamped, ctime: self.stamped_ctime }
    }

    pub fn set_meta(&mut self, meta: MetaChange) {
        let fields = [("mode", meta.mode), ("uid", meta.uid), ("gid", meta.gid)];
        for (name, value) in fields {
            if let Some(v) = value {
                self.opts.metadata.insert(name.into(), v.to_string());
            }
        }
        if let Some(atime) = meta.atime {
            // Stored only when set: reads do not record access times.
            self.opts.metadata.insert("atime".into(), format_time(atime));
        }
        self.touch(false);
        if meta.mtime.is_some() {
            self.mtime = meta.mtime;
            self.shown.set_times(self.mtime, self.ctime_at.unwrap_or_else(SystemTime::now));
        }
        self.must_upload = true;
        self.stream_meta_stale |= self.stream.is_some();
    }

    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.opts.metadata
    }

    pub fn set_metadata_entry(&mut self, key: String, value: Option<String>) {
        match value {
            Some(v) => self.opts.metadata.insert(key, v),
            None => self.opts.metadata.remove(&key),
        };
        self.touch(false);
        self.must_upload = true;
        self.stream_meta_stale |= self.stream.is_some();
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
        self.touch(true);
        self.stamp_times();
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
                Ok(Some(self.uploaded(etag)))
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
            self.stamp_times();
        }
        let result = if self.stream.is_none() && self.size <= self.cfg.part_size {
            self.put_whole().await
        } else {
            let stale = std::mem::take(&mut self.stream_meta_stale);
            match self.upload_parts().await {
                Ok(etag) if stale => self.restamp_metadata(etag).await,
                other => other,
            }
        };
        match result {
            Ok(etag) => {
                let uploaded = self.uploaded(etag.clone());
                // The new object is now the base; staged bytes stay valid for later reads.
                self.base = Some(BaseObject { etag, size: self.size });
                self.base_limit = self.size;
                self.dirty.clear();
                self.must_upload = false;
                self.streamed.clear();
                self.stream_front = 0;
                Ok(Some(uploaded))
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// A streamed upload was created with the attributes of its start; ones changed since
    /// (chmod, utimens while writing) go on with a copy of the object onto itself.
    async fn restamp_metadata(&mut self, etag: Option<String>) -> Result<Option<String>, ObjectError> {
        if self.mtime.is_some() {
            self.stamp_times();
        }
        match etag {
            Some(etag) if self.size > MAX_SINGLE_COPY => {
                multipart_copy(self.client.clone(), &self.cfg, &self.key, &etag, &self.key, self.size, &self.opts).await
            }
            etag => self.client.copy_object(&self.key, etag.as_deref(), &self.key, Some(&self.opts)).await,
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
        match &mut self.staging {
            Some(staging) => {
                staging.keep();
                error!(key = %self.key, staging = %staging.path().display(), "upload failed: {err}; the written data is kept in the staging file");
            }
            None => error!(key = %self.key, "upload failed: {err}"),
        }
        self.failed = Some(err.clone());
        WriteError::Failed(err)
    }

    /// The writer went away without closing: keeps the staging file, uploads nothing, and
    /// says where the data is.
    pub async fn abandon(mut self) {
        if let Some(queue) = self.stream.take() {
            queue.abort().await;
        }
        match &mut self.staging {
            Some(staging) => {
                staging.keep();
                error!(key = %self.key, staging = %staging.path().display(), "the file was still open when the mount ended: not stored; its data is kept in the staging file");
            }
            None => error!(key = %self.key, "the file was still open when the mount ended: not stored"),
        }
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
