//! WriteBuffer: the state of one file open for writing, owned by one task (an actor), so
//! that writes, reads, truncates and flushes of that file are ordered without a lock.
//!
//! Written bytes go to a sparse staging file; bytes never written come from the object as
//! it was at open (the base), or are zeros past its end. A new or truncated file written
//! from the start streams: each ladder part is sent as soon as the writer has moved past
//! it, while the writer keeps writing. A part written again later is sent again at flush.
//! At flush the remaining parts go up (unchanged ranges of the base are copied on the
//! server with UploadPartCopy), or, below one part, the whole file in one PUT.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use tracing::{debug, error, info, warn};

use super::conflict::{conflict_key, write_if};
use super::contents::{Contents, Frozen};
use super::journal::{now_secs, Claimed, LogOp, Record, State};
use super::parts::{ladder_part_count, ladder_part_range, MIN_PART};
use super::ranges::RangeSet;
use super::staging::StagingFile;
use super::upload::{multipart_copy, UploadQueue, MAX_SINGLE_COPY};
use super::{Shown, WriteConfig, WriteError};
use crate::store::{put_etag, CompletedPart, ErrorKind, ObjectError, ObjectStore, Precondition, PutOptions};
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

/// How often a file is taken up at the store's newer version before its first write,
/// when other clients keep replacing it (each time: a HEAD and a GET).
const REBASE_TRIES: u32 = 20;

/// Files up to this size are made durable at a write-back close with their bytes in the
/// journal's log (one sync instead of two).
const LOGGED_CONTENTS_MAX: u64 = 64 << 10;

/// Why an upload did not store the file.
enum UploadError {
    Store(ObjectError),
    /// The object changed elsewhere since it was read; `body` is the whole file when it
    /// was sent in one PUT.
    Conflict {
        cause: ObjectError,
        body: Option<Bytes>,
    },
}

impl From<ObjectError> for UploadError {
    fn from(e: ObjectError) -> UploadError {
        UploadError::Store(e)
    }
}

