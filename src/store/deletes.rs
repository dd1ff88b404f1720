//! Deletes sent in batches (for `--write-back`): `delete_object` returns at once, and the
//! key goes in the next DeleteObjects request (up to 1000 keys), sent as soon as the one
//! before it has answered. `rm -rf` of many files then costs a few requests instead of a
//! round trip per file.
//!
//! Every other request naming a key whose delete is pending (or listing a prefix holding
//! one) waits for that delete first. Through this store a deleted key is never seen
//! again, and a new object under the same key is never deleted by the late request. A
//! delete the store refuses is logged: the object stays, and shows again after the
//! mount's TTLs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tracing::{debug, error, warn};

use super::{
    CompletedPart, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, Precondition, PutOptions, Tags,
    VersionMarker, VersionPage,
};

/// Keys per DeleteObjects request: the most S3 and XOS take.
const BATCH_KEYS: usize = 1000;

/// A store whose single deletes are queued and sent in batches.
pub struct DeleteQueue {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    queued: Notify,
    /// The last batch whose requests have answered; batches are sent one at a time, in
    /// order.
    done: watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    /// Keys queued or being deleted, with the batch that deletes them.
    pending: BTreeMap<String, u64>,
    /// Keys waiting for the next batch, which is number `next`.
    queue: Vec<String>,
    next: u64,
}

impl DeleteQueue {
    /// Wraps `inner`; the task that sends the batches runs on the current runtime.
    pub fn new(inner: Arc<dyn ObjectStore>) -> DeleteQueue {
        let shared = Arc::new(Shared {
            state: Mutex::new(State { next: 1, ..State::default() }),
            queued: Notify::new(),
            done: watch::channel(0).0,
        });
        tokio::spawn(send_batches(inner.clone(), shared.clone()));
        DeleteQueue { inner, shared }
    }

    /// Waits until every delete queued so far has been answered (unmount).
    pub async fn flush(&self) {
        let last = self.shared.state.lock().pending.values().max().copied();
        if let Some(batch) = last {
            self.wait_for(batch).await;
        }
    }

    /// Waits for the pending delete of `key`, if there is one.
    async fn settled(&self, key: &str) {
        let batch = self.shared.state.lock().pending.get(key).copied();
        if let Some(batch) = batch {
            self.wait_for(batch).await;
        }
    }

    /// Waits for the pending deletes of keys under `prefix`.
    async fn settled_under(&self, prefix: &str) {
        let batch = {
            let state = self.shared.state.lock();
            state.pending.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).map(|(_, b)| *b).max()
        };
        if let Some(batch) = batch {
            self.wait_for(batch).await;
        }
    }

    async fn wait_for(&self, batch: u64) {
        let mut done = self.shared.done.subscribe();
        // The sender lives as long as the queue: this only ends when the batch has.
        let _ = done.wait_for(|d| *d >= batch).await;
    }
}

/// Sends what is queued, one batch at a time, for as long as the queue exists.
async fn send_batches(inner: Arc<dyn ObjectStore>, shared: Arc<Shared>) {
    loop {
        // The queue is gone (its drop woke this task) and nothing is left to send.
        if Arc::strong_count(&shared) == 1 && shared.state.lock().queue.is_empty() {
            return;
        }
        shared.queued.notified().await;
        let (batch, keys) = {
            let mut state = shared.state.lock();
            if state.queue.is_empty() {
                continue;
            }
            let batch = state.next;
            state.next += 1;
            (batch, std::mem::take(&mut state.queue))
        };
        debug!(keys = keys.len(), "deleting a batch of keys");
        for chunk in keys.chunks(BATCH_KEYS) {
            match inner.delete_objects(chunk).await {
                Ok(refused) => {
                    for (key, why) in refused {
                        warn!(%key, "the store did not delete the object ({why}): it stays");
                    }
                }
                Err(e) => error!("deleting {} object(s) failed ({e}): they stay in the store", chunk.len()),
            }
        }
        {
            let mut state = shared.state.lock();
            for key in keys {
                if state.pending.get(&key) == Some(&batch) {
                    state.pending.remove(&key);
                }
            }
        }
        shared.done.send_replace(batch);
    }
}

impl Drop for DeleteQueue {
    fn drop(&mut self) {
        self.shared.queued.notify_one();
    }
}

