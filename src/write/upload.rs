//! UploadQueue: one multipart upload, its parts sent in parallel (bounded per upload, and
//! by the mount's write budget), completed in order, or aborted so that no unfinished
//! upload is left to cost storage.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::warn;

use super::conflict::write_if;
use super::parts::{MAX_PART, MAX_PARTS, MIN_PART};
use super::WriteConfig;
use crate::store::{multipart_etag, CompletedPart, ErrorKind, ObjectError, ObjectStore, Precondition, PutOptions};

/// The largest object CopyObject copies in one request.
pub const MAX_SINGLE_COPY: u64 = 5 << 30;

/// Copies `size` bytes of `source` (at ETag `etag`) to `dest` on the server in parts of
/// the copy threshold (grown to stay within 10,000 parts), for objects CopyObject refuses.
pub async fn multipart_copy(
    client: Arc<dyn ObjectStore>,
    cfg: &WriteConfig,
    source: &str,
    etag: &str,
    dest: &str,
    size: u64,
    opts: &PutOptions,
) -> Result<Option<String>, ObjectError> {
    let part = cfg.copy_threshold.max(size.div_ceil(u64::from(MAX_PARTS))).clamp(MIN_PART, MAX_PART);
    let mut queue = UploadQueue::start(client, dest, opts, cfg.concurrency).await?;
    let mut number = 0;
    for start in (0..size).step_by(part as usize) {
        number += 1;
        if let Err(e) = queue.submit_copy(number, source, etag, start..(start + part).min(size)).await {
            queue.abort().await;
            return Err(e);
        }
    }
    queue.complete(number, &Precondition::None).await
}

pub struct UploadQueue {
    client: Arc<dyn ObjectStore>,
    key: String,
    upload_id: String,
    tasks: JoinSet<Result<CompletedPart, ObjectError>>,
    parts: BTreeMap<i32, CompletedPart>,
    slots: Arc<Semaphore>,
    /// Some parts are the only copy of their bytes: a failure keeps the upload (for a
    /// later try) instead of aborting it.
    pinned: bool,
}

