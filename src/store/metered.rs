//! Counts every request into the process's metrics ([`crate::metrics`]): operation,
//! status, latency, body bytes each way. It wraps the S3 store below the retries, so each
//! attempt counts.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{
    BucketSetting, CompletedPart, ErrorKind, ListPage, ObjectBody, ObjectError, ObjectInfo, ObjectStore, Precondition,
    PutOptions, Tags, UploadMarker, UploadPage, VersionMarker, VersionPage,
};
use crate::metrics::{global, Metrics};

pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: &'static Metrics,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> MeteredStore {
        MeteredStore { inner, metrics: global() }
    }

    async fn count<T>(
        &self,
        op: &str,
        request: impl Future<Output = Result<T, ObjectError>>,
    ) -> Result<T, ObjectError> {
        let started = Instant::now();
        let result = request.await;
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => self.metrics.request(op, None, true, seconds),
            Err(e) => {
                if e.kind == ErrorKind::Throttled {
                    self.metrics.throttled.inc();
                }
                self.metrics.request(op, e.status, false, seconds);
            }
        }
        result
    }
}

impl MeteredStore {
    /// `body`, its bytes counted as they arrive.
    fn counted(&self, body: ObjectBody) -> ObjectBody {
        let down = self.metrics.bytes_down.clone();
        let chunks = futures_util::stream::unfold(body, |mut body| async move {
            body.next_chunk().await.transpose().map(|chunk| (chunk, body))
        })
        .inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                down.inc_by(bytes.len() as u64);
            }
        });
        ObjectBody::new(chunks.boxed())
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn head_bucket(&self) -> Result<(), ObjectError> {
        self.count("HeadBucket", self.inner.head_bucket()).await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation: Option<String>,
        max_keys: i32,
    ) -> Result<ListPage, ObjectError> {
        self.count("ListObjects", self.inner.list(prefix, delimiter, continuation, max_keys)).await
    }

    async fn head_object(&self, key: &str) -> Result<ObjectInfo, ObjectError> {
        self.count("HeadObject", self.inner.head_object(key)).await
    }

    /// Times the request until the body starts; counts the body's bytes as they arrive.
    async fn get_stream(&self, key: &str, range: Range<u64>, etag: Option<&str>) -> Result<ObjectBody, ObjectError> {
        let body = self.count("GetObject", self.inner.get_stream(key, range, etag)).await?;
        Ok(self.counted(body))
    }

    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        opts: &PutOptions,
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let len = body.len() as u64;
        let stored = self.count("PutObject", self.inner.put_object_if(key, body, opts, condition)).await?;
        self.metrics.bytes_up.inc_by(len);
        Ok(stored)
    }

    async fn copy_object(
        &self,
        source: &str,
        etag: Option<&str>,
        key: &str,
        opts: Option<&PutOptions>,
    ) -> Result<Option<String>, ObjectError> {
        self.count("CopyObject", self.inner.copy_object(source, etag, key, opts)).await
    }

    async fn delete_object(&self, key: &str) -> Result<(), ObjectError> {
        self.count("DeleteObject", self.inner.delete_object(key)).await
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, String)>, ObjectError> {
        self.count("DeleteObjects", self.inner.delete_objects(keys)).await
    }

    async fn create_multipart_upload(&self, key: &str, opts: &PutOptions) -> Result<String, ObjectError> {
        self.count("CreateMultipartUpload", self.inner.create_multipart_upload(key, opts)).await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<CompletedPart, ObjectError> {
        let len = body.len() as u64;
        let part = self.count("UploadPart", self.inner.upload_part(key, upload_id, number, body)).await?;
        self.metrics.bytes_up.inc_by(len);
        Ok(part)
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
        let copy = self.inner.upload_part_copy(key, upload_id, number, source_key, source_etag, range);
        self.count("UploadPartCopy", copy).await
    }

    async fn complete_multipart_upload_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        condition: &Precondition,
    ) -> Result<Option<String>, ObjectError> {
        let complete = self.inner.complete_multipart_upload_if(key, upload_id, parts, condition);
        self.count("CompleteMultipartUpload", complete).await
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), ObjectError> {
        self.count("AbortMultipartUpload", self.inner.abort_multipart_upload(key, upload_id)).await
    }

    async fn list_multipart_uploads(
        &self,
        prefix: &str,
        after: Option<UploadMarker>,
        max_uploads: i32,
    ) -> Result<UploadPage, ObjectError> {
        self.count("ListMultipartUploads", self.inner.list_multipart_uploads(prefix, after, max_uploads)).await
    }

    async fn get_tags(&self, key: &str) -> Result<Tags, ObjectError> {
        self.count("GetObjectTagging", self.inner.get_tags(key)).await
    }

    async fn put_tags(&self, key: &str, tags: &Tags) -> Result<(), ObjectError> {
        self.count("PutObjectTagging", self.inner.put_tags(key, tags)).await
    }

    async fn get_acl(&self, key: &str) -> Result<String, ObjectError> {
        self.count("GetObjectAcl", self.inner.get_acl(key)).await
    }

    async fn put_acl(&self, key: &str, canned: &str) -> Result<(), ObjectError> {
        self.count("PutObjectAcl", self.inner.put_acl(key, canned)).await
    }

    async fn presign_get(&self, key: &str, version_id: Option<&str>, expires: Duration) -> Result<String, ObjectError> {
        // Signed here: no request.
        self.inner.presign_get(key, version_id, expires).await
    }

    async fn list_versions(
        &self,
        prefix: &str,
        after: Option<VersionMarker>,
        max_keys: i32,
    ) -> Result<VersionPage, ObjectError> {
        self.count("ListObjectVersions", self.inner.list_versions(prefix, after, max_keys)).await
    }

    async fn head_version(&self, key: &str, version_id: &str) -> Result<ObjectInfo, ObjectError> {
        self.count("HeadObject", self.inner.head_version(key, version_id)).await
    }

    async fn get_version_stream(
        &self,
        key: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<ObjectBody, ObjectError> {
        let body = self.count("GetObject", self.inner.get_version_stream(key, version_id, range)).await?;
        Ok(self.counted(body))
    }

    async fn get_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<Option<String>, ObjectError> {
        self.count("GetBucketSetting", self.inner.get_bucket_setting(root, which)).await
    }

    async fn put_bucket_setting(&self, root: &str, which: BucketSetting, value: &str) -> Result<(), ObjectError> {
        self.count("PutBucketSetting", self.inner.put_bucket_setting(root, which, value)).await
    }

    async fn delete_bucket_setting(&self, root: &str, which: BucketSetting) -> Result<(), ObjectError> {
        self.count("DeleteBucketSetting", self.inner.delete_bucket_setting(root, which)).await
    }
}