#[async_trait]
impl super::StoreLayer for DeleteQueue {
    fn inner(&self) -> &dyn ObjectStore {
        &*self.inner
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.settled_under(prefix).await;
        self.inner.list(prefix, delimiter, continuation, max_keys).await
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        self.settled(key).await;
        self.inner.head_object(key).await
    }

    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        self.settled(key).await;
        self.inner.get_stream(key, range, etag).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.settled(key).await;
        self.inner.put_object_if(key, body, opts, condition).await
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        self.settled(source).await;
        self.settled(key).await;
        self.inner.copy_object(source, etag, key, opts).await
    }

    /// Queues the delete; it is sent with the next batch.
    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        {
            let mut state = self.shared.state.lock();
            let batch = state.next;
            state.pending.insert(key.to_string(), batch);
            state.queue.push(key.to_string());
        }
        self.shared.queued.notify_one();
        Ok(())
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        self.settled(key).await;
        self.inner.create_multipart_upload(key, opts).await
    }

    async fn upload_part_copy(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        source_key: &str,
        source_etag: &str,
        range: Range<u64>,
    ) -> Result<CompletedPart, ObjectError> {
        self.settled(source_key).await;
        self.inner.upload_part_copy(key, upload_id, number, source_key, source_etag, range).await
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.settled(key).await;
        self.inner.complete_multipart_upload_if(key, upload_id, parts, condition).await
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        self.settled(key).await;
        self.inner.get_tags(key).await
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        self.settled(key).await;
        self.inner.put_tags(key, tags).await
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        self.settled(key).await;
        self.inner.get_acl(key).await
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        self.settled(key).await;
        self.inner.put_acl(key, canned).await
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        self.settled(key).await;
        self.inner.presign_get(key, version_id, expires).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        self.settled_under(prefix).await;
        self.inner.list_versions(prefix, after, max_keys).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        self.settled(key).await;
        self.inner.head_version(key, version_id).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        self.settled(key).await;
        self.inner.get_version_stream(key, version_id, range).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore};

    async fn stored(memory: &MemoryStore, keys: &[&str]) {
        for key in keys {
            memory.put_object(key, Bytes::from_static(b"x"), &PutOptions::default()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn deletes_go_in_batches_and_nothing_deleted_is_seen_again() {
        let memory = MemoryStore::default();
        let keys: Vec<String> = (0..300).map(|i| format!("d/f{i:03}")).collect();
        stored(&memory, &keys.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let queue = DeleteQueue::new(Arc::new(memory.clone()));
        for key in &keys {
            queue.delete_object(key).await.unwrap();
        }
        assert!(queue.list("d/", None, None, 1000).await.unwrap().objects.is_empty(), "listing waits for them");
        assert_eq!(memory.requests("DeleteObject"), 0);
        assert!(memory.requests("DeleteObjects") < 10, "{} batches", memory.requests("DeleteObjects"));
        assert!(memory.keys().is_empty());
    }

    #[tokio::test]
    async fn a_new_object_under_a_deleted_key_is_never_deleted_by_the_late_request() {
        let memory = MemoryStore::default();
        stored(&memory, &["k"]).await;
        let queue = DeleteQueue::new(Arc::new(memory.clone()));
        queue.delete_object("k").await.unwrap();
        assert!(queue.head_object("k").await.unwrap_err().is(ErrorKind::NotFound), "HEAD waits for the delete");
        queue.delete_object("k").await.unwrap();
        queue
            .put_object_if("k", Bytes::from_static(b"new"), &PutOptions::default(), &Precondition::Absent)
            .await
            .unwrap();
        queue.flush().await;
        assert_eq!(memory.object("k").unwrap().data, Bytes::from_static(b"new"));
    }

    #[tokio::test]
    async fn a_refused_delete_leaves_the_object_and_releases_its_waiters() {
        let memory = MemoryStore::default();
        stored(&memory, &["k"]).await;
        let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 1));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::AccessDenied)).op("DeleteObjects"));
        let queue = DeleteQueue::new(faulty);
        queue.delete_object("k").await.unwrap();
        queue.flush().await;
        assert!(queue.head_object("k").await.is_ok(), "the object stays");
    }
}