impl UploadQueue {
    pub async fn start(
        client: Arc<dyn ObjectStore>,
        key: &str,
        opts: &PutOptions,
        concurrency: usize,
    ) -> Result<UploadQueue, ObjectError> {
        let upload_id = client.create_multipart_upload(key, opts).await?;
        Ok(UploadQueue {
            client,
            key: key.to_string(),
            upload_id,
            tasks: JoinSet::new(),
            parts: BTreeMap::new(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            pinned: false,
        })
    }

    /// Takes up upload `upload_id` of `key` again, whose parts `stored` are in the store
    /// (a writer that died released their bytes).
    pub fn resume(
        client: Arc<dyn ObjectStore>,
        key: &str,
        upload_id: &str,
        stored: &[CompletedPart],
        concurrency: usize,
    ) -> UploadQueue {
        UploadQueue {
            client,
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            tasks: JoinSet::new(),
            parts: stored.iter().map(|p| (p.number, p.clone())).collect(),
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            pinned: false,
        }
    }

    pub fn pin(&mut self) {
        self.pinned = true;
    }

    pub fn is_pinned(&self) -> bool {
        self.pinned
    }

    pub fn id(&self) -> &str {
        &self.upload_id
    }

    /// The parts stored so far.
    pub fn stored(&mut self) -> Result<Vec<CompletedPart>, ObjectError> {
        self.reap()?;
        Ok(self.parts.values().cloned().collect())
    }

    /// Stops every part in flight and leaves the upload for later (the parts stored are
    /// the only copy of some bytes); returns its id.
    pub async fn keep(mut self) -> String {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.upload_id
    }

    /// Sends part `number`; waits for a free upload slot first. `budget` is the memory the
    /// body holds, given back when the part is stored.
    pub async fn submit_data(
        &mut self,
        number: i32,
        body: Bytes,
        budget: OwnedSemaphorePermit,
    ) -> Result<(), ObjectError> {
        self.submit_read(number, async { Ok(body) }, budget).await
    }

    /// Sends part `number` with the body `read` gives, read in the part's own task: the
    /// caller goes on meanwhile (a streamed write's reading of a part from the staging
    /// file was a tenth of its write time).
    pub async fn submit_read(
        &mut self,
        number: i32,
        read: impl std::future::Future<Output = Result<Bytes, ObjectError>> + Send + 'static,
        budget: OwnedSemaphorePermit,
    ) -> Result<(), ObjectError> {
        let slot = self.take_slot().await?;
        let (client, key, id) = (self.client.clone(), self.key.clone(), self.upload_id.clone());
        self.tasks.spawn(async move {
            let _held = (slot, budget);
            client.upload_part(&key, &id, number, read.await?).await
        });
        Ok(())
    }

    /// Copies `range` of the object `source` (at ETag `etag`) into part `number` on the server.
    pub async fn submit_copy(
        &mut self,
        number: i32,
        source: &str,
        etag: &str,
        range: Range<u64>,
    ) -> Result<(), ObjectError> {
        let slot = self.take_slot().await?;
        let (client, key, id) = (self.client.clone(), self.key.clone(), self.upload_id.clone());
        let (source, etag) = (source.to_string(), etag.to_string());
        self.tasks.spawn(async move {
            let _held = slot;
            client.upload_part_copy(&key, &id, number, &source, &etag, range).await
        });
        Ok(())
    }

    async fn take_slot(&mut self) -> Result<OwnedSemaphorePermit, ObjectError> {
        self.reap()?;
        let slot = self.slots.clone().acquire_owned().await.expect("the slot semaphore is never closed");
        // A part may have failed while we waited: stop feeding a doomed upload.
        self.reap()?;
        Ok(slot)
    }

    /// Collects finished parts; the first failure ends the upload.
    fn reap(&mut self) -> Result<(), ObjectError> {
        while let Some(done) = self.tasks.try_join_next() {
            self.record(done)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        done: Result<Result<CompletedPart, ObjectError>, tokio::task::JoinError>,
    ) -> Result<(), ObjectError> {
        let part = done.map_err(|e| {
            ObjectError::new(ErrorKind::Malformed, "UploadPart", self.key.as_str())
                .with_message(format!("part task failed: {e}"))
        })??;
        self.parts.insert(part.number, part);
        Ok(())
    }

    /// Waits for every part in flight (before a part is sent again, so the newer one wins).
    pub async fn drain(&mut self) -> Result<(), ObjectError> {
        while let Some(done) = self.tasks.join_next().await {
            self.record(done)?;
        }
        Ok(())
    }

    /// Waits for all parts and makes parts 1..=`last` the object, if `condition` holds;
    /// returns its ETag. On failure the upload is aborted, so none is left behind. Parts
    /// past `last` were cut off by a truncate and are left out.
    pub async fn complete(mut self, last: i32, condition: &Precondition) -> Result<Option<String>, ObjectError> {
        let result = match self.drain().await {
            Ok(()) => {
                let parts: Vec<CompletedPart> = self.parts.range(..=last).map(|(_, p)| p.clone()).collect();
                let (client, key, id) = (&*self.client, self.key.as_str(), self.upload_id.as_str());
                let ours = multipart_etag(&parts);
                write_if(client, key, condition, ours.as_deref(), |c| {
                    let parts = &parts;
                    async move { client.complete_multipart_upload_if(key, id, parts, &c).await }
                })
                .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            if self.pinned {
                self.keep().await;
            } else {
                self.abort().await;
            }
        }
        result
    }

    /// Stops every part in flight and aborts the upload at the store; false when the
    /// store did not abort it.
    pub async fn abort(mut self) -> bool {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        match self.client.abort_multipart_upload(&self.key, &self.upload_id).await {
            Ok(()) => true,
            Err(e) => {
                warn!(key = %self.key, upload_id = %self.upload_id, "could not abort the multipart upload: {e}; it stays listed in ListMultipartUploads until aborted");
                false
            }
        }
    }
}