pub struct WriteBuffer {
    client: Arc<dyn ObjectStore>,
    cfg: Arc<WriteConfig>,
    key: String,
    opts: PutOptions,
    /// The version the next upload replaces: the one read at open, then each one stored
    /// here. A store holding another refuses the upload (a conflict).
    expect: Precondition,
    /// Where the data went when a conflict refused it.
    kept_as: Option<String>,
    /// What the journal says of the file: `Closed` once a write-back close made it
    /// durable (its writer was told it is stored; it is uploaded even after a crash).
    state: State,
    /// Why the upload failed, for the journal.
    error: Option<String>,
    /// A multipart upload the store would not abort.
    lingering: Option<String>,
    /// Something was read through this writer: the base it came from is part of what the
    /// program saw.
    base_seen: bool,
    /// Stored parts of the stream whose staged bytes were given back: the upload holds
    /// the only copy of them.
    released: BTreeMap<u32, CompletedPart>,
    staging: Option<Arc<StagingFile>>,
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
        expect: Precondition,
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
            expect,
            kept_as: None,
            state: State::Open,
            error: None,
            lingering: None,
            base_seen: false,
            released: BTreeMap::new(),
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
            let begin = LogOp::Begin { size: self.size, base_limit: self.base_limit, must_upload: self.must_upload };
            let staging = StagingFile::create(&self.cfg.journal, &self.cfg.space, &self.record(), begin)
                .map_err(WriteError::Staging)?;
            self.staging = Some(Arc::new(staging));
        }
        Ok(self.staging.as_deref().expect("just made"))
    }

    /// The journal's record of the file as it is now.
    fn record(&self) -> Record {
        Record {
            store: self.cfg.journal.store().clone(),
            key: self.key.clone(),
            state: self.state,
            expect: self.expect.clone(),
            base_etag: self.base.as_ref().and_then(|b| b.etag.clone()),
            base_size: self.base.as_ref().map(|b| b.size),
            opts: self.opts.clone(),
            mtime: self.mtime.map(format_time),
            upload_id: self.stream.as_ref().map(|q| q.id().to_string()).or_else(|| self.lingering.clone()),
            released: self.released.values().cloned().collect(),
            error: self.error.clone(),
            updated: now_secs(),
        }
    }

    /// Writes the record (when the file has an entry); `durable` waits for the disk.
    async fn save_record(&self, durable: bool) -> std::io::Result<()> {
        match &self.staging {
            Some(staging) => staging.save(self.record(), durable).await,
            None => Ok(()),
        }
    }

    /// Makes the record alone durable (see [`StagingFile::save_record_only`]).
    async fn save_record_only(&self) -> std::io::Result<()> {
        match &self.staging {
            Some(staging) => staging.save_record_only(self.record()).await,
            None => Ok(()),
        }
    }

    /// Logs a change that is not a write, when the file has an entry.
    async fn note(&self, op: LogOp) -> std::io::Result<()> {
        match &self.staging {
            Some(staging) => staging.note(op).await,
            None => Ok(()),
        }
    }

    /// A change after a write-back close: that close's version is stored first, so the
    /// promise made to its writer holds whatever comes next.
    async fn settle_commit(&mut self) -> Result<(), WriteError> {
        if self.state == State::Closed {
            // Boxed: every operation that may store first would otherwise carry the whole
            // upload's future inline.
            Box::pin(self.flush()).await?;
        }
        Ok(())
    }

    fn set_size(&mut self, size: u64) {
        self.size = size;
        self.shown.size.store(size, Ordering::Release);
    }

    /// Writes `data` at `offset`, or (`None`) at the end of the file.
    pub async fn write(&mut self, offset: Option<u64>, data: Vec<u8>) -> Result<u32, WriteError> {
        self.check_failed()?;
        self.settle_commit().await?;
        if let Err(e) = self.hold_base_or_rebase().await {
            return Err(self.fail(e).await);
        }
        let offset = offset.unwrap_or(self.size);
        let len = data.len() as u64;
        let end = offset + len;
        self.checkpoint_if_released(offset..end).await?;
        self.make_room(len - self.present.covered(offset..end)).await?;
        let data = Bytes::from(data);
        loop {
            match self.staging()?.write_at(offset, data.clone(), true).await {
                Ok(()) => break,
                // The disk under the cache directory is full: wait for room, or say so.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    if !self.free_some_room().await? {
                        return Err(WriteError::Staging(e));
                    }
                }
                Err(e) => return Err(WriteError::Staging(e)),
            }
        }
        self.note_write(offset, len);
        self.touch(true);
        self.forget_streamed_parts(offset..end);
        if let Err(e) = self.stream_ready_parts().await {
            return Err(self.fail(e).await);
        }
        if let Err(e) = self.release_stored_parts(false).await {
            return Err(self.fail(e).await);
        }
        Ok(len as u32)
    }

    /// Holds the base (see [`Self::hold_small_base`]). When the version opened was
    /// replaced before anything of it was read or written here, nothing seen depends on
    /// it: the file becomes the version the store has now, as if opened now.
    async fn hold_base_or_rebase(&mut self) -> Result<(), ObjectError> {
        let mut tries = 0;
        loop {
            let err = match self.hold_small_base().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let untouched = !self.base_seen && !self.is_dirty() && self.present.is_empty();
            let replaced = matches!(err.kind, ErrorKind::PreconditionFailed | ErrorKind::NotFound);
            tries += 1;
            if !(untouched && replaced) || tries > REBASE_TRIES {
                return Err(err);
            }
            match self.client.head_object(&self.key).await {
                Ok(info) => {
                    self.expect = expecting(info.etag.as_deref());
                    self.base = Some(BaseObject { etag: info.etag, size: info.size });
                    self.base_limit = info.size;
                    self.set_size(info.size);
                }
                Err(e) if e.kind == ErrorKind::NotFound => {
                    self.expect = Precondition::Absent;
                    self.base = None;
                    self.base_limit = 0;
                    self.set_size(0);
                    self.must_upload = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A file of one part edited in place holds the rest of its base in the staging file
    /// from its first write (the PUT at close needs those bytes anyway), so that if the
    /// object changes elsewhere meanwhile, the whole file can still be kept.
    async fn hold_small_base(&mut self) -> Result<(), ObjectError> {
        let Some(base) = self.base.clone() else { return Ok(()) };
        let end = self.base_limit.min(base.size).min(self.size);
        if end == 0 || base.size > self.cfg.part_size {
            return Ok(());
        }
        for (piece, held) in self.present.pieces(0..end) {
            if held {
                continue;
            }
            let bytes = self.client.get_range_if(&self.key, piece.clone(), base.etag.as_deref()).await?;
            if bytes.len() as u64 != piece.end - piece.start {
                return Err(ObjectError::new(ErrorKind::PreconditionFailed, "GetObject", self.key.as_str())
                    .with_message("the object changed size while it was being edited"));
            }
            let key = self.key.clone();
            let staging_error = |e: std::io::Error| {
                ObjectError::new(ErrorKind::Malformed, "staging", key.as_str())
                    .with_message(format!("writing the staging file: {e}"))
            };
            let staging = self.staging().map_err(|e| match e {
                WriteError::Staging(e) => staging_error(e),
                other => staging_error(std::io::Error::other(other.to_string())),
            })?;
            staging.write_at(piece.start, bytes, false).await.map_err(staging_error)?;
            self.present.insert(piece);
        }
        Ok(())
    }

    /// The bookkeeping of `len` bytes written at `offset` (live, or replayed from the log).
    fn note_write(&mut self, offset: u64, len: u64) {
        let end = offset + len;
        if offset > self.size {
            // The gap is a hole: zeros, not the base's bytes.
            self.base_limit = self.base_limit.min(self.size);
            self.present.insert(self.size..offset);
            self.dirty.insert(self.size..offset);
        }
        self.present.insert(offset..end);
        self.dirty.insert(offset..end);
        if end > self.size {
            self.set_size(end);
        }
    }

    /// The bookkeeping of a truncate to `size`.
    fn note_truncate(&mut self, size: u64) {
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
    }

    /// The bookkeeping of an upload that stored the whole file: it is the base now.
    fn note_stored(&mut self) {
        self.released.clear();
        self.base_limit = self.size;
        self.dirty.clear();
        self.must_upload = false;
        self.streamed.clear();
        self.stream_front = 0;
    }

    /// Reading or changing bytes whose staging was given back needs them from the store:
    /// the stream is finished first (the object then holds what was written so far; an
    /// exception to storing only at close, for a program that seeks back far) and is the
    /// base from then on.
    async fn checkpoint_if_released(&mut self, r: Range<u64>) -> Result<(), WriteError> {
        let part_size = self.cfg.part_size;
        let touched = self.released.keys().any(|&n| {
            let p = ladder_part_range(part_size, n);
            p.start < r.end && r.start < p.end
        });
        if touched {
            info!(key = %self.key, "a part already stored is read or changed: the file is stored as written so far");
            Box::pin(self.flush()).await?;
        }
        Ok(())
    }

    /// Takes room for `bytes` more staged bytes: gives back stored parts of the stream,
    /// or waits for uploads under way; ENOSPC when nothing can be freed.
    async fn make_room(&mut self, bytes: u64) -> Result<(), WriteError> {
        while !self.staging()?.take_room(bytes) {
            if !self.free_some_room().await? {
                return Err(WriteError::Staging(std::io::Error::from_raw_os_error(libc::ENOSPC)));
            }
        }
        Ok(())
    }

    /// Frees staging disk: this stream's stored parts, or (waiting) what other uploads
    /// give back. False when nothing is under way that could free any.
    async fn free_some_room(&mut self) -> Result<bool, WriteError> {
        match self.release_stored_parts(true).await {
            Ok(freed) if freed > 0 => return Ok(true),
            Ok(_) => {}
            Err(e) => return Err(self.fail(e).await),
        }
        if !self.cfg.space.someone_uploading() {
            return Ok(false);
        }
        self.cfg.space.wait_freed().await;
        Ok(true)
    }

    /// Gives back the staging disk of parts the stream has stored: all of them under
    /// `pressure`, else those before the last `release_after` bytes of the file. The
    /// record lists them first, durably (the upload is then their only copy).
    /// Returns the bytes freed.
    async fn release_stored_parts(&mut self, pressure: bool) -> Result<u64, ObjectError> {
        let Some(queue) = self.stream.as_mut() else { return Ok(0) };
        if pressure {
            queue.drain().await?;
        }
        let stored = queue.stored()?;
        let part_size = self.cfg.part_size;
        let keep_from = self.size.saturating_sub(self.cfg.release_after);
        let ready: Vec<CompletedPart> = stored
            .into_iter()
            .filter(|p| {
                let n = p.number as u32;
                !self.released.contains_key(&n)
                    && self.streamed.contains(&n)
                    && (pressure || ladder_part_range(part_size, n).end <= keep_from)
            })
            .collect();
        if ready.is_empty() {
            return Ok(0);
        }
        for p in &ready {
            self.released.insert(p.number as u32, p.clone());
        }
        if let Some(queue) = self.stream.as_mut() {
            queue.pin();
        }
        let mut saved = self.save_record_only().await;
        if saved.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::ENOSPC)) && self.cfg.journal.spend_reserve() {
            // The disk is full: the reserve makes room for the record, the release for more.
            saved = self.save_record_only().await;
        }
        saved.map_err(|e| {
            ObjectError::new(ErrorKind::Malformed, "staging", self.key.as_str())
                .with_message(format!("recording stored parts in the journal: {e}"))
        })?;
        let mut freed = 0;
        for p in ready {
            let r = ladder_part_range(part_size, p.number as u32);
            freed += self.present.covered(r.clone());
            self.present.remove(r.clone());
            if let Some(staging) = &self.staging {
                if let Err(e) = staging.release(r.clone()).await {
                    // No hole punching here: the bytes stay on disk, but are not needed.
                    debug!(key = %self.key, "cannot free the staging of a stored part: {e}");
                    staging.give_room(r.end - r.start);
                }
            }
        }
        self.cfg.journal.keep_reserve();
        Ok(freed)
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
        loop {
            let next = self.stream_front + 1;
            let range = ladder_part_range(self.cfg.part_size, next);
            // Only parts the writer has written whole and moved past: a file of exactly
            // one part is a PUT. (Parts before were sent, and may be given back.)
            let past = range.start..range.end + 1;
            if self.present.covered(past.clone()) < past.end - past.start {
                return Ok(());
            }
            if self.stream.is_none() {
                self.stamp_times();
                self.stream =
                    Some(UploadQueue::start(self.client.clone(), &self.key, &self.opts, self.cfg.concurrency).await?);
                // A crash leaves the upload id in the journal, to be aborted.
                self.journal_warn(self.save_record(false).await);
            }
            let permit = self.cfg.reserve(range.end - range.start).await;
            // Read by the part's task. The writer may change the part's bytes before that:
            // a part written again is sent again at flush, after this one has landed.
            let read = read_part(self.staging.clone(), self.key.clone(), range);
            self.stream.as_mut().expect("started").submit_read(next as i32, read, permit).await?;
            self.streamed.insert(next);
            self.stream_front = next;
        }
    }

    /// The file's bytes in `r`: staged bytes, else the base's, else zeros.
    async fn assemble(&self, r: Range<u64>) -> Result<Bytes, ObjectError> {
        self.contents().assemble(r).await
    }

    fn contents(&self) -> Contents<'_> {
        Contents {
            client: &*self.client,
            key: &self.key,
            staging: self.staging.as_deref(),
            present: &self.present,
            base: self.base.as_ref(),
            base_limit: self.base_limit,
        }
    }

    /// What reads see while the upload after a write-back close runs: the data no longer
    /// changes, so they are served beside the upload instead of waiting for it.
    fn frozen(&self) -> Frozen {
        Frozen {
            client: self.client.clone(),
            key: self.key.clone(),
            staging: self.staging.clone(),
            present: self.present.clone(),
            base: self.base.clone(),
            base_limit: self.base_limit,
            size: self.size,
            options: self.opts.clone(),
        }
    }

    pub async fn read(&mut self, offset: u64, size: u32) -> Result<Bytes, WriteError> {
        self.base_seen = true;
        let end = offset.saturating_add(u64::from(size)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        self.checkpoint_if_released(offset..end).await?;
        self.assemble(offset..end).await.map_err(WriteError::Store)
    }

    pub async fn truncate(&mut self, size: u64) -> Result<(), WriteError> {
        self.check_failed()?;
        if size == self.size {
            return Ok(());
        }
        self.settle_commit().await?;
        self.checkpoint_if_released(size..u64::MAX).await?;
        if self.staging.is_some() || size > 0 {
            self.staging()?.set_len(size).await.map_err(WriteError::Staging)?;
        }
        if let Some(staging) = &self.staging {
            staging.give_room(self.present.covered(size..u64::MAX));
        }
        self.note_truncate(size);
        self.touch(true);
        Ok(())
    }

    /// Makes the file at least `size` long (fallocate); a longer file stays as it is.
    pub async fn extend(&mut self, size: u64) -> Result<(), WriteError> {
        if size <= self.size {
            return self.check_failed();
        }
        self.truncate(size).await
    }

    /// Points the (flushed, clean) buffer at the object's new name.
    pub async fn rekey(&mut self, key: String, base: BaseObject) {
        self.key = key;
        self.expect = expecting(base.etag.as_deref());
        self.base_limit = base.size.min(self.size);
        self.base = Some(base);
        self.journal_warn(self.save_record(false).await);
    }

    /// The object is about to be deleted or replaced: a small file's descriptors keep
    /// reading its bytes from the staging file.
    pub async fn keep_base(&mut self) {
        if let Err(e) = self.hold_small_base().await {
            debug!(key = %self.key, "the file's bytes could not be kept before its object goes: {e}");
        }
    }

    pub async fn discard(&mut self) {
        self.keep_base().await;
        self.discarded = true;
        self.abort_stream().await;
        self.state = State::Unlinked;
        self.journal_warn(self.save_record(false).await);
    }

    /// Aborts the streamed upload; one the store would not abort stays in the journal,
    /// for the next mount to abort.
    async fn abort_stream(&mut self) {
        if let Some(queue) = self.stream.take() {
            let id = queue.id().to_string();
            if queue.is_pinned() {
                // Its parts are the only copy of released bytes: kept, for recovery.
                self.lingering = Some(queue.keep().await);
            } else if !queue.abort().await {
                self.lingering = Some(id);
            }
        }
    }

    /// A journal update that failed costs the recovery of this file after a crash, not
    /// the write: said once per failure.
    fn journal_warn(&self, result: std::io::Result<()>) {
        if let Err(e) = result {
            warn!(key = %self.key, "cannot update the journal in the cache directory: {e}");
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

    pub async fn set_meta(&mut self, meta: MetaChange) -> Result<(), WriteError> {
        self.settle_commit().await?;
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
        self.meta_changed().await;
        Ok(())
    }

    /// Attributes changed: the next upload must happen, and carry them.
    async fn meta_changed(&mut self) {
        self.must_upload = true;
        self.stream_meta_stale |= self.stream.is_some();
        self.journal_warn(self.save_record(false).await);
        self.journal_warn(self.note(LogOp::Meta).await);
    }

    pub fn options(&self) -> &PutOptions {
        &self.opts
    }

    pub async fn edit_options(&mut self, edit: super::OptionsEdit) -> Result<(), WriteError> {
        self.settle_commit().await?;
        edit(&mut self.opts);
        self.touch(false);
        self.meta_changed().await;
        Ok(())
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
                self.expect = expecting(etag.as_deref());
                self.base = Some(BaseObject { etag: etag.clone(), size });
                self.base_limit = size;
                self.set_size(size);
                self.must_upload = false;
                self.journal_warn(self.save_record(false).await);
                self.journal_warn(self.note(LogOp::Begin { size, base_limit: size, must_upload: false }).await);
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
                Ok(etag) if stale => self.restamp_metadata(etag).await.map_err(UploadError::Store),
                other => other,
            }
        };
        let result = match result {
            Ok(etag) => Ok(etag),
            Err(UploadError::Store(e)) => Err(e),
            Err(UploadError::Conflict { cause, body }) => Err(self.keep_conflict(cause, body).await),
        };
        match result {
            Ok(etag) => {
                let uploaded = self.uploaded(etag.clone());
                self.expect = expecting(etag.as_deref());
                // The new object is now the base; staged bytes stay valid for later reads.
                self.base = Some(BaseObject { etag, size: self.size });
                self.note_stored();
                self.state = State::Open;
                self.journal_warn(self.save_record(false).await);
                self.journal_warn(self.note(LogOp::Stored).await);
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

    async fn put_whole(&mut self) -> Result<Option<String>, UploadError> {
        let _permit = self.cfg.reserve(self.size).await;
        let body = match self.assemble(0..self.size).await {
            // The base's bytes are gone: the object changed elsewhere.
            Err(cause) if cause.kind == ErrorKind::PreconditionFailed => {
                return Err(UploadError::Conflict { cause, body: None })
            }
            other => other?,
        };
        let (client, key, opts) = (&*self.client, self.key.as_str(), &self.opts);
        let ours = put_etag(&body);
        let sent = write_if(client, key, &self.expect, Some(&ours), |c| {
            let body = body.clone();
            async move { client.put_object_if(key, body, opts, &c).await }
        })
        .await;
        match sent {
            Err(cause) if cause.kind == ErrorKind::PreconditionFailed => {
                Err(UploadError::Conflict { cause, body: Some(body) })
            }
            other => Ok(other?),
        }
    }

    async fn upload_parts(&mut self) -> Result<Option<String>, UploadError> {
        let mut queue = match self.stream.take() {
            Some(q) => q,
            None => UploadQueue::start(self.client.clone(), &self.key, &self.opts, self.cfg.concurrency).await?,
        };
        let id = queue.id().to_string();
        if let Err(e) = self.send_remaining_parts(&mut queue).await {
            if queue.is_pinned() {
                self.lingering = Some(queue.keep().await);
            } else {
                queue.abort().await;
            }
            return Err(e.into());
        }
        let pinned = queue.is_pinned();
        let result = queue.complete(ladder_part_count(self.cfg.part_size, self.size) as i32, &self.expect).await;
        if result.is_err() && pinned {
            self.lingering = Some(id);
        }
        match result {
            Err(cause) if cause.kind == ErrorKind::PreconditionFailed => {
                Err(UploadError::Conflict { cause, body: None })
            }
            other => Ok(other?),
        }
    }

    /// The object changed elsewhere since this file was read: it is not overwritten. The
    /// data written here goes to a conflict name next to it, when all of it is at hand
    /// (bytes of the replaced version are gone with it); the returned error says where.
    async fn keep_conflict(&mut self, cause: ObjectError, body: Option<Bytes>) -> ObjectError {
        let original = self.key.clone();
        let at = SystemTime::now();
        let mut name = conflict_key(&original, at);
        // Another conflict may have taken the name (two in one millisecond): the next one.
        for attempt in 2..10 {
            let stored = self.store_as_conflict(&name, body.clone()).await;
            match stored {
                Err(e) if e.kind == ErrorKind::PreconditionFailed => {
                    name = format!("{}-{attempt}", conflict_key(&original, at))
                }
                _ => return self.conflict_error(cause, &name, stored),
            }
        }
        let taken = Err(ObjectError::new(ErrorKind::PreconditionFailed, "PutObject", name.as_str())
            .with_message("every conflict name tried is taken"));
        self.conflict_error(cause, &name, taken)
    }

    /// Stores the file as `name` (which must not exist yet).
    async fn store_as_conflict(&mut self, name: &str, body: Option<Bytes>) -> Result<(), ObjectError> {
        match body {
            Some(body) => self.client.put_object_if(name, body, &self.opts, &Precondition::Absent).await.map(drop),
            None if self.all_staged() => {
                // Every byte is in the staging file: send it all again under the new name.
                self.base = None;
                self.base_limit = 0;
                self.key = name.to_string();
                self.expect = Precondition::Absent;
                self.streamed.clear();
                self.stream_front = 0;
                match Box::pin(self.upload_parts()).await {
                    Ok(_) => Ok(()),
                    Err(UploadError::Store(e) | UploadError::Conflict { cause: e, .. }) => Err(e),
                }
            }
            None if !self.released.is_empty() => Err(ObjectError::new(ErrorKind::Rejected, "PutObject", name)
                .with_message("the parts already stored stay in the unfinished upload, kept for xosfs recover")),
            None => Err(ObjectError::new(ErrorKind::Rejected, "PutObject", name)
                .with_message("part of the file was the replaced version, which is gone")),
        }
    }

    /// The error a conflict reports to the writer: what happened, and where the data is.
    fn conflict_error(&mut self, cause: ObjectError, name: &str, stored: Result<(), ObjectError>) -> ObjectError {
        let why = format!("changed in the store by another client since this mount read it ({cause})");
        let (kind, op, key) = (cause.kind, cause.op, cause.key.clone());
        let message = match stored {
            Ok(()) => {
                self.kept_as = Some(name.to_string());
                format!("{why}; not overwritten: the data written here is stored as {name}")
            }
            Err(e) => format!("{why}; not overwritten, and it could not be stored as {name}: {e}"),
        };
        ObjectError::new(kind, op, key).with_message(message)
    }

    /// Whether the staging file holds every byte of the file (none is the base's).
    fn all_staged(&self) -> bool {
        if !self.released.is_empty() {
            return false;
        }
        let Some(base) = &self.base else { return true };
        let from_base = self.base_limit.min(base.size).min(self.size);
        self.present.pieces(0..from_base).iter().all(|(_, held)| *held)
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
        self.abort_stream().await;
        // A write-back close was told the file is stored: it stays to be uploaded again
        // (by this mount's next pass, or the next mount) unless the store refused it for
        // good. Otherwise its writer hears of the failure, and it is kept for `xosfs
        // recover`.
        if self.state != State::Closed || !err.is_transient() {
            self.state = State::Failed;
        }
        self.error = Some(err.to_string());
        self.shown.failed.store(true, Ordering::Release);
        if self.kept_as.is_none() {
            self.journal_warn(self.save_record(false).await);
        }
        match &mut self.staging {
            _ if self.kept_as.is_some() => warn!(key = %self.key, "upload refused: {err}"),
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
        self.abort_stream().await;
        self.journal_warn(self.save_record(false).await);
        match &mut self.staging {
            Some(staging) => {
                staging.keep();
                error!(key = %self.key, staging = %staging.path().display(), "the file was still open when the mount ended: not stored; its data is kept in the staging file");
            }
            None => error!(key = %self.key, "the file was still open when the mount ended: not stored"),
        }
    }

    /// A write-back close: the file is made durable in the journal (data and log, then
    /// the record) and is uploaded by this writer's close, or after a crash by the next
    /// mount. When the journal cannot be written, the upload happens now instead.
    pub async fn commit(&mut self) -> Result<(), WriteError> {
        self.check_failed()?;
        if !self.is_dirty() || self.discarded {
            return Ok(());
        }
        self.staging()?;
        self.state = State::Closed;
        let saved = match (&self.staging, self.size) {
            (Some(staging), size) if size <= LOGGED_CONTENTS_MAX && self.all_staged() => {
                staging.save_with_contents(self.record(), size).await
            }
            _ => self.save_record(true).await,
        };
        if let Err(e) = saved {
            warn!(key = %self.key, "cannot make the file durable in the cache directory ({e}): uploading it now");
            self.state = State::Open;
            Box::pin(self.flush()).await?;
        }
        Ok(())
    }

    /// The writer of a file whose daemon died, rebuilt from its journal entry: the bytes
    /// it holds, what is not stored yet, the version its upload may replace.
    pub fn recovered(
        client: Arc<dyn ObjectStore>,
        cfg: Arc<WriteConfig>,
        claimed: Claimed,
        shown: Arc<Shown>,
    ) -> std::io::Result<WriteBuffer> {
        // The data last changed when the staging file did.
        let modified = claimed.data.metadata().and_then(|m| m.modified()).ok();
        let staging = StagingFile::adopt(&cfg.journal, &cfg.space, claimed.id, claimed.data, &claimed.record)?;
        let record = claimed.record;
        let explicit_mtime = record.mtime.as_deref().and_then(parse_time);
        let base = record.base_size.map(|size| BaseObject { etag: record.base_etag.clone(), size });
        let mut buffer = WriteBuffer::new(client, cfg, record.key, record.opts, base, record.expect, shown);
        buffer.staging = Some(Arc::new(staging));
        buffer.state = record.state;
        buffer.error = record.error;
        for op in claimed.ops {
            buffer.replay(op, explicit_mtime);
        }
        // Parts whose bytes left the staging file are in the upload: it is taken up again.
        if let (Some(id), false) = (&record.upload_id, record.released.is_empty()) {
            let client = buffer.client.clone();
            let mut queue = UploadQueue::resume(client, &buffer.key, id, &record.released, buffer.cfg.concurrency);
            queue.pin();
            buffer.stream = Some(queue);
            for part in record.released {
                let n = part.number as u32;
                buffer.present.remove(ladder_part_range(buffer.cfg.part_size, n));
                buffer.streamed.insert(n);
                buffer.stream_front = buffer.stream_front.max(n);
                buffer.released.insert(n, part);
            }
        }
        if let Some(at) = modified.filter(|_| buffer.is_dirty()) {
            buffer.changed_at = Some(at);
            buffer.ctime_at = Some(at);
        }
        Ok(buffer)
    }

    /// Applies one line of the log; `explicit_mtime` is the record's, set by the last
    /// change of attributes.
    fn replay(&mut self, op: LogOp, explicit_mtime: Option<SystemTime>) {
        if let LogOp::Write { .. } | LogOp::Truncate { .. } = op {
            self.mtime = None;
        }
        match op {
            LogOp::Begin { size, base_limit, must_upload } => {
                self.present.clear();
                self.dirty.clear();
                self.set_size(size);
                self.base_limit = base_limit;
                self.must_upload = must_upload;
            }
            LogOp::Write { offset, len } => self.note_write(offset, len),
            LogOp::Held { offset, len } => self.present.insert(offset..offset + len),
            LogOp::Truncate { size } => self.note_truncate(size),
            LogOp::Stored => self.note_stored(),
            LogOp::Meta => {
                self.must_upload = true;
                self.mtime = explicit_mtime;
            }
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// Ends the buffer: the last flush has been reported to the writer already.
    pub async fn close(mut self) -> Result<Option<Uploaded>, WriteError> {
        // Uploads after write-back closes share a bound: a burst of closes queues here
        // instead of opening a connection each.
        let _slot = match self.state {
            State::Closed => {
                self.shown.freeze(self.frozen());
                let pending = crate::metrics::PendingUpload::new(self.size);
                Some((pending, self.cfg.upload_slot().await))
            }
            _ => None,
        };
        let space = self.cfg.space.clone();
        let _uploading = space.uploading();
        let result = self.flush().await;
        if result.is_ok() {
            info!(key = %self.key, size = self.size, "closed");
        }
        result
    }
}

/// Part `r` of a stream, all of it in the staging file.
async fn read_part(staging: Option<Arc<StagingFile>>, key: String, r: Range<u64>) -> Result<Bytes, ObjectError> {
    let failed = |why: String| ObjectError::new(ErrorKind::Malformed, "staging", key.as_str()).with_message(why);
    let staging = staging.ok_or_else(|| failed("a streamed part has no staging file".into()))?;
    let body = staging.read_at(r.start, (r.end - r.start) as usize).await;
    body.map(Bytes::from).map_err(|e| failed(format!("reading the staging file: {e}")))
}

/// The condition an upload over the version with `etag` carries.
pub fn expecting(etag: Option<&str>) -> Precondition {
    etag.map_or(Precondition::None, |e| Precondition::Matches(e.to_string()))
}
