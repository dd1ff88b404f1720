//! Sends a request again when the store failed it transiently (throttling, 5xx, timeouts,
//! resets, an endpoint restarting), with exponential backoff and full jitter, so a burst of
//! 503 SlowDown costs one part a few retries instead of ending a multi-GB upload.
//!
//! Every request the core makes is safe to repeat: reads, whole-object PUTs and copies,
//! parts (a part sent again replaces itself), deletes. A completion whose reply was lost
//! and is sent again finds its upload gone (NotFound); the object then exists, which the
//! caller learns from the error's context in the log.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::debug;

use crate::metrics::OpLabel;

use super::{
    BucketSetting, CompletedPart, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, Precondition, PutOptions,
    Tags, UploadMarker, UploadPage, VersionMarker, VersionPage,
};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: u32,
    /// The backoff ceiling before the first retry; it doubles per retry up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Ten retries, 100 ms doubling to 20 s: about a minute of patience in all, enough for
    /// a throttling burst or a store restart.
    fn default() -> Self {
        RetryPolicy { retries: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(20) }
    }
}

impl RetryPolicy {
    /// The wait before retry `n` (1-based): uniformly random up to the exponential ceiling,
    /// so clients throttled together do not come back together.
    fn delay(&self, n: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1u32 << (n - 1).min(20)).min(self.max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// A store whose transient failures are retried by `policy`.
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> RetryingStore {
        RetryingStore { inner, policy }
    }

    async fn retry<T, F, Fut>(&self, mut send: F) -> Result<T, ObjectError>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, ObjectError>> + Send,
        T: Send,
    {
        let mut attempt = 0;
        loop {
            match send().await {
                Err(e) if e.is_transient() && attempt < self.policy.retries => {
                    attempt += 1;
                    crate::metrics::global().retries.get_or_create(&OpLabel { op: e.op.to_string() }).inc();
                    let wait = self.policy.delay(attempt);
                    debug!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }
}

#[async_trait]
impl ObjectStore for RetryingStore {
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        self.retry(|| self.inner.head_bucket()).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.retry(|| self.inner.list(prefix, delimiter, continuation.clone(), max_keys)).await
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        self.retry(|| self.inner.head_object(key)).await
    }

    /// Retries the start of a GET; a body cut short later is the reader's to fetch again.
    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        self.retry(|| self.inner.get_stream(key, range.clone(), etag)).await
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.retry(|| self.inner.put_object_if(key, body.clone(), opts, condition)).await
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        self.retry(|| self.inner.copy_object(source, etag, key, opts)).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        self.retry(|| self.inner.delete_object(key)).await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        self.retry(|| self.inner.delete_objects(keys)).await
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        self.retry(|| self.inner.create_multipart_upload(key, opts)).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        self.retry(|| self.inner.upload_part(key, upload_id, number, body.clone())).await
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
        self.retry(|| self.inner.upload_part_copy(key, upload_id, number, source_key, source_etag, range.clone())).await
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        self.retry(|| self.inner.complete_multipart_upload_if(key, upload_id, parts, condition)).await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        self.retry(|| self.inner.abort_multipart_upload(key, upload_id)).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        self.retry(|| self.inner.list_multipart_uploads(prefix, after.clone(), max_uploads)).await
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        self.retry(|| self.inner.get_tags(key)).await
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        self.retry(|| self.inner.put_tags(key, tags)).await
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        self.retry(|| self.inner.get_acl(key)).await
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        self.retry(|| self.inner.put_acl(key, canned)).await
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        self.retry(|| self.inner.presign_get(key, version_id, expires)).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        self.retry(|| self.inner.list_versions(prefix, after.clone(), max_keys)).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        self.retry(|| self.inner.head_version(key, version_id)).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        self.retry(|| self.inner.get_version_stream(key, version_id, range.clone())).await
    }

    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        self.retry(|| self.inner.get_bucket_setting(root, which)).await
    }

    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        self.retry(|| self.inner.put_bucket_setting(root, which, value)).await
    }

    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        self.retry(|| self.inner.delete_bucket_setting(root, which)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ErrorKind, Fault, FaultRule, FaultyStore, MemoryStore};

    fn quick(retries: u32) -> RetryPolicy {
        RetryPolicy { retries, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(4) }
    }

    #[tokio::test]
    async fn transient_failures_are_sent_again_until_they_pass() {
        let memory = MemoryStore::default();
        let faulty = Arc::new(FaultyStore::new(Arc::new(memory.clone()), 7));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::Throttled)).op("PutObject").times(3));
        let store = RetryingStore::new(faulty.clone(), quick(10));
        store.put_object("k", Bytes::from_static(b"data"), &PutOptions::default()).await.unwrap();
        assert_eq!(memory.requests("PutObject"), 1, "failed attempts never reached the store");
        assert_eq!(faulty.injected(), 3);
        assert_eq!(memory.object("k").unwrap().data, Bytes::from_static(b"data"));
    }

    #[tokio::test]
    async fn retries_give_up_after_the_policy_and_keep_the_cause() {
        let faulty = Arc::new(FaultyStore::new(Arc::new(MemoryStore::default()), 7));
        faulty.add(FaultRule::new(Fault::Error(ErrorKind::ServerError)).op("HeadObject"));
        let store = RetryingStore::new(faulty.clone(), quick(4));
        let err = store.head_object("k").await.unwrap_err();
        assert_eq!((err.kind, err.op, err.key.as_str()), (ErrorKind::ServerError, "HeadObject", "k"));
        assert_eq!(faulty.injected(), 5, "the first attempt and four retries");
    }

    #[tokio::test]
    async fn answers_that_will_not_change_are_not_retried() {
        let memory = MemoryStore::default();
        let store = RetryingStore::new(Arc::new(memory.clone()), quick(10));
        assert!(store.head_object("missing").await.unwrap_err().is(ErrorKind::NotFound));
        assert_eq!(memory.requests("HeadObject"), 1);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let p = RetryPolicy { retries: 10, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for _ in 0..100 {
            assert!(p.delay(1) <= Duration::from_millis(100));
            assert!(p.delay(3) <= Duration::from_millis(400));
            assert!(p.delay(30) <= Duration::from_secs(1));
        }
    }
}
